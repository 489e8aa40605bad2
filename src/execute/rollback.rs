//! The approved rollbacks of a plan whose step failed its verification: each
//! applied step's [`RollbackAction`](crate::api::RollbackAction), in reverse
//! order, without a new approval (the approval covered them).
//!
//! Exactly once across restarts: the plan is persisted `RollingBack` before
//! the first rollback, and each step `RollingBack` before its call; a restart
//! finds the object already restored and records it instead of writing again.
//! Never blindly: a step whose fields someone changed since it was applied is
//! not overwritten (the rollback's `test` operations, checked here and again
//! by the API server); the plan then ends `Failed` and says which.

use super::{Env, ExecError, ExecOutcome, FailPoint, notes_on};
use crate::api::{AIPlan, AIPlanStatus, RollbackAction, RollbackKind, StepState, reason};
use crate::approval::Approved;
use crate::telemetry::{Events, NoteType, object_ref};
use crate::tools::verify_plan::{restored, tests_hold};
use crate::tools::{Check, Mutation};

/// How one step's rollback ended.
enum Undone {
    /// Restored (or already restored before a restart).
    Done(String),
    /// Not rolled back by design (`Never`).
    Never(String),
    /// Not rolled back: the object changed since, or the rollback failed.
    Conflict(String),
}

/// Rolls back every applied step of a plan in `RollingBack`, last first.
pub async fn run(
    env: &Env<'_>,
    plan: &AIPlan,
    mut status: AIPlanStatus,
    token: &Approved,
) -> Result<(AIPlanStatus, ExecOutcome), ExecError> {
    let plan_ref = object_ref(plan);
    let evidence = status
        .steps
        .iter()
        .enumerate()
        .find_map(|(i, s)| {
            s.message
                .as_deref()
                .filter(|m| m.starts_with("verification failed"))
                .map(|m| format!("step {} ({}): {m}", i + 1, s.tool))
        })
        .unwrap_or_else(|| "a step failed its verification".into());
    let (mut done, mut never, mut conflicts) = (vec![], vec![], vec![]);
    for i in (0..status.steps.len()).rev() {
        let step = status.steps[i].clone();
        let applied = matches!(
            step.state,
            StepState::Succeeded | StepState::Failed | StepState::RollingBack
        );
        if !applied {
            continue;
        }
        let n = i + 1;
        let action = format!("Rollback{n}");
        let target_ref = Events::target_ref(&step.target);
        let on = [&plan_ref, &target_ref];
        // Handled before a restart: its outcome is recorded.
        if let Some(m) = &step.rollback_message {
            match step.state {
                StepState::RolledBack => done.push(format!("step {n}")),
                _ if m.starts_with("not rolled back: never") => never.push(format!("step {n}")),
                _ => conflicts.push(format!("step {n}: {m}")),
            }
            continue;
        }
        let undone = undo(env, &mut status, i, token).await?;
        let (type_, why, text, state) = match &undone {
            Undone::Done(m) => (
                NoteType::Normal,
                reason::STEP_ROLLED_BACK,
                format!("step {n} rolled back: {m}"),
                StepState::RolledBack,
            ),
            Undone::Never(m) => (
                NoteType::Normal,
                reason::ROLLBACK_SKIPPED,
                format!("step {n} not rolled back: never — {m}"),
                step.state,
            ),
            Undone::Conflict(m) => (
                NoteType::Warning,
                reason::ROLLBACK_SKIPPED,
                format!("step {n} NOT rolled back: {m}"),
                if step.state == StepState::RollingBack {
                    StepState::Failed
                } else {
                    step.state
                },
            ),
        };
        env.events
            .notes(&notes_on(&on, type_, why, &action, &text))
            .await;
        let s = &mut status.steps[i];
        s.state = state;
        s.rollback_message = Some(match &undone {
            Undone::Done(m) => format!("rolled back: {m}"),
            Undone::Never(m) => format!("not rolled back: never — {m}"),
            Undone::Conflict(m) => format!("not rolled back: {m}"),
        });
        status = (env.write)(status).await.map_err(ExecError::Status)?;
        match undone {
            Undone::Done(_) => done.push(format!("step {n}")),
            Undone::Never(_) => never.push(format!("step {n}")),
            Undone::Conflict(m) => conflicts.push(format!("step {n}: {m}")),
        }
    }
    let mut msg = evidence;
    if !done.is_empty() {
        msg.push_str(&format!("; rolled back: {}", done.join(", ")));
    }
    if !never.is_empty() {
        msg.push_str(&format!(
            "; never rolled back (approved so): {}",
            never.join(", ")
        ));
    }
    if done.is_empty() && conflicts.is_empty() {
        // Nothing was undone, as approved: the change stays, and failed.
        msg.push_str("; nothing was rolled back");
        Ok((status, ExecOutcome::Failed(msg)))
    } else if conflicts.is_empty() {
        Ok((status, ExecOutcome::RolledBack(msg)))
    } else {
        msg.push_str(&format!(
            "; NOT rolled back, a person must look: {}",
            conflicts.join("; ")
        ));
        Ok((status, ExecOutcome::Failed(msg)))
    }
}

/// Undoes step `i`: persists `RollingBack` before the call, checks first
/// that nobody changed what the step wrote (never overwrites that), and
/// recognises a rollback that already landed before a restart.
async fn undo(
    env: &Env<'_>,
    status: &mut AIPlanStatus,
    i: usize,
    token: &Approved,
) -> Result<Undone, ExecError> {
    let step = status.steps[i].clone();
    let Some(rb) = step.rollback_action.clone() else {
        return Ok(Undone::Never(
            "the plan carries no rollback for this step".into(),
        ));
    };
    if rb.action == RollbackKind::Never {
        return Ok(Undone::Never(rb.reason.unwrap_or_default()));
    }
    let what = rb.reason.clone().unwrap_or_default();
    let mutation = Mutation::from_step(&step)?;
    let live = mutation.read_live(env.client).await?;
    let resumed = step.state == StepState::RollingBack;
    // Already restored (a restart after the rollback landed): record, never redo.
    if resumed && already_undone(&rb, live.as_ref()) {
        return Ok(Undone::Done(format!(
            "{what} (verified after restart: it had already been applied; not run again)"
        )));
    }
    let Some(live) = live else {
        return Ok(match rb.action {
            RollbackKind::Delete => Undone::Done(format!("{what} (it was already gone)")),
            _ => Undone::Conflict(format!(
                "{} {} no longer exists; nothing to restore",
                step.target.kind, step.target.name
            )),
        });
    };
    // Nobody else's change is overwritten.
    let unchanged = match rb.action {
        RollbackKind::Delete => match mutation.check(&step, Some(&live)) {
            Check::Applied => Ok(()),
            _ => Err(format!(
                "{} {} no longer holds what the step created (changed by someone else); not deleted",
                step.target.kind, step.target.name
            )),
        },
        _ => tests_hold(&live, &rb.patch).map_err(|why| {
            format!(
                "{} {} was changed by someone else after the step ({why}); not overwritten",
                step.target.kind, step.target.name
            )
        }),
    };
    if let Err(why) = unchanged {
        return Ok(Undone::Conflict(why));
    }
    status.steps[i].state = StepState::RollingBack;
    *status = (env.write)(status.clone())
        .await
        .map_err(ExecError::Status)?;
    env.failpoint.hit(FailPoint::AfterRollbackRunning);
    let result = mutation.roll_back(env.client, &rb, &live, token).await;
    env.failpoint.hit(FailPoint::AfterRollbackApplied);
    match result {
        Ok(after) => Ok(Undone::Done(format!(
            "{what}; now: {}",
            mutation.summary_of(Some(&after))
        ))),
        Err(e) if e.is_transient() => Err(ExecError::Tool(e)),
        Err(e) => Ok(Undone::Conflict(format!("the rollback failed: {e}"))),
    }
}

fn already_undone(rb: &RollbackAction, live: Option<&serde_json::Value>) -> bool {
    match (rb.action, live) {
        (RollbackKind::Delete, None) => true,
        (RollbackKind::RestoreBefore, Some(l)) => restored(l, &rb.patch),
        _ => false,
    }
}
