//! Reconcile of one `AIRequest`: observe → decide → apply. The request (read
//! fresh when our own last write is not in the cache yet), then its plan and
//! the approval gate only when [`decide`] asks for them; the decision is
//! carried out by [`apply`]. Planning and execution are the two effects that
//! do more than write status: [`planning::plan`] and [`run_plan`].

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::{ResourceExt, runtime::controller::Action};

use super::context::{Context, Error};
use super::decide::{Decision, Execution, Finish, Need, Observed, decide, input_digest};
use super::planning;
use super::status::{Applied, Target, apply, finish, plans, requests, write_plan};
use crate::api::{AIPlan, AIPlanStatus, AIRequest, PlanPhase, Requester};
use crate::controller::conditions::{plan_conditions, plan_reason};
use crate::execute::{self, plan_id};
use crate::safety::authz::{
    Authorizer, REQUESTER_ANNOTATION, approve_permission, identity_from, separation_of_duties,
};

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
    let req = if ctx.written.cache_is_behind(&req) {
        match requests(&ctx, &ns).get_opt(&req.name_any()).await? {
            Some(fresh) => Arc::new(fresh),
            None => return Ok(Action::await_change()),
        }
    } else {
        req
    };
    let mut obs = Observed {
        request: &req,
        digest: input_digest(&req.spec, &ns),
        now: Timestamp::now(),
        plan: None,
        gate: None,
        finished_ttl: ctx.config.finished_ttl,
        gitops_identities: &ctx.config.gitops_identities,
        policy: None,
    };
    loop {
        let t = Target {
            request: &req,
            plan: obs.plan.as_ref().and_then(Option::as_ref),
        };
        match apply(&ctx, t, decide(&obs)).await? {
            Applied::Done(action) => return Ok(action),
            Applied::Observe(Need::Plan(name)) => {
                obs.plan = Some(plans(&ctx, &ns).get_opt(&name).await?);
            }
            Applied::Observe(Need::Gate(approver)) => {
                let Some(Some(plan)) = &obs.plan else {
                    return Ok(Action::await_change());
                };
                obs.gate = Some(gate(&ctx, &req, plan, approver.as_ref()).await?);
            }
            Applied::Observe(Need::Policy) => {
                let Some(Some(plan)) = &obs.plan else {
                    return Ok(Action::await_change());
                };
                obs.policy = Some(super::policies::view(&ctx, &req, plan).await?);
            }
            Applied::Plan => {
                let update = planning::plan(&ctx, &req, obs.digest.clone()).await?;
                let t = Target {
                    request: &req,
                    plan: None,
                };
                return match apply(&ctx, t, Decision::update(update)).await? {
                    Applied::Done(action) => Ok(action),
                    other => {
                        tracing::error!(?other, "planning ended in something other than a write");
                        Ok(Action::await_change())
                    }
                };
            }
            Applied::Execute(e) => {
                let Some(Some(plan)) = &obs.plan else {
                    return Ok(Action::await_change());
                };
                return run_plan(&ctx, &req, plan, *e).await;
            }
        }
    }
}

/// The gate, checked again right before the first step whatever admission
/// said: a recorded approver who is not the requester (unless a configured
/// GitOps identity), holds verb `approve` on this plan and may perform every
/// stored step; and the stored plan still hashes to its id (which binds this
/// plan object's uid). `Ok(Err(why))` refuses; `Err` is transient (retried).
pub(super) async fn gate(
    ctx: &Context,
    req: &AIRequest,
    plan: &AIPlan,
    approver: Option<&Requester>,
) -> Result<Result<(), String>, Error> {
    let ps = plan.status.clone().unwrap_or_default();
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
            Ok(m) => perms.extend(m.permissions()),
            Err(e) => return Ok(Err(format!("step `{}` is not executable: {e}", step.tool))),
        }
    }
    match authz.check(&perms).await {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Err(format!("the approver cannot approve this plan: {e}"))),
    }
}

/// Executes an approved plan and records the result on both objects.
async fn run_plan(
    ctx: &Context,
    req: &AIRequest,
    plan: &AIPlan,
    e: Execution,
) -> Result<Action, Error> {
    let ns = plan.namespace().unwrap_or_default();
    let plan_api = plans(ctx, &ns);
    let name = plan.name_any();
    let pgen = plan.metadata.generation;
    let last = Mutex::new(plan.status.clone());
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
    let client = ctx.acting_client(authz.as_ref().map(|a| &a.user))?;
    let env = execute::Env {
        client: &client,
        events: &ctx.events,
        write: &writer,
        failpoint: ctx.config.failpoint,
        authz: authz.as_ref(),
    };
    let (ps, outcome) = execute::execute(&env, plan, e.plan, &e.token).await?;
    let mut plan_now = plan.clone();
    plan_now.status = last.lock().map(|g| g.clone()).unwrap_or(None);
    let f = Finish::of_execution(outcome, &ps);
    let t = Target {
        request: req,
        plan: Some(&plan_now),
    };
    match finish(ctx, t, ps, f).await? {
        Applied::Done(action) => Ok(action),
        other => {
            tracing::error!(
                ?other,
                "finishing a plan ended in something other than a write"
            );
            Ok(Action::await_change())
        }
    }
}
