//! Conditions and reasons shared by both kinds, in one place so that the
//! controller, the tests and the docs agree on the spelling.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition kstatus, Argo CD and Flux read.
pub const READY: &str = "Ready";
/// True while the operator is still working towards a final state.
pub const RECONCILING: &str = "Reconciling";
/// True when the object cannot make progress without a person.
pub const STALLED: &str = "Stalled";
/// True while the member cluster a request targets cannot be reached (its work waits).
pub const CLUSTER_UNAVAILABLE: &str = "ClusterUnavailable";

/// Reasons used in conditions and Events (PascalCase, stable: automation may match on them).
pub mod reason {
    pub const PLANNING: &str = "Planning";
    pub const PLANNER_UNAVAILABLE: &str = "PlannerUnavailable";
    /// The member cluster (`spec.cluster`) is unknown, unusable or unreachable.
    pub const CLUSTER_UNAVAILABLE: &str = "ClusterUnavailable";
    /// The agent met a problem on its way (unknown tool, invalid arguments, iteration cap).
    pub const AGENT_WARNING: &str = "AgentWarning";
    pub const ANSWERED: &str = "Answered";
    pub const PLANNED: &str = "Planned";
    pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
    pub const APPROVED: &str = "Approved";
    pub const APPROVAL_MISMATCH: &str = "ApprovalMismatch";
    pub const REJECTED: &str = "Rejected";
    pub const EXPIRED: &str = "Expired";
    pub const SUPERSEDED: &str = "Superseded";
    pub const BLOCKED: &str = "Blocked";
    pub const EXECUTING: &str = "Executing";
    pub const STEP_STARTED: &str = "StepStarted";
    pub const STEP_SUCCEEDED: &str = "StepSucceeded";
    pub const STEP_FAILED: &str = "StepFailed";
    pub const STEP_VERIFIED: &str = "StepVerified";
    pub const DRIFTED: &str = "Drifted";
    /// A dry run of a step was denied by the cluster's admission policies.
    pub const DENIED_BY_POLICY: &str = "DeniedByPolicy";
    /// The dry run passed with admission warnings.
    pub const ADMISSION_WARNING: &str = "AdmissionWarning";
    /// A step was applied; its verification runs.
    pub const VERIFYING: &str = "Verifying";
    /// A step's verification passed.
    pub const VERIFICATION_PASSED: &str = "VerificationPassed";
    /// A step's verification failed (with the evidence).
    pub const VERIFICATION_FAILED: &str = "VerificationFailed";
    /// The approved rollbacks run.
    pub const ROLLING_BACK: &str = "RollingBack";
    /// One step's rollback was applied.
    pub const STEP_ROLLED_BACK: &str = "StepRolledBack";
    /// One step's rollback was not applied (never, or someone changed the object since).
    pub const ROLLBACK_SKIPPED: &str = "RollbackSkipped";
    /// The plan ended rolled back.
    pub const ROLLED_BACK: &str = "RolledBack";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const INVALID: &str = "InvalidRequest";
    pub const RATE_LIMITED: &str = "RateLimited";
}

/// Builds a condition, keeping `lastTransitionTime` of `previous` when the
/// status did not change (so repeated reconciles do not rewrite it).
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: truncate(message, 1024),
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Equality of two condition lists ignoring `lastTransitionTime`.
pub fn conditions_eq(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_transition_time_when_status_unchanged() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let c0 = condition(&[], READY, false, "A", "m", Some(1), t0);
        let c1 = condition(
            std::slice::from_ref(&c0),
            READY,
            false,
            "B",
            "m2",
            Some(2),
            t1,
        );
        assert_eq!(c1.last_transition_time, Time(t0));
        let c2 = condition(&[c1], READY, true, "C", "m3", Some(2), t1);
        assert_eq!(c2.last_transition_time, Time(t1));
    }

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(10);
        let t = truncate(&s, 8);
        assert!(t.len() <= 8 && t.ends_with("..."));
        assert_eq!(truncate("short", 10), "short");
    }
}
