//! Mutating tools. This module can *plan* a mutation (read the live object,
//! ask the API server for a dry run, say how to undo it) and *check* a live
//! object against a plan. Applying it needs an [`crate::approval::Approved`]
//! token, which only the approval gate can mint.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Pod},
};
use kube::{
    Client,
    api::{
        Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams,
        Preconditions,
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ToolError;
use crate::api::{MANAGER, PlanStep, Risk, StepState, StepTarget};
use crate::approval::Approved;

/// Annotation `kubectl rollout restart` sets; we set the same one.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Workloads that scale and restart.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    fn resource(self) -> ApiResource {
        match self {
            WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
            WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        }
    }

    /// Lower-case name as kubectl spells it.
    pub fn kubectl(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

/// Kinds `patch_resource` and `apply_manifest` may touch: namespaced only,
/// never Secret, RBAC or cluster-scoped kinds. (kind, group, version, plural)
pub const GENERIC_KINDS: &[(&str, &str, &str, &str)] = &[
    ("Deployment", "apps", "v1", "deployments"),
    ("StatefulSet", "apps", "v1", "statefulsets"),
    ("DaemonSet", "apps", "v1", "daemonsets"),
    ("Service", "", "v1", "services"),
    ("ConfigMap", "", "v1", "configmaps"),
    ("Pod", "", "v1", "pods"),
    ("Job", "batch", "v1", "jobs"),
    ("CronJob", "batch", "v1", "cronjobs"),
    (
        "HorizontalPodAutoscaler",
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
    ),
    (
        "NetworkPolicy",
        "networking.k8s.io",
        "v1",
        "networkpolicies",
    ),
    ("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims"),
];

/// The allowlist entry of a kind (case-insensitive).
pub fn generic_kind(
    kind: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    GENERIC_KINDS
        .iter()
        .find(|(k, ..)| k.eq_ignore_ascii_case(kind))
}

fn generic_resource(kind: &str) -> Option<ApiResource> {
    generic_kind(kind).map(|(k, g, v, plural)| {
        ApiResource::from_gvk_with_plural(&kube::core::GroupVersionKind::gvk(g, v, k), plural)
    })
}

/// How `patch_resource` patches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum PatchStrategy {
    /// JSON merge patch (RFC 7386).
    #[default]
    Merge,
    /// Kubernetes strategic merge patch (lists merged by key, e.g. containers by name).
    Strategic,
}

/// A change the agent wants to make. It only ever becomes a plan step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum Mutation {
    /// Scale a deployment or statefulset to 0–1000 replicas.
    ScaleDeployment {
        namespace: String,
        name: String,
        #[serde(default)]
        kind: WorkloadKind,
        replicas: i32,
    },
    /// Restart the pods of a deployment or statefulset (like `kubectl rollout restart`).
    RolloutRestart {
        namespace: String,
        name: String,
        #[serde(default)]
        kind: WorkloadKind,
        /// Value of the restartedAt annotation, fixed when planned so a retry is idempotent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restarted_at: Option<String>,
    },
    /// Delete one pod (its controller, if any, replaces it).
    DeletePod { namespace: String, name: String },
    /// Create a ConfigMap with literal data.
    CreateConfigmap {
        namespace: String,
        name: String,
        data: BTreeMap<String, String>,
    },
    /// Patch a namespaced object of an allowlisted kind (e.g. change an image, a probe, a
    /// Service selector). The plan carries the server-side dry-run diff.
    PatchResource {
        namespace: String,
        /// Deployment, StatefulSet, DaemonSet, Service, ConfigMap, Pod, Job, CronJob,
        /// HorizontalPodAutoscaler, NetworkPolicy or PersistentVolumeClaim.
        kind: String,
        name: String,
        /// The patch document, e.g. {"spec": {"selector": {"app": "web"}}}.
        patch: Value,
        #[serde(default)]
        strategy: PatchStrategy,
    },
    /// Create a new namespaced object of an allowlisted kind by server-side apply.
    ApplyManifest {
        namespace: String,
        /// The complete object (apiVersion, kind, metadata.name, …).
        manifest: Value,
    },
}

/// How a live object relates to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Still as planned: the step has not run.
    NotApplied,
    /// Already in the state the step produces.
    Applied,
    /// Neither: someone else changed it.
    Drifted(String),
}

impl Mutation {
    pub fn tool_name(&self) -> &'static str {
        match self {
            Mutation::ScaleDeployment { .. } => "scale_deployment",
            Mutation::RolloutRestart { .. } => "rollout_restart",
            Mutation::DeletePod { .. } => "delete_pod",
            Mutation::CreateConfigmap { .. } => "create_configmap",
            Mutation::PatchResource { .. } => "patch_resource",
            Mutation::ApplyManifest { .. } => "apply_manifest",
        }
    }

    /// The kind the step acts on, as written in the arguments.
    fn kind_name(&self) -> String {
        match self {
            Mutation::PatchResource { kind, .. } => kind.clone(),
            Mutation::ApplyManifest { manifest, .. } => {
                manifest["kind"].as_str().unwrap_or("").to_string()
            }
            _ => self.resource().kind,
        }
    }

    /// Checks what the generic tools may touch; the built-in tools always pass.
    pub fn validate(&self) -> Result<(), String> {
        let kind = self.kind_name();
        let (k, g, v, _) = match self {
            Mutation::PatchResource { .. } | Mutation::ApplyManifest { .. } => generic_kind(&kind)
                .ok_or_else(|| {
                    format!(
                        "kind '{kind}' is not on the allowlist of {} ({})",
                        self.tool_name(),
                        GENERIC_KINDS
                            .iter()
                            .map(|k| k.0)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?,
            _ => return Ok(()),
        };
        if self.name().is_empty() {
            return Err(format!("{} needs a name", self.tool_name()));
        }
        match self {
            Mutation::PatchResource { patch, .. } if !patch.is_object() => {
                Err("patch_resource needs a JSON object as the patch".into())
            }
            Mutation::ApplyManifest {
                manifest,
                namespace,
            } => {
                let api_version = if g.is_empty() {
                    v.to_string()
                } else {
                    format!("{g}/{v}")
                };
                if manifest["apiVersion"].as_str() != Some(api_version.as_str()) {
                    return Err(format!(
                        "apply_manifest: a {k} must have apiVersion {api_version}"
                    ));
                }
                match manifest
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                {
                    Some(ns) if ns != namespace => Err(format!(
                        "apply_manifest: metadata.namespace {ns} is not {namespace}"
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// The operation verb and lower-case kind, for guardrails (`("delete", "pod")`).
    pub fn operation(&self) -> (&'static str, &'static str) {
        match self {
            Mutation::ScaleDeployment { kind, .. } => ("scale", kind.kubectl()),
            Mutation::RolloutRestart { kind, .. } => ("restart", kind.kubectl()),
            Mutation::DeletePod { .. } => ("delete", "pod"),
            Mutation::CreateConfigmap { .. } => ("create", "configmap"),
            Mutation::PatchResource { kind, .. } => ("patch", lower_kind(kind)),
            Mutation::ApplyManifest { manifest, .. } => (
                "create",
                lower_kind(manifest["kind"].as_str().unwrap_or("")),
            ),
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Mutation::ScaleDeployment { namespace, .. }
            | Mutation::RolloutRestart { namespace, .. }
            | Mutation::DeletePod { namespace, .. }
            | Mutation::CreateConfigmap { namespace, .. }
            | Mutation::PatchResource { namespace, .. }
            | Mutation::ApplyManifest { namespace, .. } => namespace,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Mutation::ScaleDeployment { name, .. }
            | Mutation::RolloutRestart { name, .. }
            | Mutation::DeletePod { name, .. }
            | Mutation::CreateConfigmap { name, .. }
            | Mutation::PatchResource { name, .. } => name,
            Mutation::ApplyManifest { manifest, .. } => manifest
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(""),
        }
    }

    fn resource(&self) -> ApiResource {
        match self {
            Mutation::ScaleDeployment { kind, .. } | Mutation::RolloutRestart { kind, .. } => {
                kind.resource()
            }
            Mutation::DeletePod { .. } => ApiResource::erase::<Pod>(&()),
            Mutation::CreateConfigmap { .. } => ApiResource::erase::<ConfigMap>(&()),
            // validate() refuses kinds off the allowlist before any call is made.
            Mutation::PatchResource { kind, .. } => {
                generic_resource(kind).unwrap_or_else(|| ApiResource::erase::<ConfigMap>(&()))
            }
            Mutation::ApplyManifest { manifest, .. } => {
                generic_resource(manifest["kind"].as_str().unwrap_or(""))
                    .unwrap_or_else(|| ApiResource::erase::<ConfigMap>(&()))
            }
        }
    }

    /// Arguments as stored in the plan (the serialized mutation without its tool name).
    pub fn arguments(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("tool");
        }
        v
    }

    /// Rebuilds a mutation from a stored step.
    pub fn from_step(step: &PlanStep) -> Result<Self, ToolError> {
        let mut v = step.arguments.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("tool".into(), Value::String(step.tool.clone()));
        }
        serde_json::from_value(v)
            .map_err(|e| ToolError::Invalid(format!("step '{}': {e}", step.tool)))
    }

    fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), self.namespace(), &self.resource())
    }

    fn not_found(&self, e: kube::Error) -> ToolError {
        ToolError::from_kube(e, &self.resource().kind, self.namespace(), self.name())
    }

    /// Reads the live target, `None` when it does not exist.
    pub async fn read_live(&self, client: &Client) -> Result<Option<Value>, ToolError> {
        match self.api(client).get_opt(self.name()).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).unwrap_or_default())),
            Err(e) => Err(self.not_found(e)),
        }
    }

    /// Plans the mutation: reads the live object, asks the API server for a
    /// dry run, and returns the step (risk filled in by the caller's guardrails).
    pub async fn prepare(&self, client: &Client) -> Result<PlanStep, ToolError> {
        self.validate().map_err(ToolError::Invalid)?;
        let live = self.read_live(client).await?;
        let res = self.resource();
        let (ns, name) = (self.namespace().to_string(), self.name().to_string());
        let mut target = StepTarget {
            api_version: res.api_version.clone(),
            kind: res.kind.clone(),
            namespace: ns.clone(),
            name: name.clone(),
            uid: live
                .as_ref()
                .and_then(|l| l.pointer("/metadata/uid"))
                .and_then(Value::as_str)
                .map(String::from),
        };
        let dry = PatchParams {
            field_manager: Some(MANAGER.into()),
            dry_run: true,
            ..Default::default()
        };
        let mut warnings = vec![];
        let live_before = live.clone();
        // The dry-run result of a generic patch: its rollback restores exactly what it changes.
        let mut patched: Option<Value> = None;
        let (before, preview, rollback, reason) = match self {
            Mutation::ScaleDeployment { kind, replicas, .. } => {
                let live = live.ok_or_else(|| self.not_found(missing()))?;
                let current = live
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let after = self
                    .dry_run(
                        client,
                        self.raw().patch(
                            &name,
                            &dry,
                            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                        ),
                        &mut warnings,
                    )
                    .await?;
                (
                    json!({"replicas": current}),
                    diff(&live, &serde_json::to_value(after).unwrap_or_default()),
                    format!(
                        "kubectl scale {} {name} -n {ns} --replicas={current}",
                        kind.kubectl()
                    ),
                    format!(
                        "Scale {} `{name}` from {current} to {replicas} replicas",
                        kind.kubectl()
                    ),
                )
            }
            Mutation::RolloutRestart {
                kind, restarted_at, ..
            } => {
                let live = live.ok_or_else(|| self.not_found(missing()))?;
                let previous = restarted_at_of(&live);
                let after = self
                    .dry_run(
                        client,
                        self.raw().patch(
                            &name,
                            &dry,
                            &Patch::Merge(restart_patch(restarted_at.as_deref())),
                        ),
                        &mut warnings,
                    )
                    .await?;
                (
                    json!({"restartedAt": previous}),
                    diff(&live, &serde_json::to_value(after).unwrap_or_default()),
                    format!(
                        "A restart replaces pods with identical ones; to return to the previous revision: kubectl rollout undo {} {name} -n {ns}",
                        kind.kubectl()
                    ),
                    format!("Restart all pods of {} `{name}` (rolling)", kind.kubectl()),
                )
            }
            Mutation::DeletePod { .. } => {
                let live = live.ok_or_else(|| self.not_found(missing()))?;
                let dp = DeleteParams {
                    dry_run: true,
                    preconditions: target.uid.clone().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                self.dry_run(client, self.raw().delete(&name, &dp), &mut warnings)
                    .await?;
                let owner = live
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .and_then(|o| {
                        o.iter()
                            .find(|r| r.get("controller") == Some(&Value::Bool(true)))
                    })
                    .map(|r| {
                        format!(
                            "{} {}",
                            r["kind"].as_str().unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        )
                    });
                let node = live
                    .pointer("/spec/nodeName")
                    .cloned()
                    .unwrap_or(Value::Null);
                let phase = live
                    .pointer("/status/phase")
                    .cloned()
                    .unwrap_or(Value::Null);
                (
                    json!({"exists": true, "phase": phase, "node": node, "owner": owner}),
                    format!("- Pod {ns}/{name} will be deleted (server-side dry run accepted)"),
                    match &owner {
                        Some(o) => {
                            format!("Nothing to undo: {o} creates a replacement pod automatically")
                        }
                        None => format!(
                            "The pod has no controller: re-create it from the manifest recorded in the StepStarted event (kubectl apply -n {ns} -f <manifest>)"
                        ),
                    },
                    format!("Delete pod `{name}`"),
                )
            }
            Mutation::PatchResource {
                kind,
                patch,
                strategy,
                ..
            } => {
                let live = live.ok_or_else(|| self.not_found(missing()))?;
                let after = self
                    .dry_run(
                        client,
                        self.raw().patch(&name, &dry, &patch_of(*strategy, patch)),
                        &mut warnings,
                    )
                    .await?;
                let after = serde_json::to_value(after).unwrap_or_default();
                patched = Some(after.clone());
                let (old, new) = changed_fields(&live, &after);
                if new.is_empty() {
                    return Err(ToolError::Invalid(format!(
                        "the patch changes nothing on {kind} {name}"
                    )));
                }
                let undo = if kind.eq_ignore_ascii_case("deployment") {
                    format!(
                        "kubectl rollout undo deployment/{name} -n {ns}, or restore: {}",
                        serde_json::to_string(&old).unwrap_or_default()
                    )
                } else {
                    format!(
                        "restore the previous values: {}",
                        serde_json::to_string(&old).unwrap_or_default()
                    )
                };
                (
                    json!({"fields": old, "after": new}),
                    diff(&live, &after),
                    undo,
                    format!("Patch {kind} `{name}` ({} field(s))", new.len()),
                )
            }
            Mutation::ApplyManifest { manifest, .. } => {
                if live.is_some() {
                    return Err(ToolError::Invalid(format!(
                        "{} '{name}' already exists in namespace '{ns}'; apply_manifest only creates new objects (use patch_resource)",
                        res.kind
                    )));
                }
                let created = self
                    .dry_run(
                        client,
                        self.raw().patch(
                            &name,
                            &PatchParams {
                                dry_run: true,
                                ..PatchParams::apply(MANAGER)
                            },
                            &Patch::Apply(manifest),
                        ),
                        &mut warnings,
                    )
                    .await?;
                let created = serde_json::to_value(created).unwrap_or_default();
                target.uid = None;
                let (_, new) = changed_fields(&json!({}), &created);
                (
                    json!({"exists": false, "after": new}),
                    diff(&json!({}), &created),
                    format!("kubectl delete {} {name} -n {ns}", res.kind.to_lowercase()),
                    format!("Create {} `{name}` by server-side apply", res.kind),
                )
            }
            Mutation::CreateConfigmap { data, .. } => {
                if live.is_some() {
                    return Err(ToolError::Invalid(format!(
                        "ConfigMap '{name}' already exists in namespace '{ns}'; choose another name"
                    )));
                }
                let pp = PostParams {
                    dry_run: true,
                    field_manager: Some(MANAGER.into()),
                };
                let cm = self.configmap_object(data)?;
                let created = self
                    .dry_run(
                        client,
                        self.raw().create(
                            &pp,
                            serde_json::to_vec(&cm)
                                .map_err(|e| ToolError::Invalid(e.to_string()))?,
                        ),
                        &mut warnings,
                    )
                    .await?;
                target.uid = None;
                let keys: Vec<&String> = data.keys().collect();
                (
                    json!({"exists": false}),
                    diff(
                        &json!({}),
                        &serde_json::to_value(created).unwrap_or_default(),
                    ),
                    format!("kubectl delete configmap {name} -n {ns}"),
                    format!("Create ConfigMap `{name}` with keys {keys:?}"),
                )
            }
        };
        let verification = Some(super::verify_plan::verification_of(
            self,
            live_before.as_ref(),
            &before,
        ));
        let rollback_action = Some(super::verify_plan::rollback_of(
            self,
            live_before.as_ref(),
            patched.as_ref(),
            &target,
        ));
        Ok(PlanStep {
            verification,
            rollback_action,
            admission_warnings: warnings,
            tool: self.tool_name().into(),
            arguments: self.arguments(),
            target,
            risk: Risk::Low,
            reason,
            before,
            preview: Some(preview),
            rollback,
            rollback_message: None,
            state: StepState::Pending,
            started_at: None,
            finished_at: None,
            message: None,
        })
    }

    /// A raw request builder for this mutation's resource in its namespace.
    fn raw(&self) -> kube::core::Request {
        use kube::Resource;
        kube::core::Request::new(DynamicObject::url_path(
            &self.resource(),
            Some(self.namespace()),
        ))
    }

    /// Sends a server-side dry run and keeps the admission chain's warnings;
    /// a denial by a policy becomes [`ToolError::DeniedByPolicy`].
    async fn dry_run(
        &self,
        client: &Client,
        req: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ToolError> {
        let req = req.map_err(|e| ToolError::Invalid(e.to_string()))?;
        let (v, w) = crate::k8s::send_with_warnings(client, req)
            .await
            .map_err(|e| self.not_found(e))?;
        for w in w {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        Ok(v)
    }

    fn configmap_object(
        &self,
        data: &BTreeMap<String, String>,
    ) -> Result<DynamicObject, ToolError> {
        let value = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name(),
                "namespace": self.namespace(),
                "labels": {"app.kubernetes.io/managed-by": MANAGER},
            },
            "data": data,
        });
        serde_json::from_value(value).map_err(|e| ToolError::Invalid(e.to_string()))
    }

    /// Compares the live object with the step: has it run, not run, or drifted?
    pub fn check(&self, step: &PlanStep, live: Option<&Value>) -> Check {
        let uid = live
            .and_then(|l| l.pointer("/metadata/uid"))
            .and_then(Value::as_str);
        let replaced =
            step.target.uid.is_some() && uid.is_some() && uid != step.target.uid.as_deref();
        match self {
            Mutation::DeletePod { .. } => match live {
                None => Check::Applied,
                Some(_) if replaced => Check::Applied,
                Some(l) if l.pointer("/metadata/deletionTimestamp").is_some() => Check::Applied,
                Some(_) => Check::NotApplied,
            },
            _ if live.is_none() && step.target.uid.is_some() => Check::Drifted(format!(
                "{} {} no longer exists",
                step.target.kind, step.target.name
            )),
            _ if replaced => Check::Drifted(format!(
                "{} {} was deleted and re-created (uid changed)",
                step.target.kind, step.target.name
            )),
            Mutation::ScaleDeployment { replicas, .. } => {
                let live = live.unwrap_or(&Value::Null);
                let now = live
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let planned = step.before.get("replicas").and_then(Value::as_i64);
                if now == i64::from(*replicas) {
                    Check::Applied
                } else if Some(now) == planned {
                    Check::NotApplied
                } else {
                    Check::Drifted(format!(
                        "spec.replicas is {now}, but the plan was made against {}",
                        planned.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
                    ))
                }
            }
            Mutation::RolloutRestart { restarted_at, .. } => {
                let live = live.unwrap_or(&Value::Null);
                let now = restarted_at_of(live);
                let planned = step
                    .before
                    .get("restartedAt")
                    .cloned()
                    .unwrap_or(Value::Null);
                if restarted_at.is_some() && now.as_str() == restarted_at.as_deref() {
                    Check::Applied
                } else if now == planned {
                    Check::NotApplied
                } else {
                    Check::Drifted(
                        "the pod template's restartedAt annotation changed since planning".into(),
                    )
                }
            }
            Mutation::PatchResource { .. } => {
                let flat = flat_fields(live.unwrap_or(&Value::Null));
                let matches = |key: &str| {
                    step.before[key].as_object().is_some_and(|m| {
                        m.iter().all(|(k, v)| {
                            flat.get(k).map(String::as_str).unwrap_or(ABSENT)
                                == v.as_str().unwrap_or("")
                        })
                    })
                };
                if matches("after") {
                    Check::Applied
                } else if matches("fields") {
                    Check::NotApplied
                } else {
                    Check::Drifted(format!(
                        "{} {} changed since planning",
                        step.target.kind, step.target.name
                    ))
                }
            }
            Mutation::ApplyManifest { manifest, .. } => match live {
                None => Check::NotApplied,
                Some(l) => {
                    // The fields the manifest sets, not the dry run's server-allocated
                    // ones (a Service's clusterIP differs between the dry run and the create).
                    let flat = flat_fields(l);
                    let ours = flat_fields(manifest)
                        .iter()
                        .all(|(k, v)| flat.get(k) == Some(v));
                    if ours {
                        Check::Applied
                    } else {
                        Check::Drifted(format!(
                            "{} {} was created by someone else",
                            step.target.kind, step.target.name
                        ))
                    }
                }
            },
            Mutation::CreateConfigmap { data, .. } => match live {
                None => Check::NotApplied,
                Some(l) => {
                    let ours = l
                        .pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                        .and_then(Value::as_str)
                        == Some(MANAGER);
                    let same = serde_json::to_value(data).ok().as_ref() == l.get("data");
                    if ours && same {
                        Check::Applied
                    } else {
                        Check::Drifted(format!(
                            "ConfigMap {} was created by someone else",
                            self.name()
                        ))
                    }
                }
            },
        }
    }

    /// Applies the mutation. Only callable with an approval token.
    pub async fn apply(
        &self,
        client: &Client,
        step: &PlanStep,
        _approved: &Approved,
    ) -> Result<Value, ToolError> {
        let merge = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let api = self.api(client);
        let name = self.name();
        let after = match self {
            Mutation::ScaleDeployment { replicas, .. } => api
                .patch(
                    name,
                    &merge,
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            Mutation::RolloutRestart { restarted_at, .. } => api
                .patch(
                    name,
                    &merge,
                    &Patch::Merge(restart_patch(restarted_at.as_deref())),
                )
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            Mutation::DeletePod { .. } => {
                let dp = DeleteParams {
                    preconditions: step.target.uid.clone().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                api.delete(name, &dp)
                    .await
                    .map(|_| json!({"exists": false}))
            }
            Mutation::PatchResource {
                patch, strategy, ..
            } => api
                .patch(name, &merge, &patch_of(*strategy, patch))
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            Mutation::ApplyManifest { manifest, .. } => api
                .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(manifest))
                .await
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            Mutation::CreateConfigmap { data, .. } => {
                let post = PostParams {
                    dry_run: false,
                    field_manager: Some(MANAGER.into()),
                };
                api.create(&post, &self.configmap_object(data)?)
                    .await
                    .map(|o| serde_json::to_value(o).unwrap_or_default())
            }
        };
        after.map_err(|e| self.not_found(e))
    }

    /// Runs the step's approved rollback against `live` (what the executor just
    /// read). Only callable with an approval token: the approval covered it.
    /// `RestoreBefore` sends the recorded JSON Patch (its `test` operations make
    /// the API server refuse it when someone changed the fields meanwhile);
    /// `Delete` deletes the created object with uid and resourceVersion preconditions.
    pub async fn roll_back(
        &self,
        client: &Client,
        action: &crate::api::RollbackAction,
        live: &Value,
        _approved: &Approved,
    ) -> Result<Value, ToolError> {
        use crate::api::RollbackKind;
        let name = self.name();
        match action.action {
            RollbackKind::RestoreBefore => {
                use kube::Resource;
                let url = format!(
                    "{}/{name}?fieldManager={MANAGER}",
                    DynamicObject::url_path(&self.resource(), Some(self.namespace()))
                );
                let body = serde_json::to_vec(&action.patch)
                    .map_err(|e| ToolError::Invalid(e.to_string()))?;
                let req = http::Request::patch(url)
                    .header("content-type", "application/json-patch+json")
                    .body(body)
                    .map_err(|e| ToolError::Invalid(e.to_string()))?;
                crate::k8s::send_with_warnings(client, req)
                    .await
                    .map(|(v, _)| v)
                    .map_err(|e| self.not_found(e))
            }
            RollbackKind::Delete => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: live
                            .pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .map(String::from),
                        resource_version: live
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                            .map(String::from),
                    }),
                    ..Default::default()
                };
                self.api(client)
                    .delete(name, &dp)
                    .await
                    .map(|_| json!({"exists": false}))
                    .map_err(|e| self.not_found(e))
            }
            RollbackKind::Never => Err(ToolError::Invalid("this step is never rolled back".into())),
        }
    }

    /// The part of an object worth showing in before/after events.
    pub fn summary_of(&self, obj: Option<&Value>) -> Value {
        let Some(o) = obj else {
            return json!({"exists": false});
        };
        match self {
            Mutation::ScaleDeployment { .. } => json!({"replicas": o.pointer("/spec/replicas")}),
            Mutation::RolloutRestart { .. } => json!({"restartedAt": restarted_at_of(o)}),
            Mutation::DeletePod { .. } => json!({
                "exists": o.get("exists").cloned().unwrap_or(Value::Bool(true)),
                "phase": o.pointer("/status/phase"),
                "node": o.pointer("/spec/nodeName"),
                "image": o.pointer("/spec/containers/0/image"),
            }),
            Mutation::CreateConfigmap { .. } => json!({"data": o.get("data")}),
            Mutation::PatchResource { .. } | Mutation::ApplyManifest { .. } => {
                let flat = flat_fields(o);
                let keys = step_keys(o, &flat);
                json!(keys)
            }
        }
    }
}

/// Marks a field the object does not have (in `before.fields`).
const ABSENT: &str = "<absent>";

fn lower_kind(kind: &str) -> &'static str {
    // Static names for guardrail checks; unknown kinds fail validate() anyway.
    const LOWER: &[&str] = &[
        "deployment",
        "statefulset",
        "daemonset",
        "service",
        "configmap",
        "pod",
        "job",
        "cronjob",
        "horizontalpodautoscaler",
        "networkpolicy",
        "persistentvolumeclaim",
    ];
    LOWER
        .iter()
        .copied()
        .find(|l| l.eq_ignore_ascii_case(kind))
        .unwrap_or("unknown")
}

fn patch_of(strategy: PatchStrategy, patch: &Value) -> Patch<Value> {
    match strategy {
        PatchStrategy::Merge => Patch::Merge(patch.clone()),
        PatchStrategy::Strategic => Patch::Strategic(patch.clone()),
    }
}

/// The comparable leaves of an object (spec, data, labels, annotations).
fn flat_fields(obj: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in ["spec", "data", "binaryData"] {
        if let Some(v) = obj.get(key) {
            flatten(key, v, &mut out);
        }
    }
    for key in ["labels", "annotations"] {
        if let Some(v) = obj.pointer(&format!("/metadata/{key}")) {
            flatten(&format!("metadata.{key}"), v, &mut out);
        }
    }
    out
}

/// The leaves that differ between two objects: (values before, values after).
fn changed_fields(
    before: &Value,
    after: &Value,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (b, a) = (flat_fields(before), flat_fields(after));
    let mut old = BTreeMap::new();
    let mut new = BTreeMap::new();
    for key in a.keys().chain(b.keys()) {
        let (x, y) = (b.get(key), a.get(key));
        if x != y {
            old.insert(key.clone(), x.cloned().unwrap_or_else(|| ABSENT.into()));
            new.insert(key.clone(), y.cloned().unwrap_or_else(|| ABSENT.into()));
        }
    }
    (old, new)
}

/// For events: a few identifying leaves of a generic object.
fn step_keys(o: &Value, flat: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = flat
        .iter()
        .take(8)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(uid) = o.pointer("/metadata/uid").and_then(Value::as_str) {
        out.insert("uid".into(), uid.into());
    }
    out
}

fn missing() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("not found", "NotFound")
            .with_code(404)
            .boxed(),
    )
}

fn restart_patch(at: Option<&str>) -> Value {
    json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}})
}

fn restarted_at_of(obj: &Value) -> Value {
    obj.pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(RESTARTED_AT))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Most lines of a preview; the rest is counted, never dropped silently.
const MAX_DIFF_LINES: usize = 50;

/// A readable diff of two objects: changed leaves under `spec`, `data`,
/// `immutable`, and metadata labels, annotations, ownerReferences and
/// finalizers, one per line (`~ spec.replicas: 3 -> 5`). Removals come
/// first (they are what an approver most needs to see); past
/// [`MAX_DIFF_LINES`] the preview ends with "… N more lines".
pub fn diff(before: &Value, after: &Value) -> String {
    let mut b = BTreeMap::new();
    let mut a = BTreeMap::new();
    for (src, dst) in [(before, &mut b), (after, &mut a)] {
        for key in ["spec", "data", "binaryData", "immutable"] {
            if let Some(v) = src.get(key) {
                flatten(key, v, dst);
            }
        }
        for key in ["labels", "annotations", "ownerReferences", "finalizers"] {
            if let Some(v) = src.pointer(&format!("/metadata/{key}")) {
                flatten(&format!("metadata.{key}"), v, dst);
            }
        }
    }
    let mut lines: Vec<String> = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(k, v)| format!("- {k}: {v}"))
        .collect();
    for (k, v) in &a {
        match b.get(k) {
            None => lines.push(format!("+ {k}: {v}")),
            Some(old) if old != v => lines.push(format!("~ {k}: {old} -> {v}")),
            _ => {}
        }
    }
    if lines.is_empty() {
        return "(no change)".into();
    }
    let more = lines.len().saturating_sub(MAX_DIFF_LINES);
    lines.truncate(MAX_DIFF_LINES);
    if more > 0 {
        lines.push(format!("… {more} more lines"));
    }
    lines.join("\n")
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale_step(before: i64) -> (Mutation, PlanStep) {
        let m = Mutation::ScaleDeployment {
            namespace: "shop".into(),
            name: "nginx".into(),
            kind: WorkloadKind::Deployment,
            replicas: 5,
        };
        let step = PlanStep {
            tool: m.tool_name().into(),
            arguments: m.arguments(),
            target: StepTarget {
                uid: Some("u1".into()),
                ..Default::default()
            },
            before: json!({"replicas": before}),
            ..Default::default()
        };
        (m, step)
    }

    fn deploy(uid: &str, replicas: i64) -> Value {
        json!({"metadata": {"uid": uid}, "spec": {"replicas": replicas}})
    }

    #[test]
    fn scale_check_covers_all_outcomes() {
        let (m, step) = scale_step(3);
        assert_eq!(m.check(&step, Some(&deploy("u1", 3))), Check::NotApplied);
        assert_eq!(m.check(&step, Some(&deploy("u1", 5))), Check::Applied);
        assert!(matches!(
            m.check(&step, Some(&deploy("u1", 4))),
            Check::Drifted(_)
        ));
        assert!(matches!(
            m.check(&step, Some(&deploy("u2", 3))),
            Check::Drifted(_)
        ));
        assert!(matches!(m.check(&step, None), Check::Drifted(_)));
    }

    #[test]
    fn delete_pod_check() {
        let m = Mutation::DeletePod {
            namespace: "a".into(),
            name: "p".into(),
        };
        let step = PlanStep {
            target: StepTarget {
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            m.check(&step, Some(&json!({"metadata": {"uid": "u1"}}))),
            Check::NotApplied
        );
        assert_eq!(
            m.check(&step, Some(&json!({"metadata": {"uid": "u2"}}))),
            Check::Applied
        );
        assert_eq!(m.check(&step, None), Check::Applied);
    }

    #[test]
    fn restart_check_uses_planned_timestamp() {
        let m = Mutation::RolloutRestart {
            namespace: "a".into(),
            name: "d".into(),
            kind: WorkloadKind::Deployment,
            restarted_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let step = PlanStep {
            target: StepTarget {
                uid: Some("u".into()),
                ..Default::default()
            },
            before: json!({"restartedAt": null}),
            ..Default::default()
        };
        let with = |v: Value| json!({"metadata": {"uid": "u"}, "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: v}}}}});
        assert_eq!(m.check(&step, Some(&with(Value::Null))), Check::NotApplied);
        assert_eq!(
            m.check(&step, Some(&with(json!("2026-01-01T00:00:00Z")))),
            Check::Applied
        );
        assert!(matches!(
            m.check(&step, Some(&with(json!("other")))),
            Check::Drifted(_)
        ));
    }

    #[test]
    fn patch_check_compares_the_touched_fields() {
        let m = Mutation::PatchResource {
            namespace: "a".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            patch: json!({"spec": {"paused": true}}),
            strategy: PatchStrategy::Merge,
        };
        let live = |paused: Option<bool>| match paused {
            Some(p) => json!({"metadata": {"uid": "u"}, "spec": {"replicas": 1, "paused": p}}),
            None => json!({"metadata": {"uid": "u"}, "spec": {"replicas": 1}}),
        };
        let (old, new) = changed_fields(&live(None), &live(Some(true)));
        let step = PlanStep {
            target: StepTarget {
                uid: Some("u".into()),
                ..Default::default()
            },
            before: json!({"fields": old, "after": new}),
            ..Default::default()
        };
        assert_eq!(m.check(&step, Some(&live(None))), Check::NotApplied);
        assert_eq!(m.check(&step, Some(&live(Some(true)))), Check::Applied);
        assert!(matches!(
            m.check(&step, Some(&live(Some(false)))),
            Check::Drifted(_)
        ));
    }

    #[test]
    fn a_created_object_is_ours_by_the_fields_its_manifest_sets() {
        let m = Mutation::ApplyManifest {
            namespace: "a".into(),
            manifest: json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
        };
        let step = PlanStep {
            before: json!({"exists": false, "after": {"spec.clusterIP": "\"10.0.0.1\""}}),
            ..Default::default()
        };
        // The real create allocated another clusterIP than the dry run: still ours.
        let live = |app: &str| {
            json!({"metadata": {"uid": "u"}, "spec": {"clusterIP": "10.0.0.9",
            "selector": {"app": app}, "ports": [{"port": 80, "protocol": "TCP"}]}})
        };
        assert_eq!(m.check(&step, Some(&live("web"))), Check::Applied);
        assert!(matches!(
            m.check(&step, Some(&live("other"))),
            Check::Drifted(_)
        ));
        assert_eq!(m.check(&step, None), Check::NotApplied);
    }

    #[test]
    fn generic_tools_refuse_kinds_off_the_allowlist() {
        let patch = |kind: &str| Mutation::PatchResource {
            namespace: "a".into(),
            kind: kind.into(),
            name: "x".into(),
            patch: json!({}),
            strategy: PatchStrategy::Merge,
        };
        for bad in ["Secret", "ClusterRole", "RoleBinding", "Namespace", "Node"] {
            assert!(patch(bad).validate().is_err(), "{bad}");
        }
        assert!(patch("service").validate().is_ok());
        let apply = |m: Value| Mutation::ApplyManifest {
            namespace: "a".into(),
            manifest: m,
        };
        assert!(
            apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}))
                .validate()
                .is_ok()
        );
        assert!(
            apply(json!({"apiVersion": "apps/v1", "kind": "Service", "metadata": {"name": "s"}}))
                .validate()
                .is_err()
        );
        assert!(apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "b"}})).validate().is_err());
        assert!(
            apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn round_trips_through_step_arguments() {
        let (m, step) = scale_step(3);
        assert_eq!(Mutation::from_step(&step).unwrap(), m);
    }

    #[test]
    fn diff_puts_removals_first_counts_the_rest_and_covers_ownership() {
        let before = json!({"metadata": {"finalizers": ["a"], "ownerReferences": [{"name": "o1"}]},
            "spec": {"x": 1}});
        let mut big = serde_json::Map::new();
        for i in 0..60 {
            big.insert(format!("k{i:02}"), json!(i));
        }
        let after = json!({"metadata": {"ownerReferences": [{"name": "o2"}]}, "immutable": true,
            "spec": Value::Object(big)});
        let d = diff(&before, &after);
        let lines: Vec<&str> = d.lines().collect();
        assert!(lines[0].starts_with("- "), "{d}");
        assert!(d.contains("- metadata.finalizers[0]: \"a\""), "{d}");
        assert!(d.contains("- spec.x: 1"), "{d}");
        assert!(d.contains("~ metadata.ownerReferences[0].name"), "{d}");
        assert_eq!(lines.len(), MAX_DIFF_LINES + 1);
        // 2 removals + 60 spec keys + immutable + the changed owner = 64 lines.
        assert_eq!(lines[MAX_DIFF_LINES], "… 14 more lines");
    }

    #[test]
    fn diff_lists_changed_leaves() {
        let d = diff(&deploy("u", 3), &deploy("u", 5));
        assert_eq!(d, "~ spec.replicas: 3 -> 5");
        assert_eq!(diff(&deploy("u", 3), &deploy("u", 3)), "(no change)");
    }
}
