//! Reconcile of one `AIRequest`: plan it when its inputs changed, otherwise
//! drive its current `AIPlan` (approval gate, expiry, execution).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::controller::Action,
};
use sha2::{Digest, Sha256};

use super::status::{
    cache_is_behind, plan_conditions, plan_reason, request_conditions, set_request_phase,
    write_plan, write_request,
};
use super::{Context, Error};
use crate::agent::{AgentState, PlanInput};
use crate::api::{
    AIPlan, AIPlanSpec, AIPlanStatus, AIRequest, AIRequestSpec, AIRequestStatus, PlanPhase,
    PlanStep, RequestPhase, Risk, reason, truncate,
};
use crate::execute::{self, ApprovalDecision, ExecOutcome, decide_approval, plan_id};
use crate::safety::Verdict;
use crate::safety::authz::{
    APPROVED_BY_ANNOTATION, Authorizer, REQUESTER_ANNOTATION, approve_permission, identity_from,
    mutation_permissions, separation_of_duties,
};
use crate::telemetry::{metrics, object_ref};
use crate::tools::ReadTools;

/// When nothing else happens, look again this often (cheap: no write when nothing changed).
const IDLE_REQUEUE: Duration = Duration::from_secs(30 * 60);

/// A planner still working after this long has its request marked `Planning`.
const PLANNING_VISIBLE_AFTER: Duration = Duration::from_millis(250);

/// Digest of the fields that define a request; a change supersedes its plan.
/// `approvedPlanId` is deliberately not part of it.
pub fn input_digest(spec: &AIRequestSpec, own_namespace: &str) -> String {
    let doc = serde_json::json!({
        "prompt": spec.prompt,
        "targetNamespace": spec.target_namespace.as_deref().unwrap_or(own_namespace),
        "mode": spec.mode.unwrap_or_default(),
        "model": spec.model,
        "conversation": spec.conversation,
    });
    hex::encode(Sha256::digest(execute::plan_id::canonical(&doc).as_bytes()))[..16].to_string()
}

/// First line of an answer, for the printer column.
fn summary_of(answer: &str) -> String {
    let line = answer
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty() && !l.starts_with('|'))
        .unwrap_or("");
    truncate(&line.replace(['*', '`'], ""), 80)
}

pub async fn reconcile(req: Arc<AIRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "reconcile",
        namespace = %req.namespace().unwrap_or_default(),
        request = %req.name_any(),
        trace_id = %trace_id(),
    );
    reconcile_inner(req, ctx).instrument(span).await
}

/// A random id tying together the log lines of one reconcile.
fn trace_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i128(Timestamp::now().as_nanosecond());
    format!("{:016x}", h.finish())
}

async fn reconcile_inner(req: Arc<AIRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = req.namespace().unwrap_or_default();
    // Triggered again (e.g. by the plan we just created) before the watch
    // delivered our own status write: read the request fresh.
    let req = if cache_is_behind(&req) {
        match requests(&ctx, &ns).get_opt(&req.name_any()).await? {
            Some(fresh) => Arc::new(fresh),
            None => return Ok(Action::await_change()),
        }
    } else {
        req
    };
    let status = req.status.clone().unwrap_or_default();
    let digest = input_digest(&req.spec, &ns);
    if status.input_digest.as_deref() != Some(digest.as_str()) {
        return plan_request(&req, &ctx, digest).await;
    }
    if let Some(action) = housekeeping(&req, &ctx, &status).await? {
        return Ok(action);
    }
    let Some(plan_name) = status.plan_ref.clone() else {
        // Answered or failed without a plan: keep observedGeneration current
        // (e.g. approvedPlanId set on a request that has no plan).
        if status.observed_generation != req.metadata.generation {
            if let Some(id) = &req.spec.approved_plan_id {
                let note = format!(
                    "spec.approvedPlanId {id} names no plan: this request has no plan to approve"
                );
                ctx.events
                    .publish(
                        &object_ref(req.as_ref()),
                        true,
                        reason::APPROVAL_MISMATCH,
                        "Approve",
                        &note,
                    )
                    .await;
            }
            let mut s = status.clone();
            s.observed_generation = req.metadata.generation;
            for c in &mut s.conditions {
                c.observed_generation = req.metadata.generation;
            }
            write_request(&requests(&ctx, &ns), &req, s).await?;
        }
        return Ok(final_requeue(&ctx));
    };
    drive_plan(&req, &ctx, &plan_name, status).await
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
    let mine = (
        req.metadata.creation_timestamp.clone().map(|t| t.0),
        req.name_any(),
    );
    let mut earlier: Vec<AIRequest> = requests(ctx, &ns)
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            r.spec.conversation.as_deref() == Some(conversation)
                && r.metadata.uid != req.metadata.uid
        })
        .filter(|r| {
            (
                r.metadata.creation_timestamp.clone().map(|t| t.0),
                r.name_any(),
            ) < mine
        })
        .filter(|r| r.status.as_ref().and_then(|s| s.answer.as_ref()).is_some())
        .collect();
    earlier.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    });
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

/// Deletes a request that finished longer than `finished_ttl` ago (its plans
/// follow through owner references); otherwise schedules the next look.
async fn housekeeping(
    req: &AIRequest,
    ctx: &Context,
    status: &AIRequestStatus,
) -> Result<Option<Action>, Error> {
    let Some(ttl) = ctx.config.finished_ttl else {
        return Ok(None);
    };
    if !status.phase.is_some_and(|p| p.is_final()) {
        return Ok(None);
    }
    let Some(finished) = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::READY)
        .map(|c| c.last_transition_time.0)
    else {
        return Ok(None);
    };
    let age = Timestamp::now().duration_since(finished);
    let ttl_s = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::MAX);
    if age < ttl_s {
        let left = (ttl_s - age).unsigned_abs();
        return Ok(Some(Action::requeue(
            left.min(IDLE_REQUEUE) + Duration::from_millis(50),
        )));
    }
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    tracing::info!(namespace = %ns, request = %name, ?ttl, "deleting finished request after its TTL");
    let dp = kube::api::DeleteParams {
        preconditions: req
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..kube::api::DeleteParams::background()
    };
    match requests(ctx, &ns).delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Some(Action::await_change()))
}

fn requests(ctx: &Context, ns: &str) -> Api<AIRequest> {
    Api::namespaced(ctx.client.clone(), ns)
}

fn plans(ctx: &Context, ns: &str) -> Api<AIPlan> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// Plans (or re-plans) a request whose inputs are new.
async fn plan_request(req: &AIRequest, ctx: &Context, digest: String) -> Result<Action, Error> {
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    let gen_ = req.metadata.generation;
    let req_api = requests(ctx, &ns);
    let plan_api = plans(ctx, &ns);
    let req_ref = object_ref(req);
    let mut status = req.status.clone().unwrap_or_default();

    // A changed request supersedes its previous plan, which then never runs.
    if let Some(old) = status.plan_ref.clone()
        && let Some(plan) = plan_api.get_opt(&old).await?
    {
        let mut ps = plan.status.clone().unwrap_or_default();
        if ps.phase.is_some_and(|p| !p.is_final()) {
            ps.phase = Some(PlanPhase::Superseded);
            ps.conditions = plan_conditions(
                &ps.conditions,
                PlanPhase::Superseded,
                reason::SUPERSEDED,
                "the request changed; a new plan replaces this one",
                plan.metadata.generation,
            );
            write_plan(&plan_api, &old, plan.status.as_ref(), ps).await?;
            metrics().plan_phase("Superseded");
            ctx.events
                .publish(
                    &object_ref(&plan),
                    false,
                    reason::SUPERSEDED,
                    "Supersede",
                    "the request changed; a new plan replaces this one",
                )
                .await;
        }
    }

    // Per-requester rate limit and token budget: over it, the request waits (Pending).
    let quota_user = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION)
        .map(|r| r.username)
        .unwrap_or_else(|| "unknown".into());
    // A retry after the model was unreachable was admitted already: do not count it again.
    let retrying = status
        .conditions
        .iter()
        .any(|c| c.reason == reason::PLANNER_UNAVAILABLE);
    if let Some(q) = &ctx.config.quota
        && !retrying
        && let Err(ex) = q.admit(&ctx.client, &quota_user).await?
    {
        let first = status.phase != Some(RequestPhase::Pending);
        status.phase = Some(RequestPhase::Pending);
        status.summary = Some(truncate(&ex.message, 80));
        status.conditions = request_conditions(
            &status.conditions,
            RequestPhase::Pending,
            reason::RATE_LIMITED,
            &ex.message,
            gen_,
        );
        status.observed_generation = gen_;
        write_request(&req_api, req, status).await?;
        if first {
            ctx.events
                .publish(&req_ref, true, reason::RATE_LIMITED, "Plan", &ex.message)
                .await;
        }
        return Ok(requeue_until(ex.retry_at));
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
    let authz = requester
        .clone()
        .map(|r| Authorizer::new(ctx.client.clone(), r));
    if requester.is_none() && ctx.config.require_identity {
        let msg = "no requester identity on this AIRequest: is the kubilitics-ai admission webhook installed? Refusing to run with an unknown identity.";
        let mut s = status.clone();
        s.phase = Some(RequestPhase::Failed);
        s.answer = Some(format!("⛔ {msg}"));
        s.summary = s.answer.as_deref().map(summary_of);
        s.input_digest = Some(digest);
        s.checkpoint = None;
        s.conditions = request_conditions(
            &s.conditions,
            RequestPhase::Failed,
            reason::BLOCKED,
            msg,
            gen_,
        );
        write_request(&req_api, req, s).await?;
        ctx.events
            .publish(&req_ref, true, reason::BLOCKED, "Plan", msg)
            .await;
        return Ok(final_requeue(ctx));
    }
    let checkpoint = Arc::new(StatusCheckpoint {
        api: req_api.clone(),
        req: req.clone(),
        base: status.clone(),
        digest: digest.clone(),
        latest: std::sync::Mutex::new(status.checkpoint.clone()),
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
    let tools = ReadTools::new(ctx.client.clone()).with_authorizer(authz.clone());
    // `Planning` is written only when planning takes long enough to be seen
    // (an LLM); a fast planner goes straight to its result: one write fewer.
    let planning = ctx.planner.plan(&input, &tools);
    tokio::pin!(planning);
    let result = tokio::select! {
        r = &mut planning => r,
        () = tokio::time::sleep(PLANNING_VISIBLE_AFTER) => {
            let mut s = status.clone();
            s.checkpoint = checkpoint.latest();
            write_request(&req_api, req, s).await?;
            planning.await
        }
    };
    let mut outcome = match result {
        Ok(o) => o,
        Err(e) if e.is_transient() => {
            // Say why it waits (once per distinct message), then retry with backoff.
            let msg = format!("{e}; retrying");
            let already = status
                .conditions
                .iter()
                .any(|c| c.reason == reason::PLANNER_UNAVAILABLE && c.message == msg);
            if !already {
                let mut s = status.clone();
                s.checkpoint = checkpoint.latest();
                s.conditions = request_conditions(
                    &s.conditions,
                    RequestPhase::Planning,
                    reason::PLANNER_UNAVAILABLE,
                    &msg,
                    gen_,
                );
                write_request(&req_api, req, s).await?;
                ctx.events
                    .publish(&req_ref, true, reason::PLANNER_UNAVAILABLE, "Plan", &msg)
                    .await;
            }
            return Err(e.into());
        }
        Err(e) => {
            // A planner that cannot work (bad key, bad model) is reported, not retried forever.
            let msg = e.to_string();
            let mut s = status.clone();
            s.phase = Some(RequestPhase::Failed);
            s.answer = Some(format!(
                "❌ The {} planner failed: {msg}",
                ctx.planner.name()
            ));
            s.summary = s.answer.as_deref().map(summary_of);
            s.input_digest = Some(digest);
            s.checkpoint = None;
            s.conditions = request_conditions(
                &s.conditions,
                RequestPhase::Failed,
                reason::FAILED,
                &msg,
                gen_,
            );
            write_request(&req_api, req, s).await?;
            metrics()
                .requests
                .with_label_values(&["unknown", "failed"])
                .inc();
            ctx.events
                .publish(&req_ref, true, reason::FAILED, "Plan", &msg)
                .await;
            return Ok(final_requeue(ctx));
        }
    };
    if !outcome.warnings.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        let warnings: Vec<String> = outcome
            .warnings
            .iter()
            .filter(|w| seen.insert(w.as_str()))
            .take(5)
            .map(|w| truncate(w, 300))
            .collect();
        outcome.answer.push_str("\n\n⚠️ Agent warnings:\n");
        for w in &warnings {
            outcome.answer.push_str(&format!("- {w}\n"));
        }
        let events: Vec<_> = warnings
            .iter()
            .map(|w| (&req_ref, true, reason::AGENT_WARNING, "Plan", w.as_str()))
            .collect();
        ctx.events.publish_all(&events).await;
    }
    let op = outcome.operation.clone();
    if let (Some(q), Some(u)) = (&ctx.config.quota, &outcome.usage) {
        q.add_tokens(
            &ctx.client,
            &quota_user,
            (u.prompt_tokens + u.completion_tokens).max(0) as u64,
        )
        .await?;
    }
    metrics()
        .request_duration
        .with_label_values(&[&op])
        .observe(started.elapsed().as_secs_f64());

    let next = AIRequestStatus {
        investigation: outcome.investigation.clone(),
        usage: outcome.usage.clone(),
        requester: requester.clone(),
        input_digest: Some(digest),
        observed_generation: gen_,
        used_plan_ids: status.used_plan_ids.clone(),
        ..Default::default()
    };
    let finish = |mut next: AIRequestStatus, phase: RequestPhase, why: &str, answer: String| {
        next.phase = Some(phase);
        next.summary = Some(summary_of(&answer));
        next.conditions = request_conditions(
            &status.conditions,
            phase,
            why,
            &next.summary.clone().unwrap_or_default(),
            gen_,
        );
        next.answer = Some(answer);
        next
    };

    if outcome.mutations.is_empty() {
        let next = finish(
            next,
            RequestPhase::Answered,
            reason::ANSWERED,
            outcome.answer.clone(),
        );
        write_request(&req_api, req, next).await?;
        metrics()
            .requests
            .with_label_values(&[&op, "answered"])
            .inc();
        ctx.events
            .publish(
                &req_ref,
                false,
                reason::ANSWERED,
                "Answer",
                &format!("answered ({op}) without changes"),
            )
            .await;
        return Ok(final_requeue(ctx));
    }

    // Guardrails hold whatever the planner proposed.
    let g = &ctx.config.guardrails;
    let mut blocked = vec![];
    let mut risks = vec![];
    let mut warnings = vec![];
    if outcome.mutations.len() > g.max_steps {
        blocked.push(format!(
            "a plan may have at most {} steps, not {}",
            g.max_steps,
            outcome.mutations.len()
        ));
    }
    for m in &outcome.mutations {
        match g.check(m) {
            Verdict::Allowed { risk, warning } => {
                risks.push(risk);
                warnings.extend(warning);
            }
            Verdict::Blocked { reason } => blocked.push(reason),
        }
    }
    // Every step must be something the requester could do themselves.
    if blocked.is_empty()
        && let Some(a) = &authz
    {
        for m in &outcome.mutations {
            match a.check(&mutation_permissions(m)).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => blocked.push(e.to_string()),
            }
        }
    }
    if !blocked.is_empty() {
        let why = blocked.join("; ");
        let answer = format!(
            "{}\n\n⛔ **Blocked**: {why}. No plan was created.",
            outcome.answer.trim_end()
        );
        let next = finish(next, RequestPhase::Failed, reason::BLOCKED, answer);
        write_request(&req_api, req, next).await?;
        metrics()
            .requests
            .with_label_values(&[&op, "blocked"])
            .inc();
        ctx.events
            .publish(&req_ref, true, reason::BLOCKED, "Plan", &why)
            .await;
        return Ok(final_requeue(ctx));
    }

    // Before-state and server-side dry run of every step.
    let mut steps: Vec<PlanStep> = vec![];
    for (m, risk) in outcome.mutations.iter().zip(&risks) {
        match m.prepare(&ctx.client).await {
            Ok(mut s) => {
                s.risk = *risk;
                steps.push(s);
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                let msg = format!("could not plan `{}`: {e}", m.tool_name());
                let answer = format!(
                    "{}\n\n❌ {msg}. No plan was created.",
                    outcome.answer.trim_end()
                );
                let next = finish(next, RequestPhase::Failed, reason::FAILED, answer);
                write_request(&req_api, req, next).await?;
                metrics().requests.with_label_values(&[&op, "failed"]).inc();
                ctx.events
                    .publish(&req_ref, true, reason::FAILED, "Plan", &msg)
                    .await;
                return Ok(final_requeue(ctx));
            }
        }
    }

    let target_ns = req.target_namespace();
    let risk = risks.iter().copied().max().unwrap_or(Risk::Low);
    let seq = status
        .plan_ref
        .as_deref()
        .and_then(|p| p.rsplit('-').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    let base = if name.len() > 240 {
        &name[..240]
    } else {
        name.as_str()
    };
    let plan_name = format!("{base}-{seq}");
    let expires = Timestamp::now()
        + SignedDuration::try_from(ctx.config.plan_ttl).unwrap_or(SignedDuration::from_hours(1));
    let plan_summary = steps
        .iter()
        .map(|s| s.reason.clone())
        .collect::<Vec<_>>()
        .join("; ");

    let plan = AIPlan {
        metadata: ObjectMeta {
            name: Some(plan_name.clone()),
            namespace: Some(ns.clone()),
            owner_references: req.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some([("ai.kubilitics.io/request".to_string(), truncate(&name, 63))].into()),
            ..Default::default()
        },
        spec: AIPlanSpec::default(),
        status: None,
    };
    let created = match plan_api.create(&PostParams::default(), &plan).await {
        Ok(p) => p,
        // Left over from an attempt that crashed before recording it: reuse it.
        Err(kube::Error::Api(s)) if s.code == 409 => plan_api.get(&plan_name).await?,
        Err(e) => return Err(e.into()),
    };
    // The id binds this plan object's uid: an approval approves exactly this plan, once.
    let id = plan_id(
        created.metadata.uid.as_deref().unwrap_or_default(),
        &target_ns,
        &steps,
    );
    let approve_cmd = format!(
        "kubectl patch aiplan {plan_name} -n {ns} --type merge -p '{{\"spec\":{{\"approval\":{{\"planId\":\"{id}\"}}}}}}'"
    );
    let plan_status = AIPlanStatus {
        phase: Some(PlanPhase::AwaitingApproval),
        plan_id: Some(id.clone()),
        request: Some(name.clone()),
        target_namespace: Some(target_ns.clone()),
        summary: Some(truncate(&plan_summary, 1024)),
        risk: Some(risk),
        step_count: Some(steps.len() as i32),
        steps: steps.clone(),
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
    write_plan(&plan_api, &plan_name, None, plan_status).await?;
    metrics().plan_phase("AwaitingApproval");

    // The operator's own text (what will change, risk, how to approve) comes
    // first and is kept apart from the planner's text, which is quoted below
    // it: text planted in logs or said by a model cannot pose as instructions.
    let mut answer = format!(
        "⏸️ **Approval required**: {}.\n\n### Plan `{plan_name}` — risk **{risk:?}**, plan id `{id}`\n\n",
        plan_summary.replace('`', "")
    );
    for (i, s) in steps.iter().enumerate() {
        answer.push_str(&format!(
            "{}. {} — in namespace `{}` (risk {:?})\n   - preview (server-side dry run):\n{}\n   - rollback: `{}`\n",
            i + 1,
            s.reason,
            s.target.namespace,
            s.risk,
            s.preview
                .clone()
                .unwrap_or_default()
                .lines()
                .map(|l| format!("         {l}"))
                .collect::<Vec<_>>()
                .join("\n"),
            s.rollback
        ));
    }
    for w in &warnings {
        answer.push_str(&format!("\n{w}\n"));
    }
    answer.push_str(&format!(
        "\n⏸️ Nothing changes until this exact plan id is approved (expires {}):\n\n    {approve_cmd}\n\nor commit `spec.approvedPlanId: \"{id}\"` to this AIRequest (GitOps).",
        expires.round(jiff::Unit::Second).unwrap_or(expires)
    ));
    answer.push_str(&format!(
        "\n\n#### Notes from the {} planner (information, not instructions)\n\n{}",
        ctx.planner.name(),
        outcome
            .answer
            .trim_end()
            .lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    let mut next = finish(
        next,
        RequestPhase::AwaitingApproval,
        reason::APPROVAL_REQUIRED,
        answer,
    );
    next.plan_ref = Some(plan_name.clone());
    next.plan_id = Some(id.clone());
    // Events first, then the write that records the request as planned: a
    // crash in between re-plans into the same plan and publishes them again
    // (at least once), never not at all.
    let note = format!("plan {plan_name} (id {id}, risk {risk:?}): {plan_summary}");
    let plan_ref = object_ref(&created);
    let ask = format!(
        "approve with spec.approval.planId={id} on AIPlan {plan_name} or spec.approvedPlanId on the AIRequest"
    );
    ctx.events
        .publish_all(&[
            (&req_ref, false, reason::PLANNED, "Plan", &note),
            (&plan_ref, false, reason::PLANNED, "Plan", &note),
            (&plan_ref, false, reason::APPROVAL_REQUIRED, "Approve", &ask),
            (&req_ref, false, reason::APPROVAL_REQUIRED, "Approve", &ask),
        ])
        .await;
    write_request(&req_api, req, next).await?;
    metrics()
        .requests
        .with_label_values(&[&op, "planned"])
        .inc();

    tracing::info!(plan = %plan_name, plan_id = %id, risk = ?risk, steps = steps.len(), "planned; awaiting approval");

    // A GitOps approval may already be committed with the request; and a plan
    // reused after a crash may have been approved or rejected meanwhile (its
    // spec change was seen before this reconcile, so nothing else triggers one).
    if req.spec.approved_plan_id.is_some()
        || created.spec.approval.is_some()
        || created.spec.rejection.is_some()
    {
        return Ok(Action::requeue(Duration::from_millis(10)));
    }
    Ok(requeue_until(expires))
}

/// Keeps the agent's progress in the request's status while it plans.
#[derive(Debug)]
struct StatusCheckpoint {
    api: Api<AIRequest>,
    req: AIRequest,
    /// The status being planned (phase Planning).
    base: AIRequestStatus,
    digest: String,
    latest: std::sync::Mutex<Option<String>>,
}

/// Checkpoints bigger than this are not kept (the agent goes on without one).
const MAX_CHECKPOINT: usize = 256 * 1024;

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
        if let Err(e) = write_request(&self.api, &self.req, s).await {
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

/// Next look at a request that reached a final phase: when its TTL is due, or much later.
fn final_requeue(ctx: &Context) -> Action {
    match ctx.config.finished_ttl {
        Some(ttl) => Action::requeue(ttl.min(IDLE_REQUEUE) + Duration::from_millis(50)),
        None => Action::requeue(IDLE_REQUEUE),
    }
}

fn requeue_until(t: Timestamp) -> Action {
    let left = t.as_millisecond() - Timestamp::now().as_millisecond();
    Action::requeue(Duration::from_millis(
        left.clamp(10, IDLE_REQUEUE.as_millis() as i64) as u64 + 5,
    ))
}

/// Moves the request's current plan along: approval gate, expiry, execution.
async fn drive_plan(
    req: &AIRequest,
    ctx: &Context,
    plan_name: &str,
    rstatus: AIRequestStatus,
) -> Result<Action, Error> {
    let ns = req.namespace().unwrap_or_default();
    let req_api = requests(ctx, &ns);
    let plan_api = plans(ctx, &ns);
    let req_ref = object_ref(req);
    let gen_ = req.metadata.generation;

    let Some(plan) = plan_api.get_opt(plan_name).await? else {
        if rstatus.phase.is_some_and(|p| p.is_final()) {
            return Ok(Action::await_change());
        }
        let mut s = rstatus.clone();
        let msg = format!(
            "AIPlan {plan_name} was deleted before it finished; change the request to plan again"
        );
        set_request_phase(&mut s, RequestPhase::Failed, reason::FAILED, &msg, gen_);
        write_request(&req_api, req, s).await?;
        ctx.events
            .publish(&req_ref, true, reason::FAILED, "Execute", &msg)
            .await;
        return Ok(Action::await_change());
    };
    let plan_ref = object_ref(&plan);
    let pgen = plan.metadata.generation;
    let mut ps = plan.status.clone().unwrap_or_default();
    let phase = ps.phase.unwrap_or(PlanPhase::AwaitingApproval);
    let id = ps.plan_id.clone().unwrap_or_default();
    let expiry = ps
        .expires_at
        .clone()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);

    // Finished plans: make sure the request says so (e.g. after a crash between the two writes).
    if phase.is_final() {
        let interrupted = !rstatus.phase.is_some_and(|p| p.is_final());
        if interrupted
            && phase != PlanPhase::Superseded
            && let Some(c) = ps.conditions.iter().find(|c| c.type_ == crate::api::READY)
        {
            let warning = phase != PlanPhase::Succeeded;
            publish_finish(ctx, &plan_ref, &req_ref, warning, &c.reason, &c.message).await;
        }
        sync_request_final(req, ctx, &ps, rstatus).await?;
        // A spec change on a finished plan (an approval after a rejection,
        // expiry or superseding) changes nothing: record that it was seen.
        if ps.observed_generation != pgen {
            let mut seen = ps.clone();
            seen.observed_generation = pgen;
            for c in &mut seen.conditions {
                c.observed_generation = pgen;
            }
            write_plan(&plans(ctx, &ns), plan_name, plan.status.as_ref(), seen).await?;
        }
        return Ok(final_requeue(ctx));
    }

    if phase == PlanPhase::AwaitingApproval {
        match decide_approval(&plan, req, Timestamp::now()) {
            ApprovalDecision::Waiting => {
                touch_generation(req, ctx, rstatus).await?;
                return Ok(requeue_until(expiry));
            }
            ApprovalDecision::Mismatch { given, source } => {
                let note = if rstatus.used_plan_ids.contains(&given) {
                    format!(
                        "{source} {given} approved an earlier plan of this request and was used; an approval is single-use. This plan's id is {id}: nothing runs until it is approved"
                    )
                } else {
                    format!("{source} is {given}, but this plan's id is {id}: nothing runs")
                };
                refuse_once(ctx, &plan, ps, given, &note, &req_ref).await?;
                touch_generation(req, ctx, rstatus).await?;
                return Ok(requeue_until(expiry));
            }
            ApprovalDecision::Rejected { reason: why } => {
                let msg = format!("rejected: {why}");
                return finish_plan(
                    req,
                    ctx,
                    &plan,
                    ps,
                    PlanPhase::Rejected,
                    reason::REJECTED,
                    &msg,
                    false,
                )
                .await;
            }
            ApprovalDecision::Expired => {
                let msg = format!("plan {id} expired before it was approved; nothing was changed");
                return finish_plan(
                    req,
                    ctx,
                    &plan,
                    ps,
                    PlanPhase::Expired,
                    reason::EXPIRED,
                    &msg,
                    true,
                )
                .await;
            }
            d @ ApprovalDecision::Approved { .. } => {
                let ApprovalDecision::Approved { source, comment } = &d else {
                    unreachable!()
                };
                // Who approved: stamped at admission on the object that carries the approval.
                let approver = if *source == execute::SOURCE_PLAN {
                    identity_from(plan.metadata.annotations.as_ref(), APPROVED_BY_ANNOTATION)
                } else {
                    identity_from(req.metadata.annotations.as_ref(), APPROVED_BY_ANNOTATION)
                };
                if let Err(why) = gate(ctx, req, &plan, &ps, approver.as_ref()).await? {
                    let who = approver.as_ref().map_or("nobody", |a| a.username.as_str());
                    let note = format!("{why}; nothing runs");
                    refuse_once(
                        ctx,
                        &plan,
                        ps,
                        format!("{source} by {who}: {why}"),
                        &note,
                        &req_ref,
                    )
                    .await?;
                    touch_generation(req, ctx, rstatus).await?;
                    return Ok(requeue_until(expiry));
                }
                let gitops = approver
                    .as_ref()
                    .is_some_and(|a| ctx.config.gitops_identities.contains(&a.username));
                ps.phase = Some(PlanPhase::Approved);
                ps.approved_at = Some(Time(Timestamp::now()));
                let who = approver
                    .as_ref()
                    .map(|a| a.username.clone())
                    .unwrap_or_else(|| "unknown (no admission webhook)".into());
                let via = if gitops {
                    format!(
                        "{source}, a reviewed commit synced by GitOps identity {who} (separation of duties: git branch protection)"
                    )
                } else {
                    source.to_string()
                };
                ps.approved_by = Some(match comment {
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
                // The approval is persisted with the first step's `Running` mark, in
                // one write before any mutation (the executor's); the request says
                // Executing and the events go out meanwhile.
                metrics().plan_phase("Approved");
                let note = format!("plan {id} approved via {source}");
                let mut rs = rstatus.clone();
                // Single use: this id approved this plan; it never approves anything again.
                if !rs.used_plan_ids.contains(&id) {
                    rs.used_plan_ids.push(id.clone());
                }
                set_request_phase(
                    &mut rs,
                    RequestPhase::Executing,
                    reason::EXECUTING,
                    &note,
                    gen_,
                );
                let approved = [
                    (&plan_ref, false, reason::APPROVED, "Approve", note.as_str()),
                    (&req_ref, false, reason::APPROVED, "Approve", note.as_str()),
                ];
                let (written, ()) = tokio::join!(
                    write_request(&req_api, req, rs),
                    ctx.events.publish_all(&approved)
                );
                written?;
                let Some(token) = execute::approve(&d) else {
                    return Ok(Action::await_change());
                };
                return run_plan(req, ctx, &plan, ps, token).await;
            }
        }
    }

    // Approved or Executing: resume (e.g. after a restart), only when the plan
    // recorded its approval before it started.
    let Some(token) = execute::resume(&ps) else {
        // Never approved: refuse to run whatever the phase says.
        let msg =
            "plan is marked as executing but carries no approval; refusing to run it".to_string();
        return finish_plan(
            req,
            ctx,
            &plan,
            ps,
            PlanPhase::Failed,
            reason::FAILED,
            &msg,
            true,
        )
        .await;
    };
    run_plan(req, ctx, &plan, ps, token).await
}

/// The gate, checked again right before the first step whatever admission
/// said: a recorded approver who is not the requester (unless a configured
/// GitOps identity), holds verb `approve` on this plan and may perform every
/// stored step; and the stored plan still hashes to its id (which binds this
/// plan object's uid). `Ok(Err(why))` refuses; `Err` is transient (retried).
async fn gate(
    ctx: &Context,
    req: &AIRequest,
    plan: &AIPlan,
    ps: &AIPlanStatus,
    approver: Option<&crate::api::Requester>,
) -> Result<Result<(), String>, Error> {
    let ns = plan.namespace().unwrap_or_default();
    let recomputed = plan_id(
        plan.metadata.uid.as_deref().unwrap_or_default(),
        ps.target_namespace
            .as_deref()
            .unwrap_or(&req.target_namespace()),
        &ps.steps,
    );
    if ps.plan_id.as_deref() != Some(recomputed.as_str()) {
        return Ok(Err(format!(
            "the stored plan hashes to {recomputed}, not to its plan id {}: refusing a plan that changed after it was reviewed",
            ps.plan_id.as_deref().unwrap_or("(none)")
        )));
    }
    let requester = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION);
    let Some(approver) = approver else {
        if ctx.config.require_identity {
            return Ok(Err(
                "no recorded approver identity (is the kubilitics-ai admission webhook installed?)"
                    .into(),
            ));
        }
        return Ok(Ok(()));
    };
    if ctx.config.separation_of_duties
        && let Some(r) = &requester
        && let Err(why) = separation_of_duties(r, approver, &ctx.config.gitops_identities)
    {
        return Ok(Err(why));
    }
    let authz = Authorizer::new(ctx.client.clone(), approver.clone());
    let mut perms = vec![approve_permission(&ns, Some(&plan.name_any()))];
    for step in &ps.steps {
        match crate::tools::Mutation::from_step(step) {
            Ok(m) => perms.extend(mutation_permissions(&m)),
            Err(e) => return Ok(Err(format!("step `{}` is not executable: {e}", step.tool))),
        }
    }
    match authz.check(&perms).await {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Err(format!("the approver cannot approve this plan: {e}"))),
    }
}

/// Refuses an approval: one Warning event on the plan and the request per
/// distinct refused approval (remembered in status), nothing runs.
async fn refuse_once(
    ctx: &Context,
    plan: &AIPlan,
    mut ps: AIPlanStatus,
    key: String,
    note: &str,
    req_ref: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<(), Error> {
    if ps.last_mismatched_plan_id.as_deref() == Some(key.as_str()) {
        return Ok(());
    }
    ctx.events
        .publish_all(&[
            (
                &object_ref(plan),
                true,
                reason::APPROVAL_MISMATCH,
                "Approve",
                note,
            ),
            (req_ref, true, reason::APPROVAL_MISMATCH, "Approve", note),
        ])
        .await;
    ps.last_mismatched_plan_id = Some(key);
    let ns = plan.namespace().unwrap_or_default();
    write_plan(&plans(ctx, &ns), &plan.name_any(), plan.status.as_ref(), ps).await?;
    Ok(())
}

/// Executes an approved plan and records the result on both objects.
async fn run_plan(
    req: &AIRequest,
    ctx: &Context,
    plan: &AIPlan,
    ps: AIPlanStatus,
    token: execute::Approved,
) -> Result<Action, Error> {
    let ns = plan.namespace().unwrap_or_default();
    let plan_api = plans(ctx, &ns);
    let name = plan.name_any();
    let pgen = plan.metadata.generation;
    let last = std::sync::Mutex::new(plan.status.clone());
    let writer =
        |mut s: AIPlanStatus| -> futures::future::BoxFuture<'_, Result<AIPlanStatus, kube::Error>> {
            let plan_api = plan_api.clone();
            let name = name.clone();
            let last = &last;
            Box::pin(async move {
                let phase = s.phase.unwrap_or(PlanPhase::Executing);
                s.conditions = plan_conditions(
                    &s.conditions,
                    phase,
                    plan_reason(phase),
                    "executing approved steps",
                    pgen,
                );
                let cur = last.lock().map(|g| g.clone()).unwrap_or(None);
                let s = write_plan(&plan_api, &name, cur.as_ref(), s).await?;
                if let Ok(mut g) = last.lock() {
                    *g = Some(s.clone());
                }
                Ok(s)
            })
        };
    let authz = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION)
        .map(|r| Authorizer::new(ctx.client.clone(), r));
    let (ps, outcome) = execute::execute(
        &ctx.client,
        &ctx.events,
        plan,
        ps,
        &token,
        &writer,
        ctx.config.failpoint,
        authz.as_ref(),
    )
    .await?;
    let current = last.lock().map(|g| g.clone()).unwrap_or(None);
    let mut plan_now = plan.clone();
    plan_now.status = current;
    let (phase, why, msg, warning) = match outcome {
        ExecOutcome::Succeeded => {
            let done: Vec<String> = ps.steps.iter().map(|s| s.reason.replace('`', "")).collect();
            let msg = format!("{} ({} step(s) succeeded)", done.join("; "), ps.steps.len());
            (PlanPhase::Succeeded, reason::SUCCEEDED, msg, false)
        }
        ExecOutcome::Drifted(msg) => (PlanPhase::Failed, reason::DRIFTED, msg, true),
        ExecOutcome::Failed(msg) => (PlanPhase::Failed, reason::FAILED, msg, true),
    };
    finish_plan(req, ctx, &plan_now, ps, phase, why, &msg, warning).await
}

/// Writes a final phase on the plan and the request, with events on both.
#[allow(clippy::too_many_arguments)]
async fn finish_plan(
    req: &AIRequest,
    ctx: &Context,
    plan: &AIPlan,
    mut ps: AIPlanStatus,
    phase: PlanPhase,
    why: &str,
    msg: &str,
    warning: bool,
) -> Result<Action, Error> {
    let ns = plan.namespace().unwrap_or_default();
    let name = plan.name_any();
    ps.phase = Some(phase);
    ps.observed_generation = plan.metadata.generation;
    ps.conditions = plan_conditions(&ps.conditions, phase, why, msg, plan.metadata.generation);
    if matches!(phase, PlanPhase::Rejected | PlanPhase::Expired) {
        for s in &mut ps.steps {
            s.state = crate::api::StepState::Skipped;
        }
    }
    let ps = write_plan(&plans(ctx, &ns), &name, plan.status.as_ref(), ps).await?;
    metrics().plan_phase(&format!("{phase:?}"));
    let op = ps.steps.first().map(|s| s.tool.clone()).unwrap_or_default();
    metrics()
        .requests
        .with_label_values(&[&op, &format!("{phase:?}").to_lowercase()])
        .inc();
    let note = truncate(msg, 1000);
    // Events before the request's final write: if we crash in between, the
    // next reconcile finds the request not yet final and publishes them again.
    publish_finish(
        ctx,
        &object_ref(plan),
        &object_ref(req),
        warning,
        why,
        &note,
    )
    .await;
    sync_request_final(req, ctx, &ps, req.status.clone().unwrap_or_default()).await?;
    Ok(final_requeue(ctx))
}

/// The `Finish` events of a plan's final phase, on the plan and its request.
async fn publish_finish(
    ctx: &Context,
    plan_ref: &k8s_openapi::api::core::v1::ObjectReference,
    req_ref: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    why: &str,
    note: &str,
) {
    ctx.events
        .publish_all(&[
            (plan_ref, warning, why, "Finish", note),
            (req_ref, warning, why, "Finish", note),
        ])
        .await;
}

/// Mirrors a final plan phase onto the request (phase, answer, conditions).
async fn sync_request_final(
    req: &AIRequest,
    ctx: &Context,
    ps: &AIPlanStatus,
    rstatus: AIRequestStatus,
) -> Result<(), Error> {
    let ns = req.namespace().unwrap_or_default();
    let gen_ = req.metadata.generation;
    let phase = match ps.phase {
        Some(PlanPhase::Succeeded) => RequestPhase::Succeeded,
        Some(PlanPhase::Rejected) => RequestPhase::Rejected,
        Some(PlanPhase::Expired) => RequestPhase::Expired,
        Some(PlanPhase::Superseded) => return Ok(()),
        _ => RequestPhase::Failed,
    };
    let ready = ps.conditions.iter().find(|c| c.type_ == crate::api::READY);
    let why = ready
        .map(|c| c.reason.clone())
        .unwrap_or_else(|| format!("{phase:?}"));
    let msg = ready.map(|c| c.message.clone()).unwrap_or_default();
    let head = match phase {
        RequestPhase::Succeeded => "✅ Done".to_string(),
        RequestPhase::Rejected => "🚫 The plan was rejected; nothing was changed".to_string(),
        RequestPhase::Expired => {
            "⌛ The plan expired before approval; nothing was changed".to_string()
        }
        _ if why == reason::DRIFTED => {
            "⚠️ Stopped: the cluster changed since the plan was made".to_string()
        }
        _ => "❌ The plan failed".to_string(),
    };
    let mut s = rstatus.clone();
    let answer = format!(
        "{head}: {msg}\n\nPlan `{}` (id `{}`), {}.{}",
        ps.request
            .as_ref()
            .map(|_| s.plan_ref.clone().unwrap_or_default())
            .unwrap_or_default(),
        ps.plan_id.clone().unwrap_or_default(),
        ps.approved_by
            .as_ref()
            .map(|b| format!("approved via {b}"))
            .unwrap_or_else(|| "not approved".into()),
        if why == reason::DRIFTED {
            " Edit or re-create the request to plan again against the current state."
        } else {
            ""
        }
    );
    s.phase = Some(phase);
    s.summary = Some(summary_of(&answer));
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
    write_request(&requests(ctx, &ns), req, s).await?;
    Ok(())
}

/// Keeps `observedGeneration` current when only `approvedPlanId` changed.
async fn touch_generation(
    req: &AIRequest,
    ctx: &Context,
    rstatus: AIRequestStatus,
) -> Result<(), Error> {
    if rstatus.observed_generation == req.metadata.generation {
        return Ok(());
    }
    let ns = req.namespace().unwrap_or_default();
    let mut s = rstatus;
    s.observed_generation = req.metadata.generation;
    for c in &mut s.conditions {
        c.observed_generation = req.metadata.generation;
    }
    write_request(&requests(ctx, &ns), req, s).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Mode;

    #[test]
    fn digest_ignores_approval_but_not_inputs() {
        let spec = AIRequestSpec {
            prompt: "scale nginx to 5".into(),
            ..Default::default()
        };
        let d = input_digest(&spec, "shop");
        let approved = AIRequestSpec {
            approved_plan_id: Some("0123456789abcdef".into()),
            ..spec.clone()
        };
        assert_eq!(d, input_digest(&approved, "shop"));
        // Defaults are the same request as their explicit values.
        let explicit = AIRequestSpec {
            target_namespace: Some("shop".into()),
            mode: Some(Mode::Plan),
            ..spec.clone()
        };
        assert_eq!(d, input_digest(&explicit, "shop"));
        for changed in [
            AIRequestSpec {
                prompt: "scale nginx to 6".into(),
                ..spec.clone()
            },
            AIRequestSpec {
                target_namespace: Some("other".into()),
                ..spec.clone()
            },
            AIRequestSpec {
                mode: Some(Mode::ReadOnly),
                ..spec.clone()
            },
            AIRequestSpec {
                model: Some("m".into()),
                ..spec.clone()
            },
            AIRequestSpec {
                conversation: Some("c".into()),
                ..spec.clone()
            },
        ] {
            assert_ne!(d, input_digest(&changed, "shop"), "{changed:?}");
        }
    }

    #[test]
    fn summary_is_first_text_line() {
        assert_eq!(
            summary_of("📊 **Pods in `shop`**\n\n| a |"),
            "📊 Pods in shop"
        );
        assert_eq!(summary_of("\n\n### Plan `x`"), "Plan x");
    }
}
