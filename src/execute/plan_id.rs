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

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The same object with its keys inserted in reverse order.
        fn reordered(v: &Value) -> Value {
            match v {
                Value::Object(m) => {
                    let mut out = serde_json::Map::new();
                    for (k, x) in m.iter().rev() {
                        out.insert(k.clone(), reordered(x));
                    }
                    Value::Object(out)
                }
                Value::Array(a) => Value::Array(a.iter().map(reordered).collect()),
                x => x.clone(),
            }
        }

        proptest! {
            /// Canonical JSON is valid JSON of the same value, independent of key order.
            #[test]
            fn fuzz_canonical_roundtrips_and_ignores_key_order(v in json_value()) {
                let c = canonical(&v);
                let back: Value = serde_json::from_str(&c).unwrap();
                prop_assert_eq!(&back, &v);
                prop_assert_eq!(canonical(&reordered(&v)), c.clone());
                prop_assert_eq!(canonical(&back), c);
            }

            /// The plan id is 16 hex digits, deterministic, and changes with the arguments.
            #[test]
            fn fuzz_plan_id_binds_arguments(a in json_value(), b in json_value(), ns in "[a-z]{1,10}") {
                let mut s1 = step("u1", 3);
                s1.arguments = a.clone();
                let mut s2 = s1.clone();
                s2.arguments = b.clone();
                let id1 = plan_id(&ns, std::slice::from_ref(&s1));
                prop_assert_eq!(id1.len(), 16);
                prop_assert!(id1.chars().all(|c| c.is_ascii_hexdigit()));
                let mut s1r = s1.clone();
                s1r.arguments = reordered(&a);
                prop_assert_eq!(plan_id(&ns, &[s1r]), id1.clone());
                if a != b {
                    prop_assert_ne!(plan_id(&ns, &[s2]), id1);
                }
            }
        }
    }
}
