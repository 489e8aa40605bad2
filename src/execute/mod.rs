//! The executor of approved plans.
//!
//! It needs an [`Approved`] token, which only [`crate::approval`] can mint.
//! The executor re-reads each target before
//! its step (drift check), persists `Running` before calling the API and the
//! result after, so a restart verifies a `Running` step instead of redoing it.

pub mod plan_id;
pub mod rollback;
pub mod verify;

pub use plan_id::plan_id;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;

use crate::api::{AIPlan, AIPlanStatus, PlanPhase, StepState, reason};
use crate::approval::Approved;
use crate::k8s::ToolError;
use crate::telemetry::{Events, Note, NoteType, object_ref};
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
    /// After a step was persisted `Verifying` (applied, not yet verified).
    AfterStepVerifying,
    /// After a step's rollback was persisted `RollingBack`, before the call.
    AfterRollbackRunning,
    /// After a step's rollback call, before its result was persisted.
    AfterRollbackApplied,
}

impl FailPoint {
    pub fn from_env() -> Self {
        match std::env::var("KUBILITICS_AI_FAILPOINT").as_deref() {
            Ok("after-step-running") => FailPoint::AfterStepRunning,
            Ok("after-step-applied") => FailPoint::AfterStepApplied,
            Ok("after-step-verifying") => FailPoint::AfterStepVerifying,
            Ok("after-rollback-running") => FailPoint::AfterRollbackRunning,
            Ok("after-rollback-applied") => FailPoint::AfterRollbackApplied,
            _ => FailPoint::None,
        }
    }

    pub(crate) fn hit(self, at: FailPoint) {
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
    /// A step failed its verification; the approved rollbacks ran (the evidence and what was undone).
    RolledBack(String),
}

/// Errors that stop execution for now (retried by the controller).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("writing plan status: {0}")]
    Status(#[source] kube::Error),
    #[error("{0}")]
    Tool(#[from] ToolError),
    /// A step is applied and its verification still waits (a rollout in progress): the
    /// reconcile ends here and comes back shortly, instead of holding a worker for the whole
    /// rollout. The step stays `Verifying`; its deadline counts from when it was applied.
    #[error("step {step} verifying: {why}")]
    StillVerifying { step: usize, why: String },
}

/// Persists a plan status (server-side apply of the whole status, one field manager).
pub type StatusWriter<'a> = &'a (
        dyn Fn(AIPlanStatus) -> futures::future::BoxFuture<'a, Result<AIPlanStatus, kube::Error>>
            + Send
            + Sync
    );

/// What the executor works with: the API, the event publisher, the plan's
/// status writer, the crash points (tests), and the requester's authorizer
/// (each step is checked again against the requester's own permissions).
pub struct Env<'a> {
    pub client: &'a Client,
    pub events: &'a Events,
    pub write: StatusWriter<'a>,
    pub failpoint: FailPoint,
    pub authz: Option<&'a crate::access::Authorizer>,
}

/// The same event on several objects.
pub(crate) fn notes_on(
    refs: &[&ObjectReference],
    type_: NoteType,
    why: &str,
    action: &str,
    text: &str,
) -> Vec<Note> {
    refs.iter()
        .map(|r| Note::new(r, type_, why, action, text))
        .collect()
}

/// Runs the steps of an approved plan in order.
pub async fn execute(
    env: &Env<'_>,
    plan: &AIPlan,
    mut status: AIPlanStatus,
    token: &Approved,
) -> Result<(AIPlanStatus, ExecOutcome), ExecError> {
    let Env {
        client,
        events,
        write,
        failpoint,
        authz,
    } = *env;
    let plan_ref = object_ref(plan);
    let now = || Time(Timestamp::now());
    // A verification failed before a restart: finish its rollbacks, run nothing else.
    if status.phase == Some(PlanPhase::RollingBack) {
        return rollback::run(env, plan, status, token).await;
    }
    for i in 0..status.steps.len() {
        let step = status.steps[i].clone();
        if matches!(step.state, StepState::Succeeded | StepState::Skipped) {
            continue;
        }
        // Applied before a restart, not yet verified: verify, never apply again.
        if step.state == StepState::Verifying {
            match verify::after_apply(env, plan, status, i, token).await? {
                verify::Verified::Passed(s) => {
                    status = s;
                    continue;
                }
                verify::Verified::Ended(s, outcome) => return Ok((s, outcome)),
            }
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
                    .notes(&[Note::normal(
                        &plan_ref,
                        reason::STEP_VERIFIED,
                        &action,
                        msg.as_str(),
                    )])
                    .await;
                status.steps[i].state = StepState::Succeeded;
                status.steps[i].finished_at = Some(now());
                status.steps[i].message = Some(msg.clone());
                if step.verification.is_some() {
                    // Applied, never verified: verify it now (not apply it again).
                    status.steps[i].state = StepState::Verifying;
                    status = write(status).await.map_err(ExecError::Status)?;
                    match verify::after_apply(env, plan, status, i, token).await? {
                        verify::Verified::Passed(s) => status = s,
                        verify::Verified::Ended(s, outcome) => return Ok((s, outcome)),
                    }
                    continue;
                }
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
                let on = [&plan_ref, &target_ref];
                let notes = notes_on(&on, NoteType::Warning, reason::DRIFTED, &action, &msg);
                let stop = Stop {
                    step: i,
                    message: &msg,
                    ran: false,
                };
                let status = stop_at(env, status, stop, &notes).await?;
                return Ok((status, ExecOutcome::Drifted(msg)));
            }
        }

        // The requester must still be allowed to do this step themselves.
        if let Some(a) = authz
            && let Err(e) = a.check(&mutation.permissions()).await
        {
            if e.is_transient() {
                return Err(ExecError::Tool(e));
            }
            let msg = format!("step {n} ({}) refused: {e}; nothing was changed", step.tool);
            let notes = notes_on(
                &[&plan_ref],
                NoteType::Warning,
                reason::STEP_FAILED,
                &action,
                &msg,
            );
            let stop = Stop {
                step: i,
                message: &msg,
                ran: false,
            };
            let status = stop_at(env, status, stop, &notes).await?;
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
        let on = [&plan_ref, &target_ref];
        events
            .notes(&notes_on(
                &on,
                NoteType::Normal,
                reason::STEP_STARTED,
                &action,
                &note,
            ))
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
                let on = [&plan_ref, &target_ref];
                let why = reason::STEP_SUCCEEDED;
                events
                    .notes(&notes_on(&on, NoteType::Normal, why, &action, &msg))
                    .await;
                if step.verification.is_some() {
                    // Persisted before verifying: a restart verifies, never re-applies.
                    status.steps[i].state = StepState::Verifying;
                    status = write(status).await.map_err(ExecError::Status)?;
                    failpoint.hit(FailPoint::AfterStepVerifying);
                    match verify::after_apply(env, plan, status, i, token).await? {
                        verify::Verified::Passed(s) => status = s,
                        verify::Verified::Ended(s, outcome) => return Ok((s, outcome)),
                    }
                    continue;
                }
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
                let on = [&plan_ref, &target_ref];
                let notes = notes_on(&on, NoteType::Warning, reason::STEP_FAILED, &action, &msg);
                let stop = Stop {
                    step: i,
                    message: &msg,
                    ran: true,
                };
                let status = stop_at(env, status, stop, &notes).await?;
                return Ok((status, ExecOutcome::Failed(msg)));
            }
        }
    }
    Ok((status, ExecOutcome::Succeeded))
}

/// Where a plan stops: at which step, why, and whether that step ran (then
/// it gets a finish time).
struct Stop<'a> {
    step: usize,
    message: &'a str,
    ran: bool,
}

/// Stops a plan: marks the step Failed, skips the rest, publishes the
/// (Warning) notes, then persists.
async fn stop_at(
    env: &Env<'_>,
    mut status: AIPlanStatus,
    stop: Stop<'_>,
    notes: &[Note],
) -> Result<AIPlanStatus, ExecError> {
    let i = stop.step;
    status.steps[i].state = StepState::Failed;
    if stop.ran {
        status.steps[i].finished_at = Some(Time(Timestamp::now()));
    }
    status.steps[i].message = Some(stop.message.to_string());
    skip_rest(&mut status, i + 1);
    // Events before the write (at least once across a crash).
    env.events.notes(notes).await;
    let status = (env.write)(status).await.map_err(ExecError::Status)?;
    Ok(status)
}

fn skip_rest(status: &mut AIPlanStatus, from: usize) {
    for s in status.steps.iter_mut().skip(from) {
        if s.state == StepState::Pending {
            s.state = StepState::Skipped;
        }
    }
}
