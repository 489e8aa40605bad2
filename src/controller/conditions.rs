//! The pure mapping from phases to conditions (kstatus conventions), and
//! "seen": a status that records the object's current generation.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{
    AIPlanStatus, AIRequestStatus, PlanPhase, READY, RECONCILING, RequestPhase, STALLED, condition,
    reason,
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
        matches!(phase, Failed | Rejected | Expired | RolledBack),
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
        matches!(phase, Approved | Executing | RollingBack),
        matches!(phase, Failed | Rejected | Expired | RolledBack),
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
        PlanPhase::RollingBack => reason::ROLLING_BACK,
        PlanPhase::RolledBack => reason::ROLLED_BACK,
    }
}

/// A status that records the generation it has seen, in itself and in its conditions.
pub trait Observes: Clone {
    fn generation_fields(&mut self) -> (&mut Option<i64>, &mut Vec<Condition>);
}

impl Observes for AIRequestStatus {
    fn generation_fields(&mut self) -> (&mut Option<i64>, &mut Vec<Condition>) {
        (&mut self.observed_generation, &mut self.conditions)
    }
}

impl Observes for AIPlanStatus {
    fn generation_fields(&mut self) -> (&mut Option<i64>, &mut Vec<Condition>) {
        (&mut self.observed_generation, &mut self.conditions)
    }
}

/// The status with `observedGeneration` (and its conditions') set to
/// `generation`, when it is not already: e.g. only a request's
/// `approvedPlanId` changed, or a finished plan was edited (which changes nothing).
pub fn seen<S: Observes>(s: &S, generation: Option<i64>) -> Option<S> {
    let mut s = s.clone();
    let (observed, conditions) = s.generation_fields();
    if *observed == generation {
        return None;
    }
    *observed = generation;
    for c in conditions.iter_mut() {
        c.observed_generation = generation;
    }
    Some(s)
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
}
