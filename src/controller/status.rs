//! Effects: the server-side-apply status writers (one field manager, no write
//! when nothing changed) and [`apply`], the one place a [`Decision`] is carried
//! out. Its order is fixed: events first, then the plan's status, then the
//! request's status that records them, then metrics. A crash in between
//! leaves the request unrecorded, so the next reconcile decides the same
//! and publishes again: events at least once, never not at all.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;

use super::context::{Context, Error, WriteMemo};
use super::decide::{
    Count, Decision, Execution, Finish, IDLE_REQUEUE, Need, Next, Update, final_request,
    finish_notes,
};
use crate::api::{
    AIPlan, AIPlanStatus, AIRequest, AIRequestStatus, MANAGER, conditions_eq, truncate,
};
use crate::telemetry::metrics;

/// The objects a decision is about.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub request: &'a AIRequest,
    /// The request's current plan, when it was read.
    pub plan: Option<&'a AIPlan>,
}

/// What is left to do after [`apply`].
#[derive(Debug)]
pub enum Applied {
    /// Done: look again per the action.
    Done(Action),
    /// Nothing was applied: read this, then decide again.
    Observe(Need),
    /// Nothing was applied: the request needs planning.
    Plan,
    /// Execute this approved plan.
    Execute(Box<Execution>),
}

/// Carries out a decision.
pub async fn apply(ctx: &Context, t: Target<'_>, decision: Decision) -> Result<Applied, Error> {
    match decision {
        Decision::Observe(need) => Ok(Applied::Observe(need)),
        Decision::Plan => Ok(Applied::Plan),
        Decision::Delete => delete(ctx, t.request).await.map(Applied::Done),
        Decision::Update(u) => update(ctx, t, *u).await,
        Decision::Finish(f) => {
            let ps = t.plan.and_then(|p| p.status.clone()).unwrap_or_default();
            finish(ctx, t, ps, f).await
        }
    }
}

/// Publishes the notes, then writes the statuses that record them.
async fn update(ctx: &Context, t: Target<'_>, u: Update) -> Result<Applied, Error> {
    let ns = t.request.namespace().unwrap_or_default();
    ctx.events.notes(&u.notes).await;
    if let Some(ps) = u.plan {
        match t.plan {
            Some(plan) => {
                write_plan(&plans(ctx, &ns), &plan.name_any(), plan.status.as_ref(), ps).await?;
            }
            None => tracing::error!("a plan status to write, but no plan was read; not written"),
        }
    }
    if let Some(rs) = u.request {
        write_request(&requests(ctx, &ns), &ctx.written, t.request, rs).await?;
    }
    for c in u.counts {
        match c {
            Count::Request { op, result } => {
                metrics().requests.with_label_values(&[&op, result]).inc();
            }
            Count::Plan(phase) => metrics().plan_phase(phase),
        }
    }
    Ok(match u.then {
        Next::AwaitChange => Applied::Done(Action::await_change()),
        Next::Final => Applied::Done(final_requeue(ctx)),
        Next::Until(at) => Applied::Done(requeue_until(at)),
        Next::After(d) => Applied::Done(Action::requeue(d)),
        Next::Execute(e) => Applied::Execute(e),
        Next::Retry(e) => return Err(e),
    })
}

/// Writes a final phase on the plan (from `ps`, its latest status), then
/// the events on both objects, then the request that records them.
pub async fn finish(
    ctx: &Context,
    t: Target<'_>,
    ps: AIPlanStatus,
    f: Finish,
) -> Result<Applied, Error> {
    let Some(plan) = t.plan else {
        tracing::error!(phase = ?f.phase, "a plan to finish, but no plan was read");
        return Ok(Applied::Done(Action::await_change()));
    };
    let ns = plan.namespace().unwrap_or_default();
    let ps = f.plan_status(ps, plan.metadata.generation);
    let ps = write_plan(&plans(ctx, &ns), &plan.name_any(), plan.status.as_ref(), ps).await?;
    let phase = format!("{:?}", f.phase);
    metrics().plan_phase(&phase);
    let op = ps.steps.first().map(|s| s.tool.clone()).unwrap_or_default();
    metrics()
        .requests
        .with_label_values(&[&op, &phase.to_lowercase()])
        .inc();
    let text = truncate(&f.message, 1000);
    let rstatus = t.request.status.clone().unwrap_or_default();
    let u = Update {
        notes: finish_notes(plan, t.request, f.note_type(), f.reason, &text),
        request: final_request(t.request, &ps, rstatus),
        then: Next::Final,
        ..Default::default()
    };
    update(ctx, Target { plan: None, ..t }, u).await
}

/// Deletes a finished request (its plans follow through owner references).
async fn delete(ctx: &Context, req: &AIRequest) -> Result<Action, Error> {
    let ns = req.namespace().unwrap_or_default();
    let name = req.name_any();
    tracing::info!(namespace = %ns, request = %name, ttl = ?ctx.config.finished_ttl, "deleting finished request after its TTL");
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
    Ok(Action::await_change())
}

pub fn requests(ctx: &Context, ns: &str) -> Api<AIRequest> {
    Api::namespaced(ctx.client.clone(), ns)
}

pub fn plans(ctx: &Context, ns: &str) -> Api<AIPlan> {
    Api::namespaced(ctx.client.clone(), ns)
}

/// Next look at a request that reached a final phase: when its TTL is due, or much later.
pub fn final_requeue(ctx: &Context) -> Action {
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
/// the current one (ignoring condition timestamps), and remembers the write
/// in `memo` (read-your-writes).
pub async fn write_request(
    api: &Api<AIRequest>,
    memo: &Arc<WriteMemo>,
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
    let written = api
        .patch_status(
            &req.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    if let (Some(uid), Some(rv)) = (written.metadata.uid, written.metadata.resource_version) {
        memo.record(uid, rv);
    }
    Ok(status)
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
    use crate::api::RequestPhase;
    use crate::controller::conditions::request_conditions;

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
