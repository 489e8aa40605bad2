//! The executor of approved plans.
//!
//! It needs an [`Approved`] token, which only [`crate::approval`] can mint.
//! The executor re-reads each target before
//! its step (drift check), persists `Running` before calling the API and the
//! result after, so a restart verifies a `Running` step instead of redoing it.

pub mod plan_id;

pub use plan_id::plan_id;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;

use crate::api::{AIPlan, AIPlanStatus, PlanPhase, StepState, reason};
use crate::approval::Approved;
use crate::k8s::ToolError;
use crate::telemetry::{Events, object_ref};
use crate::tools::{Check, Mutation};

/// Test-only crash points, read once at startup from `KUBILITICS_AI_FAILPOINT`
/// (`after-step-running`, `after-step-applied`): the process aborts there,
/// like a `kill -9`, so restart safety can be tested deterministically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FailPoint {
    #[default]
    None,
    AfterStepRunning,
    AfterStepApplied,
}

impl FailPoint {
    pub fn from_env() -> Self {
        match std::env::var("KUBILITICS_AI_FAILPOINT").as_deref() {
            Ok("after-step-running") => FailPoint::AfterStepRunning,
            Ok("after-step-applied") => FailPoint::AfterStepApplied,
            _ => FailPoint::None,
        }
    }

    fn hit(self, at: FailPoint) {
        if self != FailPoint::None && self == at {
            eprintln!("failpoint {at:?} reached: aborting");
            std::process::abort();
        }
    }
}

/// Mutation self-check of the chaos suite, compiled into test builds only
/// (debug assertions): with `KUBILITICS_AI_SKIP_RUNNING_CHECK=1` the executor
/// no longer verifies a step that a crash left `Running`, and applies it again
/// blindly. `tests/chaos.rs` must catch this bug; never set it elsewhere.
#[cfg(debug_assertions)]
fn skip_running_check() -> bool {
    std::env::var("KUBILITICS_AI_SKIP_RUNNING_CHECK").is_ok_and(|v| v == "1")
}

#[cfg(not(debug_assertions))]
fn skip_running_check() -> bool {
    false
}

/// How a plan's execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Succeeded,
    Drifted(String),
    Failed(String),
}

/// Errors that stop execution for now (retried by the controller).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("writing plan status: {0}")]
    Status(#[source] kube::Error),
    #[error("{0}")]
    Tool(#[from] ToolError),
}

/// Persists a plan status (server-side apply of the whole status, one field manager).
pub type StatusWriter<'a> = &'a (
        dyn Fn(AIPlanStatus) -> futures::future::BoxFuture<'a, Result<AIPlanStatus, kube::Error>>
            + Send
            + Sync
    );

/// Runs the steps of an approved plan in order.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    client: &Client,
    events: &Events,
    plan: &AIPlan,
    mut status: AIPlanStatus,
    token: &Approved,
    write: StatusWriter<'_>,
    failpoint: FailPoint,
    authz: Option<&crate::safety::authz::Authorizer>,
) -> Result<(AIPlanStatus, ExecOutcome), ExecError> {
    let plan_ref = object_ref(plan);
    let now = || Time(Timestamp::now());
    for i in 0..status.steps.len() {
        let step = status.steps[i].clone();
        if matches!(step.state, StepState::Succeeded | StepState::Skipped) {
            continue;
        }
        // Failed before a crash (the plan's final write did not happen): a failed
        // step is final, it is never tried again.
        if step.state == StepState::Failed {
            let msg = step
                .message
                .clone()
                .unwrap_or_else(|| format!("step {} failed", i + 1));
            return Ok((status, ExecOutcome::Failed(msg)));
        }
        let n = i + 1;
        let action = format!("Step{n}");
        let mutation = Mutation::from_step(&step)?;
        let target_ref = Events::target_ref(&step.target);
        let live = mutation.read_live(client).await?;
        let resumed = step.state == StepState::Running;
        let check = if resumed && skip_running_check() {
            Check::NotApplied
        } else {
            mutation.check(&step, live.as_ref())
        };
        match (&check, resumed) {
            (Check::Applied, true) => {
                let msg = format!(
                    "verified after restart: step {n} had already been applied; not run again"
                );
                // The event first: a crash before the write verifies (and
                // reports) again; after it, the step is done and reported.
                events
                    .publish(&plan_ref, false, reason::STEP_VERIFIED, &action, &msg)
                    .await;
                status.steps[i].state = StepState::Succeeded;
                status.steps[i].finished_at = Some(now());
                status.steps[i].message = Some(msg.clone());
                status = write(status).await.map_err(ExecError::Status)?;
                continue;
            }
            (Check::NotApplied, _) => {}
            (Check::Applied, false) | (Check::Drifted(_), _) => {
                let why = match check {
                    Check::Drifted(w) => w,
                    _ => format!(
                        "{} {} already changed since planning",
                        step.target.kind, step.target.name
                    ),
                };
                let msg = format!(
                    "step {n} ({}): {why}; nothing was changed. Create a new plan.",
                    step.tool
                );
                let status = stop_at(
                    status,
                    i,
                    &msg,
                    false,
                    write,
                    events,
                    &[&plan_ref, &target_ref],
                    reason::DRIFTED,
                    &action,
                )
                .await?;
                return Ok((status, ExecOutcome::Drifted(msg)));
            }
        }

        // The requester must still be allowed to do this step themselves.
        if let Some(a) = authz
            && let Err(e) = a
                .check(&crate::safety::authz::mutation_permissions(&mutation))
                .await
        {
            if e.is_transient() {
                return Err(ExecError::Tool(e));
            }
            let msg = format!("step {n} ({}) refused: {e}; nothing was changed", step.tool);
            let status = stop_at(
                status,
                i,
                &msg,
                false,
                write,
                events,
                &[&plan_ref],
                reason::STEP_FAILED,
                &action,
            )
            .await?;
            return Ok((status, ExecOutcome::Failed(msg)));
        }

        // Persist Running before the call: a crash after this point is
        // resumed by verification, never by a blind re-run.
        let before = mutation.summary_of(live.as_ref());
        status.steps[i].state = StepState::Running;
        status.steps[i].started_at = Some(now());
        status.phase = Some(PlanPhase::Executing);
        status = write(status).await.map_err(ExecError::Status)?;
        let note = format!("step {n}: {} — before: {}", step.reason, before);
        events
            .publish_all(&[
                (&plan_ref, false, reason::STEP_STARTED, &action, &note),
                (&target_ref, false, reason::STEP_STARTED, &action, &note),
            ])
            .await;
        failpoint.hit(FailPoint::AfterStepRunning);

        let result = mutation.apply(client, &step, token).await;
        failpoint.hit(FailPoint::AfterStepApplied);
        match result {
            Ok(after) => {
                let after = mutation.summary_of(Some(&after));
                let msg = format!(
                    "step {n}: {} — before: {before}, after: {after}",
                    step.reason
                );
                status.steps[i].state = StepState::Succeeded;
                status.steps[i].finished_at = Some(now());
                status.steps[i].message = Some(format!("applied; after: {after}"));
                // Events before the write that marks the step done (at least once).
                events
                    .publish_all(&[
                        (&plan_ref, false, reason::STEP_SUCCEEDED, &action, &msg),
                        (&target_ref, false, reason::STEP_SUCCEEDED, &action, &msg),
                    ])
                    .await;
                let last = i + 1 == status.steps.len();
                if !last {
                    status = write(status).await.map_err(ExecError::Status)?;
                }
            }
            Err(e) if e.is_transient() => {
                // Left Running: the next attempt verifies whether it landed.
                return Err(ExecError::Tool(e));
            }
            Err(e) => {
                let msg = format!("step {n} ({}) failed: {e}", step.tool);
                let status = stop_at(
                    status,
                    i,
                    &msg,
                    true,
                    write,
                    events,
                    &[&plan_ref, &target_ref],
                    reason::STEP_FAILED,
                    &action,
                )
                .await?;
                return Ok((status, ExecOutcome::Failed(msg)));
            }
        }
    }
    Ok((status, ExecOutcome::Succeeded))
}

/// Stops a plan at step `i`: marks it Failed (with `finished` time when it ran),
/// skips the rest, persists, and records a Warning event on each object.
#[allow(clippy::too_many_arguments)]
async fn stop_at(
    mut status: AIPlanStatus,
    i: usize,
    msg: &str,
    finished: bool,
    write: StatusWriter<'_>,
    events: &Events,
    on: &[&k8s_openapi::api::core::v1::ObjectReference],
    why: &str,
    action: &str,
) -> Result<AIPlanStatus, ExecError> {
    status.steps[i].state = StepState::Failed;
    if finished {
        status.steps[i].finished_at = Some(Time(Timestamp::now()));
    }
    status.steps[i].message = Some(msg.to_string());
    skip_rest(&mut status, i + 1);
    // Events before the write (at least once across a crash).
    for r in on {
        events.publish(r, true, why, action, msg).await;
    }
    let status = write(status).await.map_err(ExecError::Status)?;
    Ok(status)
}

fn skip_rest(status: &mut AIPlanStatus, from: usize) {
    for s in status.steps.iter_mut().skip(from) {
        if s.state == StepState::Pending {
            s.state = StepState::Skipped;
        }
    }
}
