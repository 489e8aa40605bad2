//! A plan awaiting approval under approval policies (pure): counts distinct
//! approvers towards the quorum ([`crate::approval::decide_quorum`]), records
//! them in the plan's status with the rules in force, waits for the change
//! window (`WaitingForWindow`), and approves like the plain path does.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::{
    Count, Decision, Execution, Finish, Next, Observed, Update, plan_conditions, refuse_once, seen,
};
use crate::api::{
    AIPlan, AIPlanStatus, APPROVAL_COUNTED, CountedApproval, PlanPhase, PolicySnapshot, Requester,
    WAITING_FOR_WINDOW, condition, reason, truncate,
};
use crate::approval::{Candidate, Counted, QuorumDecision, decide_quorum};
use crate::telemetry::{Note, object_ref};

/// What the controller read for a plan awaiting approval: the rules in force
/// (`None`: no policy applies and the plan has no `spec.approvals`, so the plain
/// gate decides) and every approval with its gate verdict.
#[derive(Clone, Debug, Default)]
pub struct PolicyView {
    pub rules: Option<PolicySnapshot>,
    pub candidates: Vec<Candidate>,
    pub requester: Option<Requester>,
}

/// `2/3 approvals (bob, carol)`.
pub fn quorum_text(counted: &[Counted], quorum: i32) -> String {
    let names: Vec<&str> = counted.iter().map(|c| c.user.as_str()).collect();
    let who = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    };
    format!("{}/{} approvals{who}", counted.len(), quorum.max(1))
}

/// The counted approvals, keeping the time each was first counted.
fn record(prev: &[CountedApproval], counted: &[Counted], now: Timestamp) -> Vec<CountedApproval> {
    counted
        .iter()
        .map(|c| {
            prev.iter()
                .find(|p| p.user == c.user)
                .cloned()
                .unwrap_or(CountedApproval {
                    user: c.user.clone(),
                    source: c.source.clone(),
                    at: Time(now),
                })
        })
        .collect()
}

/// Replaces (or removes) the `WaitingForWindow` condition.
fn window_condition(
    conds: &mut Vec<Condition>,
    prev: &[Condition],
    why: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) {
    conds.retain(|c| c.type_ != WAITING_FOR_WINDOW);
    if let Some(why) = why {
        conds.push(condition(
            prev,
            WAITING_FOR_WINDOW,
            true,
            WAITING_FOR_WINDOW,
            why,
            generation,
            now,
        ));
    }
}

/// The plan under policy rules.
pub(super) fn awaiting(
    o: &Observed<'_>,
    plan: &AIPlan,
    ps: AIPlanStatus,
    rstatus: &crate::api::AIRequestStatus,
    view: &PolicyView,
) -> Decision {
    let req = o.request;
    let rules = view.rules.clone().unwrap_or(PolicySnapshot {
        quorum: 1,
        ..Default::default()
    });
    let pgen = plan.metadata.generation;
    let id = ps.plan_id.clone().unwrap_or_default();
    let expiry = ps.expires_at.clone().map(|t| t.0).unwrap_or(o.now);
    let d = decide_quorum(
        plan,
        &rules,
        &view.candidates,
        view.requester.as_ref(),
        o.gitops_identities,
        o.now,
    );
    let mut next = ps.clone();
    next.policy = view.rules.clone();
    next.approvals_required = Some(rules.quorum.max(1));
    next.observed_generation = pgen;
    let new_counts = |counted: &[Counted]| -> Vec<Note> {
        counted
            .iter()
            .filter(|c| !ps.approvals.iter().any(|p| p.user == c.user))
            .flat_map(|c| {
                let text = format!(
                    "{} approved plan {id} via {}: {}",
                    c.user,
                    c.source,
                    quorum_text(counted, rules.quorum)
                );
                [object_ref(plan), object_ref(req)]
                    .iter()
                    .map(|r| Note::normal(r, APPROVAL_COUNTED, "Approve", text.as_str()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    match d {
        QuorumDecision::Rejected { reason: why } => Decision::Finish(Finish::new(
            PlanPhase::Rejected,
            reason::REJECTED,
            format!("rejected: {why}"),
        )),
        QuorumDecision::Expired => Decision::Finish(Finish::new(
            PlanPhase::Expired,
            reason::EXPIRED,
            format!("plan {id} expired before it was approved and could run; nothing was changed"),
        )),
        QuorumDecision::Waiting {
            counted,
            refused,
            mismatched,
        } => {
            let mut notes = new_counts(&counted);
            next.approvals = record(&ps.approvals, &counted, o.now);
            next.window_opens_at = None;
            let missing = (rules.quorum.max(1) as usize).saturating_sub(counted.len());
            let msg = format!(
                "{}: waiting for {missing} more distinct approver(s) of plan {id} (the requester never counts)",
                quorum_text(&counted, rules.quorum)
            );
            next.conditions = plan_conditions(
                &ps.conditions,
                PlanPhase::AwaitingApproval,
                reason::APPROVAL_REQUIRED,
                &msg,
                pgen,
            );
            window_condition(&mut next.conditions, &ps.conditions, None, pgen, o.now);
            let mut problems: Vec<String> = refused;
            problems.extend(
                mismatched
                    .iter()
                    .map(|m| format!("{m} is not this plan's id {id}")),
            );
            if !problems.is_empty() {
                let text = format!("not counted: {}", problems.join("; "));
                let (n, p) = refuse_once(req, plan, &next, truncate(&text, 512), &text);
                notes.extend(n);
                if let Some(p) = p {
                    next = p;
                }
            }
            Decision::update(Update {
                notes,
                plan: Some(next),
                request: seen(rstatus, req.metadata.generation),
                then: Next::Until(expiry),
                ..Default::default()
            })
        }
        QuorumDecision::WaitingForWindow {
            counted,
            opens_at,
            why,
        } => {
            let mut notes = new_counts(&counted);
            next.approvals = record(&ps.approvals, &counted, o.now);
            next.window_opens_at = opens_at.map(Time);
            let when = opens_at.map_or("no opening within 8 days".to_string(), |t| {
                format!("next opening {t}")
            });
            let msg = format!(
                "{}; {why}; {when} (the plan runs then unless it expires at {expiry})",
                quorum_text(&counted, rules.quorum)
            );
            next.conditions = plan_conditions(
                &ps.conditions,
                PlanPhase::AwaitingApproval,
                WAITING_FOR_WINDOW,
                &msg,
                pgen,
            );
            window_condition(
                &mut next.conditions,
                &ps.conditions,
                Some(&msg),
                pgen,
                o.now,
            );
            let already = ps
                .conditions
                .iter()
                .any(|c| c.type_ == WAITING_FOR_WINDOW && c.message == msg);
            if !already {
                notes.extend(
                    [object_ref(plan), object_ref(req)]
                        .iter()
                        .map(|r| Note::normal(r, WAITING_FOR_WINDOW, "Approve", msg.as_str())),
                );
            }
            let wake = opens_at.map_or(expiry, |t| t.min(expiry));
            Decision::update(Update {
                notes,
                plan: Some(next),
                request: seen(rstatus, req.metadata.generation),
                then: Next::Until(wake),
                ..Default::default()
            })
        }
        QuorumDecision::Approved { counted, token } => {
            let mut notes = new_counts(&counted);
            let text = quorum_text(&counted, rules.quorum);
            let pre = rules
                .pre_approved_by
                .as_ref()
                .filter(|p| counted.iter().any(|c| &c.user == *p));
            next.approvals = record(&ps.approvals, &counted, o.now);
            next.window_opens_at = None;
            next.phase = Some(PlanPhase::Approved);
            next.approved_at = Some(Time(o.now));
            let sources = if rules.sources.is_empty() {
                String::new()
            } else {
                format!("; {}", rules.sources.join(", "))
            };
            next.approved_by = Some(match pre {
                Some(p) => p.clone(),
                None => {
                    let via: Vec<String> = counted
                        .iter()
                        .map(|c| format!("{} via {}", c.user, c.source))
                        .collect();
                    truncate(&format!("{} ({text}{sources})", via.join(", ")), 1024)
                }
            });
            let note = match pre {
                Some(p) => format!("plan {id} pre-approved by {p} ({text}{sources})"),
                None => format!("plan {id} approved: {text}{sources}"),
            };
            next.conditions = plan_conditions(
                &ps.conditions,
                PlanPhase::Approved,
                reason::APPROVED,
                &note,
                pgen,
            );
            let rs = super::executing_after_approval(rstatus, &id, &note, req.metadata.generation);
            notes.extend(
                [object_ref(plan), object_ref(req)]
                    .iter()
                    .map(|r| Note::normal(r, reason::APPROVED, "Approve", note.as_str())),
            );
            Decision::update(Update {
                notes,
                plan: None,
                request: Some(rs),
                counts: vec![Count::Plan("Approved")],
                then: Next::Execute(Box::new(Execution { token, plan: next })),
            })
        }
    }
}
