//! The `builtin` planner: deterministic, offline, no network. It parses the
//! intent, investigates with read-only tools, and proposes at most one
//! mutation. What it does not understand gets a helpful answer, never a
//! guessed change.

use async_trait::async_trait;
use jiff::Timestamp;

use super::intent::{Action, Intent, Kind, parse};
use super::{AgentError, Outcome, PlanInput, Planner};
use crate::api::{Mode, ToolCall};
use crate::tools::{
    Mutation, ReadCall, ReadTools, Resolution, ToolError, Workload, WorkloadKind, WorkloadLookup,
    describe_resolution, resolve,
};

/// What the builtin planner can do, shown when it cannot help.
pub const CAPABILITIES: &str = "I can help with:\n\
- **Pods**: \"how are my pods doing?\", \"describe pod web-abc\", \"show the last 50 lines of logs for pod web-abc\"\n\
- **Deployments**: \"list deployments\", \"status of deployment nginx\"\n\
- **Services**: \"list services\", \"describe service web\"\n\
- **Events and health**: \"show recent events\", \"is my cluster healthy?\"\n\
- **Changes** (planned, run only after approval): \"scale deployment nginx to 5 replicas\", \
\"restart deployment api\", \"delete pod web-abc\", \"create configmap app-config with LOG_LEVEL=debug\"";

#[derive(Default, Clone)]
pub struct BuiltinPlanner;

#[async_trait]
impl Planner for BuiltinPlanner {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn plan(&self, input: &PlanInput, tools: &ReadTools) -> Result<Outcome, AgentError> {
        let history: Vec<String> = input.history.iter().map(|(p, _)| p.clone()).collect();
        let u = understand(
            &input.prompt,
            &history,
            &input.namespace,
            input.namespace_explicit,
            tools,
        )
        .await?;
        let mut run = Run {
            tools,
            out: Outcome {
                operation: u.operation.clone(),
                investigation: u.investigation.clone(),
                ..Default::default()
            },
        };
        run.say(&u.notes);
        if let Some(reply) = &u.reply {
            run.say(reply);
            return Ok(run.out);
        }
        let changes = u
            .intents
            .iter()
            .filter(|(i, _)| i.action.is_mutation())
            .count();
        let several = u.intents.len() > 1;
        for (k, (intent, ns)) in u.intents.iter().enumerate() {
            if several {
                run.say(&format!(
                    "{}**Step {}**: {}\n\n",
                    if k > 0 { "\n\n" } else { "" },
                    k + 1,
                    describe_step(intent, ns)
                ));
            }
            run.act(intent, ns, input.mode).await?;
        }
        // A request is planned whole or not at all: a step that could not be
        // prepared (its object is missing, or reading it is forbidden) drops the others.
        if !run.out.mutations.is_empty() && run.out.mutations.len() < changes {
            run.out.mutations.clear();
            run.say(
                "\n\n⚠️ Nothing was planned: one of the requested changes cannot be prepared (see above), \
                 and a request is planned whole or not at all.",
            );
        }
        Ok(run.out)
    }
}

/// One thing the builtin planner does for a request, as the tool call it makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The read-only call that answers a question.
    Read(ReadCall),
    /// A change to plan.
    Change(Mutation),
}

/// What the builtin planner made of a request before it reads or plans
/// anything: the actions with their objects resolved, or a reply instead.
#[derive(Clone, Debug, Default)]
pub struct Understanding {
    /// The actions in the order asked, each with its namespace; empty when `reply` is set.
    pub intents: Vec<(Intent, String)>,
    /// Said before the results: which kind a name resolved to, what "it" is, namespace notes.
    pub notes: String,
    /// A refusal or a question back, instead of any action.
    pub reply: Option<String>,
    /// The name lookups made on the way.
    pub investigation: Vec<ToolCall>,
    /// Short label for metrics.
    pub operation: String,
}

impl Understanding {
    /// The tool calls the actions make (the first read of a question, the change of a change).
    pub fn steps(&self) -> Vec<Step> {
        self.intents
            .iter()
            .filter_map(|(i, ns)| step_of(i, ns))
            .collect()
    }

    /// What is said before any tool runs (notes, and the reply if there is one).
    pub fn answer(&self) -> String {
        format!("{}{}", self.notes, self.reply.as_deref().unwrap_or(""))
    }
}

/// The main tool call of a resolved intent.
pub fn step_of(i: &Intent, ns: &str) -> Option<Step> {
    let namespace = ns.to_string();
    let name = i.name.clone().unwrap_or_default();
    let workload = i
        .kind
        .and_then(Kind::workload)
        .unwrap_or(WorkloadKind::Deployment);
    Some(match &i.action {
        Action::ListPods => Step::Read(ReadCall::ListPods {
            namespace,
            label_selector: None,
            status_filter: None,
        }),
        Action::PodDetails => Step::Read(ReadCall::GetPodDetails { namespace, name }),
        Action::PodLogs => Step::Read(ReadCall::GetPodLogs {
            namespace,
            name,
            container: i.container.clone(),
            tail_lines: i.tail_lines,
            since_seconds: i.since_seconds,
        }),
        Action::ListDeployments => Step::Read(ReadCall::ListDeployments { namespace }),
        Action::DeploymentStatus => Step::Read(ReadCall::GetDeploymentStatus { namespace, name }),
        Action::ListServices => Step::Read(ReadCall::ListServices { namespace }),
        Action::Describe => Step::Read(ReadCall::DescribeResource {
            namespace,
            kind: i.kind.map(Kind::as_str).unwrap_or("pod").to_string(),
            name,
        }),
        Action::Events => Step::Read(ReadCall::GetEvents {
            namespace,
            name: i.name.clone(),
        }),
        Action::ClusterHealth => Step::Read(ReadCall::GetClusterHealth {}),
        Action::Diagnose => Step::Read(ReadCall::Diagnose {
            namespace,
            kind: i.kind.map(|k| k.as_str().to_string()),
            name: i.name.clone(),
        }),
        Action::Scale => Step::Change(Mutation::ScaleDeployment {
            namespace,
            name,
            kind: workload,
            // The parser keeps counts within 0..=MAX_REPLICAS.
            replicas: i32::try_from(i.replicas?).ok()?,
        }),
        Action::Restart => Step::Change(Mutation::RolloutRestart {
            namespace,
            name,
            kind: workload,
            restarted_at: Some(
                Timestamp::now()
                    .round(jiff::Unit::Second)
                    .unwrap_or(Timestamp::now())
                    .to_string(),
            ),
        }),
        Action::DeletePod => Step::Change(Mutation::DeletePod { namespace, name }),
        Action::CreateConfigMap => Step::Change(Mutation::CreateConfigmap {
            namespace,
            name,
            data: i.data.clone(),
        }),
        Action::Repeat | Action::Blocked(_) | Action::Clarify(_) | Action::Help => return None,
    })
}

/// "scale deployment `web` to 3 in `shop`".
fn describe_step(i: &Intent, ns: &str) -> String {
    let name = i.name.as_deref().unwrap_or("");
    let kind = i.kind.map(Kind::as_str).unwrap_or("");
    match i.action {
        Action::Scale => format!(
            "scale {kind} `{name}` to {} in `{ns}`",
            i.replicas.unwrap_or_default()
        ),
        Action::Restart => format!("restart {kind} `{name}` in `{ns}`"),
        Action::DeletePod => format!("delete pod `{name}` in `{ns}`"),
        Action::CreateConfigMap => format!("create configmap `{name}` in `{ns}`"),
        _ => format!("{} in `{ns}`", i.action.label()),
    }
}

/// The reply for an intent that is a refusal, a question or help.
fn reply_for(a: &Action) -> String {
    match a {
        Action::Blocked(reason) => format!("⛔ {reason}. Nothing was planned."),
        Action::Clarify(msg) => format!("🤔 {msg}\n\n{CAPABILITIES}"),
        _ => format!(
            "🤔 I did not understand that request, so nothing was read or planned.\n\n{CAPABILITIES}"
        ),
    }
}

/// An object a conversation talked about, and what was done or asked about it.
#[derive(Clone, Debug)]
struct Mentioned {
    name: String,
    kind: Option<Kind>,
    namespace: Option<String>,
    action: Action,
    replicas: Option<i64>,
}

/// Binds "it" and "the same" to the thread: `earlier` are the objects of the
/// latest earlier turn (or action of this request) that named any.
fn bind(intents: Vec<Intent>, earlier: &[Mentioned]) -> Result<Vec<Intent>, Action> {
    let mut out = vec![];
    let mut this_request: Vec<Mentioned> = vec![];
    for mut i in intents {
        if i.action.is_reply() {
            return Err(i.action);
        }
        let context = if this_request.is_empty() {
            earlier
        } else {
            &this_request[..]
        };
        if i.refers_back {
            let mut candidates: Vec<&Mentioned> = vec![];
            for m in context {
                if !candidates
                    .iter()
                    .any(|c| c.name == m.name && c.namespace == m.namespace)
                {
                    candidates.push(m);
                }
            }
            // Several objects: "make it 3" means the one that was scaled, if only one was.
            if candidates.len() > 1 {
                let same: Vec<&Mentioned> = candidates
                    .iter()
                    .copied()
                    .filter(|c| c.action == i.action)
                    .collect();
                if same.len() == 1 {
                    candidates = same;
                }
            }
            match candidates.as_slice() {
                [m] => {
                    i.name = Some(m.name.clone());
                    i.kind = i.kind.filter(|k| k.workload().is_some()).or(m.kind);
                    i.namespace = i.namespace.clone().or(m.namespace.clone());
                    i.refers_back = false;
                }
                [] => {
                    return Err(Action::Clarify(
                        "Which workload do you mean? Nothing earlier in this conversation names one; \
                         e.g. \"scale deployment nginx to 3\"."
                            .into(),
                    ));
                }
                several => {
                    return Err(Action::Clarify(format!(
                        "Which one do you mean: {}? Name it, e.g. \"restart deployment {}\".",
                        several
                            .iter()
                            .map(|m| format!("`{}`", m.name))
                            .collect::<Vec<_>>()
                            .join(" or "),
                        several[0].name
                    )));
                }
            }
        }
        if i.action == Action::Repeat {
            let last = context
                .iter()
                .rev()
                .find(|m| matches!(m.action, Action::Scale | Action::Restart));
            match last {
                Some(m) => {
                    i.action = m.action.clone();
                    if i.action == Action::Scale {
                        i.replicas = m.replicas;
                    }
                }
                None => {
                    return Err(Action::Clarify(
                        "The same as what? I found no earlier scale or restart in this conversation; \
                         say the change, e.g. \"restart deployment api\"."
                            .into(),
                    ));
                }
            }
        }
        this_request.extend(mentioned(&i));
        out.push(i);
    }
    Ok(out)
}

/// What the builtin planner makes of a request: parses it, binds references
/// to the conversation (`history`: earlier prompts, oldest first) and
/// resolves workloads named without their kind through `lookup` (the live
/// cluster, under the requester's RBAC). Reads and plans nothing itself.
pub async fn understand(
    prompt: &str,
    history: &[String],
    namespace: &str,
    namespace_explicit: bool,
    lookup: &dyn WorkloadLookup,
) -> Result<Understanding, AgentError> {
    let mut earlier: Vec<Mentioned> = vec![];
    for h in history.iter().rev().take(20).rev() {
        // An earlier turn that did not name an object keeps the one before it.
        if let Ok(bound) = bind(parse(h), &earlier) {
            let named: Vec<Mentioned> = bound.iter().filter_map(mentioned).collect();
            if !named.is_empty() {
                earlier = named;
            }
        }
    }
    let intents = parse(prompt);
    let mut u = Understanding {
        operation: match intents.as_slice() {
            [one] => one.action.label().to_string(),
            _ => "multiple".into(),
        },
        ..Default::default()
    };
    let intents = match bind(intents, &earlier) {
        Ok(i) => i,
        Err(a) => {
            u.operation = a.label().to_string();
            u.reply = Some(reply_for(&a));
            return Ok(u);
        }
    };
    let mut listed: std::collections::BTreeMap<String, Vec<Workload>> = Default::default();
    for mut i in intents {
        let ns = match (&i.namespace, namespace_explicit) {
            (Some(n), false) => n.clone(),
            _ => namespace.to_string(),
        };
        if namespace_explicit && let Some(n) = i.namespace.as_ref().filter(|n| **n != namespace) {
            u.notes.push_str(&format!(
                "ℹ️ The prompt mentions namespace `{n}`, but `spec.targetNamespace` is `{namespace}`; I used `{namespace}`.\n\n"
            ));
        }
        let needs_kind = matches!(
            i.action,
            Action::Scale | Action::Restart | Action::DeploymentStatus
        ) && i.kind.is_none();
        if needs_kind && let Some(name) = i.name.clone() {
            if !listed.contains_key(&ns) {
                let (found, record) = lookup.workloads(&ns, &name).await;
                u.investigation.extend(record);
                match found {
                    Ok(all) => {
                        listed.insert(ns.clone(), all);
                    }
                    Err(e) if e.is_transient() => {
                        return Err(AgentError::Unavailable(e.to_string()));
                    }
                    Err(e) => {
                        u.reply = Some(format!("❌ {e}\n\nNothing was planned."));
                        u.intents.clear();
                        return Ok(u);
                    }
                }
            }
            let all = listed.get(&ns).map(Vec::as_slice).unwrap_or_default();
            match resolve(&name, all) {
                Resolution::One(w) => {
                    i.kind = Some(Kind::of_workload(w.kind));
                    if i.action == Action::DeploymentStatus && w.kind == WorkloadKind::StatefulSet {
                        i.action = Action::Describe;
                    }
                    if i.action.is_mutation() {
                        u.notes.push_str(&format!(
                            "ℹ️ `{name}` is a {} in namespace `{ns}`; I used it.\n\n",
                            match w.kind {
                                WorkloadKind::Deployment => "Deployment",
                                WorkloadKind::StatefulSet => "StatefulSet",
                            }
                        ));
                    }
                }
                Resolution::Several(_) => {
                    let verb = match i.action {
                        Action::Scale => format!(
                            "scale statefulset {name} to {}",
                            i.replicas.unwrap_or_default()
                        ),
                        Action::Restart => format!("restart statefulset {name}"),
                        _ => format!("status of statefulset {name}"),
                    };
                    u.reply = Some(format!(
                        "🤔 {} For example: \"{verb}\". Nothing was planned.",
                        describe_resolution(&ns, &name, all)
                    ));
                    u.intents.clear();
                    return Ok(u);
                }
                Resolution::Missing { .. } => {
                    u.reply = Some(format!(
                        "❌ {} Nothing was planned.",
                        describe_resolution(&ns, &name, all)
                    ));
                    u.intents.clear();
                    return Ok(u);
                }
            }
        }
        u.intents.push((i, ns));
    }
    Ok(u)
}

/// The object an action is about, for later "it" and "the same".
fn mentioned(i: &Intent) -> Option<Mentioned> {
    let workloadish = matches!(i.action, Action::Scale | Action::Restart)
        || (matches!(i.action, Action::DeploymentStatus | Action::Describe)
            && i.kind.is_none_or(|k| k.workload().is_some()));
    Some(Mentioned {
        name: i.name.clone().filter(|_| workloadish)?,
        kind: i.kind,
        namespace: i.namespace.clone(),
        action: i.action.clone(),
        replicas: i.replicas,
    })
}

struct Run<'a> {
    tools: &'a ReadTools,
    out: Outcome,
}

impl Run<'_> {
    fn say(&mut self, s: &str) {
        self.out.answer.push_str(s);
    }

    /// Runs a read-only tool; `Ok(None)` when the tool failed in a way the
    /// answer already explains (not found, forbidden).
    async fn tool(&mut self, call: ReadCall) -> Result<Option<String>, AgentError> {
        let (result, record) = self.tools.run(&call).await;
        self.out.investigation.push(record);
        match result {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.is_transient() => Err(AgentError::Unavailable(e.to_string())),
            Err(e) => {
                self.say(&format!("❌ {e}\n"));
                Ok(None)
            }
        }
    }

    async fn show(&mut self, call: ReadCall, follow_up: &str) -> Result<(), AgentError> {
        if let Some(s) = self.tool(call).await? {
            self.say(&s);
            if !follow_up.is_empty() {
                self.say(&format!("\n\n{follow_up}"));
            }
        }
        Ok(())
    }

    async fn act(&mut self, i: &Intent, ns: &str, mode: Mode) -> Result<(), AgentError> {
        let ns_s = ns.to_string();
        let name = i.name.clone().unwrap_or_default();
        match &i.action {
            Action::ListPods => {
                self.say(&format!("📊 **Pods in `{ns}`**\n\n"));
                let follow =
                    "Want details? Ask \"describe pod <name>\" or \"show logs of pod <name>\".";
                self.show(
                    ReadCall::ListPods {
                        namespace: ns_s,
                        label_selector: None,
                        status_filter: None,
                    },
                    follow,
                )
                .await
            }
            Action::PodDetails => {
                if let Some(s) = self
                    .tool(ReadCall::GetPodDetails {
                        namespace: ns_s.clone(),
                        name: name.clone(),
                    })
                    .await?
                {
                    self.say(&s);
                    if let Some(ev) = self
                        .tool(ReadCall::GetEvents {
                            namespace: ns_s,
                            name: Some(name.clone()),
                        })
                        .await?
                    {
                        self.say(&format!("\n{ev}"));
                    }
                    self.say(&format!("\n\nNext: \"show logs of pod {name}\"."));
                }
                Ok(())
            }
            Action::PodLogs => {
                let pod = self.resolve_pod(ns, &name).await?;
                let Some(pod) = pod else { return Ok(()) };
                self.show(
                    ReadCall::GetPodLogs {
                        namespace: ns_s,
                        name: pod,
                        container: i.container.clone(),
                        tail_lines: i.tail_lines,
                        since_seconds: i.since_seconds,
                    },
                    "",
                )
                .await
            }
            Action::ListDeployments => {
                self.show(ReadCall::ListDeployments { namespace: ns_s }, "")
                    .await
            }
            Action::DeploymentStatus => {
                self.show(
                    ReadCall::GetDeploymentStatus {
                        namespace: ns_s,
                        name,
                    },
                    "",
                )
                .await
            }
            Action::ListServices => {
                self.show(ReadCall::ListServices { namespace: ns_s }, "")
                    .await
            }
            Action::Describe => {
                let kind = i.kind.map(Kind::as_str).unwrap_or("pod").to_string();
                self.show(
                    ReadCall::DescribeResource {
                        namespace: ns_s,
                        kind,
                        name,
                    },
                    "",
                )
                .await
            }
            Action::Events => {
                self.show(
                    ReadCall::GetEvents {
                        namespace: ns_s,
                        name: i.name.clone(),
                    },
                    "",
                )
                .await
            }
            Action::ClusterHealth => self.show(ReadCall::GetClusterHealth {}, "").await,
            Action::Diagnose => self.diagnose(i, ns, mode).await,
            Action::Blocked(_) | Action::Clarify(_) | Action::Help | Action::Repeat => {
                // `understand` turns these into its reply (and "the same" into its
                // action) before any step runs.
                self.say(&reply_for(&i.action));
                Ok(())
            }
            Action::Scale | Action::Restart => {
                let workload = i
                    .kind
                    .and_then(Kind::workload)
                    .unwrap_or(WorkloadKind::Deployment);
                let call = match workload {
                    WorkloadKind::Deployment => ReadCall::GetDeploymentStatus {
                        namespace: ns_s.clone(),
                        name: name.clone(),
                    },
                    WorkloadKind::StatefulSet => ReadCall::DescribeResource {
                        namespace: ns_s.clone(),
                        kind: "statefulset".into(),
                        name: name.clone(),
                    },
                };
                let Some(state) = self.tool(call).await? else {
                    if workload == WorkloadKind::Deployment {
                        self.show(ReadCall::ListDeployments { namespace: ns_s }, "")
                            .await?;
                    }
                    return Ok(());
                };
                if workload == WorkloadKind::Deployment {
                    self.say(&format!("**Current state**\n\n{state}\n"));
                }
                if let Some(Step::Change(m)) = step_of(i, ns) {
                    self.propose(m, mode);
                }
                Ok(())
            }
            Action::DeletePod => {
                if self
                    .tool(ReadCall::GetPodDetails {
                        namespace: ns_s.clone(),
                        name: name.clone(),
                    })
                    .await?
                    .is_some()
                {
                    self.propose(
                        Mutation::DeletePod {
                            namespace: ns_s,
                            name,
                        },
                        mode,
                    );
                }
                Ok(())
            }
            Action::CreateConfigMap => {
                self.propose(
                    Mutation::CreateConfigmap {
                        namespace: ns_s,
                        name,
                        data: i.data.clone(),
                    },
                    mode,
                );
                Ok(())
            }
        }
    }

    /// Runs the `diagnose` tool and proposes the one fix it is certain of (the first finding's):
    /// a plan step like any other, which waits for an approval.
    async fn diagnose(&mut self, i: &Intent, ns: &str, mode: Mode) -> Result<(), AgentError> {
        let kind = i.kind.map(|k| k.as_str());
        let name = i.name.as_deref();
        let (result, record) = self.tools.diagnose(ns, kind, name).await;
        self.out.investigation.push(record);
        let findings = match result {
            Ok(f) => f,
            Err(e) if e.is_transient() => return Err(AgentError::Unavailable(e.to_string())),
            Err(e) => {
                self.say(&format!("❌ {e}\n"));
                return Ok(());
            }
        };
        // A name that matched nothing: say so, then look at the whole namespace.
        let mut scope = name;
        let findings = if findings.is_empty() && name.is_some() {
            let (all, record) = self.tools.diagnose(ns, None, None).await;
            self.out.investigation.push(record);
            let all = all.unwrap_or_default();
            if !all.is_empty() {
                scope = None;
                self.say(&format!(
                    "ℹ️ Nothing is wrong with `{}` itself; other problems in `{ns}`:\n\n",
                    name.unwrap_or_default()
                ));
            }
            all
        } else {
            findings
        };
        self.say(&crate::access::redact(&crate::diagnose::render(
            ns, scope, &findings,
        )));
        if let Some(fix) = findings.iter().find_map(|f| f.fix.clone()) {
            self.propose(fix, mode);
        }
        Ok(())
    }

    fn propose(&mut self, m: Mutation, mode: Mode) {
        if mode == Mode::ReadOnly {
            self.say(&format!(
                "\nℹ️ This request is `ReadOnly`, so no plan was created. The change would be: `{}` on `{}/{}`.",
                m.tool_name(),
                m.namespace(),
                m.name()
            ));
        } else {
            self.out.mutations.push(m);
        }
    }

    /// Finds the pod the user means: the exact name, or the single pod whose
    /// name starts with it (e.g. a deployment's name).
    async fn resolve_pod(&mut self, ns: &str, name: &str) -> Result<Option<String>, AgentError> {
        let (exact, _) = self
            .tools
            .run(&ReadCall::GetPodDetails {
                namespace: ns.into(),
                name: name.into(),
            })
            .await;
        match exact {
            Ok(_) => Ok(Some(name.to_string())),
            Err(ToolError::NotFound { .. }) => {
                let listing = self
                    .tool(ReadCall::ListPods {
                        namespace: ns.into(),
                        label_selector: None,
                        status_filter: None,
                    })
                    .await?
                    .unwrap_or_default();
                let prefix = format!("| {name}-");
                let matches: Vec<String> = listing
                    .lines()
                    .filter(|l| l.starts_with(&prefix))
                    .filter_map(|l| l.split('|').nth(1).map(|s| s.trim().to_string()))
                    .collect();
                match matches.as_slice() {
                    [] => {
                        self.say(&format!("❌ Pod '{name}' not found in namespace '{ns}'.\n"));
                        Ok(None)
                    }
                    [first, rest @ ..] => {
                        if !rest.is_empty() {
                            self.say(&format!(
                                "ℹ️ {} pods match `{name}`; showing `{first}`.\n\n",
                                matches.len()
                            ));
                        }
                        Ok(Some(first.clone()))
                    }
                }
            }
            Err(e) if e.is_transient() => Err(AgentError::Unavailable(e.to_string())),
            Err(e) => {
                self.say(&format!("❌ {e}\n"));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of (namespace, kind, name) workloads.
    struct Fake(Vec<(&'static str, WorkloadKind, &'static str)>);

    #[async_trait]
    impl WorkloadLookup for Fake {
        async fn workloads(
            &self,
            namespace: &str,
            _name: &str,
        ) -> (Result<Vec<Workload>, ToolError>, Option<ToolCall>) {
            let found = self
                .0
                .iter()
                .filter(|w| w.0 == namespace)
                .map(|w| Workload {
                    kind: w.1,
                    name: w.2.into(),
                    replicas: Some(1),
                })
                .collect();
            (Ok(found), None)
        }
    }

    /// A requester without `list deployments`.
    struct Denied;

    #[async_trait]
    impl WorkloadLookup for Denied {
        async fn workloads(
            &self,
            _: &str,
            _: &str,
        ) -> (Result<Vec<Workload>, ToolError>, Option<ToolCall>) {
            (
                Err(ToolError::Forbidden(
                    "alice may not list deployments.apps in namespace team (missing RBAC permission)"
                        .into(),
                )),
                None,
            )
        }
    }

    const D: WorkloadKind = WorkloadKind::Deployment;
    const S: WorkloadKind = WorkloadKind::StatefulSet;

    fn cluster() -> Fake {
        Fake(vec![
            ("team", D, "billing"),
            ("team", S, "ledger"),
            ("team", D, "mailer"),
            ("team", D, "twin"),
            ("team", S, "twin"),
            ("finance", D, "billing"),
        ])
    }

    async fn understood(
        prompt: &str,
        history: &[&str],
        lookup: &dyn WorkloadLookup,
    ) -> Understanding {
        let history: Vec<String> = history.iter().map(|h| h.to_string()).collect();
        understand(prompt, &history, "team", false, lookup)
            .await
            .unwrap()
    }

    /// (tool, namespace/name, kind, replicas) of each change.
    fn changes(u: &Understanding) -> Vec<String> {
        u.steps()
            .into_iter()
            .filter_map(|s| match s {
                Step::Change(Mutation::ScaleDeployment {
                    namespace,
                    name,
                    kind,
                    replicas,
                }) => Some(format!("scale {kind:?} {namespace}/{name} {replicas}")),
                Step::Change(Mutation::RolloutRestart {
                    namespace,
                    name,
                    kind,
                    ..
                }) => Some(format!("restart {kind:?} {namespace}/{name}")),
                Step::Change(m) => {
                    Some(format!("{} {}/{}", m.tool_name(), m.namespace(), m.name()))
                }
                Step::Read(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_name_without_kind_resolves_against_the_cluster() {
        let c = cluster();
        let u = understood("scale billing up to 4", &[], &c).await;
        assert_eq!(changes(&u), ["scale Deployment team/billing 4"], "{u:?}");
        assert!(u.notes.contains("is a Deployment"), "{}", u.notes);
        let u = understood("pls restart ledger", &[], &c).await;
        assert_eq!(changes(&u), ["restart StatefulSet team/ledger"]);
        // The namespace the prompt names is where the name is looked up.
        let u = understood("restart billing.finance", &[], &c).await;
        assert_eq!(changes(&u), ["restart Deployment finance/billing"]);
        // Several of that name: ask, listing them; none: say so, with close names.
        let u = understood("scale twin to 2", &[], &c).await;
        let r = u.reply.clone().unwrap_or_default();
        assert!(
            u.steps().is_empty()
                && r.contains("Deployment `twin`")
                && r.contains("StatefulSet `twin`"),
            "{r}"
        );
        let u = understood("restart biling", &[], &c).await;
        let r = u.reply.clone().unwrap_or_default();
        assert!(
            u.steps().is_empty() && r.contains("Did you mean Deployment `billing`"),
            "{r}"
        );
        let u = understood("restart mailer -n empty", &[], &c).await;
        assert!(u.reply.unwrap_or_default().contains("it has none"));
        // The lookup runs under the requester's RBAC.
        let u = understood("restart mailer", &[], &Denied).await;
        assert!(u.steps().is_empty() && u.reply.unwrap_or_default().contains("may not list"));
        // A workload's status, kind resolved too.
        let u = understood("what's the rollout status of ledger", &[], &c).await;
        assert!(
            matches!(&u.steps()[..], [Step::Read(ReadCall::DescribeResource { kind, .. })] if kind == "statefulset"),
            "{u:?}"
        );
    }

    #[tokio::test]
    async fn several_changes_make_one_plan_or_none() {
        let c = cluster();
        let u = understood("restart mailer and then scale ledger to 0", &[], &c).await;
        assert_eq!(
            changes(&u),
            [
                "restart Deployment team/mailer",
                "scale StatefulSet team/ledger 0"
            ]
        );
        assert_eq!(u.operation, "multiple");
        // One unknown name: nothing is planned.
        let u = understood("restart mailer and restart ghost", &[], &c).await;
        assert!(u.steps().is_empty() && u.reply.is_some(), "{u:?}");
    }

    #[tokio::test]
    async fn conversations_bind_it_and_the_same() {
        let c = cluster();
        let u = understood("ok, set it to 2", &["scale mailer to 6"], &c).await;
        assert_eq!(changes(&u), ["scale Deployment team/mailer 2"]);
        let u = understood("bounce it please", &["status of deployment mailer"], &c).await;
        assert_eq!(changes(&u), ["restart Deployment team/mailer"]);
        // The namespace of the earlier turn comes along.
        let u = understood(
            "actually 5 replicas",
            &["scale billing to 2 -n finance"],
            &c,
        )
        .await;
        assert_eq!(changes(&u), ["scale Deployment finance/billing 5"]);
        // "the same" repeats the last change, count included.
        let u = understood("same for mailer", &["scale billing to 3"], &c).await;
        assert_eq!(changes(&u), ["scale Deployment team/mailer 3"]);
        // A turn that named nothing keeps the object before it.
        let u = understood(
            "restart it",
            &["scale ledger to 2", "show the events please"],
            &c,
        )
        .await;
        assert_eq!(changes(&u), ["restart StatefulSet team/ledger"]);
        // Two objects, nothing to tell them apart: ask.
        let u = understood(
            "restart it",
            &["scale mailer to 1 and scale billing to 1"],
            &c,
        )
        .await;
        assert!(u.steps().is_empty() && u.reply.unwrap_or_default().contains("Which one"));
        // Nothing earlier: ask.
        let u = understood("restart that", &[], &c).await;
        assert!(u.steps().is_empty() && u.reply.is_some());
        let u = understood("same for mailer", &[], &c).await;
        assert!(u.steps().is_empty() && u.reply.is_some());
    }

    #[tokio::test]
    async fn refusals_come_before_lookups() {
        // Over the maximum: said at once, no lookup (which would fail here).
        let u = understood("scale billing to 4000", &[], &Denied).await;
        let r = u.reply.clone().unwrap_or_default();
        assert!(u.steps().is_empty() && r.contains("maximum of 1000"), "{r}");
        let u = understood("scale billing to -4", &[], &Denied).await;
        assert!(u.reply.unwrap_or_default().contains("cannot be negative"));
        let u = understood("scale billing to 1 and delete node n-1", &[], &cluster()).await;
        assert!(u.steps().is_empty() && u.reply.unwrap_or_default().contains("not allowed"));
    }

    #[tokio::test]
    async fn an_explicit_target_namespace_wins() {
        let history: Vec<String> = vec![];
        let u = understand(
            "restart mailer in finance",
            &history,
            "team",
            true,
            &cluster(),
        )
        .await
        .unwrap();
        assert_eq!(changes(&u), ["restart Deployment team/mailer"]);
        assert!(
            u.notes.contains("`spec.targetNamespace` is `team`"),
            "{}",
            u.notes
        );
    }
}
