//! `kubectl kubilitics`: the terminal workflow — ask, review plans, approve
//! or reject by exact plan id, history. Uses your kubeconfig and RBAC.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};

use crate::api::{AIPlan, AIRequest, AIRequestSpec, Mode, PlanPhase, RequestPhase};
use crate::tools::age;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-kubilitics",
    version,
    about = "Talk to your cluster; review and approve Kubilitics AI plans"
)]
pub struct PluginCli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format for lists and plans.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    /// The registered member cluster a request targets (AIRequest spec.cluster); default:
    /// the cluster the operator runs in.
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Ask in natural language (creates an AIRequest).
    Ask {
        prompt: String,
        /// Wait for the answer, showing progress.
        #[arg(long)]
        wait: bool,
        /// Never plan changes.
        #[arg(long)]
        read_only: bool,
        /// Thread requests together (the agent remembers the conversation).
        #[arg(long)]
        conversation: Option<String>,
        /// How long --wait waits.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
    },
    /// List plans.
    Plans {
        /// In all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Show a plan: steps, before state, dry-run preview, rollback, risk.
    Show { plan: String },
    /// Approve a plan by its exact id (asks for confirmation unless --yes).
    Approve {
        plan: String,
        #[arg(long, short = 'y')]
        yes: bool,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a plan.
    Reject {
        plan: String,
        #[arg(long)]
        reason: String,
    },
    /// Past requests, oldest first.
    History {
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Registered member clusters and whether they answer (reads the registration Secrets in
    /// the operator's namespace: an admin's command).
    Clusters {
        /// The operator's namespace.
        #[arg(long, default_value = "kubilitics-system")]
        operator_namespace: String,
    },
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn diff_line(&self, l: &str) -> String {
        match l.chars().next() {
            Some('+') => self.paint("32", l),
            Some('-') => self.paint("31", l),
            Some('~') => self.paint("33", l),
            _ => l.to_string(),
        }
    }
}

/// Turns API errors into messages a person can act on.
pub fn explain(e: &kube::Error, what: &str) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 && s.message.contains("the server could not find the requested resource") => {
            "the Kubilitics AI CRDs are not installed in this cluster (kubectl apply --server-side -f crds/, or install the Helm chart)".into()
        }
        kube::Error::Api(s) if s.code == 404 => format!("{what} not found"),
        kube::Error::Api(s) if s.code == 403 => format!("not allowed: {} (ask for the kubilitics-ai-requester or -approver role)", s.message),
        kube::Error::Api(s) => format!("{what}: {}", s.message),
        e => format!("{what}: {e}"),
    }
}

fn print_structured<T: serde::Serialize>(o: Output, v: &T) -> anyhow::Result<()> {
    match o {
        Output::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Output::Yaml => print!("{}", serde_norway::to_string(v)?),
    }
    Ok(())
}

fn table(rows: Vec<Vec<String>>) {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// Entry point of `kubectl-kubilitics` and `kubilitics-ai plugin`.
pub async fn run(cli: PluginCli) -> anyhow::Result<()> {
    let config = kube::Config::infer().await?;
    let ns = cli
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)?;
    let style = Style {
        color: std::io::stdout().is_terminal(),
    };
    let plans: Api<AIPlan> = Api::namespaced(client.clone(), &ns);
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), &ns);
    match cli.command {
        PluginCommand::Ask {
            prompt,
            wait,
            read_only,
            conversation,
            timeout_seconds,
        } => {
            let req = AIRequest {
                metadata: ObjectMeta {
                    generate_name: Some("ask-".into()),
                    ..Default::default()
                },
                spec: AIRequestSpec {
                    prompt,
                    conversation,
                    mode: read_only.then_some(Mode::ReadOnly),
                    cluster: cli.cluster.clone(),
                    ..Default::default()
                },
                status: None,
            };
            let created = requests
                .create(&PostParams::default(), &req)
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, "creating the AIRequest")))?;
            let name = created.name_any();
            println!("airequest {ns}/{name} created");
            if !wait {
                return Ok(());
            }
            let start = Instant::now();
            let mut last = None;
            loop {
                let r = requests
                    .get(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!(explain(&e, &name)))?;
                let st = r.status.clone().unwrap_or_default();
                if st.phase != last {
                    if let Some(p) = st.phase {
                        eprintln!("{} {p:?}", style.paint("36", "→"));
                    }
                    last = st.phase;
                }
                if let Some(p) = st.phase
                    && (p.is_final() || p == RequestPhase::AwaitingApproval)
                {
                    if let Some(o) = cli.output {
                        return print_structured(o, &r);
                    }
                    println!("\n{}", st.answer.unwrap_or_default());
                    if p == RequestPhase::AwaitingApproval {
                        let plan = st.plan_ref.unwrap_or_default();
                        println!(
                            "\n{} kubectl kubilitics show {plan} -n {ns}   then   kubectl kubilitics approve {plan} -n {ns}",
                            style.bold("Next:")
                        );
                    }
                    return if p == RequestPhase::Failed {
                        Err(anyhow::anyhow!("the request failed"))
                    } else {
                        Ok(())
                    };
                }
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(timeout_seconds),
                    "no answer after {timeout_seconds}s (phase {:?}); is the operator running?",
                    st.phase
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        PluginCommand::Plans { all_namespaces } => {
            let api: Api<AIPlan> = if all_namespaces {
                Api::all(client)
            } else {
                plans
            };
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, "listing plans")))?;
            if let Some(o) = cli.output {
                return print_structured(o, &list.items);
            }
            if list.items.is_empty() {
                println!(
                    "No plans in {}.",
                    if all_namespaces {
                        "any namespace".into()
                    } else {
                        format!("namespace {ns}")
                    }
                );
                return Ok(());
            }
            let now = Timestamp::now();
            let mut rows = vec![
                [
                    "NAMESPACE",
                    "NAME",
                    "REQUEST",
                    "PHASE",
                    "STEPS",
                    "RISK",
                    "PLAN ID",
                    "AGE",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for p in list.items {
                let s = p.status.clone().unwrap_or_default();
                rows.push(vec![
                    p.namespace().unwrap_or_default(),
                    p.name_any(),
                    s.request.unwrap_or_default(),
                    s.phase.map(|x| format!("{x:?}")).unwrap_or_default(),
                    s.step_count.unwrap_or(0).to_string(),
                    s.risk.map(|x| format!("{x:?}")).unwrap_or_default(),
                    s.plan_id.unwrap_or_default(),
                    age(p.metadata.creation_timestamp.as_ref(), now),
                ]);
            }
            table(rows);
            Ok(())
        }
        PluginCommand::Show { plan } => {
            let p = plans
                .get(&plan)
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, &format!("AIPlan {plan}"))))?;
            if let Some(o) = cli.output {
                return print_structured(o, &p);
            }
            show(&style, &p);
            Ok(())
        }
        PluginCommand::Approve { plan, yes, comment } => {
            let p = plans
                .get(&plan)
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, &format!("AIPlan {plan}"))))?;
            let s = p.status.clone().unwrap_or_default();
            let phase = s.phase.unwrap_or(PlanPhase::AwaitingApproval);
            anyhow::ensure!(
                phase == PlanPhase::AwaitingApproval,
                "plan {plan} is {phase:?}: there is nothing to approve (a stale or finished plan never runs)"
            );
            let id = s
                .plan_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("plan {plan} has no plan id yet"))?;
            show(&style, &p);
            if !yes {
                print!("\nApprove plan {plan} (id {id})? Its steps will run now. [y/N] ");
                std::io::stdout().flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    println!("Not approved; nothing changed.");
                    return Ok(());
                }
            }
            let mut approval = serde_json::json!({"planId": id});
            if let Some(c) = comment {
                approval["comment"] = serde_json::Value::String(c);
            }
            // Under a quorum (N-of-M) each approver appends an entry of their own
            // to spec.approvals (admission stamps who); otherwise spec.approval.
            let quorum = s.approvals_required.unwrap_or(1) > 1 || !p.spec.approvals.is_empty();
            let patch = if quorum {
                let op = if p.spec.approvals.is_empty() {
                    serde_json::json!([{"op": "add", "path": "/spec/approvals", "value": [approval]}])
                } else {
                    serde_json::json!([{"op": "add", "path": "/spec/approvals/-", "value": approval}])
                };
                Patch::Json::<serde_json::Value>(serde_json::from_value(op)?)
            } else {
                Patch::Merge(serde_json::json!({"spec": {"approval": approval}}))
            };
            plans
                .patch(&plan, &PatchParams::default(), &patch)
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, &format!("approving {plan}"))))?;
            if quorum {
                println!(
                    "{} your approval of plan {plan} (id {id}) is recorded; it runs once {} distinct approver(s) approved (see kubectl kubilitics show {plan})",
                    style.paint("32", "✔"),
                    s.approvals_required.unwrap_or(1)
                );
                return Ok(());
            }
            println!(
                "{} plan {plan} approved with id {id}",
                style.paint("32", "✔")
            );
            Ok(())
        }
        PluginCommand::Reject { plan, reason } => {
            plans
                .patch(
                    &plan,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"rejection": {"reason": reason}}})),
                )
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, &format!("rejecting {plan}"))))?;
            println!("plan {plan} rejected");
            Ok(())
        }
        PluginCommand::Clusters { operator_namespace } => {
            let rows = crate::clusters::health(client.clone(), &operator_namespace)
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, "listing cluster registrations")))?;
            if let Some(o) = cli.output {
                return print_structured(o, &rows);
            }
            if rows.is_empty() {
                println!(
                    "No member clusters registered in {operator_namespace} (Secrets labelled ai.kubilitics.io/cluster=true)."
                );
                return Ok(());
            }
            let mut t = vec![vec![
                "CLUSTER".to_string(),
                "SECRET".into(),
                "SERVER".into(),
                "HEALTH".into(),
            ]];
            for r in rows {
                t.push(vec![r.name, r.secret, r.server, r.health]);
            }
            table(t);
            Ok(())
        }
        PluginCommand::History { conversation } => {
            let mut items: Vec<AIRequest> = requests
                .list(&ListParams::default())
                .await
                .map_err(|e| anyhow::anyhow!(explain(&e, "listing requests")))?
                .items
                .into_iter()
                .filter(|r| conversation.is_none() || r.spec.conversation == conversation)
                .collect();
            items.sort_by_key(|r| r.metadata.creation_timestamp.clone().map(|t| t.0));
            if let Some(o) = cli.output {
                return print_structured(o, &items);
            }
            let now = Timestamp::now();
            let mut rows = vec![
                ["NAME", "PHASE", "PLAN", "AGE", "PROMPT"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in items {
                let s = r.status.clone().unwrap_or_default();
                rows.push(vec![
                    r.name_any(),
                    s.phase.map(|x| format!("{x:?}")).unwrap_or_default(),
                    s.plan_ref.unwrap_or_default(),
                    age(r.metadata.creation_timestamp.as_ref(), now),
                    crate::api::truncate(&r.spec.prompt, 60),
                ]);
            }
            table(rows);
            Ok(())
        }
    }
}

/// The approval-policy state of a plan: quorum (`1/2 approvals (bob)`), who
/// approved, and the change window it waits for.
pub fn approval_lines(s: &crate::api::AIPlanStatus) -> Vec<String> {
    let mut out = vec![];
    if let Some(n) = s.approvals_required {
        let who: Vec<&str> = s.approvals.iter().map(|a| a.user.as_str()).collect();
        let names = if who.is_empty() {
            String::new()
        } else {
            format!(" ({})", who.join(", "))
        };
        out.push(format!(
            "approvals: {}/{n} approvals{names}",
            s.approvals.len()
        ));
    }
    if let Some(p) = &s.policy
        && !p.sources.is_empty()
    {
        out.push(format!("policies: {}", p.sources.join(", ")));
    }
    if let Some(c) = s
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::WAITING_FOR_WINDOW && c.status == "True")
    {
        out.push(format!("window: waiting — {}", c.message));
    }
    if let Some(t) = &s.window_opens_at {
        out.push(format!("window opens at {}", t.0));
    }
    if let Some(by) = &s.approved_by {
        out.push(format!("approved by {by}"));
    }
    out
}

fn show(style: &Style, p: &AIPlan) {
    let s = p.status.clone().unwrap_or_default();
    println!(
        "{} {}  request {}  phase {:?}  risk {:?}  plan id {}",
        style.bold("Plan"),
        p.name_any(),
        s.request.clone().unwrap_or_default(),
        s.phase.unwrap_or(PlanPhase::AwaitingApproval),
        s.risk.unwrap_or_default(),
        style.bold(s.plan_id.as_deref().unwrap_or("-"))
    );
    if let Some(c) = &s.cluster {
        println!(
            "{} {}: its steps act in that member cluster",
            style.bold("cluster"),
            style.bold(c)
        );
    }
    if let Some(t) = &s.expires_at {
        println!("expires {}", t.0);
    }
    for l in approval_lines(&s) {
        println!("{l}");
    }
    for (i, step) in s.steps.iter().enumerate() {
        println!(
            "\n{} {} — {} (risk {:?}, {:?})",
            style.bold(&format!("{}.", i + 1)),
            step.tool,
            step.reason,
            step.risk,
            step.state
        );
        println!(
            "   target: {} {}/{}",
            step.target.kind, step.target.namespace, step.target.name
        );
        println!("   before: {}", step.before);
        println!("   preview (server-side dry run):");
        for l in step.preview.clone().unwrap_or_default().lines() {
            println!("     {}", style.diff_line(l));
        }
        for w in &step.admission_warnings {
            println!("   {} {w}", style.bold("admission warning:"));
        }
        for l in verification_lines(step) {
            println!("   {l}");
        }
        println!("   rollback: {}", step.rollback);
        if let Some(m) = &step.message {
            println!("   result: {m}");
        }
        if let Some(m) = &step.rollback_message {
            println!("   rollback result: {m}");
        }
    }
}

/// A step's approved verification and automatic rollback, as the approver reads them.
fn verification_lines(step: &crate::api::PlanStep) -> Vec<String> {
    use crate::api::RollbackKind;
    let mut out = vec![];
    if let Some(v) = &step.verification {
        out.push(format!(
            "verify: {:?} within {}s",
            v.kind, v.timeout_seconds
        ));
    }
    if let Some(r) = &step.rollback_action {
        let why = r.reason.as_deref().unwrap_or("");
        out.push(match r.action {
            RollbackKind::Never => format!("automatic rollback: NEVER — {why}"),
            RollbackKind::Delete => format!("automatic rollback: Delete — {why}"),
            RollbackKind::RestoreBefore => format!(
                "automatic rollback: RestoreBefore — {why} (JSON Patch: {})",
                serde_json::to_string(&r.patch).unwrap_or_default()
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_names_verification_and_never() {
        use crate::api::{PlanStep, RollbackAction, RollbackKind, Verification, VerificationKind};
        let step = PlanStep {
            verification: Some(Verification {
                kind: VerificationKind::RolloutComplete,
                timeout_seconds: 600,
            }),
            rollback_action: Some(RollbackAction {
                action: RollbackKind::Never,
                patch: vec![],
                reason: Some("a deleted pod cannot be restored".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            verification_lines(&step),
            [
                "verify: RolloutComplete within 600s",
                "automatic rollback: NEVER — a deleted pod cannot be restored"
            ]
        );
    }

    #[test]
    fn approval_lines_show_the_quorum_and_the_window() {
        use crate::api::{AIPlanStatus, CountedApproval, WAITING_FOR_WINDOW};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let t: jiff::Timestamp = "2026-01-01T09:00:00Z".parse().unwrap();
        let s = AIPlanStatus {
            approvals_required: Some(2),
            approvals: vec![CountedApproval {
                user: "bob".into(),
                source: "AIPlan spec.approvals".into(),
                at: Time(t),
            }],
            window_opens_at: Some(Time(t)),
            conditions: vec![Condition {
                type_: WAITING_FOR_WINDOW.into(),
                status: "True".into(),
                reason: WAITING_FOR_WINDOW.into(),
                message: "frozen until 2026-01-01T09:00:00Z".into(),
                last_transition_time: Time(t),
                observed_generation: None,
            }],
            ..Default::default()
        };
        let l = approval_lines(&s);
        assert_eq!(l[0], "approvals: 1/2 approvals (bob)");
        assert!(
            l.iter()
                .any(|x| x.contains("window: waiting — frozen until"))
        );
        assert!(
            l.iter()
                .any(|x| x == "window opens at 2026-01-01T09:00:00Z")
        );
        assert!(approval_lines(&AIPlanStatus::default()).is_empty());
    }

    #[test]
    fn errors_say_what_to_do() {
        let api = |code: u16, msg: &str| {
            kube::Error::Api(
                kube::core::Status::failure(msg, "x")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert!(
            explain(
                &api(404, "the server could not find the requested resource"),
                "x"
            )
            .contains("CRDs are not installed")
        );
        assert!(explain(&api(403, "forbidden"), "x").contains("not allowed"));
        assert_eq!(
            explain(&api(404, "aiplans \"p\" not found"), "AIPlan p"),
            "AIPlan p not found"
        );
    }

    #[test]
    fn diff_lines_are_coloured_only_on_terminals() {
        assert_eq!(Style { color: false }.diff_line("+ a"), "+ a");
        assert_eq!(Style { color: true }.diff_line("- a"), "\x1b[31m- a\x1b[0m");
    }
}
