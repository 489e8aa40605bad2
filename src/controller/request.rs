//! Reconcile of one `AIRequest`: observe → decide → apply. The request (read
//! fresh when our own last write is not in the cache yet), then its plan and
//! the approval gate only when [`decide`] asks for them; the decision is
//! carried out by [`apply`]. Planning and execution are the two effects that
//! do more than write status: [`planning::plan`] and [`run_plan`].

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::{ResourceExt, runtime::controller::Action};

use super::context::{Context, Error, Place};
use super::decide::{Decision, Execution, Finish, Need, Observed, decide, input_digest};
use super::planning;
use super::status::{Applied, Target, apply, finish, plans, requests, write_plan};
use crate::api::{AIPlan, AIPlanStatus, AIRequest, PlanPhase, Requester};
use crate::controller::conditions::{plan_conditions, plan_reason};
use crate::execute::{self, plan_id::plan_id_in};
use crate::safety::authz::{
    Authorizer, REQUESTER_ANNOTATION, approve_permission, identity_from, separation_of_duties,
    use_cluster_permission,
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
                match gate(&ctx, &req, plan, approver.as_ref()).await {
                    Ok(verdict) => obs.gate = Some(verdict),
                    Err(err) => return member_down(&ctx, &req, plan, err).await,
                }
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
    let recomputed = plan_id_in(
        plan.metadata.uid.as_deref().unwrap_or_default(),
        ps.cluster.as_deref(),
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
    if ps.cluster != req.spec.cluster {
        return Ok(Err(format!(
            "the plan acts in cluster {}, the request now targets {}",
            ps.cluster.as_deref().unwrap_or("(this one)"),
            req.spec.cluster.as_deref().unwrap_or("(this one)")
        )));
    }
    let place = match ctx.place(ps.cluster.as_deref()).await {
        Ok(p) => p,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => return Ok(Err(e.to_string())),
    };
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
    // Here: verb approve on this plan (and use on its member cluster). Where the steps act:
    // every step, by the member's own RBAC when it is a member.
    let here = Authorizer::new(ctx.client.clone(), approver.clone());
    let mut perms = vec![approve_permission(&ns, Some(&plan.name_any()))];
    if let Some(c) = place.cluster() {
        perms.push(use_cluster_permission(c));
    }
    let mut steps = vec![];
    for step in &ps.steps {
        match crate::tools::Mutation::from_step(step) {
            Ok(m) => steps.extend(m.permissions()),
            Err(e) => return Ok(Err(format!("step `{}` is not executable: {e}", step.tool))),
        }
    }
    let there = Authorizer::new(ctx.client_in(&place), approver.clone());
    let checked = match here.check(&perms).await {
        Ok(()) => there.check(&steps).await,
        Err(e) => Err(e),
    };
    match checked {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Err(format!("the approver cannot approve this plan: {e}"))),
    }
}

/// An error while a plan acts in a member cluster: when the member does not answer, the
/// request says so (condition `ClusterUnavailable`, a Warning event) and looks again
/// shortly; any other error is retried as it is.
async fn member_down(
    ctx: &Context,
    req: &AIRequest,
    plan: &AIPlan,
    err: Error,
) -> Result<Action, Error> {
    let Some(name) = plan.status.as_ref().and_then(|s| s.cluster.clone()) else {
        return Err(err);
    };
    let Ok(Place {
        member: Some(member),
    }) = ctx.place(Some(&name)).await
    else {
        return Err(err);
    };
    let Err(down) = member.client.apiserver_version().await else {
        return Err(err);
    };
    tracing::warn!(cluster = %name, error = %down, "member cluster unavailable");
    let status = req.status.clone().unwrap_or_default();
    let u = planning::cluster_unavailable(req, &status, &name, &down);
    let t = Target {
        request: req,
        plan: Some(plan),
    };
    match apply(ctx, t, Decision::update(u)).await? {
        Applied::Done(action) => Ok(action),
        _ => Ok(Action::requeue(std::time::Duration::from_secs(3))),
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
    // Where the steps act: the plan's cluster, as hashed into its id.
    let place = match ctx.place(e.plan.cluster.as_deref()).await {
        Ok(p) => p,
        Err(err) if err.is_transient() => return Err(err.into()),
        Err(err) => {
            // Unregistered since the approval: nothing runs, and the request says why.
            let msg = format!("{err}; nothing was changed");
            let mut plan_now = plan.clone();
            plan_now.status = Some(e.plan.clone());
            let f = Finish::of_execution(execute::ExecOutcome::Failed(msg), &e.plan);
            let t = Target {
                request: req,
                plan: Some(&plan_now),
            };
            return match finish(ctx, t, e.plan, f).await? {
                Applied::Done(action) => Ok(action),
                _ => Ok(Action::await_change()),
            };
        }
    };
    let authz = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION)
        .map(|r| Authorizer::new(ctx.client_in(&place), r));
    let client = ctx.acting_client(&place, authz.as_ref().map(|a| &a.user))?;
    let events = ctx.events_in(&place);
    let env = execute::Env {
        client: &client,
        events: &events,
        write: &writer,
        failpoint: ctx.config.failpoint,
        authz: authz.as_ref(),
    };
    let result = execute::execute(&env, plan, e.plan, &e.token).await;
    let mut plan_now = plan.clone();
    plan_now.status = last.lock().map(|g| g.clone()).unwrap_or(None);
    let (ps, outcome) = match result {
        Ok(done) => done,
        // A member that does not answer shows on the request (the first call there fails).
        Err(err) if place.member.is_some() => {
            return member_down(ctx, req, &plan_now, err.into()).await;
        }
        Err(err) => return Err(err.into()),
    };
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
