//! The `builtin` planner: deterministic, offline, no network. It parses the
//! intent, investigates with read-only tools, and proposes at most one
//! mutation. What it does not understand gets a helpful answer, never a
//! guessed change.

use async_trait::async_trait;
use jiff::Timestamp;

use super::intent::{Action, Intent, Kind, parse};
use super::{AgentError, Outcome, PlanInput, Planner};
use crate::api::Mode;
use crate::tools::{Mutation, ReadCall, ReadTools, ToolError, WorkloadKind};

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
        let intent = parse(&input.prompt);
        let mut run = Run {
            tools,
            out: Outcome {
                operation: intent.action.label().to_string(),
                ..Default::default()
            },
        };
        let ns = match (&intent.namespace, input.namespace_explicit) {
            (Some(n), false) => n.clone(),
            _ => input.namespace.clone(),
        };
        if input.namespace_explicit
            && let Some(n) = intent.namespace.as_ref().filter(|n| **n != input.namespace)
        {
            run.say(&format!(
                "ℹ️ The prompt mentions namespace `{n}`, but `spec.targetNamespace` is `{}`; I used `{}`.\n\n",
                input.namespace, input.namespace
            ));
        }
        run.act(&intent, &ns, input.mode).await?;
        Ok(run.out)
    }
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
            Action::Blocked(reason) => {
                self.say(&format!("⛔ {reason}. Nothing was planned."));
                Ok(())
            }
            Action::Clarify(msg) => {
                self.say(&format!("🤔 {msg}\n\n{CAPABILITIES}"));
                Ok(())
            }
            Action::Help => {
                self.say(&format!("🤔 I did not understand that request, so nothing was read or planned.\n\n{CAPABILITIES}"));
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
                let m = if i.action == Action::Scale {
                    Mutation::ScaleDeployment {
                        namespace: ns_s,
                        name,
                        kind: workload,
                        replicas: i
                            .replicas
                            .unwrap_or(-1)
                            .clamp(i32::MIN as i64, i32::MAX as i64)
                            as i32,
                    }
                } else {
                    Mutation::RolloutRestart {
                        namespace: ns_s,
                        name,
                        kind: workload,
                        restarted_at: Some(
                            Timestamp::now()
                                .round(jiff::Unit::Second)
                                .unwrap_or(Timestamp::now())
                                .to_string(),
                        ),
                    }
                };
                self.propose(m, mode);
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
