//! One chat completion over HTTP, and its failures in plain words.
//!
//! async-openai builds the endpoint (URL, auth headers, Azure's deployment
//! path and `api-version`); the request is sent here so every status code and
//! body is seen as the server sent it. Servers differ in their error bodies
//! (llama.cpp puts an integer `code` and `n_prompt_tokens`/`n_ctx`, OpenAI a
//! string `code`): a typed client read a llama.cpp 400 as "failed to
//! deserialize api response", which told the user nothing.

use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::api::truncate;

/// Where chat completions go.
pub enum Endpoint {
    Openai(OpenAIConfig),
    Azure(AzureConfig),
}

impl Endpoint {
    fn parts(&self) -> (String, reqwest::header::HeaderMap, Vec<(String, String)>) {
        fn of(c: &dyn Config) -> (String, reqwest::header::HeaderMap, Vec<(String, String)>) {
            (
                c.url("/chat/completions"),
                c.headers(),
                c.query()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }
        match self {
            Endpoint::Openai(c) => of(c),
            Endpoint::Azure(c) => of(c),
        }
    }

    /// POSTs `body`; the parsed completion, or what went wrong.
    pub async fn chat(&self, http: &reqwest::Client, body: &Value) -> Result<Value, ProviderError> {
        let (mut url, mut headers, query) = self.parts();
        if !query.is_empty() {
            let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            url = format!("{url}?{}", q.join("&"));
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let bytes =
            serde_json::to_vec(body).map_err(|e| ProviderError::BadResponse(e.to_string()))?;
        let resp = http
            .post(&url)
            .headers(headers)
            .body(bytes)
            .send()
            .await
            .map_err(|e| ProviderError::Transport(transport_text(&e)))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ProviderError::Transport(transport_text(&e)))?;
        if !(200..300).contains(&status) {
            return Err(classify(status, &text));
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            ProviderError::BadResponse(format!(
                "the server answered HTTP {status} with something that is not JSON: {}",
                truncate(text.trim(), 200)
            ))
        })?;
        if v.pointer("/choices/0/message").is_none() {
            // Some servers answer 200 with an error object.
            if v.get("error").is_some() {
                return Err(classify(400, &text));
            }
            return Err(ProviderError::BadResponse(format!(
                "the server's answer has no choices[0].message: {}",
                truncate(&text, 200)
            )));
        }
        Ok(v)
    }
}

fn transport_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the call timed out (raise --llm-timeout, or use a faster model)".into()
    } else if e.is_connect() {
        "cannot connect to the model server".into()
    } else {
        // The source chain names the cause (DNS, TLS, reset…); never the key.
        let mut s = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(x) = src {
            s.push_str(&format!(": {x}"));
            src = x.source();
        }
        s
    }
}

/// A failed chat completion.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderError {
    /// The prompt is larger than the model's context.
    ContextExceeded {
        /// Prompt size as the server counted it, when it said.
        prompt_tokens: Option<u64>,
        /// The server's context size, when it said.
        context_tokens: Option<u64>,
        message: String,
    },
    /// Any other HTTP error.
    Http { status: u16, message: String },
    /// No HTTP answer (connection refused, timeout, TLS…).
    Transport(String),
    /// An answer that is not a chat completion.
    BadResponse(String),
}

impl ProviderError {
    /// Whether a later attempt may succeed (429, 5xx, transport).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Http { status, .. } => *status == 429 || *status >= 500,
            ProviderError::Transport(_) => true,
            _ => false,
        }
    }

    /// One sentence for the user (status.answer, events), without secrets.
    pub fn sentence(&self, base_url: &str, model: &str) -> String {
        let s = match self {
            ProviderError::ContextExceeded {
                prompt_tokens,
                context_tokens,
                message,
            } => {
                let size = match (prompt_tokens, context_tokens) {
                    (Some(p), Some(c)) => {
                        format!("the prompt has {p} tokens and the model's context holds {c}")
                    }
                    (Some(p), None) => format!("the prompt has {p} tokens"),
                    _ => format!("the server said: {}", truncate(message, 200)),
                };
                format!(
                    "The request is too large for model `{model}`: {size}. Raise the server's context size \
                     (llama-server --ctx-size / LLM_CTX) and --llm-context-tokens to match, or ask about fewer objects."
                )
            }
            ProviderError::Http { status, message } => {
                let msg = truncate(message, 300);
                match status {
                    401 | 403 => format!(
                        "The model server at {base_url} refused the API key (HTTP {status}): {msg}"
                    ),
                    404 => format!(
                        "The model server at {base_url} does not serve model `{model}` at this URL (HTTP 404): {msg}"
                    ),
                    429 => {
                        format!("The model server at {base_url} is rate limiting (HTTP 429): {msg}")
                    }
                    s if *s >= 500 => {
                        format!("The model server at {base_url} failed (HTTP {s}): {msg}")
                    }
                    s => format!(
                        "The model server at {base_url} rejected the request (HTTP {s}): {msg}"
                    ),
                }
            }
            ProviderError::Transport(e) => {
                format!("The model server at {base_url} could not be reached: {e}")
            }
            ProviderError::BadResponse(e) => {
                format!("The model server at {base_url} did not answer with a chat completion: {e}")
            }
        };
        crate::safety::redact(&s)
    }
}

/// Reads an error answer: the message, and whether it says the context overflowed.
pub fn classify(status: u16, body: &str) -> ProviderError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let err = v.get("error").unwrap_or(&v);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| err.as_str().map(str::to_string))
        .or_else(|| v.get("detail").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let t = body.trim();
            if t.is_empty() {
                "no details".into()
            } else {
                truncate(t, 300)
            }
        });
    let code = err.get("code").map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let kind = err.get("type").and_then(Value::as_str).unwrap_or("");
    let lower = message.to_lowercase();
    let context = kind == "exceed_context_size_error"
        || code.as_deref() == Some("context_length_exceeded")
        || (lower.contains("context")
            && (lower.contains("exceed")
                || lower.contains("too long")
                || lower.contains("maximum")));
    if context && status < 500 {
        let num = |k: &str| err.get(k).and_then(Value::as_u64);
        return ProviderError::ContextExceeded {
            prompt_tokens: num("n_prompt_tokens").or_else(|| num("prompt_tokens")),
            context_tokens: num("n_ctx"),
            message,
        };
    }
    ProviderError::Http { status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_context_overflow_reads_as_a_sentence() {
        let body = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4222,"n_ctx":4096}}"#;
        let e = classify(400, body);
        assert_eq!(
            e,
            ProviderError::ContextExceeded {
                prompt_tokens: Some(4222),
                context_tokens: Some(4096),
                message: "the request exceeds the available context size, try increasing it".into()
            }
        );
        assert!(!e.is_retryable());
        let s = e.sentence("http://llm/v1", "qwen");
        assert!(
            s.contains("4222 tokens") && s.contains("4096") && s.contains("--llm-context-tokens"),
            "{s}"
        );
        assert!(!s.contains("deserialize"), "{s}");
    }

    #[test]
    fn openai_errors_and_plain_text_bodies() {
        let e = classify(
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
        );
        assert!(matches!(e, ProviderError::ContextExceeded { .. }));
        let e = classify(
            401,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert!(e.sentence("u", "m").contains("Incorrect API key provided"));
        assert!(!e.is_retryable());
        let e = classify(
            500,
            r#"{"error":{"code":500,"message":"boom","type":"server_error"}}"#,
        );
        assert!(e.is_retryable());
        assert_eq!(
            e.sentence("http://x/v1", "m"),
            "The model server at http://x/v1 failed (HTTP 500): boom"
        );
        let e = classify(502, "Bad Gateway");
        assert_eq!(
            e,
            ProviderError::Http {
                status: 502,
                message: "Bad Gateway".into()
            }
        );
    }
}
