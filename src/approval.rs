//! The approval decision, and the token it mints.
//!
//! [`Approved`] is the proof every mutating call needs
//! ([`crate::tools::Mutation::apply`] takes one). Its only field is private and
//! it has no public constructor, so this module is the only place one can be
//! made, and only two ways lead to it:
//!
//! - [`decide_approval`], pure: an approval on the plan or on its request
//!   names the plan's exact `status.planId`, and the plan was neither rejected
//!   nor expired. The token travels inside [`ApprovalDecision::Approved`], so
//!   no other code can build an "approved" decision and turn it into a token.
//! - [`resume`], checked: a plan that recorded its approval (who and when) in
//!   status before its first step, and has not finished, may continue after a
//!   restart.
//!
//! - [`decide_quorum`] (in `quorum.rs`), pure: under approval policies, enough
//!   distinct approvers (never the requester) passed the gate and the change
//!   window is open, or a cluster policy pre-approves the plan.
//!
//! Anything else (the controller, the webhook, a test) receives tokens, never
//! builds them. The controller's gate (identities, separation of duties,
//! SubjectAccessReview, the plan still hashing to its id) runs before a token
//! from `decide_approval` is used.

mod quorum;
pub mod window;

pub use quorum::*;

use jiff::Timestamp;

use crate::api::{AIPlan, AIPlanStatus, AIRequest, PlanPhase};

/// Proof that a plan was approved by its exact id. Only this module can make one.
#[derive(Debug, PartialEq, Eq)]
pub struct Approved {
    _private: (),
}

/// What the approvals on a plan and its request say.
#[derive(Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// An approval names the exact plan id.
    Approved {
        source: &'static str,
        comment: Option<String>,
        /// The token to execute with (once the controller's gate passes).
        token: Approved,
    },
    /// The plan was rejected.
    Rejected { reason: String },
    /// The plan expired before an approval arrived.
    Expired,
    /// An approval names another id (stale or wrong): nothing runs.
    Mismatch { given: String, source: &'static str },
    /// No approval yet.
    Waiting,
}

pub const SOURCE_PLAN: &str = "AIPlan spec.approval.planId";
pub const SOURCE_GITOPS: &str = "AIRequest spec.approvedPlanId";

/// Decides what to do with a plan awaiting approval. Pure.
pub fn decide_approval(plan: &AIPlan, request: &AIRequest, now: Timestamp) -> ApprovalDecision {
    if let Some(r) = &plan.spec.rejection {
        return ApprovalDecision::Rejected {
            reason: r.reason.clone(),
        };
    }
    let status = plan.status.clone().unwrap_or_default();
    let Some(id) = status.plan_id.as_deref() else {
        return ApprovalDecision::Waiting;
    };
    if status.expires_at.as_ref().is_some_and(|t| t.0 <= now) {
        return ApprovalDecision::Expired;
    }
    let candidates = [
        (
            plan.spec.approval.as_ref().map(|a| a.plan_id.as_str()),
            SOURCE_PLAN,
        ),
        (request.spec.approved_plan_id.as_deref(), SOURCE_GITOPS),
    ];
    for (given, source) in candidates {
        if given == Some(id) {
            return ApprovalDecision::Approved {
                source,
                comment: plan.spec.approval.as_ref().and_then(|a| a.comment.clone()),
                token: Approved { _private: () },
            };
        }
    }
    for (given, source) in candidates {
        if let Some(g) = given {
            return ApprovalDecision::Mismatch {
                given: g.to_string(),
                source,
            };
        }
    }
    ApprovalDecision::Waiting
}

/// Mints the token to resume a plan after a restart: only one that recorded
/// its approval (who and when) in status before its first step, and that has
/// not finished.
pub fn resume(status: &AIPlanStatus) -> Option<Approved> {
    let approved = status.approved_at.is_some() && status.approved_by.is_some();
    let phase_ok = matches!(
        status.phase,
        Some(PlanPhase::Approved) | Some(PlanPhase::Executing) | Some(PlanPhase::RollingBack)
    );
    (approved && phase_ok).then_some(Approved { _private: () })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AIPlanSpec, AIRequestSpec, Approval, Rejection};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn fixture(approval: Option<&str>, gitops: Option<&str>, expires: &str) -> (AIPlan, AIRequest) {
        let mut plan = AIPlan::new(
            "r-1",
            AIPlanSpec {
                approval: approval.map(|id| Approval {
                    plan_id: id.into(),
                    comment: None,
                }),
                rejection: None,
                approvals: vec![],
            },
        );
        plan.status = Some(AIPlanStatus {
            plan_id: Some("0123456789abcdef".into()),
            expires_at: Some(Time(expires.parse().unwrap())),
            ..Default::default()
        });
        let req = AIRequest::new(
            "r",
            AIRequestSpec {
                prompt: "x".into(),
                approved_plan_id: gitops.map(String::from),
                ..Default::default()
            },
        );
        (plan, req)
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }
    const LATER: &str = "2026-01-01T01:00:00Z";

    #[test]
    fn exact_id_approves_from_either_source() {
        let (p, r) = fixture(Some("0123456789abcdef"), None, LATER);
        assert!(matches!(
            decide_approval(&p, &r, now()),
            ApprovalDecision::Approved {
                source: SOURCE_PLAN,
                ..
            }
        ));
        let (p, r) = fixture(None, Some("0123456789abcdef"), LATER);
        assert!(matches!(
            decide_approval(&p, &r, now()),
            ApprovalDecision::Approved {
                source: SOURCE_GITOPS,
                ..
            }
        ));
    }

    #[test]
    fn wrong_or_missing_id_never_approves() {
        let (p, r) = fixture(Some("ffffffffffffffff"), None, LATER);
        let d = decide_approval(&p, &r, now());
        assert_eq!(
            d,
            ApprovalDecision::Mismatch {
                given: "ffffffffffffffff".into(),
                source: SOURCE_PLAN
            }
        );
        assert!(!matches!(d, ApprovalDecision::Approved { .. }));
        let (p, r) = fixture(None, None, LATER);
        assert_eq!(decide_approval(&p, &r, now()), ApprovalDecision::Waiting);
        let (p, r) = fixture(None, Some("0123456789abcdee"), LATER);
        assert!(matches!(
            decide_approval(&p, &r, now()),
            ApprovalDecision::Mismatch {
                source: SOURCE_GITOPS,
                ..
            }
        ));
    }

    #[test]
    fn resume_needs_a_recorded_approval_and_a_running_phase() {
        let approved = AIPlanStatus {
            phase: Some(PlanPhase::Executing),
            approved_at: Some(Time(now())),
            approved_by: Some("bob via AIPlan spec.approval.planId".into()),
            ..Default::default()
        };
        assert!(resume(&approved).is_some());
        for broken in [
            AIPlanStatus {
                approved_at: None,
                ..approved.clone()
            },
            AIPlanStatus {
                approved_by: None,
                ..approved.clone()
            },
            AIPlanStatus {
                phase: Some(PlanPhase::AwaitingApproval),
                ..approved.clone()
            },
            AIPlanStatus {
                phase: Some(PlanPhase::Succeeded),
                ..approved.clone()
            },
        ] {
            assert!(resume(&broken).is_none(), "{broken:?}");
        }
    }

    #[test]
    fn expiry_and_rejection_win_over_approval() {
        let (p, r) = fixture(Some("0123456789abcdef"), None, "2025-12-31T23:00:00Z");
        assert_eq!(decide_approval(&p, &r, now()), ApprovalDecision::Expired);
        let (mut p, r) = fixture(None, Some("0123456789abcdef"), LATER);
        p.spec.rejection = Some(Rejection {
            reason: "no".into(),
        });
        assert_eq!(
            decide_approval(&p, &r, now()),
            ApprovalDecision::Rejected {
                reason: "no".into()
            }
        );
    }
}
