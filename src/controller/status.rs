//! Status writing and the pure mapping from phases to conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::api::{
    AIPlan, AIPlanStatus, AIRequest, AIRequestStatus, MANAGER, PlanPhase, READY, RECONCILING,
    RequestPhase, STALLED, condition, conditions_eq, reason,
};

/// `Ready` always; `Reconciling` while the operator works; `Stalled` when a
/// person must act on a failure — the kstatus conventions.
fn conditions(
    prev: &[Condition],
    (ready, reconciling, stalled): (bool, bool, bool),
    why: &str,
    message: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    let now = Timestamp::now();
    let mut out = vec![condition(prev, READY, ready, why, message, generation, now)];
    if reconciling {
        out.push(condition(
            prev,
            RECONCILING,
            true,
            why,
            message,
            generation,
            now,
        ));
    }
    if stalled {
        out.push(condition(
            prev, STALLED, true, why, message, generation, now,
        ));
    }
    out
}

/// Conditions for a request phase.
pub fn request_conditions(
    prev: &[Condition],
    phase: RequestPhase,
    why: &str,
    message: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    use RequestPhase::*;
    let flags = (
        matches!(phase, Answered | Succeeded),
        matches!(phase, Pending | Planning | Executing),
        matches!(phase, Failed | Rejected | Expired),
    );
    conditions(prev, flags, why, message, generation)
}

/// Moves a request status to `phase` with matching conditions and the current generation.
pub fn set_request_phase(
    s: &mut AIRequestStatus,
    phase: RequestPhase,
    why: &str,
    message: &str,
    generation: Option<i64>,
) {
    s.phase = Some(phase);
    s.conditions = request_conditions(&s.conditions, phase, why, message, generation);
    s.observed_generation = generation;
}

/// Conditions for a plan phase.
pub fn plan_conditions(
    prev: &[Condition],
    phase: PlanPhase,
    why: &str,
    message: &str,
    generation: Option<i64>,
) -> Vec<Condition> {
    use PlanPhase::*;
    let flags = (
        phase == Succeeded,
        matches!(phase, Approved | Executing),
        matches!(phase, Failed | Rejected | Expired),
    );
    conditions(prev, flags, why, message, generation)
}

/// Reason for a plan phase's conditions.
pub fn plan_reason(phase: PlanPhase) -> &'static str {
    match phase {
        PlanPhase::AwaitingApproval => reason::APPROVAL_REQUIRED,
        PlanPhase::Approved => reason::APPROVED,
        PlanPhase::Executing => reason::EXECUTING,
        PlanPhase::Succeeded => reason::SUCCEEDED,
        PlanPhase::Failed => reason::FAILED,
        PlanPhase::Rejected => reason::REJECTED,
        PlanPhase::Expired => reason::EXPIRED,
        PlanPhase::Superseded => reason::SUPERSEDED,
    }
}

fn request_eq(a: &AIRequestStatus, b: &AIRequestStatus) -> bool {
    let strip = |s: &AIRequestStatus| AIRequestStatus {
        conditions: vec![],
        ..s.clone()
    };
    strip(a) == strip(b) && conditions_eq(&a.conditions, &b.conditions)
}

fn plan_eq(a: &AIPlanStatus, b: &AIPlanStatus) -> bool {
    let strip = |s: &AIPlanStatus| AIPlanStatus {
        conditions: vec![],
        ..s.clone()
    };
    strip(a) == strip(b) && conditions_eq(&a.conditions, &b.conditions)
}

/// Writes the whole request status with server-side apply, unless it equals
/// the current one (ignoring condition timestamps).
pub async fn write_request(
    api: &Api<AIRequest>,
    req: &AIRequest,
    status: AIRequestStatus,
) -> Result<AIRequestStatus, kube::Error> {
    if req
        .status
        .as_ref()
        .is_some_and(|cur| request_eq(cur, &status))
    {
        return Ok(status);
    }
    let patch = json!({
        "apiVersion": "ai.kubilitics.io/v1alpha1",
        "kind": "AIRequest",
        "status": status,
    });
    let name = kube::ResourceExt::name_any(req);
    let written = api
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if let (Some(uid), Some(rv)) = (written.metadata.uid, written.metadata.resource_version)
        && let Ok(mut w) = WRITTEN.lock()
    {
        w.insert(uid, rv);
    }
    Ok(status)
}

/// The resourceVersion of our latest status write per request uid, until the
/// watch cache has caught up with it (read-your-writes; see `cache_is_behind`).
static WRITTEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether the cached request may predate our own latest status write (then
/// the reconcile reads it fresh: acting on the stale copy would, e.g., plan
/// the same input twice). Forgets writes the cache has caught up with.
pub fn cache_is_behind(req: &AIRequest) -> bool {
    let (Some(uid), Some(rv)) = (&req.metadata.uid, &req.metadata.resource_version) else {
        return false;
    };
    let Ok(mut w) = WRITTEN.lock() else {
        return false;
    };
    let Some(ours) = w.get(uid) else {
        return false;
    };
    match (rv.parse::<u64>(), ours.parse::<u64>()) {
        (Ok(cached), Ok(ours)) if cached >= ours => {
            w.remove(uid);
            false
        }
        _ => rv != ours,
    }
}

/// Writes the whole plan status with server-side apply (same rules).
pub async fn write_plan(
    api: &Api<AIPlan>,
    name: &str,
    current: Option<&AIPlanStatus>,
    status: AIPlanStatus,
) -> Result<AIPlanStatus, kube::Error> {
    if current.is_some_and(|cur| plan_eq(cur, &status)) {
        return Ok(status);
    }
    let patch = json!({
        "apiVersion": "ai.kubilitics.io/v1alpha1",
        "kind": "AIPlan",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_phase() {
        let c = request_conditions(&[], RequestPhase::Answered, "Answered", "ok", Some(1));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].type_.as_str(), c[0].status.as_str()), (READY, "True"));
        let c = request_conditions(&[], RequestPhase::Planning, "Planning", "", Some(1));
        assert!(
            c.iter()
                .any(|c| c.type_ == RECONCILING && c.status == "True")
        );
        let c = request_conditions(&[], RequestPhase::Failed, "Blocked", "", Some(2));
        assert!(c.iter().any(|c| c.type_ == STALLED && c.status == "True"));
        assert!(c.iter().all(|c| c.observed_generation == Some(2)));
        let c = plan_conditions(
            &[],
            PlanPhase::AwaitingApproval,
            "ApprovalRequired",
            "",
            Some(1),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "False");
    }

    #[test]
    fn equality_ignores_transition_times() {
        let a = AIRequestStatus {
            phase: Some(RequestPhase::Answered),
            conditions: request_conditions(&[], RequestPhase::Answered, "A", "m", Some(1)),
            ..Default::default()
        };
        let mut b = a.clone();
        b.conditions[0].last_transition_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2020-01-01T00:00:00Z".parse().unwrap(),
        );
        assert!(request_eq(&a, &b));
        b.phase = Some(RequestPhase::Failed);
        assert!(!request_eq(&a, &b));
    }
}
