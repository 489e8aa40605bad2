//! Read-only tools: the only tools that run without approval.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    core::v1::{ConfigMap, Event, Namespace, Node, Pod, Service},
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, LogParams},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::format::{age, table};
use super::{ToolError, Workload, WorkloadKind, WorkloadLookup, describe_resolution};
use crate::access::redact;
use crate::api::ToolCall;

/// Objects per list page.
const LIST_PAGE: u32 = 500;
/// Most objects one list tool reads; beyond it the tool says "showing N of M".
pub const LIST_CAP: usize = 2000;

/// A list read in pages and cut at a cap: the objects read, and how many there are in all.
#[derive(Debug)]
pub struct Listed<K> {
    pub items: Vec<K>,
    /// Objects in the list (read or not): the API server's `remainingItemCount` after the
    /// last page read, when it tells.
    pub total: Option<usize>,
    /// Whether reading stopped at the cap with objects left unread.
    pub capped: bool,
}

impl<K> std::ops::Deref for Listed<K> {
    type Target = Vec<K>;
    fn deref(&self) -> &Vec<K> {
        &self.items
    }
}

impl<K> std::ops::DerefMut for Listed<K> {
    fn deref_mut(&mut self) -> &mut Vec<K> {
        &mut self.items
    }
}

impl<K> Listed<K> {
    /// "showing N of M" when the read stopped at the cap; empty otherwise.
    pub fn note(&self, what: &str) -> String {
        if !self.capped {
            return String::new();
        }
        match self.total {
            Some(t) => format!(
                "\n\n(showing the first {} of {t} {what}: the list stops at {LIST_CAP}; narrow it with a label selector)",
                self.items.len()
            ),
            None => format!(
                "\n\n(showing the first {} {what}; there are more: the list stops at {LIST_CAP}; narrow it with a label selector)",
                self.items.len()
            ),
        }
    }
}

/// Lists `api` in pages of [`LIST_PAGE`], stopping after `cap` objects.
pub async fn paged<K>(api: &Api<K>, lp: &ListParams, cap: usize) -> Result<Listed<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut lp = lp.clone().limit(LIST_PAGE);
    loop {
        let page = api.list(&lp).await?;
        let remaining = page.metadata.remaining_item_count;
        let next = page.metadata.continue_.filter(|c| !c.is_empty());
        items.extend(page.items);
        match next {
            None => {
                let total = Some(items.len());
                return Ok(Listed {
                    items,
                    total,
                    capped: false,
                });
            }
            Some(_) if items.len() >= cap => {
                let total = remaining.map(|r| items.len() + r.max(0) as usize);
                return Ok(Listed {
                    items,
                    total,
                    capped: true,
                });
            }
            Some(c) => lp.continue_token = Some(c),
        }
    }
}

/// Longest tool output kept (answers and, later, LLM context stay small).
const MAX_OUTPUT: usize = 16 * 1024;
/// Rows shown in one table.
const MAX_ROWS: usize = 50;

/// A call of a read-only tool, with its arguments. The serialized form is
/// `{"tool": "list_pods", "namespace": "shop", ...}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum ReadCall {
    /// List pods with status, restarts and node.
    ListPods {
        namespace: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label_selector: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_filter: Option<String>,
    },
    /// Details of one pod: containers, state, restarts, conditions.
    GetPodDetails { namespace: String, name: String },
    /// Recent log lines of a pod (secrets redacted).
    GetPodLogs {
        namespace: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail_lines: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_seconds: Option<i64>,
    },
    /// List deployments with ready/desired replicas.
    ListDeployments { namespace: String },
    /// Rollout status of one deployment.
    GetDeploymentStatus { namespace: String, name: String },
    /// List services with type, cluster IP, ports and selector.
    ListServices { namespace: String },
    /// The object as YAML (no Secret data, no managedFields).
    DescribeResource {
        namespace: String,
        kind: String,
        name: String,
    },
    /// Recent events in a namespace, optionally for one object.
    GetEvents {
        namespace: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Nodes, and workloads that are not healthy, across the cluster.
    GetClusterHealth {},
    /// Which Deployment or StatefulSet a name means in a namespace: the match
    /// with its kind, several matches, or close names when there is none.
    /// Call it before proposing a change to a workload named without its kind.
    FindWorkload { namespace: String, name: String },
    /// Root-cause diagnosis of a namespace, or of one object and what belongs to it (a
    /// workload's pods, a Service's pods): findings with evidence, the likely cause and, where
    /// the fix is certain, the proposed fix. Call it first for "why …", "what's wrong with …",
    /// "investigate …" and alerts.
    Diagnose {
        namespace: String,
        /// Pod, Deployment, Service, Job, PersistentVolumeClaim or HorizontalPodAutoscaler.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// The object's name (a workload's name covers its pods).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

impl ReadCall {
    /// The tool's name, as in the seed's toolkit.
    pub fn name(&self) -> &'static str {
        match self {
            ReadCall::ListPods { .. } => "list_pods",
            ReadCall::GetPodDetails { .. } => "get_pod_details",
            ReadCall::GetPodLogs { .. } => "get_pod_logs",
            ReadCall::ListDeployments { .. } => "list_deployments",
            ReadCall::GetDeploymentStatus { .. } => "get_deployment_status",
            ReadCall::ListServices { .. } => "list_services",
            ReadCall::DescribeResource { .. } => "describe_resource",
            ReadCall::GetEvents { .. } => "get_events",
            ReadCall::GetClusterHealth {} => "get_cluster_health",
            ReadCall::FindWorkload { .. } => "find_workload",
            ReadCall::Diagnose { .. } => "diagnose",
        }
    }

    /// Arguments without the tool name (for `status.investigation`).
    pub fn arguments(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("tool");
        }
        v
    }
}

/// Read-only access to the cluster. It has no method that writes.
#[derive(Clone)]
pub struct ReadTools {
    pub(super) client: Client,
    /// When set, every call is first checked against the requester's RBAC.
    authz: Option<crate::access::Authorizer>,
    /// When set, the only namespaces calls may read (cluster-scoped reads stay RBAC's call).
    scope: Option<Vec<String>>,
}

impl ReadTools {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            authz: None,
            scope: None,
        }
    }

    /// Limits every call to these namespaces (`None`: any the RBAC check allows).
    pub fn with_scope(mut self, scope: Option<Vec<String>>) -> Self {
        self.scope = scope;
        self
    }

    /// The first namespace these permissions would read outside the scope.
    fn outside_scope(&self, perms: &[crate::access::Permission]) -> Option<String> {
        let scope = self.scope.as_ref()?;
        perms
            .iter()
            .filter_map(|p| p.namespace.clone())
            .find(|ns| !scope.contains(ns))
    }

    /// Bounds every call by the RBAC of `authz`'s user (SubjectAccessReview).
    pub fn with_authorizer(mut self, authz: Option<crate::access::Authorizer>) -> Self {
        self.authz = authz;
        self
    }

    /// Runs a call, recording it for the investigation log and metrics.
    pub async fn run(&self, call: &ReadCall) -> (Result<String, ToolError>, ToolCall) {
        self.recorded(call, async {
            self.dispatch(call).await.map(|s| {
                let s = redact(&s);
                crate::api::truncate(&s, MAX_OUTPUT)
            })
        })
        .await
    }

    /// Checks `call` against the requester's RBAC, then runs `work` (which
    /// does what `call` says) and records it for the investigation log and metrics.
    pub(super) async fn recorded<T>(
        &self,
        call: &ReadCall,
        work: impl Future<Output = Result<T, ToolError>>,
    ) -> (Result<T, ToolError>, ToolCall) {
        let started = Instant::now();
        let perms = call.permissions();
        let allowed = match (&self.authz, self.outside_scope(&perms)) {
            (_, Some(ns)) => Err(ToolError::Forbidden(format!(
                "this request may only look at namespace {}: its answer is readable by everyone who can read requests there, so it does not read namespace {ns} (set spec.targetNamespace, or ask from a namespace the operator lists in --cross-namespace-from)",
                self.scope
                    .as_deref()
                    .unwrap_or_default()
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            ))),
            (Some(a), None) => a.check(&perms).await,
            (None, None) => Ok(()),
        };
        let result = match allowed {
            Ok(()) => work.await,
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(_) => "Succeeded",
            Err(ToolError::Forbidden(_)) => "Denied",
            Err(_) => "Failed",
        };
        crate::telemetry::metrics().tool_executions(call.name(), outcome);
        let record = ToolCall {
            tool: call.name().into(),
            arguments: call.arguments(),
            outcome: outcome.into(),
            message: result.as_ref().err().map(|e| e.to_string()),
            duration_ms: started.elapsed().as_millis() as i64,
        };
        (result, record)
    }

    pub(super) async fn dispatch(&self, call: &ReadCall) -> Result<String, ToolError> {
        match call {
            ReadCall::ListPods {
                namespace,
                label_selector,
                status_filter,
            } => {
                self.list_pods(
                    namespace,
                    label_selector.as_deref(),
                    status_filter.as_deref(),
                )
                .await
            }
            ReadCall::GetPodDetails { namespace, name } => self.pod_details(namespace, name).await,
            ReadCall::GetPodLogs {
                namespace,
                name,
                container,
                tail_lines,
                since_seconds,
            } => {
                self.pod_logs(
                    namespace,
                    name,
                    container.as_deref(),
                    *tail_lines,
                    *since_seconds,
                )
                .await
            }
            ReadCall::ListDeployments { namespace } => self.list_deployments(namespace).await,
            ReadCall::GetDeploymentStatus { namespace, name } => {
                self.deployment_status(namespace, name).await
            }
            ReadCall::ListServices { namespace } => self.list_services(namespace).await,
            ReadCall::DescribeResource {
                namespace,
                kind,
                name,
            } => self.describe(namespace, kind, name).await,
            ReadCall::GetEvents { namespace, name } => {
                self.events(namespace, name.as_deref()).await
            }
            ReadCall::GetClusterHealth {} => self.cluster_health().await,
            ReadCall::FindWorkload { namespace, name } => {
                let all = self.list_workloads(namespace).await?;
                Ok(describe_resolution(namespace, name, &all))
            }
            ReadCall::Diagnose {
                namespace, name, ..
            } => {
                let findings = self.findings(namespace, name.as_deref()).await?;
                Ok(crate::diagnose::render(
                    namespace,
                    name.as_deref(),
                    &findings,
                ))
            }
        }
    }

    /// The Deployments and StatefulSets of a namespace, by name.
    async fn list_workloads(&self, ns: &str) -> Result<Vec<Workload>, ToolError> {
        let lp = ListParams::default();
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| Self::list_err(e, "deployments", ns))?;
        let statefulsets = Api::<StatefulSet>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await
            .map_err(|e| Self::list_err(e, "statefulsets", ns))?;
        let mut out: Vec<Workload> = deployments
            .items
            .iter()
            .map(|d| Workload {
                kind: WorkloadKind::Deployment,
                name: d.name_any(),
                replicas: d.spec.as_ref().and_then(|s| s.replicas),
            })
            .chain(statefulsets.items.iter().map(|s| Workload {
                kind: WorkloadKind::StatefulSet,
                name: s.name_any(),
                replicas: s.spec.as_ref().and_then(|s| s.replicas),
            }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(super) fn list_err(e: kube::Error, kind: &str, namespace: &str) -> ToolError {
        ToolError::from_kube(e, kind, namespace, "*")
    }

    /// The objects of kind `K` in `ns` a list tool covers (`what` names them in errors). Both
    /// renderings — the tables for people and the compact form for a model — read through here,
    /// so they always describe the same set. Read in pages of [`LIST_PAGE`] and stopped at
    /// [`LIST_CAP`] objects: a namespace with 100 000 pods costs one capped read, and the
    /// renderings say "showing N of M".
    pub(super) async fn listed<K>(
        &self,
        ns: &str,
        what: &str,
        lp: &ListParams,
    ) -> Result<Listed<K>, ToolError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        paged(&Api::<K>::namespaced(self.client.clone(), ns), lp, LIST_CAP)
            .await
            .map_err(|e| Self::list_err(e, what, ns))
    }

    /// The pods `list_pods` covers: by label selector, then by phase.
    pub(super) async fn pods(
        &self,
        ns: &str,
        selector: Option<&str>,
        status: Option<&str>,
    ) -> Result<Listed<Pod>, ToolError> {
        let mut lp = ListParams::default();
        if let Some(s) = selector {
            lp = lp.labels(s);
        }
        let mut pods: Listed<Pod> = self.listed(ns, "pods", &lp).await?;
        pods.retain(|p| status.is_none_or(|f| pod_phase(p).eq_ignore_ascii_case(f)));
        Ok(pods)
    }

    /// The events `get_events` covers: all in `ns`, or those about the object `name`.
    pub(super) async fn events_about(
        &self,
        ns: &str,
        name: Option<&str>,
    ) -> Result<Listed<Event>, ToolError> {
        let mut lp = ListParams::default();
        if let Some(n) = name {
            lp = lp.fields(&format!("involvedObject.name={n}"));
        }
        self.listed(ns, "events", &lp).await
    }

    async fn list_pods(
        &self,
        ns: &str,
        selector: Option<&str>,
        status: Option<&str>,
    ) -> Result<String, ToolError> {
        let pods = self.pods(ns, selector, status).await?;
        let now = Timestamp::now();
        let rows: Vec<Vec<String>> = pods
            .iter()
            .map(|p| {
                let restarts = pod_restarts(p);
                let phase = pod_phase(p);
                let icon = match (phase.as_str(), restarts) {
                    ("Running", 0) | ("Succeeded", _) => "✅",
                    ("Running", _) => "⚠️",
                    _ => "❌",
                };
                vec![
                    p.name_any(),
                    format!("{icon} {phase}"),
                    restarts.to_string(),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_else(|| "Pending".into()),
                    age(p.metadata.creation_timestamp.as_ref(), now),
                ]
            })
            .collect();
        if rows.is_empty() {
            return Ok(format!("No pods found in namespace '{ns}'."));
        }
        Ok(format!(
            "Found {} pods in '{ns}':\n\n{}{}",
            rows.len(),
            table(
                &["Name", "Status", "Restarts", "Node", "Age"],
                &rows[..rows.len().min(MAX_ROWS)]
            ),
            pods.note("pods")
        ))
    }

    async fn pod_details(&self, ns: &str, name: &str) -> Result<String, ToolError> {
        let p = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .map_err(|e| ToolError::from_kube(e, "Pod", ns, name))?;
        let now = Timestamp::now();
        let status = p.status.clone().unwrap_or_default();
        let mut out = format!(
            "**Pod `{name}`** in `{ns}`: {} on node `{}`, IP {}, age {}\n\n",
            pod_phase(&p),
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_else(|| "-".into()),
            status.pod_ip.clone().unwrap_or_else(|| "-".into()),
            age(p.metadata.creation_timestamp.as_ref(), now)
        );
        let rows: Vec<Vec<String>> = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let state = c.state.as_ref().map(|s| {
                    if s.running.is_some() {
                        "Running".to_string()
                    } else if let Some(w) = &s.waiting {
                        format!("Waiting ({})", w.reason.clone().unwrap_or_default())
                    } else if let Some(t) = &s.terminated {
                        format!(
                            "Terminated ({}, exit {})",
                            t.reason.clone().unwrap_or_default(),
                            t.exit_code
                        )
                    } else {
                        "Unknown".to_string()
                    }
                });
                vec![
                    c.name.clone(),
                    c.image.clone(),
                    state.unwrap_or_else(|| "Unknown".into()),
                    c.ready.to_string(),
                    c.restart_count.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Container", "Image", "State", "Ready", "Restarts"],
            &rows,
        ));
        let conds: Vec<String> = status
            .conditions
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        out.push_str(&format!("\nConditions: {}\n", conds.join(", ")));
        Ok(out)
    }

    async fn pod_logs(
        &self,
        ns: &str,
        name: &str,
        container: Option<&str>,
        tail: Option<i64>,
        since: Option<i64>,
    ) -> Result<String, ToolError> {
        let lp = LogParams {
            container: container.map(str::to_string),
            tail_lines: Some(tail.unwrap_or(100).clamp(1, 1000)),
            since_seconds: since,
            // The API server stops here: a pod printing huge lines cannot grow our memory.
            limit_bytes: Some(LOG_LIMIT_BYTES),
            ..Default::default()
        };
        let logs = read_capped_log(&Api::<Pod>::namespaced(self.client.clone(), ns), name, &lp)
            .await
            .map_err(|e| ToolError::from_kube(e, "Pod", ns, name))?;
        if logs.trim().is_empty() {
            return Ok(format!(
                "Pod `{name}` has no log lines in the requested window."
            ));
        }
        Ok(format!(
            "Last log lines of pod `{name}` in `{ns}`:\n\n```\n{}\n```",
            cut_long_lines(logs.trim_end())
        ))
    }

    async fn list_deployments(&self, ns: &str) -> Result<String, ToolError> {
        let list: Listed<Deployment> = self
            .listed(ns, "deployments", &ListParams::default())
            .await?;
        let now = Timestamp::now();
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|d| {
                let (desired, ready, updated, available) = deployment_counts(d);
                vec![
                    d.name_any(),
                    format!("{ready}/{desired}"),
                    updated.to_string(),
                    available.to_string(),
                    age(d.metadata.creation_timestamp.as_ref(), now),
                ]
            })
            .collect();
        if rows.is_empty() {
            return Ok(format!("No deployments found in namespace '{ns}'."));
        }
        Ok(format!(
            "Found {} deployments in '{ns}':\n\n{}{}",
            rows.len(),
            table(
                &["Name", "Ready", "Up-to-date", "Available", "Age"],
                &rows[..rows.len().min(MAX_ROWS)]
            ),
            list.note("deployments")
        ))
    }

    async fn deployment_status(&self, ns: &str, name: &str) -> Result<String, ToolError> {
        let d = Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get(name)
            .await
            .map_err(|e| ToolError::from_kube(e, "Deployment", ns, name))?;
        let (desired, ready, updated, available) = deployment_counts(&d);
        let images: Vec<String> = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect()
            })
            .unwrap_or_default();
        let state = if ready == desired && updated == desired {
            "✅ fully rolled out"
        } else {
            "🔄 rolling out or degraded"
        };
        let conds: Vec<String> = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                format!(
                    "{}={} ({})",
                    c.type_,
                    c.status,
                    c.reason.clone().unwrap_or_default()
                )
            })
            .collect();
        Ok(format!(
            "**Deployment `{name}`** in `{ns}`: {state}\n\n{}\nImages: {}\nConditions: {}\n",
            table(
                &["Desired", "Ready", "Up-to-date", "Available"],
                &[vec![
                    desired.to_string(),
                    ready.to_string(),
                    updated.to_string(),
                    available.to_string()
                ]]
            ),
            images.join(", "),
            conds.join(", ")
        ))
    }

    async fn list_services(&self, ns: &str) -> Result<String, ToolError> {
        let list: Listed<Service> = self.listed(ns, "services", &ListParams::default()).await?;
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|s| {
                let spec = s.spec.clone().unwrap_or_default();
                let ports: Vec<String> = spec
                    .ports
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        format!(
                            "{}/{}",
                            p.port,
                            p.protocol.clone().unwrap_or_else(|| "TCP".into())
                        )
                    })
                    .collect();
                let selector: Vec<String> = spec
                    .selector
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                vec![
                    s.name_any(),
                    spec.type_.unwrap_or_else(|| "ClusterIP".into()),
                    spec.cluster_ip.unwrap_or_else(|| "-".into()),
                    ports.join(","),
                    selector.join(","),
                ]
            })
            .collect();
        if rows.is_empty() {
            return Ok(format!("No services found in namespace '{ns}'."));
        }
        Ok(format!(
            "Found {} services in '{ns}':\n\n{}{}",
            rows.len(),
            table(
                &["Name", "Type", "Cluster IP", "Ports", "Selector"],
                &rows[..rows.len().min(MAX_ROWS)]
            ),
            list.note("services")
        ))
    }

    async fn describe(&self, ns: &str, kind: &str, name: &str) -> Result<String, ToolError> {
        let c = self.client.clone();
        let kind_l = kind.to_ascii_lowercase();
        let get_err = |e| ToolError::from_kube(e, kind, ns, name);
        let mut value = match kind_l.trim_end_matches('s') {
            "pod" | "po" => serde_json::to_value(Api::<Pod>::namespaced(c, ns).get(name).await.map_err(get_err)?),
            "deployment" | "deploy" => {
                serde_json::to_value(Api::<Deployment>::namespaced(c, ns).get(name).await.map_err(get_err)?)
            }
            "statefulset" | "st" => {
                serde_json::to_value(Api::<StatefulSet>::namespaced(c, ns).get(name).await.map_err(get_err)?)
            }
            "daemonset" | "d" => {
                serde_json::to_value(Api::<DaemonSet>::namespaced(c, ns).get(name).await.map_err(get_err)?)
            }
            "service" | "svc" => {
                serde_json::to_value(Api::<Service>::namespaced(c, ns).get(name).await.map_err(get_err)?)
            }
            "configmap" | "cm" => {
                serde_json::to_value(Api::<ConfigMap>::namespaced(c, ns).get(name).await.map_err(get_err)?)
            }
            "node" | "no" => serde_json::to_value(Api::<Node>::all(c).get(name).await.map_err(get_err)?),
            "namespace" | "n" => serde_json::to_value(Api::<Namespace>::all(c).get(name).await.map_err(get_err)?),
            "secret" => {
                return Err(ToolError::Forbidden(
                    "Secret data is never read by Kubilitics AI; use kubectl with your own credentials".into(),
                ));
            }
            _ => {
                return Err(ToolError::Invalid(format!(
                    "describe_resource supports pod, deployment, statefulset, daemonset, service, configmap, node and namespace, not '{kind}'"
                )));
            }
        }
        .map_err(|e| ToolError::Invalid(e.to_string()))?;
        if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("managedFields");
        }
        let yaml =
            serde_norway::to_string(&value).map_err(|e| ToolError::Invalid(e.to_string()))?;
        Ok(format!("```yaml\n{}```", yaml))
    }

    async fn events(&self, ns: &str, name: Option<&str>) -> Result<String, ToolError> {
        let mut events = self.events_about(ns, name).await?;
        let when = |e: &Event| {
            e.last_timestamp
                .clone()
                .or(e
                    .event_time
                    .as_ref()
                    .map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.0)))
                .or(e.metadata.creation_timestamp.clone())
        };
        events.sort_by_key(|e| std::cmp::Reverse(when(e).map(|t| t.0)));
        let now = Timestamp::now();
        let rows: Vec<Vec<String>> = events
            .iter()
            .take(MAX_ROWS)
            .map(|e| {
                let t = e.type_.clone().unwrap_or_default();
                vec![
                    if t == "Warning" {
                        "⚠️ Warning".into()
                    } else {
                        t
                    },
                    e.reason.clone().unwrap_or_default(),
                    format!(
                        "{}/{}",
                        e.involved_object
                            .kind
                            .clone()
                            .unwrap_or_default()
                            .to_lowercase(),
                        e.involved_object.name.clone().unwrap_or_default()
                    ),
                    crate::api::truncate(&e.message.clone().unwrap_or_default(), 160),
                    age(when(e).as_ref(), now),
                ]
            })
            .collect();
        if rows.is_empty() {
            return Ok(format!(
                "No events in namespace '{ns}'{}.",
                name.map(|n| format!(" for '{n}'")).unwrap_or_default()
            ));
        }
        Ok(format!(
            "Recent events in '{ns}':\n\n{}{}",
            table(&["Type", "Reason", "Object", "Message", "Age"], &rows),
            events.note("events")
        ))
    }

    async fn cluster_health(&self) -> Result<String, ToolError> {
        let c = self.client.clone();
        let nodes = Api::<Node>::all(c.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| Self::list_err(e, "nodes", "-"))?;
        let ready = nodes
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        let pods = paged(
            &Api::<Pod>::all(c.clone()),
            &ListParams::default(),
            LIST_CAP,
        )
        .await
        .map_err(|e| Self::list_err(e, "pods", "*"))?;
        let unhealthy: Vec<Vec<String>> = pods
            .items
            .iter()
            .filter(|p| {
                let ph = pod_phase(p);
                !(ph == "Running" || ph == "Succeeded") || pod_restarts(p) > 0
            })
            .take(MAX_ROWS)
            .map(|p| {
                vec![
                    p.namespace().unwrap_or_default(),
                    p.name_any(),
                    pod_phase(p),
                    pod_restarts(p).to_string(),
                ]
            })
            .collect();
        let deployments = paged(&Api::<Deployment>::all(c), &ListParams::default(), LIST_CAP)
            .await
            .map_err(|e| Self::list_err(e, "deployments", "*"))?;
        let degraded: Vec<String> = deployments
            .items
            .iter()
            .filter(|d| {
                let (desired, ready, ..) = deployment_counts(d);
                ready < desired
            })
            .map(|d| format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any()))
            .collect();
        let icon = if ready == nodes.items.len() && unhealthy.is_empty() && degraded.is_empty() {
            "✅"
        } else {
            "⚠️"
        };
        let mut out = format!(
            "{icon} **Cluster health**: {ready}/{} nodes Ready, {} pods, {} deployments ({} degraded).\n",
            nodes.items.len(),
            pods.items.len(),
            deployments.items.len(),
            degraded.len()
        );
        out.push_str(&pods.note("pods"));
        out.push_str(&deployments.note("deployments"));
        if !degraded.is_empty() {
            out.push_str(&format!(
                "\nDegraded deployments: {}\n",
                degraded.join(", ")
            ));
        }
        if !unhealthy.is_empty() {
            out.push_str(&format!(
                "\nPods that are not running or have restarted:\n\n{}",
                table(&["Namespace", "Pod", "Phase", "Restarts"], &unhealthy)
            ));
        }
        Ok(out)
    }
}

/// The live lookup: a `find_workload` call, so the requester's RBAC applies
/// and the lookup shows in `status.investigation`.
#[async_trait]
impl WorkloadLookup for ReadTools {
    async fn workloads(
        &self,
        namespace: &str,
        name: &str,
    ) -> (Result<Vec<Workload>, ToolError>, Option<ToolCall>) {
        let call = ReadCall::FindWorkload {
            namespace: namespace.into(),
            name: name.into(),
        };
        let (result, record) = self.recorded(&call, self.list_workloads(namespace)).await;
        (result, Some(record))
    }
}

pub(super) fn pod_phase(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into())
}

pub(super) fn pod_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

pub(super) fn deployment_counts(d: &Deployment) -> (i32, i32, i32, i32) {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    (
        desired,
        s.ready_replicas.unwrap_or(0),
        s.updated_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}
/// Most bytes of log one `get_pod_logs` call reads (sent as `limitBytes`, and cut here too).
pub const LOG_LIMIT_BYTES: i64 = 256 * 1024;
/// A pod's log, streamed and cut at [`LOG_LIMIT_BYTES`] whatever the kubelet does with
/// `limitBytes`: memory stays bounded by the cap, not by what the pod printed.
async fn read_capped_log(
    api: &Api<Pod>,
    name: &str,
    lp: &LogParams,
) -> Result<String, kube::Error> {
    use futures::AsyncReadExt;
    let stream = api.log_stream(name, lp).await?;
    let mut capped = Box::pin(stream.take(LOG_LIMIT_BYTES as u64));
    let mut buf = Vec::with_capacity(64 * 1024);
    capped
        .read_to_end(&mut buf)
        .await
        .map_err(|e| kube::Error::Service(Box::new(e)))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Longest log line kept; the rest of a line is replaced by a marker.
const LOG_LINE_MAX: usize = 2048;

/// Cuts every line longer than [`LOG_LINE_MAX`] bytes (at a char boundary) and says so.
fn cut_long_lines(logs: &str) -> String {
    logs.lines()
        .map(|l| {
            if l.len() <= LOG_LINE_MAX {
                return l.to_string();
            }
            let mut end = LOG_LINE_MAX;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            format!("{} … [{} more bytes]", &l[..end], l.len() - end)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_log_lines_are_cut_and_say_so() {
        // "x" then 2-byte chars: byte LOG_LINE_MAX falls mid-char, the cut moves back by one.
        let long = format!("x{}", "é".repeat(LOG_LINE_MAX));
        let out = cut_long_lines(&format!("short\n{long}\nend"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "short");
        let kept = LOG_LINE_MAX - 1;
        assert!(lines[1].starts_with(&long[..kept]));
        assert!(lines[1].ends_with(&format!(" … [{} more bytes]", long.len() - kept)));
        assert_eq!(lines[2], "end");
        assert_eq!(cut_long_lines("a\nb"), "a\nb");
    }
}
