//! The plan id: bound to the content of the plan and to the one `AIPlan`
//! object that carries it, not to a git revision (committing an approval
//! never changes it).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::PlanStep;

/// First 16 hex characters of the SHA-256 of the canonical JSON (sorted keys,
/// no whitespace) of the AIPlan's uid, the target namespace and each step's
/// tool, arguments, target (with uid), `before`, `verification` and `rollbackAction`. The plan's uid makes an
/// approval single-use: it approves exactly one plan object, never a later
/// plan with the same content or a copy in another request.
pub fn plan_id(plan_uid: &str, target_namespace: &str, steps: &[PlanStep]) -> String {
    plan_id_in(plan_uid, None, target_namespace, steps)
}

/// [`plan_id`] of a plan whose steps act in the member cluster `cluster` (`None`: the
/// operator's own cluster, whose plans keep the ids they always had). The cluster's name is
/// hashed: an approval of a plan for one cluster never runs it in another.
pub fn plan_id_in(
    plan_uid: &str,
    cluster: Option<&str>,
    target_namespace: &str,
    steps: &[PlanStep],
) -> String {
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| {
            let mut v = json!({
                "tool": s.tool,
                "arguments": s.arguments,
                "target": s.target,
                "before": s.before,
            });
            // Verification and rollback are approved content; hashed when present
            // (plans without them keep the ids they always had).
            if let Some(ver) = &s.verification {
                v["verification"] = json!(ver);
            }
            if let Some(rb) = &s.rollback_action {
                v["rollbackAction"] = json!(rb);
            }
            v
        })
        .collect();
    let mut doc = json!({"plan": plan_uid, "targetNamespace": target_namespace, "steps": steps});
    if let Some(c) = cluster {
        doc["cluster"] = json!(c);
    }
    let doc = canonical(&doc);
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

    #[test]
    fn the_cluster_is_part_of_the_id() {
        let steps = [step("u1", 3)];
        let here = plan_id("p1", "shop", &steps);
        assert_eq!(plan_id_in("p1", None, "shop", &steps), here);
        let m1 = plan_id_in("p1", Some("member-1"), "shop", &steps);
        let m2 = plan_id_in("p1", Some("member-2"), "shop", &steps);
        assert_ne!(m1, here);
        assert_ne!(m1, m2);
        assert_eq!(m1, plan_id_in("p1", Some("member-1"), "shop", &steps));
    }
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
        let id = plan_id("p1", "shop", &[step("u1", 3)]);
        assert_eq!(id.len(), 16);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, plan_id("p1", "shop", &[step("u1", 3)]));
    }

    #[test]
    fn id_binds_uid_before_and_namespace_but_not_execution_state() {
        let base = plan_id("p1", "shop", &[step("u1", 3)]);
        assert_ne!(base, plan_id("p1", "shop", &[step("u2", 3)]));
        assert_ne!(base, plan_id("p1", "shop", &[step("u1", 4)]));
        assert_ne!(base, plan_id("p1", "other", &[step("u1", 3)]));
        // Another AIPlan object with the same content: another id.
        assert_ne!(base, plan_id("p2", "shop", &[step("u1", 3)]));
        let mut running = step("u1", 3);
        running.state = StepState::Running;
        running.message = Some("x".into());
        assert_eq!(base, plan_id("p1", "shop", &[running]));
    }

    #[test]
    fn id_binds_verification_and_rollback() {
        use crate::api::{RollbackAction, RollbackKind, Verification, VerificationKind};
        let mut s = step("u1", 3);
        s.verification = Some(Verification {
            kind: VerificationKind::ReplicasAvailable,
            timeout_seconds: 60,
        });
        s.rollback_action = Some(RollbackAction {
            action: RollbackKind::RestoreBefore,
            patch: vec![json!({"op": "replace", "path": "/spec/replicas", "value": 3})],
            reason: None,
        });
        let base = plan_id("p1", "shop", std::slice::from_ref(&s));
        assert_ne!(base, plan_id("p1", "shop", &[step("u1", 3)]));
        // `rollback: never` cannot be toggled after approval without a new id.
        let mut never = s.clone();
        never.rollback_action.as_mut().unwrap().action = RollbackKind::Never;
        assert_ne!(base, plan_id("p1", "shop", &[never]));
        let mut longer = s.clone();
        longer.verification.as_mut().unwrap().timeout_seconds = 61;
        assert_ne!(base, plan_id("p1", "shop", &[longer]));
        let mut warned = s.clone();
        warned.admission_warnings = vec!["w".into()];
        assert_eq!(base, plan_id("p1", "shop", &[warned]));
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
        use crate::api::{AIPlanStatus, Risk};
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

        /// One hashed field of a plan, changed to `v` (which may equal the old value).
        fn with_field(
            field: u8,
            v: &Value,
            (mut uid, mut ns, mut s): (String, String, PlanStep),
        ) -> (String, String, PlanStep) {
            let text = v.to_string();
            match field % 9 {
                0 => uid = text,
                1 => ns = text,
                2 => s.tool = text,
                3 => s.arguments = v.clone(),
                4 => s.before = v.clone(),
                5 => s.target.kind = text,
                6 => s.target.name = text,
                7 => s.target.namespace = text,
                _ => s.target.uid = Some(text),
            }
            (uid, ns, s)
        }

        fn field_value(field: u8, (uid, ns, s): &(String, String, PlanStep)) -> Value {
            match field % 9 {
                0 => Value::from(uid.clone()),
                1 => Value::from(ns.clone()),
                2 => Value::from(s.tool.clone()),
                3 => s.arguments.clone(),
                4 => s.before.clone(),
                5 => Value::from(s.target.kind.clone()),
                6 => Value::from(s.target.name.clone()),
                7 => Value::from(s.target.namespace.clone()),
                _ => Value::from(s.target.uid.clone().unwrap_or_default()),
            }
        }

        proptest! {
            /// Canonical JSON is valid JSON of the same value.
            #[test]
            fn fuzz_canonical_roundtrips(v in json_value()) {
                let c = canonical(&v);
                let back: Value = serde_json::from_str(&c).unwrap();
                prop_assert_eq!(&back, &v);
                prop_assert_eq!(canonical(&back), c);
            }

            /// Two plans that differ in any hashed field have different ids.
            #[test]
            fn fuzz_any_hashed_field_changes_the_id(field in 0u8..9, v in json_value()) {
                let base = ("p1".to_string(), "shop".to_string(), step("u1", 3));
                let changed = with_field(field, &v, base.clone());
                // Text fields hold the value's JSON text; compare like that.
                let same = match field % 9 {
                    3 | 4 => field_value(field, &base) == v,
                    _ => field_value(field, &base).as_str() == Some(v.to_string().as_str()),
                };
                let id = |(u, n, s): &(String, String, PlanStep)| plan_id(u, n, std::slice::from_ref(s));
                if same {
                    prop_assert_eq!(id(&changed), id(&base));
                } else {
                    prop_assert_ne!(id(&changed), id(&base));
                }
            }

            /// The id of a stored plan is the same after a JSON round trip of its
            /// status (what the operator recomputes before the first step), and
            /// fields outside the hash (state, messages, times, preview, risk) do
            /// not change it.
            #[test]
            fn fuzz_id_survives_storage_and_ignores_execution_state(
                args in json_value(), before in json_value(), msg in "\\PC{0,40}", secs in 0i64..4_000_000_000
            ) {
                let mut s = step("u1", 3);
                s.arguments = args;
                s.before = before;
                let id = plan_id("p1", "shop", std::slice::from_ref(&s));
                let status = AIPlanStatus { plan_id: Some(id.clone()), steps: vec![s.clone()], ..Default::default() };
                let stored: AIPlanStatus =
                    serde_json::from_str(&serde_json::to_string(&status).unwrap()).unwrap();
                prop_assert_eq!(plan_id("p1", "shop", &stored.steps), id.clone());
                let t = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(secs).unwrap(),
                );
                let mut ran = s.clone();
                ran.state = StepState::Succeeded;
                ran.message = Some(msg.clone());
                ran.preview = Some(msg.clone());
                ran.reason = msg;
                ran.risk = Risk::High;
                ran.started_at = Some(t.clone());
                ran.finished_at = Some(t);
                prop_assert_eq!(plan_id("p1", "shop", &[ran]), id);
            }
        }
    }
}
