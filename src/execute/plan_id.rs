//! The plan id: bound to the content of the plan, not to a git revision.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::PlanStep;

/// First 16 hex characters of the SHA-256 of the canonical JSON (sorted keys,
/// no whitespace) of the target namespace and each step's tool, arguments,
/// target (with uid) and `before`.
pub fn plan_id(target_namespace: &str, steps: &[PlanStep]) -> String {
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "tool": s.tool,
                "arguments": s.arguments,
                "target": s.target,
                "before": s.before,
            })
        })
        .collect();
    let doc = canonical(&json!({"targetNamespace": target_namespace, "steps": steps}));
    let digest = Sha256::digest(doc.as_bytes());
    hex::encode(digest)[..16].to_string()
}

/// Canonical JSON: object keys sorted at every level, compact.
pub fn canonical(v: &Value) -> String {
    let mut s = String::new();
    write(v, &mut s);
    s
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StepState, StepTarget};

    fn step(uid: &str, before: i64) -> PlanStep {
        PlanStep {
            tool: "scale_deployment".into(),
            arguments: json!({"name": "nginx", "namespace": "shop", "replicas": 5, "kind": "Deployment"}),
            target: StepTarget {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "nginx".into(),
                uid: Some(uid.into()),
            },
            before: json!({"replicas": before}),
            ..Default::default()
        }
    }

    #[test]
    fn id_is_16_hex_and_stable() {
        let id = plan_id("shop", &[step("u1", 3)]);
        assert_eq!(id.len(), 16);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, plan_id("shop", &[step("u1", 3)]));
    }

    #[test]
    fn id_binds_uid_before_and_namespace_but_not_execution_state() {
        let base = plan_id("shop", &[step("u1", 3)]);
        assert_ne!(base, plan_id("shop", &[step("u2", 3)]));
        assert_ne!(base, plan_id("shop", &[step("u1", 4)]));
        assert_ne!(base, plan_id("other", &[step("u1", 3)]));
        let mut running = step("u1", 3);
        running.state = StepState::Running;
        running.message = Some("x".into());
        assert_eq!(base, plan_id("shop", &[running]));
    }

    #[test]
    fn canonical_sorts_keys() {
        assert_eq!(
            canonical(&json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": null}})),
            r#"{"a":{"c":null,"d":[1,{"y":1,"z":0}]},"b":1}"#
        );
    }
}
