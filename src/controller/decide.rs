//! The request's state machine, pure: given what was observed (the request,
//! its current plan, the time, the approval gate's verdict), [`decide`] says
//! what happens next as a [`Decision`]. It reads nothing and writes nothing;
//! when it needs to know more (the plan, the gate) it says so
//! ([`Decision::Observe`]) and is asked again with the answer. Effects are
//! performed by [`super::status::apply`], in one fixed order.
//!
//! Transitions of a request's current plan:
//!
//! | plan phase            | observed                         | decision                              |
//! |-----------------------|----------------------------------|---------------------------------------|
//! | (request inputs new)  |                                  | `Plan`                                |
//! | (none)                | generation changed               | record it (+ warn of `approvedPlanId`)|
//! | (deleted)             | request not final                | request `Failed`                      |
//! | `AwaitingApproval`    | no approval                      | wait until expiry                     |
//! | `AwaitingApproval`    | approval of another id           | refuse once, wait                     |
//! | `AwaitingApproval`    | rejection / expiry               | `Finish` `Rejected` / `Expired`       |
//! | `AwaitingApproval`    | exact id, gate not checked       | `Observe(Gate)`                       |
//! | `AwaitingApproval`    | exact id, gate refuses           | refuse once, wait                     |
//! | `AwaitingApproval`    | exact id, gate passes            | `Approved`, request `Executing`, run  |
//! | `AwaitingApproval`    | policies not read yet            | `Observe(Policy)`                     |
//! | `AwaitingApproval`    | a policy applies / `approvals[]` | quorum, window (see `decide/policy.rs`)|
//! | `Approved`/`Executing`| approval recorded                | resume the run                        |
//! | `Approved`/`Executing`| no approval recorded             | `Finish` `Failed`                     |
//! | final                 |                                  | mirror onto the request               |

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use super::answer;
use super::conditions::{plan_conditions, request_conditions, seen, set_request_phase};
use super::context::Error;
use crate::api::{
    AIPlan, AIPlanStatus, AIRequest, AIRequestSpec, AIRequestStatus, PlanPhase, READY,
    RequestPhase, Requester, StepState, reason, truncate,
};
use crate::approval::{self, ApprovalDecision, Approved, decide_approval};
use crate::execute;
use crate::safety::authz::{APPROVED_BY_ANNOTATION, identity_from};
use crate::telemetry::{Note, NoteType, object_ref};

/// When nothing else happens, look again this often (cheap: no write when nothing changed).
pub const IDLE_REQUEUE: Duration = Duration::from_secs(30 * 60);

/// Digest of the fields that define a request; a change supersedes its plan.
/// `approvedPlanId` is deliberately not part of it.
pub fn input_digest(spec: &AIRequestSpec, own_namespace: &str) -> String {
    let mut doc = serde_json::json!({
        "prompt": spec.prompt,
        "targetNamespace": spec.target_namespace.as_deref().unwrap_or(own_namespace),
        "mode": spec.mode.unwrap_or_default(),
        "model": spec.model,
        "conversation": spec.conversation,
    });
    // Only when it changes something: requests without it (or `Auto`) keep the digest they always had.
    if spec.rollback == Some(crate::api::RollbackPolicy::Never) {
        doc["rollback"] = serde_json::json!("Never");
    }
    if let Some(c) = &spec.cluster {
        doc["cluster"] = serde_json::json!(c);
    }
    hex::encode(Sha256::digest(execute::plan_id::canonical(&doc).as_bytes()))[..16].to_string()
}

/// Everything a decision depends on.
pub struct Observed<'a> {
    pub request: &'a AIRequest,
    /// [`input_digest`] of the request.
    pub digest: String,
    pub now: Timestamp,
    /// The request's current plan: `None` until read, `Some(None)` when it is gone.
    pub plan: Option<Option<AIPlan>>,
    /// The approval gate's verdict (`Err(why)` refuses), once checked.
    pub gate: Option<Result<(), String>>,
    pub finished_ttl: Option<Duration>,
    pub gitops_identities: &'a [String],
    /// The approval policies in force and the approvals' gate verdicts, once read.
    pub policy: Option<policy::PolicyView>,
}

/// What to read before deciding.
#[derive(Debug, PartialEq)]
pub enum Need {
    /// The request's current plan, by name.
    Plan(String),
    /// The approval gate, for this approver (as stamped at admission).
    Gate(Option<Requester>),
    /// The approval policies that apply to the plan, and the gate for each of its approvals.
    Policy,
}

/// What happens next.
#[derive(Debug)]
pub enum Decision {
    /// Read more, then decide again.
    Observe(Need),
    /// The request's inputs changed: plan (or re-plan) it.
    Plan,
    /// Finished longer than the TTL ago: delete the request.
    Delete,
    /// Publish notes, write statuses, then go on.
    Update(Box<Update>),
    /// The plan reached a final phase.
    Finish(Finish),
}

impl Decision {
    pub fn update(u: Update) -> Self {
        Self::Update(Box::new(u))
    }
}

/// Effects, in the order [`super::status::apply`] performs them: events
/// first, then the statuses that record them (a crash in between publishes
/// them again on the next reconcile: at least once, never not at all).
#[derive(Debug, Default)]
pub struct Update {
    pub notes: Vec<Note>,
    /// The current plan's new status.
    pub plan: Option<AIPlanStatus>,
    /// The request's new status.
    pub request: Option<AIRequestStatus>,
    /// Metrics counted once the writes succeeded.
    pub counts: Vec<Count>,
    pub then: Next,
}

impl Update {
    /// Nothing to do but look again later.
    pub fn then(then: Next) -> Self {
        Self {
            then,
            ..Default::default()
        }
    }
}

/// A metric to count.
#[derive(Debug, PartialEq, Eq)]
pub enum Count {
    /// `requests_total{operation, result}`.
    Request { op: String, result: &'static str },
    /// `plans_total{phase}`.
    Plan(&'static str),
}

/// After the effects.
#[derive(Debug, Default)]
pub enum Next {
    /// Nothing until the request or its plan changes.
    #[default]
    AwaitChange,
    /// The request is final: look again when its TTL is due, or much later.
    Final,
    /// Look again at this time (a plan's expiry, the end of a rate limit).
    Until(Timestamp),
    /// Look again after this long.
    After(Duration),
    /// Execute the approved plan (its status as approved or resumed).
    Execute(Box<Execution>),
    /// Fail this reconcile (retried with backoff), e.g. the planner is unreachable.
    Retry(Error),
}

/// An approved plan to run, with its token.
#[derive(Debug)]
pub struct Execution {
    pub token: Approved,
    pub plan: AIPlanStatus,
}

/// A plan's final phase, why, and what to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    pub phase: PlanPhase,
    pub reason: &'static str,
    pub message: String,
}

impl Finish {
    pub fn new(phase: PlanPhase, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            phase,
            reason,
            message: message.into(),
        }
    }

    /// The type of its events: a rejection is a person's normal decision.
    pub fn note_type(&self) -> NoteType {
        match self.phase {
            PlanPhase::Succeeded | PlanPhase::Rejected => NoteType::Normal,
            _ => NoteType::Warning,
        }
    }

    /// The finished plan status (steps never started are skipped when nothing runs).
    pub fn plan_status(&self, mut ps: AIPlanStatus, generation: Option<i64>) -> AIPlanStatus {
        ps.phase = Some(self.phase);
        ps.observed_generation = generation;
        ps.conditions = plan_conditions(
            &ps.conditions,
            self.phase,
            self.reason,
            &self.message,
            generation,
        );
        if matches!(self.phase, PlanPhase::Rejected | PlanPhase::Expired) {
            for s in &mut ps.steps {
                s.state = StepState::Skipped;
            }
        }
        ps
    }

    /// How an execution ended, as a final phase.
    pub fn of_execution(outcome: execute::ExecOutcome, ps: &AIPlanStatus) -> Self {
        match outcome {
            execute::ExecOutcome::Succeeded => {
                let done: Vec<String> =
                    ps.steps.iter().map(|s| s.reason.replace('`', "")).collect();
                let msg = format!("{} ({} step(s) succeeded)", done.join("; "), ps.steps.len());
                Self::new(PlanPhase::Succeeded, reason::SUCCEEDED, msg)
            }
            execute::ExecOutcome::Drifted(msg) => {
                Self::new(PlanPhase::Failed, reason::DRIFTED, msg)
            }
            execute::ExecOutcome::Failed(msg) => Self::new(PlanPhase::Failed, reason::FAILED, msg),
            execute::ExecOutcome::RolledBack(msg) => {
                Self::new(PlanPhase::RolledBack, reason::ROLLED_BACK, msg)
            }
        }
    }
}

/// The `Finish` events of a plan's final phase, on the plan and its request.
pub fn finish_notes(
    plan: &AIPlan,
    req: &AIRequest,
    type_: NoteType,
    why: &str,
    text: &str,
) -> Vec<Note> {
    [object_ref(plan), object_ref(req)]
        .iter()
        .map(|r| Note::new(r, type_, why, "Finish", text))
        .collect()
}

/// Decides the next step of a request. Pure.
pub fn decide(o: &Observed<'_>) -> Decision {
    let req = o.request;
    let status = req.status.clone().unwrap_or_default();
    if status.input_digest.as_deref() != Some(o.digest.as_str()) {
        return Decision::Plan;
    }
    if let Some(d) = housekeeping(o, &status) {
        return d;
    }
    let Some(plan_name) = &status.plan_ref else {
        return without_plan(req, &status);
    };
    match &o.plan {
        None => Decision::Observe(Need::Plan(plan_name.clone())),
        Some(None) => plan_gone(req, &status, plan_name),
        Some(Some(plan)) => drive(o, plan, &status),
    }
}

/// A request that finished longer than `finished_ttl` ago is deleted (its
/// plans follow through owner references); otherwise it is looked at when due.
fn housekeeping(o: &Observed<'_>, status: &AIRequestStatus) -> Option<Decision> {
    let ttl = o.finished_ttl?;
    if !status.phase.is_some_and(|p| p.is_final()) {
        return None;
    }
    let finished = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.last_transition_time.0)?;
    let age = o.now.duration_since(finished);
    let ttl_s = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    if age < ttl_s {
        let left = (ttl_s - age).unsigned_abs();
        let after = left.min(IDLE_REQUEUE) + Duration::from_millis(50);
        return Some(Decision::update(Update::then(Next::After(after))));
    }
    Some(Decision::Delete)
}

/// Answered or failed without a plan: keep observedGeneration current (e.g.
/// approvedPlanId set on a request that has no plan, which is worth a warning).
fn without_plan(req: &AIRequest, status: &AIRequestStatus) -> Decision {
    let Some(touched) = seen(status, req.metadata.generation) else {
        return Decision::update(Update::then(Next::Final));
    };
    let notes = req
        .spec
        .approved_plan_id
        .iter()
        .map(|id| {
            Note::warning(
                &object_ref(req),
                reason::APPROVAL_MISMATCH,
                "Approve",
                format!(
                    "spec.approvedPlanId {id} names no plan: this request has no plan to approve"
                ),
            )
        })
        .collect();
    Decision::update(Update {
        notes,
        request: Some(touched),
        then: Next::Final,
        ..Default::default()
    })
}

/// The plan was deleted: a request still waiting on it fails.
fn plan_gone(req: &AIRequest, status: &AIRequestStatus, plan_name: &str) -> Decision {
    if status.phase.is_some_and(|p| p.is_final()) {
        return Decision::update(Update::then(Next::AwaitChange));
    }
    let msg = format!(
        "AIPlan {plan_name} was deleted before it finished; change the request to plan again"
    );
    let mut s = status.clone();
    set_request_phase(
        &mut s,
        RequestPhase::Failed,
        reason::FAILED,
        &msg,
        req.metadata.generation,
    );
    Decision::update(Update {
        notes: vec![Note::warning(
            &object_ref(req),
            reason::FAILED,
            "Execute",
            msg,
        )],
        request: Some(s),
        then: Next::AwaitChange,
        ..Default::default()
    })
}

/// Moves the request's current plan along: approval gate, expiry, execution.
fn drive(o: &Observed<'_>, plan: &AIPlan, rstatus: &AIRequestStatus) -> Decision {
    let ps = plan.status.clone().unwrap_or_default();
    let phase = ps.phase.unwrap_or(PlanPhase::AwaitingApproval);
    if phase.is_final() {
        return finished(o.request, plan, &ps, rstatus);
    }
    if phase == PlanPhase::AwaitingApproval {
        return awaiting(o, plan, ps, rstatus);
    }
    // Approved or Executing: resume (e.g. after a restart), only when the plan
    // recorded its approval before it started.
    match approval::resume(&ps) {
        Some(token) => Decision::update(Update::then(Next::Execute(Box::new(Execution {
            token,
            plan: ps,
        })))),
        // Never approved: refuse to run whatever the phase says.
        None => Decision::Finish(Finish::new(
            PlanPhase::Failed,
            reason::FAILED,
            "plan is marked as executing but carries no approval; refusing to run it",
        )),
    }
}

/// A finished plan: make sure the request says so (e.g. after a crash between
/// the two writes), and record that a later spec change on the plan (an
/// approval after a rejection, expiry or superseding) was seen and changes nothing.
fn finished(
    req: &AIRequest,
    plan: &AIPlan,
    ps: &AIPlanStatus,
    rstatus: &AIRequestStatus,
) -> Decision {
    let phase = ps.phase.unwrap_or(PlanPhase::Failed);
    let interrupted = !rstatus.phase.is_some_and(|p| p.is_final());
    let mut notes = vec![];
    if interrupted
        && phase != PlanPhase::Superseded
        && let Some(c) = ps.conditions.iter().find(|c| c.type_ == READY)
    {
        let type_ = if phase == PlanPhase::Succeeded {
            NoteType::Normal
        } else {
            NoteType::Warning
        };
        notes = finish_notes(plan, req, type_, &c.reason, &c.message);
    }
    Decision::update(Update {
        notes,
        plan: seen(ps, plan.metadata.generation),
        request: final_request(req, ps, rstatus.clone()),
        then: Next::Final,
        ..Default::default()
    })
}

/// The request status mirroring a final plan phase (phase, answer,
/// conditions); `None` for a superseded plan (a newer one speaks for the request).
pub fn final_request(
    req: &AIRequest,
    ps: &AIPlanStatus,
    mut s: AIRequestStatus,
) -> Option<AIRequestStatus> {
    let gen_ = req.metadata.generation;
    let phase = match ps.phase {
        Some(PlanPhase::Succeeded) => RequestPhase::Succeeded,
        Some(PlanPhase::Rejected) => RequestPhase::Rejected,
        Some(PlanPhase::Expired) => RequestPhase::Expired,
        Some(PlanPhase::RolledBack) => RequestPhase::RolledBack,
        Some(PlanPhase::Superseded) => return None,
        _ => RequestPhase::Failed,
    };
    let ready = ps.conditions.iter().find(|c| c.type_ == READY);
    let why = ready
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| format!("{phase:?}"));
    let msg = ready.map(|c| c.message.clone()).unwrap_or_default();
    let answer = answer::finished(phase, &why, &msg, s.plan_ref.as_deref(), ps);
    s.phase = Some(phase);
    s.summary = Some(answer::summary_of(&answer));
    s.answer = Some(answer);
    // An approved plan used its approval, whatever status this write started from.
    if ps.approved_at.is_some()
        && let Some(id) = &ps.plan_id
        && !s.used_plan_ids.contains(id)
    {
        s.used_plan_ids.push(id.clone());
    }
    s.conditions = request_conditions(&s.conditions, phase, &why, &truncate(&msg, 512), gen_);
    s.observed_generation = gen_;
    Some(s)
}

/// A plan awaiting approval: what its approvals (and then the gate) say.
fn awaiting(
    o: &Observed<'_>,
    plan: &AIPlan,
    ps: AIPlanStatus,
    rstatus: &AIRequestStatus,
) -> Decision {
    // Approval policies (quorum, windows, pre-approval) decide when any apply,
    // when the plan was offered under one, or when it carries `spec.approvals`.
    match &o.policy {
        None => return Decision::Observe(Need::Policy),
        Some(view) if view.rules.is_some() || !plan.spec.approvals.is_empty() => {
            return policy::awaiting(o, plan, ps, rstatus, view);
        }
        Some(_) => {}
    }
    let req = o.request;
    let id = ps.plan_id.clone().unwrap_or_default();
    let expiry = ps.expires_at.clone().map(|t| t.0).unwrap_or(o.now);
    let wait = |(notes, plan): (Vec<Note>, Option<AIPlanStatus>)| {
        Decision::update(Update {
            notes,
            plan,
            request: seen(rstatus, req.metadata.generation),
            then: Next::Until(expiry),
            ..Default::default()
        })
    };
    match decide_approval(plan, req, o.now) {
        ApprovalDecision::Waiting => wait((vec![], None)),
        ApprovalDecision::Mismatch { given, source } => {
            let note = if rstatus.used_plan_ids.contains(&given) {
                format!(
                    "{source} {given} approved an earlier plan of this request and was used; an approval is single-use. This plan's id is {id}: nothing runs until it is approved"
                )
            } else {
                format!("{source} is {given}, but this plan's id is {id}: nothing runs")
            };
            wait(refuse_once(req, plan, &ps, given, &note))
        }
        ApprovalDecision::Rejected { reason: why } => Decision::Finish(Finish::new(
            PlanPhase::Rejected,
            reason::REJECTED,
            format!("rejected: {why}"),
        )),
        ApprovalDecision::Expired => Decision::Finish(Finish::new(
            PlanPhase::Expired,
            reason::EXPIRED,
            format!("plan {id} expired before it was approved; nothing was changed"),
        )),
        ApprovalDecision::Approved {
            source,
            comment,
            token,
        } => {
            // Who approved: stamped at admission on the object that carries the approval.
            let annotations = if source == approval::SOURCE_PLAN {
                plan.metadata.annotations.as_ref()
            } else {
                req.metadata.annotations.as_ref()
            };
            let approver = identity_from(annotations, APPROVED_BY_ANNOTATION);
            match &o.gate {
                None => Decision::Observe(Need::Gate(approver)),
                Some(Err(why)) => {
                    let who = approver.as_ref().map_or("nobody", |a| a.username.as_str());
                    let key = format!("{source} by {who}: {why}");
                    wait(refuse_once(
                        req,
                        plan,
                        &ps,
                        key,
                        &format!("{why}; nothing runs"),
                    ))
                }
                Some(Ok(())) => {
                    let approval = Approval {
                        source,
                        comment: comment.as_deref(),
                        approver: approver.as_ref(),
                        token,
                    };
                    approve(o, plan, ps, rstatus, approval)
                }
            }
        }
    }
}

/// Refuses an approval: one Warning event on the plan and the request per
/// distinct refused approval (`key`, remembered in the plan's status), nothing runs.
fn refuse_once(
    req: &AIRequest,
    plan: &AIPlan,
    ps: &AIPlanStatus,
    key: String,
    note: &str,
) -> (Vec<Note>, Option<AIPlanStatus>) {
    if ps.last_mismatched_plan_id.as_deref() == Some(key.as_str()) {
        return (vec![], None);
    }
    let notes = [object_ref(plan), object_ref(req)]
        .iter()
        .map(|r| Note::warning(r, reason::APPROVAL_MISMATCH, "Approve", note))
        .collect();
    let mut ps = ps.clone();
    ps.last_mismatched_plan_id = Some(key);
    (notes, Some(ps))
}

/// An approval that passed the gate.
struct Approval<'a> {
    source: &'static str,
    comment: Option<&'a str>,
    approver: Option<&'a Requester>,
    token: Approved,
}

/// Records the approval and runs the plan. The approval is persisted with the
/// first step's `Running` mark, in one write before any mutation (the
/// executor's); the request says Executing and the events go out before.
fn approve(
    o: &Observed<'_>,
    plan: &AIPlan,
    mut ps: AIPlanStatus,
    rstatus: &AIRequestStatus,
    a: Approval<'_>,
) -> Decision {
    let (req, source, pgen) = (o.request, a.source, plan.metadata.generation);
    let id = ps.plan_id.clone().unwrap_or_default();
    let gitops = a
        .approver
        .is_some_and(|a| o.gitops_identities.contains(&a.username));
    let who = a
        .approver
        .map(|a| a.username.clone())
        .unwrap_or_else(|| "unknown (no admission webhook)".into());
    let via = if gitops {
        format!(
            "{source}, a reviewed commit synced by GitOps identity {who} (separation of duties: git branch protection)"
        )
    } else {
        source.to_string()
    };
    ps.phase = Some(PlanPhase::Approved);
    ps.approved_at = Some(Time(o.now));
    ps.approved_by = Some(match a.comment {
        Some(c) => format!("{who} via {via} ({})", truncate(c, 200)),
        None => format!("{who} via {via}"),
    });
    ps.observed_generation = pgen;
    ps.conditions = plan_conditions(
        &ps.conditions,
        PlanPhase::Approved,
        reason::APPROVED,
        &format!("approved via {source}"),
        pgen,
    );
    let note = format!("plan {id} approved via {source}");
    let rs = executing_after_approval(rstatus, &id, &note, req.metadata.generation);
    Decision::update(Update {
        notes: [object_ref(plan), object_ref(req)]
            .iter()
            .map(|r| Note::normal(r, reason::APPROVED, "Approve", note.as_str()))
            .collect(),
        plan: None,
        request: Some(rs),
        counts: vec![Count::Plan("Approved")],
        then: Next::Execute(Box::new(Execution {
            token: a.token,
            plan: ps,
        })),
    })
}

/// The name of a request's next plan: `<request>-<n>`, one more than its current one.
pub fn next_plan_name(request: &str, current: Option<&str>) -> String {
    let seq = current
        .and_then(|p| p.rsplit('-').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    let base = if request.len() > 240 {
        &request[..240]
    } else {
        request
    };
    format!("{base}-{seq}")
}

/// The plan a changed request supersedes, if it is still open.
pub fn superseded(plan: &AIPlan) -> Option<Update> {
    let mut ps = plan.status.clone().unwrap_or_default();
    if ps.phase.is_none_or(|p| p.is_final()) {
        return None;
    }
    let msg = "the request changed; a new plan replaces this one";
    ps.phase = Some(PlanPhase::Superseded);
    ps.conditions = plan_conditions(
        &ps.conditions,
        PlanPhase::Superseded,
        reason::SUPERSEDED,
        msg,
        plan.metadata.generation,
    );
    Some(Update {
        notes: vec![Note::normal(
            &object_ref(plan),
            reason::SUPERSEDED,
            "Supersede",
            msg,
        )],
        plan: Some(ps),
        counts: vec![Count::Plan("Superseded")],
        ..Default::default()
    })
}

pub mod policy;

/// The request's status once plan `id` is approved: the id recorded as used (single use: it
/// never approves anything again) and the request `Executing`. One rule for every approval path.
pub(super) fn executing_after_approval(
    rstatus: &AIRequestStatus,
    id: &str,
    note: &str,
    generation: Option<i64>,
) -> AIRequestStatus {
    let mut rs = rstatus.clone();
    if !rs.used_plan_ids.iter().any(|u| u == id) {
        rs.used_plan_ids.push(id.to_string());
    }
    set_request_phase(
        &mut rs,
        RequestPhase::Executing,
        reason::EXECUTING,
        note,
        generation,
    );
    rs
}

#[cfg(test)]
mod tests;
