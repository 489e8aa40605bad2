//! Verification of an applied step: the operator reads the live state until
//! the step's approved [`Verification`](crate::api::Verification) passes, fails
//! (with evidence), or times out. A step whose verification fails starts the
//! plan's approved rollbacks ([`super::rollback`]).
//!
//! A step is persisted `Verifying` right after it was applied, with the apply
//! time in `finishedAt`: a restart verifies again (same deadline) and never
//! applies again.

use std::time::Duration;

use jiff::Timestamp;
use kube::{
    Client,
    api::{Api, ApiResource, DynamicObject, ListParams},
};
use serde_json::Value;

use super::{Env, ExecError, ExecOutcome, notes_on};
use crate::api::{AIPlan, AIPlanStatus, PlanPhase, PlanStep, StepState, VerificationKind, reason};
use crate::approval::Approved;
use crate::k8s::ToolError;
use crate::telemetry::{Events, NoteType, object_ref};
use crate::tools::{Check, Mutation};

/// How often the live state is read while verifying.
const POLL: Duration = Duration::from_millis(500);
/// How long one reconcile waits for a verification before it lets the worker go and comes back.
const SLICE: Duration = Duration::from_secs(5);

/// Waiting reasons of a container that will not become ready by waiting.
const BROKEN: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// One look at a step's verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed(String),
    /// Not yet; what it waits for.
    Waiting(String),
    /// Never will: the evidence.
    Failed(String),
}

/// What verifying a step ended in.
pub enum Verified {
    /// Passed: the status with the step `Succeeded`.
    Passed(AIPlanStatus),
    /// Failed: the plan was rolled back (or could not be entirely).
    Ended(AIPlanStatus, ExecOutcome),
}

/// Verifies step `i` (persisted `Verifying`) until it passes, fails or times
/// out; on failure runs the plan's rollbacks.
pub async fn after_apply(
    env: &Env<'_>,
    plan: &AIPlan,
    mut status: AIPlanStatus,
    i: usize,
    token: &Approved,
) -> Result<Verified, ExecError> {
    let step = status.steps[i].clone();
    let n = i + 1;
    let action = format!("Step{n}");
    let plan_ref = object_ref(plan);
    let target_ref = Events::target_ref(&step.target);
    let mutation = Mutation::from_step(&step)?;
    let ver = step.verification.clone().unwrap_or_default();
    let applied = step
        .finished_at
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let deadline = applied + jiff::SignedDuration::from_secs(ver.timeout_seconds.max(1));
    let started = std::time::Instant::now();
    let verdict = loop {
        match probe(env.client, &mutation, &step).await {
            Ok(Verdict::Waiting(why)) if Timestamp::now() >= deadline => {
                break Verdict::Failed(format!(
                    "not verified within {}s ({:?}): {why}",
                    ver.timeout_seconds, ver.kind
                ));
            }
            Ok(Verdict::Waiting(why)) if started.elapsed() >= SLICE => {
                return Err(ExecError::StillVerifying { step: n, why });
            }
            Ok(Verdict::Waiting(_)) => tokio::time::sleep(POLL).await,
            Ok(v) => break v,
            Err(e) if e.is_transient() => return Err(ExecError::Tool(e)),
            Err(e) => break Verdict::Failed(format!("could not read the target: {e}")),
        }
    };
    let on = [&plan_ref, &target_ref];
    match verdict {
        Verdict::Passed(evidence) => {
            let msg = format!("step {n} verified ({:?}): {evidence}", ver.kind);
            env.events
                .notes(&notes_on(
                    &on,
                    NoteType::Normal,
                    reason::VERIFICATION_PASSED,
                    &action,
                    &msg,
                ))
                .await;
            let s = &mut status.steps[i];
            s.state = StepState::Succeeded;
            s.message = Some(match &s.message {
                Some(m) => format!("{m}; verified: {evidence}"),
                None => format!("verified: {evidence}"),
            });
            let last = i + 1 == status.steps.len();
            if !last {
                status = (env.write)(status).await.map_err(ExecError::Status)?;
            }
            Ok(Verified::Passed(status))
        }
        Verdict::Failed(evidence) | Verdict::Waiting(evidence) => {
            let msg = format!(
                "step {n} ({}) failed its verification ({:?}): {evidence}",
                step.tool, ver.kind
            );
            // Events before the write that records them (at least once).
            env.events
                .notes(&notes_on(
                    &on,
                    NoteType::Warning,
                    reason::VERIFICATION_FAILED,
                    &action,
                    &msg,
                ))
                .await;
            status.steps[i].state = StepState::Failed;
            status.steps[i].message = Some(format!("verification failed: {evidence}"));
            for s in status.steps.iter_mut().skip(i + 1) {
                if s.state == StepState::Pending {
                    s.state = StepState::Skipped;
                }
            }
            status.phase = Some(PlanPhase::RollingBack);
            status = (env.write)(status).await.map_err(ExecError::Status)?;
            let (s, o) = super::rollback::run(env, plan, status, token).await?;
            Ok(Verified::Ended(s, o))
        }
    }
}

/// One look at a step's verification.
pub async fn probe(client: &Client, m: &Mutation, step: &PlanStep) -> Result<Verdict, ToolError> {
    let ver = step.verification.clone().unwrap_or_default();
    let live = m.read_live(client).await?;
    // What the step wrote must still be there: a change by someone else during
    // verification is evidence, never a pass.
    match m.check(step, live.as_ref()) {
        Check::Applied => {}
        Check::Drifted(why) => {
            return Ok(Verdict::Failed(format!(
                "changed by someone else during verification: {why}"
            )));
        }
        Check::NotApplied => {
            return Ok(Verdict::Failed(
                "the change was undone by someone else during verification".into(),
            ));
        }
    }
    let Some(live) = live else {
        return Ok(Verdict::Passed("the object is gone, as planned".into()));
    };
    let kind = step.target.kind.as_str();
    match ver.kind {
        VerificationKind::ObjectMatches => Ok(Verdict::Passed(
            "the live object holds what the step wrote".into(),
        )),
        VerificationKind::ReplicasAvailable => Ok(replicas(&live, kind, false)),
        VerificationKind::RolloutComplete => match replicas(&live, kind, true) {
            Verdict::Waiting(why) => Ok(match broken_pods(client, &live, kind).await? {
                Some(evidence) => Verdict::Failed(evidence),
                None => Verdict::Waiting(why),
            }),
            other => Ok(other),
        },
    }
}

fn num(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

/// The replica counts of a workload, like `kubectl rollout status`.
pub fn replicas(live: &Value, kind: &str, rollout: bool) -> Verdict {
    let generation = num(live, "/metadata/generation");
    let observed = num(live, "/status/observedGeneration");
    if observed < generation {
        return Verdict::Waiting(format!(
            "status.observedGeneration {observed} has not caught up with generation {generation}"
        ));
    }
    let want = live
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            if let Some(c) = live
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return Verdict::Failed(format!(
                    "ProgressDeadlineExceeded: {}",
                    c["message"].as_str().unwrap_or("")
                ));
            }
            let updated = num(live, "/status/updatedReplicas");
            let total = num(live, "/status/replicas");
            let available = num(live, "/status/availableReplicas");
            if rollout && updated < want {
                return Verdict::Waiting(format!(
                    "{updated} of {want} replicas updated to the new pod template"
                ));
            }
            if rollout && total > updated {
                return Verdict::Waiting(format!(
                    "{} old replica(s) pending termination",
                    total - updated
                ));
            }
            if total != want {
                return Verdict::Waiting(format!("{total} replicas, {want} wanted"));
            }
            if available < want {
                return Verdict::Waiting(format!("{available} of {want} replicas available"));
            }
            Verdict::Passed(format!(
                "{available}/{want} replicas available{}",
                if rollout {
                    ", all on the new pod template"
                } else {
                    ""
                }
            ))
        }
        "StatefulSet" => {
            let ready = num(live, "/status/readyReplicas");
            let total = num(live, "/status/replicas");
            let updated = num(live, "/status/updatedReplicas");
            let current = live.pointer("/status/currentRevision");
            let update = live.pointer("/status/updateRevision");
            if rollout && (updated < want || current != update) {
                return Verdict::Waiting(format!("{updated} of {want} replicas updated"));
            }
            if total != want || ready < want {
                return Verdict::Waiting(format!("{ready} of {want} replicas ready"));
            }
            Verdict::Passed(format!("{ready}/{want} replicas ready"))
        }
        "DaemonSet" => {
            let desired = num(live, "/status/desiredNumberScheduled");
            let updated = num(live, "/status/updatedNumberScheduled");
            let available = num(live, "/status/numberAvailable");
            if updated < desired || available < desired {
                return Verdict::Waiting(format!(
                    "{updated} of {desired} updated, {available} available"
                ));
            }
            Verdict::Passed(format!("{available}/{desired} pods available"))
        }
        other => Verdict::Passed(format!("{other} has no replicas to wait for")),
    }
}

/// Pods of the workload's new revision that will not become ready by
/// waiting (ImagePullBackOff, CrashLoopBackOff, …), as evidence.
async fn broken_pods(
    client: &Client,
    live: &Value,
    kind: &str,
) -> Result<Option<String>, ToolError> {
    let ns = live
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Until the controller has seen the step's generation, its revision
    // annotations still name the previous template: the old pods (maybe the
    // crashing ones the step replaces) would be taken for the new ones.
    if !generation_observed(live) {
        return Ok(None);
    }
    let Some(labels) = live
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    else {
        return Ok(None);
    };
    let mut selector: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    match kind {
        "Deployment" => match new_replicaset_hash(client, live, ns, &selector.join(",")).await? {
            Some(h) => selector.push(format!("pod-template-hash={h}")),
            None => return Ok(None),
        },
        "StatefulSet" => match live
            .pointer("/status/updateRevision")
            .and_then(Value::as_str)
        {
            Some(r) => selector.push(format!("controller-revision-hash={r}")),
            None => return Ok(None),
        },
        _ => {}
    }
    let pods: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
    );
    let list = pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .map_err(ToolError::Kube)?;
    let mut evidence = vec![];
    for p in &list.items {
        let v = serde_json::to_value(p).unwrap_or_default();
        for key in ["initContainerStatuses", "containerStatuses"] {
            for c in v
                .pointer(&format!("/status/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let why = c
                    .pointer("/state/waiting/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if BROKEN.contains(&why) {
                    evidence.push(format!(
                        "pod {} container {}: {why} ({})",
                        p.metadata.name.as_deref().unwrap_or(""),
                        c["name"].as_str().unwrap_or(""),
                        c.pointer("/state/waiting/message")
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                    ));
                }
            }
        }
    }
    evidence.truncate(3);
    Ok((!evidence.is_empty()).then(|| evidence.join("; ")))
}

/// Whether the workload's controller has processed its latest spec.
fn generation_observed(live: &Value) -> bool {
    num(live, "/status/observedGeneration") >= num(live, "/metadata/generation")
}

/// The `pod-template-hash` of a Deployment's current (newest) ReplicaSet.
async fn new_replicaset_hash(
    client: &Client,
    live: &Value,
    ns: &str,
    selector: &str,
) -> Result<Option<String>, ToolError> {
    const REVISION: &str = "/metadata/annotations/deployment.kubernetes.io~1revision";
    let (Some(uid), Some(revision)) = (
        live.pointer("/metadata/uid").and_then(Value::as_str),
        live.pointer(REVISION).and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let rs: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&()),
    );
    let list = rs
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(ToolError::Kube)?;
    Ok(list.items.iter().find_map(|r| {
        let v = serde_json::to_value(r).unwrap_or_default();
        let owned = v
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|o| o["uid"] == uid));
        (owned && v.pointer(REVISION).and_then(Value::as_str) == Some(revision))
            .then(|| {
                v.pointer("/metadata/labels/pod-template-hash")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .flatten()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(gen_: i64, observed: i64, want: i64, total: i64, updated: i64, avail: i64) -> Value {
        json!({"metadata": {"generation": gen_}, "spec": {"replicas": want},
            "status": {"observedGeneration": observed, "replicas": total,
                       "updatedReplicas": updated, "availableReplicas": avail}})
    }

    #[test]
    fn old_pods_are_not_evidence_before_the_controller_saw_the_change() {
        assert!(!generation_observed(&deploy(3, 2, 1, 1, 0, 1)));
        assert!(generation_observed(&deploy(3, 3, 1, 1, 0, 1)));
        assert!(generation_observed(&deploy(3, 4, 1, 1, 0, 1)));
    }

    #[test]
    fn rollout_passes_only_when_complete() {
        let w = |v: Verdict| matches!(v, Verdict::Waiting(_));
        assert!(w(replicas(&deploy(2, 1, 2, 2, 2, 2), "Deployment", true)));
        assert!(w(replicas(&deploy(2, 2, 2, 3, 1, 2), "Deployment", true)));
        assert!(w(replicas(&deploy(2, 2, 2, 3, 2, 2), "Deployment", true)));
        assert!(w(replicas(&deploy(2, 2, 2, 2, 2, 1), "Deployment", true)));
        assert!(matches!(
            replicas(&deploy(2, 2, 2, 2, 2, 2), "Deployment", true),
            Verdict::Passed(_)
        ));
        let mut stuck = deploy(2, 2, 2, 3, 1, 2);
        stuck["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]);
        assert!(matches!(
            replicas(&stuck, "Deployment", true),
            Verdict::Failed(m) if m.contains("ProgressDeadlineExceeded")
        ));
    }

    #[test]
    fn scale_waits_for_available_replicas_both_ways() {
        let w = |v: Verdict| matches!(v, Verdict::Waiting(_));
        // Up: 5 wanted, 3 available.
        assert!(w(replicas(&deploy(3, 3, 5, 5, 5, 3), "Deployment", false)));
        // Down: 1 wanted, 3 still there.
        assert!(w(replicas(&deploy(3, 3, 1, 3, 3, 3), "Deployment", false)));
        assert!(matches!(
            replicas(&deploy(3, 3, 1, 1, 1, 1), "Deployment", false),
            Verdict::Passed(_)
        ));
    }
}
