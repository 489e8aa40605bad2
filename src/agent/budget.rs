//! Fitting a conversation into the model's context window.
//!
//! Token counts are estimated from bytes (no tokenizer for every model the
//! provider may talk to); the agent scales the estimate by what the server
//! reports in `usage.prompt_tokens` after each call. When a request is too
//! large, the oldest history goes first, then tool results are shortened;
//! what still does not fit is reported in plain words.

use serde_json::Value;

use crate::api::truncate;

/// Bytes per token assumed before the server has reported a count: a little
/// below the ~3.5-4 of English and JSON, so the first estimate errs large.
pub const BYTES_PER_TOKEN: usize = 3;
/// Tool results are never shortened below this (tokens).
pub const MIN_TOOL_TOKENS: usize = 120;
/// Appended to a tool result shortened to fit.
const SHORTENED: &str = "\n[shortened to fit the model's context]";
/// Per message: role markers and separators of the chat template.
const MESSAGE_OVERHEAD: usize = 6;

/// Estimated tokens of a text.
pub fn tokens(s: &str) -> usize {
    s.len().div_ceil(BYTES_PER_TOKEN)
}

/// The longest text (bytes) that fits `budget` tokens.
pub fn bytes_for(budget: usize) -> usize {
    budget * BYTES_PER_TOKEN
}

/// Estimated tokens of one chat message (content and tool calls).
pub fn message_tokens(m: &Value) -> usize {
    let content = m.get("content").and_then(Value::as_str).map_or(0, tokens);
    let calls = m.get("tool_calls").map_or(0, |c| tokens(&c.to_string()));
    content + calls + MESSAGE_OVERHEAD
}

/// Estimated tokens of a list of messages.
pub fn messages_tokens(ms: &[Value]) -> usize {
    ms.iter().map(message_tokens).sum()
}

/// What [`fit`] had to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fitted {
    /// Earlier exchanges of the conversation left out.
    pub dropped_history: usize,
    /// Tool results shortened.
    pub shortened_results: usize,
    /// Estimated prompt tokens after fitting.
    pub estimate: usize,
}

/// The request cannot fit even without history and with the shortest tool results.
#[derive(Debug, Clone, PartialEq)]
pub struct TooLarge {
    /// Estimated prompt tokens at the smallest the agent could make it.
    pub estimate: usize,
    /// Tokens available for the prompt.
    pub available: usize,
}

/// Makes `messages` fit `available` prompt tokens, where `fixed` tokens go
/// to what cannot shrink (tool schemas) and `scale` corrects the byte estimate.
///
/// `messages` is `[system, history (user/assistant pairs)..., request turn,
/// tool round-trips...]`; the request turn is the last `user` message.
pub fn fit(
    messages: &mut Vec<Value>,
    fixed: usize,
    available: usize,
    scale: f64,
) -> Result<Fitted, TooLarge> {
    let est = |ms: &[Value]| ((messages_tokens(ms) + fixed) as f64 * scale).ceil() as usize;
    let mut out = Fitted::default();
    // 1. The oldest exchanges of the conversation.
    while est(messages) > available {
        let request = messages
            .iter()
            .rposition(|m| m["role"] == "user")
            .unwrap_or(0);
        if request < 3 {
            break;
        }
        // messages[1] and [2] are the oldest exchange.
        messages.drain(1..3);
        out.dropped_history += 1;
    }
    // 2. Tool results, the largest first, halved each round down to a floor.
    while est(messages) > available {
        let largest = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m["role"] == "tool")
            .map(|(i, m)| (i, message_tokens(m)))
            .max_by_key(|(_, t)| *t);
        let Some((i, t)) = largest else { break };
        if t <= MIN_TOOL_TOKENS + MESSAGE_OVERHEAD {
            break;
        }
        let keep = (t / 2).max(MIN_TOOL_TOKENS);
        let text = messages[i]["content"].as_str().unwrap_or("").to_string();
        let body = text.strip_suffix(SHORTENED).unwrap_or(&text);
        let shorter = format!("{}{SHORTENED}", truncate(body, bytes_for(keep)));
        if shorter.len() >= text.len() {
            // At the floor already (and so is every smaller result).
            break;
        }
        messages[i]["content"] = Value::String(shorter);
        out.shortened_results += 1;
    }
    out.estimate = est(messages);
    if out.estimate > available {
        return Err(TooLarge {
            estimate: out.estimate,
            available,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(history: usize, tool_bytes: usize) -> Vec<Value> {
        let mut m = vec![json!({"role": "system", "content": "s".repeat(300)})];
        for i in 0..history {
            m.push(json!({"role": "user", "content": format!("q{i} {}", "x".repeat(600))}));
            m.push(json!({"role": "assistant", "content": "a".repeat(600)}));
        }
        m.push(json!({"role": "user", "content": "make web four pods please"}));
        m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}));
        m.push(json!({"role": "tool", "content": "t".repeat(tool_bytes)}));
        m
    }

    #[test]
    fn history_goes_first_then_tool_results_shrink() {
        let mut m = msgs(4, 3000);
        let before = messages_tokens(&m);
        let f = fit(&mut m, 500, 1400, 1.0).unwrap();
        assert!(f.dropped_history >= 1, "{f:?}");
        assert!(f.estimate <= 1400 && messages_tokens(&m) < before);
        // The oldest exchange went, the newest stayed (if any stayed).
        assert!(
            m.iter()
                .all(|x| !x["content"].as_str().unwrap_or("").starts_with("q0 "))
        );
        assert_eq!(
            m.iter().rev().find(|x| x["role"] == "user").unwrap()["content"],
            "make web four pods please"
        );

        let mut m = msgs(0, 6000);
        let f = fit(&mut m, 500, 1200, 1.0).unwrap();
        assert_eq!(f.dropped_history, 0);
        assert!(f.shortened_results >= 1);
        assert!(
            m.last().unwrap()["content"]
                .as_str()
                .unwrap()
                .contains("shortened")
        );
    }

    #[test]
    fn what_cannot_fit_is_reported_with_its_size() {
        let mut m = msgs(2, 6000);
        let e = fit(&mut m, 2000, 1000, 1.0).unwrap_err();
        assert!(e.estimate > 1000 && e.available == 1000, "{e:?}");
    }

    #[test]
    fn small_requests_are_left_alone() {
        let mut m = msgs(1, 300);
        let copy = m.clone();
        let f = fit(&mut m, 100, 100_000, 1.0).unwrap();
        assert_eq!((f.dropped_history, f.shortened_results), (0, 0));
        assert_eq!(m, copy);
    }
}
