//! Planning a request whose inputs are new: quota, the planner (with its
//! checkpoint in status), guardrails, the requester's own permissions and a
//! server-side dry run of every step. It ends in the [`Update`] that records
//! the outcome (answered, refused, failed, or a plan awaiting approval), which
//! the reconcile applies like any other decision.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
};

use super::answer::{self, PlanView};
use super::conditions::{plan_conditions, request_conditions, set_request_phase};
use super::context::{Context, Error, Place};
use super::decide::{Count, Next, Update, next_plan_name, superseded};
use super::status::{Target, apply, plans, requests, write_plan, write_request};
use crate::agent::{AgentState, Outcome, PlanInput};
use crate::api::{
    AIPlan, AIPlanSpec, AIPlanStatus, AIRequest, AIRequestStatus, CLUSTER_UNAVAILABLE, PlanPhase,
    PlanStep, RequestPhase, Risk, condition, reason, truncate,
};
use crate::execute::plan_id::plan_id_in;
use crate::safety::authz::{
    Authorizer, REQUESTER_ANNOTATION, identity_from, use_cluster_permission,
};
use crate::telemetry::{Note, metrics, object_ref};
use crate::tools::{Mutation, ReadTools};

/// A planner still working after this long has its request marked `Planning`.
const PLANNING_VISIBLE_AFTER: Duration = Duration::from_millis(250);

/// Checkpoints bigger than this are not kept (the agent goes on without one).
const MAX_CHECKPOINT: usize = 256 * 1024;

/// Plans (or re-plans) a request whose inputs are new.
pub async fn plan(ctx: &Context, req: &AIRequest, digest: String) -> Result<Update, Error> {
    let gen_ = req.metadata.generation;
    let mut status = req.status.clone().unwrap_or_default();
    supersede(ctx, req, &status).await?;
    let quota_user = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION)
        .map(|r| r.username)
        .unwrap_or_else(|| "unknown".into());
    if let Some(wait) = admit(ctx, req, &status, &quota_user).await? {
        return Ok(wait);
    }
    // An earlier attempt at this same input that was interrupted (a restart):
    // its completed model calls are not paid for again.
    let resume = status
        .checkpoint
        .as_deref()
        .and_then(|c| read_checkpoint(c, &digest));
    if resume.is_none() {
        status.checkpoint = None;
    }
    let started = Instant::now();
    set_request_phase(
        &mut status,
        RequestPhase::Planning,
        reason::PLANNING,
        "investigating",
        gen_,
    );
    // Who asked: stamped by the admission webhook at creation; nobody else can set it.
    let requester = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION);
    if requester.is_none() && ctx.config.require_identity {
        let msg = "no requester identity on this AIRequest: is the kubilitics-ai admission webhook installed? Refusing to run with an unknown identity.";
        return Ok(refused(
            req,
            &status,
            digest,
            (reason::BLOCKED, msg, answer::refused(msg)),
            None,
        ));
    }
    // Where it acts: the operator's cluster, or a registered member the requester may use.
    let place = match placed(ctx, req, &status, &digest, requester.as_ref()).await? {
        Ok(p) => p,
        Err(update) => return Ok(update),
    };
    // The requester's rights are checked where the request acts (a member's own RBAC).
    let authz = requester
        .clone()
        .map(|r| Authorizer::new(ctx.client_in(&place), r));
    let mut outcome =
        match run_planner(ctx, req, &status, &digest, resume, authz.clone(), &place).await? {
            Ok(o) => o,
            Err(update) => return Ok(update),
        };
    let warnings = answer::agent_warnings(&outcome.warnings);
    answer::append_warnings(&mut outcome.answer, &warnings);
    let req_ref = object_ref(req);
    let mut notes: Vec<Note> = warnings
        .iter()
        .map(|w| Note::warning(&req_ref, reason::AGENT_WARNING, "Plan", w.as_str()))
        .collect();
    let op = outcome.operation.clone();
    if let (Some(q), Some(u)) = (&ctx.config.quota, &outcome.usage) {
        let tokens = (u.prompt_tokens + u.completion_tokens).max(0) as u64;
        q.add_tokens(&ctx.client, &quota_user, tokens).await?;
    }
    metrics()
        .request_duration
        .with_label_values(&[&op])
        .observe(started.elapsed().as_secs_f64());

    let planned = Planned {
        base: AIRequestStatus {
            investigation: outcome.investigation.clone(),
            usage: outcome.usage.clone(),
            requester,
            input_digest: Some(digest),
            observed_generation: gen_,
            used_plan_ids: status.used_plan_ids.clone(),
            ..Default::default()
        },
        previous: &status,
        generation: gen_,
        op,
    };
    let mut update = match draft(ctx, &outcome, authz.as_ref(), &place).await? {
        Drafted::Done(done) => planned.done(&req_ref, &outcome.answer, done),
        Drafted::Plan(d) => propose(ctx, req, &outcome, d, planned, &place).await?,
    };
    // The agent's warnings go out first.
    notes.append(&mut update.notes);
    update.notes = notes;
    Ok(update)
}

/// Where a request acts. A member cluster must be registered and usable (else the request
/// fails, saying why), the requester must hold verb `use` on it in this cluster (else it is
/// refused), and it must answer (else the request waits, `ClusterUnavailable`).
async fn placed(
    ctx: &Context,
    req: &AIRequest,
    status: &AIRequestStatus,
    digest: &str,
    requester: Option<&crate::api::Requester>,
) -> Result<Result<Place, Update>, Error> {
    let place = match ctx.place(req.spec.cluster.as_deref()).await {
        Ok(p) => p,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => {
            let msg = e.to_string();
            let why = (
                reason::CLUSTER_UNAVAILABLE,
                msg.as_str(),
                answer::refused(&msg),
            );
            return Ok(Err(refused(req, status, digest.to_string(), why, None)));
        }
    };
    let Some(member) = &place.member else {
        return Ok(Ok(place));
    };
    if let Some(who) = requester {
        let authz = Authorizer::new(ctx.client.clone(), who.clone());
        match authz.check(&[use_cluster_permission(&member.name)]).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                let msg = format!(
                    "{} may not send requests to cluster {}: {e} (an admin grants verb use on clusters.ai.kubilitics.io/{})",
                    who.username, member.name, member.name
                );
                let why = (reason::BLOCKED, msg.as_str(), answer::refused(&msg));
                return Ok(Err(refused(req, status, digest.to_string(), why, None)));
            }
        }
    }
    if let Err(e) = member.client.apiserver_version().await {
        return Ok(Err(cluster_unavailable(req, status, &member.name, &e)));
    }
    Ok(Ok(place))
}

/// The request waits for its member cluster: a `ClusterUnavailable` condition (and a
/// Warning event when its message is new) on the status as it is, looked at again shortly.
pub(super) fn cluster_unavailable(
    req: &AIRequest,
    status: &AIRequestStatus,
    cluster: &str,
    e: &dyn std::fmt::Display,
) -> Update {
    let msg = format!("cluster {cluster} cannot be reached: {e}; waiting for it");
    let already = status
        .conditions
        .iter()
        .any(|c| c.type_ == CLUSTER_UNAVAILABLE && c.status == "True" && c.message == msg);
    let mut u = Update::then(Next::After(Duration::from_secs(3)));
    if already {
        return u;
    }
    let mut s = status.clone();
    s.conditions.retain(|c| c.type_ != CLUSTER_UNAVAILABLE);
    s.conditions.push(condition(
        &status.conditions,
        CLUSTER_UNAVAILABLE,
        true,
        reason::CLUSTER_UNAVAILABLE,
        &msg,
        req.metadata.generation,
        Timestamp::now(),
    ));
    u.request = Some(s);
    u.notes = vec![Note::warning(
        &object_ref(req),
        reason::CLUSTER_UNAVAILABLE,
        "Cluster",
        msg,
    )];
    u
}

/// A changed request supersedes its previous plan, which then never runs.
async fn supersede(ctx: &Context, req: &AIRequest, status: &AIRequestStatus) -> Result<(), Error> {
    let ns = req.namespace().unwrap_or_default();
    if let Some(old) = &status.plan_ref
        && let Some(plan) = plans(ctx, &ns).get_opt(old).await?
        && let Some(u) = superseded(&plan)
    {
        let t = Target {
            request: req,
            plan: Some(&plan),
        };
        apply(ctx, t, super::decide::Decision::update(u)).await?;
    }
    Ok(())
}

/// Per-requester rate limit and token budget: over it, the request waits
/// (`Pending`) until the quota allows it.
async fn admit(
    ctx: &Context,
    req: &AIRequest,
    status: &AIRequestStatus,
    user: &str,
) -> Result<Option<Update>, Error> {
    // A retry after the model was unreachable was admitted already: do not count it again.
    let retrying = status
        .conditions
        .iter()
        .any(|c| c.reason == reason::PLANNER_UNAVAILABLE);
    let Some(q) = &ctx.config.quota else {
        return Ok(None);
    };
    if retrying {
        return Ok(None);
    }
    let Err(ex) = q.admit(&ctx.client, user).await? else {
        return Ok(None);
    };
    let gen_ = req.metadata.generation;
    let first = status.phase != Some(RequestPhase::Pending);
    let mut s = status.clone();
    s.phase = Some(RequestPhase::Pending);
    s.summary = Some(truncate(&ex.message, 80));
    s.conditions = request_conditions(
        &s.conditions,
        RequestPhase::Pending,
        reason::RATE_LIMITED,
        &ex.message,
        gen_,
    );
    s.observed_generation = gen_;
    let notes = if first {
        vec![Note::warning(
            &object_ref(req),
            reason::RATE_LIMITED,
            "Plan",
            ex.message.clone(),
        )]
    } else {
        vec![]
    };
    Ok(Some(Update {
        notes,
        request: Some(s),
        then: Next::Until(ex.retry_at),
        ..Default::default()
    }))
}

/// A request that fails before the planner answered: its status as it was,
/// now final, with the reason, message and answer given (and `count`ed).
fn refused(
    req: &AIRequest,
    status: &AIRequestStatus,
    digest: String,
    (why, msg, answer): (&'static str, &str, String),
    count: Option<Count>,
) -> Update {
    let gen_ = req.metadata.generation;
    let mut s = status.clone();
    s.phase = Some(RequestPhase::Failed);
    s.summary = Some(answer::summary_of(&answer));
    s.answer = Some(answer);
    s.input_digest = Some(digest);
    s.checkpoint = None;
    s.conditions = request_conditions(&s.conditions, RequestPhase::Failed, why, msg, gen_);
    Update {
        notes: vec![Note::warning(&object_ref(req), why, "Plan", msg)],
        request: Some(s),
        counts: count.into_iter().collect(),
        then: Next::Final,
        ..Default::default()
    }
}

/// Runs the planner with a checkpoint in status. `Ok(Err(update))` when it
/// failed: unreachable (say why, then retry with backoff) or unable to work
/// (bad key, bad model: reported, not retried forever).
async fn run_planner(
    ctx: &Context,
    req: &AIRequest,
    status: &AIRequestStatus,
    digest: &str,
    resume: Option<AgentState>,
    authz: Option<Authorizer>,
    place: &Place,
) -> Result<Result<Outcome, Update>, Error> {
    let ns = req.namespace().unwrap_or_default();
    let req_api = requests(ctx, &ns);
    let checkpoint = Arc::new(StatusCheckpoint {
        api: req_api.clone(),
        memo: ctx.written.clone(),
        req: req.clone(),
        base: status.clone(),
        digest: digest.to_string(),
        latest: Mutex::new(status.checkpoint.clone()),
    });
    let input = PlanInput {
        prompt: req.spec.prompt.clone(),
        namespace: req.target_namespace(),
        namespace_explicit: req.spec.target_namespace.is_some(),
        mode: req.mode(),
        model: req.spec.model.clone(),
        history: match &req.spec.conversation {
            Some(c) => conversation_history(ctx, req, c).await?,
            None => vec![],
        },
        resume,
        checkpoint: Some(checkpoint.clone()),
    };
    let scope = (!ctx.config.cross_namespace_from.contains(&ns))
        .then(|| vec![ns.clone(), req.target_namespace()]);
    let tools = ReadTools::new(ctx.client_in(place))
        .with_authorizer(authz)
        .with_scope(scope);
    // `Planning` is written only when planning takes long enough to be seen
    // (an LLM); a fast planner goes straight to its result: one write fewer.
    let planning = ctx.planner.plan(&input, &tools);
    tokio::pin!(planning);
    let result = tokio::select! {
        r = &mut planning => r,
        () = tokio::time::sleep(PLANNING_VISIBLE_AFTER) => {
            let mut s = status.clone();
            s.checkpoint = checkpoint.latest();
            write_request(&req_api, &ctx.written, req, s).await?;
            planning.await
        }
    };
    let e = match result {
        Ok(o) => return Ok(Ok(o)),
        Err(e) => e,
    };
    if !e.is_transient() {
        let msg = e.to_string();
        let failed = answer::planner_failed(ctx.planner.name(), &msg);
        let count = Count::Request {
            op: "unknown".into(),
            result: "failed",
        };
        let u = refused(
            req,
            status,
            digest.to_string(),
            (reason::FAILED, &msg, failed),
            Some(count),
        );
        return Ok(Err(u));
    }
    // Say why it waits (once per distinct message), then retry with backoff.
    let msg = format!("{e}; retrying");
    let already = status
        .conditions
        .iter()
        .any(|c| c.reason == reason::PLANNER_UNAVAILABLE && c.message == msg);
    let mut u = Update {
        then: Next::Retry(e.into()),
        ..Default::default()
    };
    if !already {
        let mut s = status.clone();
        s.checkpoint = checkpoint.latest();
        s.conditions = request_conditions(
            &s.conditions,
            RequestPhase::Planning,
            reason::PLANNER_UNAVAILABLE,
            &msg,
            req.metadata.generation,
        );
        u.request = Some(s);
        u.notes = vec![Note::warning(
            &object_ref(req),
            reason::PLANNER_UNAVAILABLE,
            "Plan",
            msg,
        )];
    }
    Ok(Err(u))
}

/// The earlier exchanges of a conversation (oldest first, at most 20): the
/// prompts and answers of other requests in the namespace with the same
/// `spec.conversation`, created before this one.
async fn conversation_history(
    ctx: &Context,
    req: &AIRequest,
    conversation: &str,
) -> Result<Vec<(String, String)>, Error> {
    let ns = req.namespace().unwrap_or_default();
    let order = |r: &AIRequest| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    };
    let mine = order(req);
    let mut earlier: Vec<AIRequest> = requests(ctx, &ns)
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.spec.conversation.as_deref() == Some(conversation)
                && r.metadata.uid != req.metadata.uid
                && same_requester(r, req)
        })
        .filter(|r| order(r) < mine)
        .filter(|r| r.status.as_ref().and_then(|s| s.answer.as_ref()).is_some())
        .collect();
    earlier.sort_by_key(order);
    let skip = earlier.len().saturating_sub(20);
    Ok(earlier
        .into_iter()
        .skip(skip)
        .map(|r| {
            (
                r.spec.prompt.clone(),
                r.status.and_then(|s| s.answer).unwrap_or_default(),
            )
        })
        .collect())
}

/// Whether two requests were made by the same person: a conversation's history is only ever the
/// requester's own (another user's prompts and answers never flow into this one's context). Both
/// uids when both have one, else the usernames; two requests without identities (dev mode) match.
fn same_requester(a: &AIRequest, b: &AIRequest) -> bool {
    use crate::safety::authz::{REQUESTER_ANNOTATION, identity_from};
    let who = |r: &AIRequest| identity_from(r.metadata.annotations.as_ref(), REQUESTER_ANNOTATION);
    match (who(a), who(b)) {
        (Some(x), Some(y)) => match (&x.uid, &y.uid) {
            (Some(u), Some(v)) => u == v,
            _ => x.username == y.username,
        },
        (None, None) => true,
        _ => false,
    }
}

/// What the planner's outcome becomes.
enum Drafted {
    /// Final without a plan.
    Done(Done),
    /// Steps ready for a plan.
    Plan(PlanDraft),
}

/// A planning outcome without a plan.
enum Done {
    /// No changes proposed: the answer is final.
    Answered,
    /// Guardrails or the requester's own permissions forbid a step.
    Blocked(String),
    /// A step could not be prepared (dry run refused).
    NotPlanned(String),
    /// The cluster's admission policies deny a step's dry run: never offered for approval.
    DeniedByPolicy(String),
}

/// Prepared steps, their overall risk, and the guardrails' warnings.
struct PlanDraft {
    steps: Vec<PlanStep>,
    risk: Risk,
    warnings: Vec<String>,
}

/// Guardrails hold whatever the planner proposed; every step must be
/// something the requester could do themselves; then before-state and a
/// server-side dry run of every step.
async fn draft(
    ctx: &Context,
    outcome: &Outcome,
    authz: Option<&Authorizer>,
    place: &Place,
) -> Result<Drafted, Error> {
    if outcome.mutations.is_empty() {
        return Ok(Drafted::Done(Done::Answered));
    }
    let verdict = ctx.guardrails_in(place).check_plan(&outcome.mutations);
    let mut blocked = verdict.blocked;
    if blocked.is_empty()
        && let Some(a) = authz
    {
        for m in &outcome.mutations {
            match a.check(&m.permissions()).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => blocked.push(e.to_string()),
            }
        }
    }
    if !blocked.is_empty() {
        return Ok(Drafted::Done(Done::Blocked(blocked.join("; "))));
    }
    let steps = match prepare(ctx, &outcome.mutations, &verdict.risks, authz, place).await? {
        Ok(steps) => steps,
        Err(done) => return Ok(Drafted::Done(done)),
    };
    Ok(Drafted::Plan(PlanDraft {
        steps,
        risk: verdict.risks.iter().copied().max().unwrap_or(Risk::Low),
        warnings: verdict.warnings,
    }))
}

/// Before-state and server-side dry run of every step; `Ok(Err(why))` when
/// one cannot be planned.
async fn prepare(
    ctx: &Context,
    mutations: &[Mutation],
    risks: &[Risk],
    authz: Option<&Authorizer>,
    place: &Place,
) -> Result<Result<Vec<PlanStep>, Done>, Error> {
    // The requester's own client under `--execute-as requester`: the dry run then passes the
    // API server's RBAC and admission policies as that person.
    let client = match ctx.acting_client(place, authz.map(|a| &a.user)) {
        Ok(c) => c,
        Err(e) => return Ok(Err(Done::NotPlanned(e.to_string()))),
    };
    let mut steps = vec![];
    for (m, risk) in mutations.iter().zip(risks) {
        match m.prepare(&client).await {
            Ok(mut s) => {
                s.risk = *risk;
                steps.push(s);
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(crate::tools::ToolError::DeniedByPolicy(msg)) => {
                return Ok(Err(Done::DeniedByPolicy(format!(
                    "step `{}` on {} {}/{} is denied by the cluster's admission policies: \"{msg}\"",
                    m.tool_name(),
                    m.operation().1,
                    m.namespace(),
                    m.name()
                ))));
            }
            Err(e) => {
                return Ok(Err(Done::NotPlanned(format!(
                    "could not plan `{}`: {e}",
                    m.tool_name()
                ))));
            }
        }
    }
    Ok(Ok(steps))
}

/// The request status a planning outcome starts from.
struct Planned<'a> {
    /// What the planner found (investigation, usage, identity, digest).
    base: AIRequestStatus,
    /// The status before planning (its conditions carry on).
    previous: &'a AIRequestStatus,
    generation: Option<i64>,
    op: String,
}

impl Planned<'_> {
    /// The request's status with its outcome: phase, answer, summary, conditions.
    fn status(&self, phase: RequestPhase, why: &str, answer: String) -> AIRequestStatus {
        let mut next = self.base.clone();
        next.phase = Some(phase);
        next.summary = Some(answer::summary_of(&answer));
        next.conditions = request_conditions(
            &self.previous.conditions,
            phase,
            why,
            next.summary.as_deref().unwrap_or_default(),
            self.generation,
        );
        next.answer = Some(answer);
        next
    }

    /// A final outcome without a plan: the request's status, its event, its count.
    fn done(&self, req_ref: &ObjectReference, text: &str, done: Done) -> Update {
        let op = self.op.clone();
        let (phase, why, answer, note, result) = match done {
            Done::Answered => {
                let note = format!("answered ({op}) without changes");
                let note = Note::normal(req_ref, reason::ANSWERED, "Answer", note);
                let answered = RequestPhase::Answered;
                (
                    answered,
                    reason::ANSWERED,
                    text.to_string(),
                    note,
                    "answered",
                )
            }
            Done::Blocked(why) => {
                let answer = answer::blocked(text, &why);
                let note = Note::warning(req_ref, reason::BLOCKED, "Plan", why);
                (
                    RequestPhase::Failed,
                    reason::BLOCKED,
                    answer,
                    note,
                    "blocked",
                )
            }
            Done::NotPlanned(msg) => {
                let answer = answer::not_planned(text, &msg);
                let note = Note::warning(req_ref, reason::FAILED, "Plan", msg);
                (RequestPhase::Failed, reason::FAILED, answer, note, "failed")
            }
            Done::DeniedByPolicy(msg) => {
                let answer = format!(
                    "{}\n\n⛔ {msg}. No plan was offered for approval.",
                    text.trim_end()
                );
                let note = Note::warning(req_ref, reason::DENIED_BY_POLICY, "Plan", msg);
                let denied = RequestPhase::Failed;
                (denied, reason::DENIED_BY_POLICY, answer, note, "denied")
            }
        };
        Update {
            notes: vec![note],
            request: Some(self.status(phase, why, answer)),
            counts: vec![Count::Request { op, result }],
            then: Next::Final,
            ..Default::default()
        }
    }
}

/// Creates the plan (reusing one left over from a crash), writes its status
/// awaiting approval, and returns the request's update with its events.
async fn propose(
    ctx: &Context,
    req: &AIRequest,
    outcome: &Outcome,
    d: PlanDraft,
    planned: Planned<'_>,
    place: &Place,
) -> Result<Update, Error> {
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    let plan_name = next_plan_name(&name, planned.previous.plan_ref.as_deref());
    let mut d = d;
    if req.spec.rollback == Some(crate::api::RollbackPolicy::Never) {
        never_roll_back(&mut d.steps);
    }
    let created = create_plan(ctx, req, &plan_name).await?;
    let target_ns = req.target_namespace();
    // The id binds this plan object's uid: an approval approves exactly this plan, once.
    let id = plan_id_in(
        created.metadata.uid.as_deref().unwrap_or_default(),
        place.cluster(),
        &target_ns,
        &d.steps,
    );
    let expires = Timestamp::now()
        + SignedDuration::try_from(ctx.config.plan_ttl).unwrap_or(SignedDuration::from_hours(1));
    let plan_summary = d
        .steps
        .iter()
        .map(|s| s.reason.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let plan_status = AIPlanStatus {
        phase: Some(PlanPhase::AwaitingApproval),
        plan_id: Some(id.clone()),
        request: Some(name.clone()),
        target_namespace: Some(target_ns),
        cluster: place.cluster().map(String::from),
        summary: Some(truncate(&plan_summary, 1024)),
        risk: Some(d.risk),
        step_count: Some(d.steps.len() as i32),
        steps: d.steps.clone(),
        expires_at: Some(Time(expires)),
        conditions: plan_conditions(
            &[],
            PlanPhase::AwaitingApproval,
            reason::APPROVAL_REQUIRED,
            &format!("waiting for an approval naming plan id {id}"),
            created.metadata.generation,
        ),
        observed_generation: created.metadata.generation,
        ..Default::default()
    };
    write_plan(&plans(ctx, &ns), &plan_name, None, plan_status).await?;
    metrics().plan_phase("AwaitingApproval");

    let answer = answer::approval_required(&PlanView {
        name: &plan_name,
        namespace: &ns,
        cluster: place.cluster(),
        id: &id,
        risk: d.risk,
        summary: &plan_summary,
        steps: &d.steps,
        warnings: &d.warnings,
        expires,
        planner: ctx.planner.name(),
        notes: &outcome.answer,
    });
    let mut next = planned.status(
        RequestPhase::AwaitingApproval,
        reason::APPROVAL_REQUIRED,
        answer,
    );
    next.plan_ref = Some(plan_name.clone());
    next.plan_id = Some(id.clone());
    let (req_ref, plan_ref) = (object_ref(req), object_ref(&created));
    let note = format!(
        "plan {plan_name} (id {id}, risk {:?}): {plan_summary}",
        d.risk
    );
    let ask = format!(
        "approve with spec.approval.planId={id} on AIPlan {plan_name} or spec.approvedPlanId on the AIRequest"
    );
    let notes = vec![
        Note::normal(&req_ref, reason::PLANNED, "Plan", note.as_str()),
        Note::normal(&plan_ref, reason::PLANNED, "Plan", note.as_str()),
        Note::normal(
            &plan_ref,
            reason::APPROVAL_REQUIRED,
            "Approve",
            ask.as_str(),
        ),
        Note::normal(&req_ref, reason::APPROVAL_REQUIRED, "Approve", ask.as_str()),
    ];
    tracing::info!(plan = %plan_name, plan_id = %id, risk = ?d.risk, steps = d.steps.len(), "planned; awaiting approval");
    // Decide on the new plan right away: a GitOps approval may already be
    // committed with the request; a plan reused after a crash may have been
    // approved or rejected meanwhile (its spec change was seen before this
    // reconcile, so nothing else triggers one); and an approval policy may
    // pre-approve it (issue 23). A plan nobody approved yet just waits then.
    let then = if req.spec.approved_plan_id.is_some()
        || created.spec.approval.is_some()
        || created.spec.rejection.is_some()
        || !created.spec.approvals.is_empty()
        || ctx.policies.as_ref().is_none_or(|p| p.any())
    {
        Next::After(Duration::from_millis(10))
    } else {
        Next::Until(expires)
    };
    Ok(Update {
        notes,
        request: Some(next),
        counts: vec![Count::Request {
            op: planned.op.clone(),
            result: "planned",
        }],
        then,
        ..Default::default()
    })
}

/// `spec.rollback: Never`: no step is rolled back automatically, and the plan says so.
fn never_roll_back(steps: &mut [PlanStep]) {
    for s in steps {
        s.rollback_action = Some(crate::api::RollbackAction {
            action: crate::api::RollbackKind::Never,
            patch: vec![],
            reason: Some("the request says spec.rollback: Never".into()),
        });
    }
}

/// Creates the request's next plan object (empty spec, owned by the request);
/// one left over from an attempt that crashed before recording it is reused.
async fn create_plan(ctx: &Context, req: &AIRequest, plan_name: &str) -> Result<AIPlan, Error> {
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    let plan = AIPlan {
        metadata: ObjectMeta {
            name: Some(plan_name.to_string()),
            namespace: Some(ns.clone()),
            owner_references: req.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some([("ai.kubilitics.io/request".to_string(), truncate(&name, 63))].into()),
            ..Default::default()
        },
        spec: AIPlanSpec::default(),
        status: None,
    };
    let api = plans(ctx, &ns);
    match api.create(&PostParams::default(), &plan).await {
        Ok(p) => Ok(p),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(api.get(plan_name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Keeps the agent's progress in the request's status while it plans.
#[derive(Debug)]
struct StatusCheckpoint {
    api: Api<AIRequest>,
    memo: Arc<super::context::WriteMemo>,
    req: AIRequest,
    /// The status being planned (phase Planning).
    base: AIRequestStatus,
    digest: String,
    latest: Mutex<Option<String>>,
}

impl StatusCheckpoint {
    fn latest(&self) -> Option<String> {
        self.latest.lock().map(|g| g.clone()).unwrap_or(None)
    }
}

#[async_trait::async_trait]
impl crate::agent::Checkpoint for StatusCheckpoint {
    async fn save(&self, state: &AgentState) {
        let doc = serde_json::json!({"inputDigest": self.digest, "state": state}).to_string();
        if doc.len() > MAX_CHECKPOINT {
            tracing::warn!(
                bytes = doc.len(),
                "agent checkpoint too large to keep; a restart would start this request over"
            );
            return;
        }
        if let Ok(mut g) = self.latest.lock() {
            *g = Some(doc.clone());
        }
        let mut s = self.base.clone();
        s.checkpoint = Some(doc);
        if let Err(e) = write_request(&self.api, &self.memo, &self.req, s).await {
            tracing::warn!(error = %e, "could not record the agent checkpoint");
        }
    }
}

/// The agent state in a checkpoint, when it belongs to this input.
fn read_checkpoint(doc: &str, digest: &str) -> Option<AgentState> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    if v.get("inputDigest").and_then(|d| d.as_str()) != Some(digest) {
        return None;
    }
    serde_json::from_value(v.get("state")?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(who: Option<(&str, Option<&str>)>) -> AIRequest {
        let mut r = AIRequest::new("r", Default::default());
        if let Some((name, uid)) = who {
            let user = crate::api::Requester {
                username: name.into(),
                uid: uid.map(String::from),
                groups: vec![],
                ..Default::default()
            };
            r.metadata.annotations = Some(
                [(
                    crate::safety::authz::REQUESTER_ANNOTATION.to_string(),
                    crate::safety::authz::identity_annotation(&user),
                )]
                .into(),
            );
        }
        r
    }

    #[test]
    fn conversation_history_is_only_the_requesters_own() {
        let alice = by(Some(("alice", Some("u-1"))));
        assert!(same_requester(&alice, &by(Some(("alice", Some("u-1"))))));
        // Another person, a recreated account with the same name, someone without an identity.
        assert!(!same_requester(&alice, &by(Some(("bob", Some("u-2"))))));
        assert!(!same_requester(&alice, &by(Some(("alice", Some("u-9"))))));
        assert!(!same_requester(&alice, &by(None)));
        // Without uids the username decides; dev mode (no identities at all) keeps history.
        assert!(same_requester(
            &by(Some(("carol", None))),
            &by(Some(("carol", None)))
        ));
        assert!(!same_requester(
            &by(Some(("carol", None))),
            &by(Some(("dave", None)))
        ));
        assert!(same_requester(&by(None), &by(None)));
    }
}
