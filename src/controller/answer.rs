//! The answers a request shows (`status.answer`, `status.summary`): pure
//! markdown rendering, no client. The operator's own text (what will change,
//! risk, how to approve) always comes first and is kept apart from the
//! planner's text, which is quoted below it: text planted in logs or said by
//! a model cannot pose as instructions.

use jiff::Timestamp;

use crate::api::{AIPlanStatus, PlanStep, RequestPhase, Risk, reason, truncate};

/// First line of an answer, for the printer column.
pub fn summary_of(answer: &str) -> String {
    let line = answer
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .find(|l| !l.is_empty() && !l.starts_with('|'))
        .unwrap_or("");
    truncate(&line.replace(['*', '`'], ""), 80)
}

/// The agent's warnings worth showing: distinct, at most five, each bounded.
pub fn agent_warnings(raw: &[String]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    raw.iter()
        .filter(|w| seen.insert(w.as_str()))
        .take(5)
        .map(|w| truncate(w, 300))
        .collect()
}

/// Appends the agent's warnings to its answer.
pub fn append_warnings(answer: &mut String, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    answer.push_str("\n\n⚠️ Agent warnings:\n");
    for w in warnings {
        answer.push_str(&format!("- {w}\n"));
    }
}

/// A request refused before planning (e.g. no requester identity).
pub fn refused(msg: &str) -> String {
    format!("⛔ {msg}")
}

/// A planner that cannot work (bad key, bad model).
pub fn planner_failed(planner: &str, msg: &str) -> String {
    format!("❌ The {planner} planner failed: {msg}")
}

/// The planner's answer, followed by why guardrails or authorization blocked it.
pub fn blocked(answer: &str, why: &str) -> String {
    format!(
        "{}\n\n⛔ **Blocked**: {why}. No plan was created.",
        answer.trim_end()
    )
}

/// The planner's answer, followed by why a step could not be planned.
pub fn not_planned(answer: &str, msg: &str) -> String {
    format!("{}\n\n❌ {msg}. No plan was created.", answer.trim_end())
}

/// A plan waiting for approval, as its request shows it.
pub struct PlanView<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    /// The member cluster the steps act in (`None`: this one).
    pub cluster: Option<&'a str>,
    pub id: &'a str,
    pub risk: Risk,
    /// The steps' reasons, joined.
    pub summary: &'a str,
    pub steps: &'a [PlanStep],
    /// Guardrail warnings.
    pub warnings: &'a [String],
    pub expires: Timestamp,
    pub planner: &'a str,
    /// The planner's own text (quoted, never instructions).
    pub notes: &'a str,
}

/// The `kubectl` command that approves exactly this plan.
pub fn approve_command(plan: &str, namespace: &str, id: &str) -> String {
    format!(
        "kubectl patch aiplan {plan} -n {namespace} --type merge -p '{{\"spec\":{{\"approval\":{{\"planId\":\"{id}\"}}}}}}'"
    )
}

/// The answer of a request whose plan awaits approval.
pub fn approval_required(p: &PlanView<'_>) -> String {
    let (name, id, risk) = (p.name, p.id, p.risk);
    let mut answer = format!(
        "⏸️ **Approval required**: {}.\n\n### Plan `{name}` — risk **{risk:?}**, plan id `{id}`\n\n",
        p.summary.replace('`', "")
    );
    if let Some(c) = p.cluster {
        answer.push_str(&format!(
            "**In member cluster `{c}`** (its own RBAC; the plan id covers the cluster).\n\n"
        ));
    }
    for (i, s) in p.steps.iter().enumerate() {
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
        for w in &s.admission_warnings {
            answer.push_str(&format!("   - ⚠️ admission warning: {w}\n"));
        }
        if let Some(v) = &s.verification {
            answer.push_str(&format!(
                "   - verification: {:?} within {}s\n",
                v.kind, v.timeout_seconds
            ));
        }
        if let Some(r) = &s.rollback_action {
            answer.push_str(&format!(
                "   - automatic rollback if verification fails: {:?}{}\n",
                r.action,
                r.reason
                    .as_deref()
                    .map(|w| format!(" — {w}"))
                    .unwrap_or_default()
            ));
        }
    }
    for w in p.warnings {
        answer.push_str(&format!("\n{w}\n"));
    }
    answer.push_str(&format!(
        "\n⏸️ Nothing changes until this exact plan id is approved (expires {}):\n\n    {}\n\nor commit `spec.approvedPlanId: \"{id}\"` to this AIRequest (GitOps).",
        p.expires.round(jiff::Unit::Second).unwrap_or(p.expires),
        approve_command(name, p.namespace, id),
    ));
    answer.push_str(&format!(
        "\n\n#### Notes from the {} planner (information, not instructions)\n\n{}",
        p.planner,
        p.notes
            .trim_end()
            .lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    answer
}

/// The answer of a request whose plan finished: `why` and `msg` are the
/// reason and message of the plan's `Ready` condition, `plan_ref` the
/// request's `status.planRef`.
pub fn finished(
    phase: RequestPhase,
    why: &str,
    msg: &str,
    plan_ref: Option<&str>,
    ps: &AIPlanStatus,
) -> String {
    let head = match phase {
        RequestPhase::Succeeded => "✅ Done",
        RequestPhase::Rejected => "🚫 The plan was rejected; nothing was changed",
        RequestPhase::Expired => "⌛ The plan expired before approval; nothing was changed",
        RequestPhase::RolledBack => {
            "↩️ Verification failed; the approved rollbacks ran and the cluster is back where it was"
        }
        _ if why == reason::DENIED_BY_POLICY => {
            "⛔ The cluster's admission policies deny this change; nothing was offered for approval"
        }
        _ if why == reason::DRIFTED => "⚠️ Stopped: the cluster changed since the plan was made",
        _ => "❌ The plan failed",
    };
    format!(
        "{head}: {msg}\n\nPlan `{}` (id `{}`), {}.{}",
        ps.request
            .as_ref()
            .map(|_| plan_ref.unwrap_or_default())
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
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_first_text_line() {
        assert_eq!(
            summary_of("📊 **Pods in `shop`**\n\n| a |"),
            "📊 Pods in shop"
        );
        assert_eq!(summary_of("\n\n### Plan `x`"), "Plan x");
    }

    #[test]
    fn warnings_are_distinct_and_few() {
        let raw: Vec<String> = ["a", "a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(agent_warnings(&raw), ["a", "b", "c", "d", "e"]);
        let mut answer = "x".to_string();
        append_warnings(&mut answer, &[]);
        assert_eq!(answer, "x");
        append_warnings(&mut answer, &["w".into()]);
        assert_eq!(answer, "x\n\n⚠️ Agent warnings:\n- w\n");
    }

    #[test]
    fn finished_answer_names_plan_and_approval() {
        let ps = AIPlanStatus {
            request: Some("r".into()),
            plan_id: Some("0123".into()),
            approved_by: Some("bob via x".into()),
            ..Default::default()
        };
        let a = finished(RequestPhase::Succeeded, "Succeeded", "ok", Some("r-1"), &ps);
        assert_eq!(
            a,
            "✅ Done: ok\n\nPlan `r-1` (id `0123`), approved via bob via x."
        );
        let a = finished(RequestPhase::Failed, reason::DRIFTED, "m", Some("r-1"), &ps);
        assert!(a.starts_with("⚠️ Stopped"), "{a}");
        assert!(a.ends_with("against the current state."), "{a}");
    }
}
