//! What a step's verification and rollback are, decided when the step is
//! planned (so both are approved content, hashed into the plan id), and the
//! pure checks the executor makes with them: do the rollback's `test`
//! operations still hold on the live object (nobody changed it since), and
//! is the object already restored (a rollback that ran before a restart).

use serde_json::{Value, json};

use super::mutate::{Mutation, WorkloadKind};
use crate::api::{RollbackAction, RollbackKind, StepTarget, Verification, VerificationKind};

/// Longest verification of a rollout (also when a Deployment's
/// `progressDeadlineSeconds` is longer).
pub const MAX_ROLLOUT_SECONDS: i64 = 600;
/// Verification of a step that only writes an object.
pub const OBJECT_SECONDS: i64 = 30;
/// A rollback patch with more operations than this is not offered (`Never`, said why).
const MAX_OPS: usize = 200;

fn rollout_timeout(live: Option<&Value>) -> i64 {
    live.and_then(|l| l.pointer("/spec/progressDeadlineSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(MAX_ROLLOUT_SECONDS)
        .clamp(1, MAX_ROLLOUT_SECONDS)
}

/// How the operator checks the step once applied.
pub fn verification_of(m: &Mutation, live: Option<&Value>, before: &Value) -> Verification {
    let rollout = |live| Verification {
        kind: VerificationKind::RolloutComplete,
        timeout_seconds: rollout_timeout(live),
    };
    let object = Verification {
        kind: VerificationKind::ObjectMatches,
        timeout_seconds: OBJECT_SECONDS,
    };
    match m {
        Mutation::ScaleDeployment { .. } => Verification {
            kind: VerificationKind::ReplicasAvailable,
            timeout_seconds: rollout_timeout(live),
        },
        Mutation::RolloutRestart { .. } => rollout(live),
        Mutation::PatchResource { kind, .. } if is_workload(kind) && touches_template(before) => {
            rollout(live)
        }
        _ => object,
    }
}

fn is_workload(kind: &str) -> bool {
    ["Deployment", "StatefulSet", "DaemonSet"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(kind))
}

/// Whether a generic patch changes the pod template (then pods roll).
fn touches_template(before: &Value) -> bool {
    before["after"]
        .as_object()
        .is_some_and(|m| m.keys().any(|k| k.starts_with("spec.template")))
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The parts of an object a rollback restores.
fn restorable(o: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["spec", "data", "binaryData"] {
        if let Some(v) = o.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut meta = serde_json::Map::new();
    for key in ["labels", "annotations"] {
        if let Some(v) = o.pointer(&format!("/metadata/{key}")) {
            meta.insert(key.into(), v.clone());
        }
    }
    out.insert("metadata".into(), Value::Object(meta));
    Value::Object(out)
}

/// JSON Patch operations that take `after` back to `before`: a `test` of
/// every value the step wrote, then the restoring operations.
pub fn restore_ops(before: &Value, after: &Value) -> Vec<Value> {
    let (mut tests, mut changes) = (vec![], vec![]);
    diff_ops(
        "",
        &restorable(before),
        &restorable(after),
        &mut tests,
        &mut changes,
    );
    tests.extend(changes);
    tests
}

fn diff_ops(path: &str, b: &Value, a: &Value, tests: &mut Vec<Value>, changes: &mut Vec<Value>) {
    match (b, a) {
        (Value::Object(bm), Value::Object(am)) => {
            for (k, av) in am {
                let p = format!("{path}/{}", escape(k));
                match bm.get(k) {
                    Some(bv) => diff_ops(&p, bv, av, tests, changes),
                    None => {
                        tests.push(json!({"op": "test", "path": p, "value": av}));
                        changes.push(json!({"op": "remove", "path": p}));
                    }
                }
            }
            for (k, bv) in bm {
                if !am.contains_key(k) {
                    let p = format!("{path}/{}", escape(k));
                    changes.push(json!({"op": "add", "path": p, "value": bv}));
                }
            }
        }
        (Value::Array(ba), Value::Array(aa)) if ba.len() == aa.len() => {
            for (i, (bv, av)) in ba.iter().zip(aa).enumerate() {
                diff_ops(&format!("{path}/{i}"), bv, av, tests, changes);
            }
        }
        _ if b != a => {
            tests.push(json!({"op": "test", "path": path, "value": a}));
            changes.push(json!({"op": "replace", "path": path, "value": b}));
        }
        _ => {}
    }
}

/// The step's rollback. `patched` is the dry-run result of a generic patch.
pub fn rollback_of(
    m: &Mutation,
    live: Option<&Value>,
    patched: Option<&Value>,
    target: &StepTarget,
) -> RollbackAction {
    let never = |why: &str| RollbackAction {
        action: RollbackKind::Never,
        patch: vec![],
        reason: Some(why.to_string()),
    };
    let restore = |mut ops: Vec<Value>, what: String| {
        if ops.is_empty() {
            return never("the step changes nothing a rollback could restore");
        }
        if ops.len() > MAX_OPS {
            return never(&format!(
                "the step changes {} fields; restoring them automatically is not offered",
                ops.len()
            ));
        }
        // Never restore into another object that took the name meanwhile.
        if let Some(uid) = &target.uid {
            ops.insert(
                0,
                json!({"op": "test", "path": "/metadata/uid", "value": uid}),
            );
        }
        RollbackAction {
            action: RollbackKind::RestoreBefore,
            patch: ops,
            reason: Some(what),
        }
    };
    let Some(live) = live else {
        return match m {
            Mutation::CreateConfigmap { .. } | Mutation::ApplyManifest { .. } => RollbackAction {
                action: RollbackKind::Delete,
                patch: vec![],
                reason: Some(format!(
                    "delete {} {} again, only while it still holds what the step wrote",
                    target.kind, target.name
                )),
            },
            _ => never("the object does not exist"),
        };
    };
    match m {
        Mutation::ScaleDeployment { replicas, kind, .. } => {
            let current = live.pointer("/spec/replicas").cloned().unwrap_or(json!(1));
            let ops = vec![
                json!({"op": "test", "path": "/spec/replicas", "value": replicas}),
                json!({"op": "replace", "path": "/spec/replicas", "value": current}),
            ];
            restore(
                ops,
                format!("scale {} back to {current} replicas", kind_name(*kind)),
            )
        }
        Mutation::RolloutRestart {
            restarted_at: Some(at),
            kind,
            ..
        } => {
            const P: &str =
                "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt";
            let prev = live.pointer(P).cloned();
            let mut ops = vec![json!({"op": "test", "path": P, "value": at})];
            ops.push(match &prev {
                Some(v) => json!({"op": "replace", "path": P, "value": v}),
                None => json!({"op": "remove", "path": P}),
            });
            restore(
                ops,
                format!(
                    "restore the pod template of the {} (its previous ReplicaSet/revision comes back)",
                    kind_name(*kind)
                ),
            )
        }
        Mutation::RolloutRestart { .. } => never("the restart has no fixed timestamp to undo"),
        Mutation::DeletePod { .. } => {
            never("a deleted pod cannot be restored; its controller (if any) creates a replacement")
        }
        Mutation::PatchResource { .. } => match patched {
            Some(after) => restore(
                restore_ops(live, after),
                "write back the values the plan was made against".into(),
            ),
            None => never("no dry-run result to restore from"),
        },
        Mutation::CreateConfigmap { .. } | Mutation::ApplyManifest { .. } => {
            never("the object already existed")
        }
    }
}

fn kind_name(k: WorkloadKind) -> &'static str {
    k.kubectl()
}

/// Resolves a JSON pointer on a value.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        Some(v)
    } else {
        v.pointer(path)
    }
}

/// Whether every `test` operation holds on the live object; `Err` names the
/// first field someone else changed.
pub fn tests_hold(live: &Value, ops: &[Value]) -> Result<(), String> {
    for op in ops.iter().filter(|o| o["op"] == "test") {
        let path = op["path"].as_str().unwrap_or("");
        let now = at(live, path);
        if now != Some(&op["value"]) {
            return Err(format!(
                "{} is now {}, the step wrote {}",
                if path.is_empty() { "/" } else { path },
                now.map(truncate_json).unwrap_or_else(|| "absent".into()),
                truncate_json(&op["value"])
            ));
        }
    }
    Ok(())
}

/// Whether the live object already holds the before-state (a rollback ran).
pub fn restored(live: &Value, ops: &[Value]) -> bool {
    ops.iter().all(|op| {
        let path = op["path"].as_str().unwrap_or("");
        match op["op"].as_str() {
            Some("replace") | Some("add") => at(live, path) == Some(&op["value"]),
            Some("remove") => at(live, path).is_none(),
            // The uid must still be the same object; other tests held before the rollback.
            _ => path != "/metadata/uid" || at(live, path) == Some(&op["value"]),
        }
    })
}

fn truncate_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(117).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_ops_test_what_the_step_wrote_and_restore_the_rest() {
        let before = json!({"metadata": {"uid": "u", "annotations": {"a/b": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}});
        let after = json!({"metadata": {"uid": "u", "annotations": {"a/b": "1", "new": "x"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "bad:2"}]}}}});
        let ops = restore_ops(&before, &after);
        let set = |v: &[Value]| {
            v.iter()
                .map(Value::to_string)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let want = [
            json!({"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "bad:2"}),
            json!({"op": "test", "path": "/metadata/annotations/new", "value": "x"}),
            json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1"}),
            json!({"op": "remove", "path": "/metadata/annotations/new"}),
        ];
        assert_eq!(set(&ops), set(&want));
        // Tests first: nothing is written unless all of them hold.
        assert!(ops[..2].iter().all(|o| o["op"] == "test"));
        assert_eq!(ops.iter().filter(|o| o["op"] == "test").count(), 2);
        assert!(tests_hold(&after, &ops).is_ok());
        assert!(!restored(&after, &ops));
        assert!(restored(&before, &ops));
        // Someone changed the image meanwhile: the rollback says so instead of overwriting.
        let mut changed = after.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other:3");
        let e = tests_hold(&changed, &ops).unwrap_err();
        assert!(e.contains("other:3") && e.contains("bad:2"), "{e}");
    }

    #[test]
    fn scale_rollback_restores_replicas_of_the_same_object_only() {
        let m = Mutation::ScaleDeployment {
            namespace: "a".into(),
            name: "web".into(),
            kind: WorkloadKind::Deployment,
            replicas: 5,
        };
        let live = json!({"metadata": {"uid": "u1"}, "spec": {"replicas": 2}});
        let target = StepTarget {
            uid: Some("u1".into()),
            ..Default::default()
        };
        let rb = rollback_of(&m, Some(&live), None, &target);
        assert_eq!(rb.action, RollbackKind::RestoreBefore);
        let scaled = json!({"metadata": {"uid": "u1"}, "spec": {"replicas": 5}});
        assert!(tests_hold(&scaled, &rb.patch).is_ok());
        let recreated = json!({"metadata": {"uid": "u2"}, "spec": {"replicas": 5}});
        assert!(tests_hold(&recreated, &rb.patch).is_err());
        assert!(restored(&live, &rb.patch));
        let v = verification_of(&m, Some(&live), &json!({}));
        assert_eq!(v.kind, VerificationKind::ReplicasAvailable);
        assert_eq!(v.timeout_seconds, MAX_ROLLOUT_SECONDS);
    }

    #[test]
    fn deleting_a_pod_is_never_rolled_back_and_says_why() {
        let m = Mutation::DeletePod {
            namespace: "a".into(),
            name: "p".into(),
        };
        let rb = rollback_of(&m, Some(&json!({})), None, &StepTarget::default());
        assert_eq!(rb.action, RollbackKind::Never);
        assert!(rb.reason.unwrap().contains("cannot be restored"));
    }
}
