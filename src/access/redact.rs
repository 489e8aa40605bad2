//! Redaction: tokens, keys, passwords and credentials removed from any text before it reaches
//! status, Events, checkpoints or a model — by structure where it is known, by pattern elsewhere.

use std::sync::LazyLock;

use regex::Regex;

static SECRET_PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (
            Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*").expect("static regex"),
            "$1 [REDACTED]",
        ),
        (
            Regex::new(r#"(?i)\b([a-z0-9_\-]*(?:password|passwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?)[a-z0-9_\-]*)(\s*["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&]+)"#).expect("static regex"),
            "$1$2[REDACTED]",
        ),
        (
            Regex::new(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}").expect("static regex"),
            "[REDACTED-JWT]",
        ),
        (
            Regex::new(r"\b(sk-[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,})").expect("static regex"),
            "[REDACTED-KEY]",
        ),
        (
            Regex::new(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----").expect("static regex"),
            "[REDACTED-PRIVATE-KEY]",
        ),
        // A private key cut off by a line cap or a byte limit: everything after its header.
        (
            Regex::new(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[A-Za-z0-9+/=\s]*").expect("static regex"),
            "[REDACTED-PRIVATE-KEY]",
        ),
        // Credentials in URLs: postgres://user:pass@host, https://user:token@git.example.
        (
            Regex::new(r"\b([a-z][a-z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@").expect("static regex"),
            "$1:[REDACTED]@",
        ),
        // Authorization headers of any scheme (Basic, Digest, a bare token).
        (
            Regex::new(r#"(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:[a-z]+\s+)?[^\s"',}]+"#).expect("static regex"),
            "$1[REDACTED]",
        ),
        // Env var pairs whose name looks secret: `- name: DB_PASSWORD` / `value: ...` (YAML)
        // and {"name": "DB_PASSWORD", "value": "..."} (JSON).
        (
            Regex::new(r#"(?i)(name["']?\s*:\s*["']?[a-z0-9_\-.]*(?:password|passwd|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|credentials?|dsn|connection[_\-]?string)[a-z0-9_\-.]*["']?\s*[,\n]\s*-?\s*["']?value["']?\s*:\s*)("[^"]*"|'[^']*'|[^\s,}]+)"#).expect("static regex"),
            "$1[REDACTED]",
        ),
        // kubectl's last-applied-configuration repeats the whole object (env values included).
        (
            Regex::new(r#"(kubectl\.kubernetes\.io/last-applied-configuration["']?\s*[:=]\s*)(?:"(?:[^"\\]|\\.)*"|[^\n]*)"#).expect("static regex"),
            "$1[REDACTED: last-applied-configuration]",
        ),
    ]
});

/// Removes tokens, keys and passwords from text before it reaches status,
/// events or a model.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for (re, rep) in SECRET_PATTERNS.iter() {
        if re.is_match(&out) {
            out = re.replace_all(&out, *rep).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secrets() {
        let text = "password=hunter2 token: abc.def Authorization: Bearer eyJhbGciOi.x.y API_KEY=\"sk-abcdefghijklmnopqrstuv\" ok=1";
        let r = redact(text);
        assert!(!r.contains("hunter2"), "{r}");
        assert!(!r.contains("abc.def"), "{r}");
        assert!(!r.contains("sk-abc"), "{r}");
        assert!(!r.contains("eyJhbGciOi"), "{r}");
        assert!(r.contains("ok=1"));
        assert_eq!(redact("plain log line"), "plain log line");
    }

    #[test]
    fn redacts_secrets_by_shape_too() {
        let cases = [
            // env var pairs, YAML and JSON, the name on the line before the value
            (
                "env:\n- name: DB_PASSWORD\n  value: c4n4ry1\n- name: MODE\n  value: fast",
                "c4n4ry1",
            ),
            (r#"{"name":"STRIPE_API_KEY","value":"c4n4ry2"}"#, "c4n4ry2"),
            ("- name: APP_DSN\n  value: \"c4n4ry3\"", "c4n4ry3"),
            // credentials in URLs
            (
                "connecting to postgres://app:c4n4ry4@db:5432/shop",
                "c4n4ry4",
            ),
            (
                "remote: https://bot:c4n4ry5@git.example.com/x.git",
                "c4n4ry5",
            ),
            // authorization headers of any scheme
            ("Authorization: Basic c4n4ry6=", "c4n4ry6"),
            (r#"{"authorization": "Token c4n4ry7"}"#, "c4n4ry7"),
            // last-applied-configuration repeats everything
            (
                r#"kubectl.kubernetes.io/last-applied-configuration: {"spec":{"env":[{"name":"X","value":"c4n4ry8"}]}}"#,
                "c4n4ry8",
            ),
            // JSON secrets and PEM keys, also cut off
            (r#"{"db": {"password": "c4n4ry9"}}"#, "c4n4ry9"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIc4n4ry10AAA\n(truncated)",
                "MIIc4n4ry10",
            ),
        ];
        for (text, canary) in cases {
            let r = redact(text);
            assert!(!r.contains(canary), "{canary} survived in {r:?}");
        }
        // What is not secret stays readable.
        let keep =
            "- name: MODE\n  value: fast\nGET https://example.com/path 200\nuser@example.com";
        assert_eq!(redact(keep), keep);
    }
}
