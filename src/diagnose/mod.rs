//! The builtin diagnostician behind the read-only `diagnose` tool: analyzers that name the root
//! cause of common failures from objects already fetched (a [`Snapshot`]), each a small pure
//! function unit-tested without an API server. Fetching lives in one place ([`fetch`]); the
//! analyzers never see Secret data (Secrets are known by the names pods reference, never read) and
//! their output goes through [`crate::access::redact`] like every tool's.
//!
//! Each [`Finding`] names the object, its condition, the evidence, the likely cause and — only
//! where the fix is certain — a proposed plan step ([`Mutation`]) that goes through the normal
//! plan and approval path like any other step.

pub mod fetch;
pub mod intent;

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{Container, Event, PersistentVolumeClaim, Pod, PodSpec, Service},
};
use kube::ResourceExt;
use serde::Serialize;

use crate::tools::{Mutation, PatchStrategy};

/// What the analyzers look at: one namespace's objects, fetched once.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub namespace: String,
    pub pods: Vec<Pod>,
    pub deployments: Vec<Deployment>,
    pub replicasets: Vec<ReplicaSet>,
    pub services: Vec<Service>,
    /// Ready endpoint addresses per Service name (from EndpointSlices).
    pub ready_endpoints: BTreeMap<String, usize>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub jobs: Vec<Job>,
    pub hpas: Vec<HorizontalPodAutoscaler>,
    pub events: Vec<Event>,
    /// Names of the namespace's ConfigMaps (names only; `None`: not known).
    pub configmaps: Option<Vec<String>>,
    /// Last log lines per `pod/container`, for crashing containers (already redacted).
    pub logs: BTreeMap<String, String>,
}

/// The condition a finding reports (its label is what scores and tests compare).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Condition {
    CrashLoopBackOff,
    ImagePullBackOff,
    OOMKilled,
    Unschedulable,
    ProbeFailing,
    NoEndpoints,
    RolloutStuck,
    PvcPending,
    BackoffLimitExceeded,
    HpaMetricsUnavailable,
    MissingConfigMap,
    MissingSecret,
}

impl Condition {
    pub fn label(self) -> &'static str {
        match self {
            Condition::CrashLoopBackOff => "CrashLoopBackOff",
            Condition::ImagePullBackOff => "ImagePullBackOff",
            Condition::OOMKilled => "OOMKilled",
            Condition::Unschedulable => "Unschedulable",
            Condition::ProbeFailing => "ProbeFailing",
            Condition::NoEndpoints => "NoEndpoints",
            Condition::RolloutStuck => "RolloutStuck",
            Condition::PvcPending => "PVCPending",
            Condition::BackoffLimitExceeded => "BackoffLimitExceeded",
            Condition::HpaMetricsUnavailable => "HPAMetricsUnavailable",
            Condition::MissingConfigMap => "MissingConfigMap",
            Condition::MissingSecret => "MissingSecret",
        }
    }
}

/// One diagnosed problem.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `Kind/name` of the object the problem is on.
    pub object: String,
    pub condition: Condition,
    /// What was observed (states, exit codes, messages, counts).
    pub evidence: Vec<String>,
    /// The likely root cause, in one sentence.
    pub cause: String,
    /// A fix certain enough to propose as a plan step (it still needs an approval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Mutation>,
    /// What the proposed fix does, or what to check when no fix is certain.
    pub advice: String,
    /// Other objects this finding concerns (`Kind/name`), e.g. a pod's Deployment.
    #[serde(skip)]
    pub related: Vec<String>,
}

impl Finding {
    /// Whether the finding concerns the object called `name` (a pod of a workload counts).
    pub fn concerns(&self, name: &str) -> bool {
        let hit = |o: &str| {
            let n = o.split_once('/').map(|(_, n)| n).unwrap_or(o);
            n == name || n.starts_with(&format!("{name}-"))
        };
        hit(&self.object) || self.related.iter().any(|r| hit(r))
    }
}

/// Runs every analyzer. Findings come in a stable order: the most specific root causes first
/// (a container's failure before the rollout it stalls or the Service it leaves empty).
pub fn analyze(s: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in &s.pods {
        out.extend(pod_findings(s, p));
    }
    out.extend(s.pvcs.iter().filter_map(|c| pvc_pending(s, c)));
    out.extend(s.jobs.iter().filter_map(|j| job_failed(s, j)));
    out.extend(s.hpas.iter().filter_map(hpa_metrics));
    out.extend(s.deployments.iter().filter_map(|d| rollout_stuck(s, d)));
    out.extend(s.services.iter().filter_map(|v| service_endpoints(s, v)));
    dedup_by_workload(out)
}

/// Findings narrowed to one object (and what belongs to it) when a name is given.
pub fn analyze_for(s: &Snapshot, name: Option<&str>) -> Vec<Finding> {
    let all = analyze(s);
    match name {
        Some(n) if !n.is_empty() => all.into_iter().filter(|f| f.concerns(n)).collect(),
        _ => all,
    }
}

/// Several pods of one workload with the same problem make one finding (with a pod count).
fn dedup_by_workload(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen: BTreeMap<(String, &'static str), usize> = BTreeMap::new();
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        let owner = f
            .related
            .iter()
            .find(|r| r.starts_with("Deployment/") || r.starts_with("Job/"))
            .cloned();
        match owner {
            Some(o) if f.object.starts_with("Pod/") => {
                let key = (o, f.condition.label());
                if let Some(&i) = seen.get(&key) {
                    let n = out[i]
                        .evidence
                        .iter()
                        .position(|e| e.starts_with("pods affected: "));
                    match n {
                        Some(k) => {
                            let count: usize = out[i].evidence[k]
                                .trim_start_matches("pods affected: ")
                                .parse()
                                .unwrap_or(1);
                            out[i].evidence[k] = format!("pods affected: {}", count + 1);
                        }
                        None => out[i].evidence.push("pods affected: 2".into()),
                    }
                    continue;
                }
                seen.insert(key, out.len());
                out.push(f);
            }
            _ => out.push(f),
        }
    }
    out
}

// ------------------------------------------------------------------ pods

fn pod_owner_chain(s: &Snapshot, p: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    for o in p.owner_references() {
        out.push(format!("{}/{}", o.kind, o.name));
        if o.kind == "ReplicaSet"
            && let Some(rs) = s.replicasets.iter().find(|r| r.name_any() == o.name)
        {
            for d in rs.owner_references() {
                out.push(format!("{}/{}", d.kind, d.name));
            }
        }
    }
    out
}

fn deployment_of(s: &Snapshot, p: &Pod) -> Option<String> {
    pod_owner_chain(s, p)
        .into_iter()
        .find_map(|o| o.strip_prefix("Deployment/").map(str::to_string))
}

fn spec_container<'a>(spec: Option<&'a PodSpec>, name: &str) -> Option<&'a Container> {
    spec?.containers.iter().find(|c| c.name == name)
}

fn pod_findings(s: &Snapshot, p: &Pod) -> Vec<Finding> {
    let name = p.name_any();
    let object = format!("Pod/{name}");
    let related = pod_owner_chain(s, p);
    let mk = |condition, evidence, cause: String, fix: Option<Mutation>, advice: String| Finding {
        object: object.clone(),
        condition,
        evidence,
        cause,
        fix,
        advice,
        related: related.clone(),
    };
    let mut out = Vec::new();
    if p.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let status = p.status.clone().unwrap_or_default();
    // Owned by a Job: the Job's analyzer speaks for it.
    if related.iter().any(|r| r.starts_with("Job/")) {
        return out;
    }
    // Unschedulable: the scheduler's own words.
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        let msg = c
            .message
            .clone()
            .or_else(|| event_message(s, "Pod", &name, "FailedScheduling"))
            .unwrap_or_default();
        let cause = unschedulable_cause(&msg);
        out.push(mk(
            Condition::Unschedulable,
            vec![format!("scheduler: {msg}")],
            cause.0,
            None,
            cause.1,
        ));
        return out;
    }
    for cs in status.container_statuses.iter().flatten() {
        let spec = spec_container(p.spec.as_ref(), &cs.name);
        let waiting = cs.state.as_ref().and_then(|st| st.waiting.as_ref());
        let wreason = waiting.and_then(|w| w.reason.clone()).unwrap_or_default();
        let wmsg = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        let last = cs
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .or(cs.state.as_ref().and_then(|st| st.terminated.as_ref()));
        // Missing ConfigMap/Secret: the container cannot even be created.
        if (wreason == "CreateContainerConfigError" || wreason == "CreateContainerError")
            && let Some(f) = missing_reference(s, p, &cs.name, &wmsg)
        {
            out.push(mk(f.0, f.1, f.2, None, f.3));
            continue;
        }
        if matches!(
            wreason.as_str(),
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull"
        ) {
            let image = spec
                .and_then(|c| c.image.clone())
                .unwrap_or(cs.image.clone());
            let (fix, advice) = undo_fix(s, p, &format!("image `{image}` cannot be pulled"));
            let why = if wmsg.is_empty() {
                String::new()
            } else {
                format!(": {wmsg}")
            };
            out.push(mk(
                Condition::ImagePullBackOff,
                vec![
                    format!("container `{}` waiting: {wreason}{why}", cs.name),
                    format!("image: {image}"),
                ],
                format!(
                    "the image `{image}` of container `{}` cannot be pulled ({}: wrong name or tag, or a private registry without an imagePullSecret)",
                    cs.name, wreason
                ),
                fix,
                advice,
            ));
            continue;
        }
        if let Some(t) = last
            && t.reason.as_deref() == Some("OOMKilled")
        {
            let limit = spec
                .and_then(|c| c.resources.as_ref())
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory"))
                .map(|q| q.0.clone());
            let request = spec
                .and_then(|c| c.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.get("memory"))
                .map(|q| q.0.clone());
            let mut evidence = vec![
                format!(
                    "container `{}` terminated: OOMKilled (exit code {})",
                    cs.name, t.exit_code
                ),
                format!("restarts: {}", cs.restart_count),
            ];
            evidence.push(format!(
                "memory limit: {} (usage when killed: not known without a metrics server)",
                limit.clone().unwrap_or_else(|| "none".into())
            ));
            if let Some(r) = request {
                evidence.push(format!("memory request: {r}"));
            }
            out.push(mk(
                Condition::OOMKilled,
                evidence,
                match &limit {
                    Some(l) => format!(
                        "container `{}` uses more memory than its limit of {l} and is killed by the kernel (OOMKilled)",
                        cs.name
                    ),
                    None => format!(
                        "container `{}` was killed for lack of memory on its node (OOMKilled, no limit set)",
                        cs.name
                    ),
                },
                None,
                "raise the container's memory limit (e.g. patch_resource on its workload) or find the leak; the right size needs the usage, which only a metrics server shows".into(),
            ));
            continue;
        }
        let crashing = wreason == "CrashLoopBackOff"
            || (cs.restart_count > 0 && last.is_some_and(|t| t.exit_code != 0) && !cs.ready);
        if crashing {
            let code = last.map(|t| t.exit_code);
            let treason = last.and_then(|t| t.reason.clone()).unwrap_or_default();
            let mut evidence = vec![
                format!(
                    "container `{}`: {} , restarts {}",
                    cs.name,
                    if wreason.is_empty() {
                        "restarting".to_string()
                    } else {
                        wreason.clone()
                    },
                    cs.restart_count
                ),
                format!(
                    "last exit code: {}{}",
                    code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                    if treason.is_empty() {
                        String::new()
                    } else {
                        format!(" ({treason})")
                    }
                ),
            ];
            if let Some(m) = last
                .and_then(|t| t.message.clone())
                .filter(|m| !m.is_empty())
            {
                evidence.push(format!("termination message: {m}"));
            }
            let logs = s.logs.get(&format!("{name}/{}", cs.name));
            match logs {
                Some(l) if !l.trim().is_empty() => {
                    evidence.push(format!("last log lines:\n{}", last_lines(l, 5)))
                }
                _ => evidence.push("last log lines: none available".into()),
            }
            let liveness = probe_events(s, &name, "Liveness");
            let cause = if let Some(ev) = &liveness {
                evidence.push(format!("events: {ev}"));
                format!(
                    "the liveness probe of container `{}` fails, so the kubelet restarts it",
                    cs.name
                )
            } else {
                format!(
                    "container `{}` exits with code {} on start{} and is restarted in a loop",
                    cs.name,
                    code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                    exit_code_meaning(code.unwrap_or(-1))
                )
            };
            let condition = if liveness.is_some() {
                Condition::ProbeFailing
            } else {
                Condition::CrashLoopBackOff
            };
            let (fix, advice) = undo_fix(s, p, "the new revision crashes");
            out.push(mk(condition, evidence, cause, fix, advice));
            continue;
        }
        // Running but not ready: the readiness probe.
        if cs.state.as_ref().is_some_and(|st| st.running.is_some()) && !cs.ready {
            let ev = probe_events(s, &name, "Readiness");
            let probe = spec.and_then(|c| c.readiness_probe.as_ref()).map(|pr| {
                if let Some(h) = &pr.http_get {
                    format!(
                        "httpGet {} port {}",
                        h.path.clone().unwrap_or_else(|| "/".into()),
                        match &h.port {
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) =>
                                i.to_string(),
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
                                s,
                            ) => s.clone(),
                        }
                    )
                } else if pr.tcp_socket.is_some() {
                    "tcpSocket".into()
                } else {
                    "exec".into()
                }
            });
            let mut evidence = vec![format!(
                "container `{}` is running but not ready (restarts {})",
                cs.name, cs.restart_count
            )];
            if let Some(p) = &probe {
                evidence.push(format!("readiness probe: {p}"));
            }
            if let Some(e) = &ev {
                evidence.push(format!("events: {e}"));
            }
            out.push(mk(
                Condition::ProbeFailing,
                evidence,
                format!(
                    "the readiness probe of container `{}` fails{}, so the pod receives no traffic",
                    cs.name,
                    ev.as_ref()
                        .map(|e| format!(" ({})", crate::api::truncate(e, 160)))
                        .unwrap_or_default()
                ),
                None,
                "check the probe's path and port against what the application serves, or why the application reports unhealthy".into(),
            ));
        }
    }
    // Pending without container statuses yet, but referencing a missing ConfigMap.
    if out.is_empty()
        && status.phase.as_deref() == Some("Pending")
        && let Some(f) = missing_reference(s, p, "", "")
    {
        out.push(mk(f.0, f.1, f.2, None, f.3));
    }
    out
}

fn last_lines(l: &str, n: usize) -> String {
    let lines: Vec<&str> = l.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn exit_code_meaning(code: i32) -> &'static str {
    match code {
        1 => " (an application error)",
        2 => " (misuse of a command or bad arguments)",
        126 => " (the command is not executable)",
        127 => " (the command was not found in the image)",
        137 => " (killed with SIGKILL)",
        139 => " (a segmentation fault)",
        143 => " (terminated with SIGTERM)",
        _ => "",
    }
}

/// The latest message of an event with `reason` about `kind/name`.
fn event_message(s: &Snapshot, kind: &str, name: &str, reason: &str) -> Option<String> {
    s.events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .filter_map(|e| e.message.clone())
        .next_back()
}

/// "Readiness probe failed: …" / "Liveness probe failed: …" events about a pod.
fn probe_events(s: &Snapshot, pod: &str, which: &str) -> Option<String> {
    s.events
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("Unhealthy")
        })
        .filter_map(|e| e.message.clone())
        .rfind(|m| m.starts_with(which))
}

/// The scheduler's message → (cause, advice).
fn unschedulable_cause(msg: &str) -> (String, String) {
    let m = msg.to_ascii_lowercase();
    if m.contains("insufficient") {
        let what: Vec<&str> = ["cpu", "memory", "ephemeral-storage", "pods"]
            .into_iter()
            .filter(|r| m.contains(&format!("insufficient {r}")))
            .collect();
        (
            format!(
                "no node has enough free {} for the pod's requests (Insufficient {})",
                what.join(" and "),
                what.join(", ")
            ),
            "lower the pod's resource requests or add capacity".into(),
        )
    } else if m.contains("node affinity/selector") || m.contains("node selector") {
        (
            "no node matches the pod's nodeSelector / node affinity".into(),
            "fix the nodeSelector (or affinity) to labels your nodes carry, or label a node".into(),
        )
    } else if m.contains("untolerated taint") || m.contains("taint") {
        (
            "every node has a taint the pod does not tolerate".into(),
            "add a matching toleration to the pod, or remove the taint".into(),
        )
    } else if m.contains("persistentvolumeclaim") {
        (
            "the pod waits for a PersistentVolumeClaim that is not bound".into(),
            "see the PVC's own finding".into(),
        )
    } else if m.is_empty() {
        (
            "the pod is not scheduled yet and the scheduler gave no reason".into(),
            "check the scheduler's events".into(),
        )
    } else {
        (
            format!("the scheduler cannot place the pod: {msg}"),
            "see the scheduler's message".into(),
        )
    }
}

/// ConfigMaps and Secrets a pod spec references (kind, name, where), optional ones left out.
pub fn references(spec: &PodSpec) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map
            && !c.optional.unwrap_or(false)
        {
            out.push(("ConfigMap", c.name.clone(), format!("volume `{}`", v.name)));
        }
        if let Some(sv) = &v.secret
            && !sv.optional.unwrap_or(false)
            && let Some(n) = &sv.secret_name
        {
            out.push(("Secret", n.clone(), format!("volume `{}`", v.name)));
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref
                && !r.optional.unwrap_or(false)
            {
                out.push((
                    "ConfigMap",
                    r.name.clone(),
                    format!("envFrom of container `{}`", c.name),
                ));
            }
            if let Some(r) = &e.secret_ref
                && !r.optional.unwrap_or(false)
            {
                out.push((
                    "Secret",
                    r.name.clone(),
                    format!("envFrom of container `{}`", c.name),
                ));
            }
        }
        for e in c.env.iter().flatten() {
            let Some(vf) = &e.value_from else { continue };
            if let Some(r) = &vf.config_map_key_ref
                && !r.optional.unwrap_or(false)
            {
                out.push((
                    "ConfigMap",
                    r.name.clone(),
                    format!("env `{}` of container `{}`", e.name, c.name),
                ));
            }
            if let Some(r) = &vf.secret_key_ref
                && !r.optional.unwrap_or(false)
            {
                out.push((
                    "Secret",
                    r.name.clone(),
                    format!("env `{}` of container `{}`", e.name, c.name),
                ));
            }
        }
    }
    out
}

/// A reference the pod cannot start without: (condition, evidence, cause, advice). ConfigMaps
/// are checked against the namespace's ConfigMap names; Secrets are never read, so a Secret is
/// named only when the kubelet's message names it (or it is the only reference that could fail).
fn missing_reference(
    s: &Snapshot,
    p: &Pod,
    container: &str,
    kubelet_msg: &str,
) -> Option<(Condition, Vec<String>, String, String)> {
    let refs = references(p.spec.as_ref()?);
    let msg = kubelet_msg.to_ascii_lowercase();
    let mut evidence = Vec::new();
    if !kubelet_msg.is_empty() {
        evidence.push(format!(
            "container `{container}` waiting: CreateContainerConfigError: {kubelet_msg}"
        ));
    }
    // ConfigMaps we know are missing.
    if let Some(names) = &s.configmaps {
        for (kind, name, place) in refs.iter().filter(|r| r.0 == "ConfigMap") {
            if !names.contains(name) {
                evidence.push(format!(
                    "{kind} `{name}` referenced by {place} does not exist"
                ));
                return Some((
                    Condition::MissingConfigMap,
                    evidence,
                    format!(
                        "the pod references ConfigMap `{name}` ({place}), which does not exist"
                    ),
                    format!(
                        "create ConfigMap `{name}` (or fix the reference), then the pod starts"
                    ),
                ));
            }
        }
    }
    // Secrets: the kubelet's message names it; else the only Secret referenced.
    let secrets: Vec<&(&str, String, String)> = refs.iter().filter(|r| r.0 == "Secret").collect();
    let named = secrets
        .iter()
        .find(|r| msg.contains(&format!("secret \"{}\"", r.1)))
        .or(if secrets.len() == 1 && !msg.is_empty() {
            secrets.first()
        } else {
            None
        });
    if let Some((_, name, place)) = named {
        evidence.push(format!(
            "Secret `{name}` referenced by {place} (existence by name only: Secret data is never read)"
        ));
        return Some((
            Condition::MissingSecret,
            evidence,
            format!("the pod references Secret `{name}` ({place}), which does not exist"),
            format!(
                "create Secret `{name}` with your own credentials (Kubilitics never handles Secret data), or fix the reference"
            ),
        ));
    }
    if !msg.is_empty() && msg.contains("configmap") {
        return Some((
            Condition::MissingConfigMap,
            evidence,
            format!("a ConfigMap the pod references is missing ({kubelet_msg})"),
            "create the ConfigMap or fix the reference".into(),
        ));
    }
    None
}

// ------------------------------------------------------------------ rollouts

const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn replicasets_of<'a>(s: &'a Snapshot, deployment: &str) -> Vec<&'a ReplicaSet> {
    let mut v: Vec<&ReplicaSet> = s
        .replicasets
        .iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == deployment)
        })
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse(revision(r)));
    v
}

fn images(spec: Option<&PodSpec>) -> BTreeMap<String, String> {
    spec.map(|s| {
        s.containers
            .iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect()
    })
    .unwrap_or_default()
}

/// The certain fix for a bad new revision: back to the newest older revision that was proven
/// healthy (it still has ready pods), when the two differ only in container images — a
/// strategic patch of those images, like `kubectl rollout undo` but reviewable as a diff.
pub fn rollout_undo(s: &Snapshot, deployment: &str) -> Option<(Mutation, String)> {
    let d = s.deployments.iter().find(|d| d.name_any() == deployment)?;
    let current = images(d.spec.as_ref()?.template.spec.as_ref());
    let rss = replicasets_of(s, deployment);
    let newest = rss.first()?;
    if images(newest.spec.as_ref()?.template.as_ref()?.spec.as_ref()) != current {
        return None;
    }
    let healthy = rss.iter().skip(1).find(|r| {
        r.status
            .as_ref()
            .and_then(|st| st.ready_replicas)
            .unwrap_or(0)
            > 0
    })?;
    let old_tpl = healthy.spec.as_ref()?.template.as_ref()?;
    let old = images(old_tpl.spec.as_ref());
    if old == current || old.keys().ne(current.keys()) {
        return None;
    }
    // Only images differ: anything else in the template and the undo is not "certain".
    let strip = |t: &k8s_openapi::api::core::v1::PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(sp) = t.spec.as_mut() {
            for c in &mut sp.containers {
                c.image = None;
            }
        }
        if let Some(m) = t.metadata.as_mut()
            && let Some(l) = m.labels.as_mut()
        {
            l.remove("pod-template-hash");
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    if strip(old_tpl) != strip(&d.spec.as_ref()?.template) {
        return None;
    }
    let containers: Vec<serde_json::Value> = old
        .iter()
        .filter(|(n, i)| current.get(*n) != Some(i))
        .map(|(n, i)| serde_json::json!({"name": n, "image": i}))
        .collect();
    let changed: Vec<String> = old
        .iter()
        .filter(|(n, i)| current.get(*n) != Some(i))
        .map(|(n, i)| {
            format!(
                "`{n}`: `{}` → `{i}`",
                current.get(n).cloned().unwrap_or_default()
            )
        })
        .collect();
    let m = Mutation::PatchResource {
        namespace: s.namespace.clone(),
        kind: "Deployment".into(),
        name: deployment.into(),
        patch: serde_json::json!({"spec": {"template": {"spec": {"containers": containers}}}}),
        strategy: PatchStrategy::Strategic,
    };
    Some((
        m,
        format!(
            "roll deployment `{deployment}` back to revision {} (the last one with ready pods): {}",
            revision(healthy),
            changed.join(", ")
        ),
    ))
}

fn undo_fix(s: &Snapshot, p: &Pod, why: &str) -> (Option<Mutation>, String) {
    match deployment_of(s, p).and_then(|d| rollout_undo(s, &d)) {
        Some((m, text)) => (Some(m), format!("{text} — {why}")),
        None => (
            None,
            "no earlier healthy revision to roll back to: fix the image or the configuration"
                .into(),
        ),
    }
}

fn rollout_stuck(s: &Snapshot, d: &Deployment) -> Option<Finding> {
    let name = d.name_any();
    let st = d.status.as_ref()?;
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let progressing = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing");
    let deadline = progressing.is_some_and(|c| {
        c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let unavailable = st.unavailable_replicas.unwrap_or(0);
    let updated = st.updated_replicas.unwrap_or(0);
    let stalled = unavailable > 0 && updated > 0 && st.ready_replicas.unwrap_or(0) < desired;
    if !deadline && !stalled {
        return None;
    }
    let mut evidence = vec![format!(
        "replicas: {desired} desired, {updated} updated, {} ready, {unavailable} unavailable",
        st.ready_replicas.unwrap_or(0)
    )];
    if let Some(c) = progressing {
        evidence.push(format!(
            "Progressing={} ({}): {}",
            c.status,
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default()
        ));
    }
    // The new pods' own problem is the root cause.
    let pod_cause = s
        .pods
        .iter()
        .filter(|p| deployment_of(s, p).as_deref() == Some(&name))
        .flat_map(|p| pod_findings(s, p))
        .next();
    let cause = match &pod_cause {
        Some(f) => format!(
            "the rollout of deployment `{name}` is stuck because its new pods fail: {}",
            f.cause
        ),
        None if deadline => format!(
            "deployment `{name}` exceeded its progress deadline: new pods never became available"
        ),
        None => format!("deployment `{name}` has unavailable replicas"),
    };
    let (fix, advice) = match rollout_undo(s, &name) {
        Some((m, t)) => (Some(m), t),
        None => (
            None,
            "fix what keeps the new pods from becoming ready (see the pod findings)".into(),
        ),
    };
    Some(Finding {
        object: format!("Deployment/{name}"),
        condition: Condition::RolloutStuck,
        evidence,
        cause,
        fix,
        advice,
        related: pod_cause.map(|f| vec![f.object]).unwrap_or_default(),
    })
}

// ------------------------------------------------------------------ services

fn matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn service_endpoints(s: &Snapshot, svc: &Service) -> Option<Finding> {
    let name = svc.name_any();
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        return None;
    }
    if s.ready_endpoints.get(&name).copied().unwrap_or(0) > 0 {
        return None;
    }
    let live: Vec<&Pod> = s
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let sel_text = fmt_labels(&selector);
    let matching: Vec<&&Pod> = live
        .iter()
        .filter(|p| matches(&selector, p.labels()))
        .collect();
    if !matching.is_empty() {
        let not_ready: Vec<String> = matching.iter().map(|p| p.name_any()).collect();
        let pod_cause = matching
            .iter()
            .flat_map(|p| pod_findings(s, p))
            .next()
            .map(|f| f.cause);
        return Some(Finding {
            object: format!("Service/{name}"),
            condition: Condition::NoEndpoints,
            evidence: vec![
                format!(
                    "selector {sel_text} matches {} pod(s), none ready",
                    matching.len()
                ),
                format!("pods: {}", not_ready.join(", ")),
            ],
            cause: match pod_cause {
                Some(c) => format!(
                    "Service `{name}` has no ready endpoints because its pods are not ready: {c}"
                ),
                None => format!(
                    "Service `{name}` has no ready endpoints: the pods it selects are not ready"
                ),
            },
            fix: None,
            advice: "fix the pods (see their findings); the Service itself is right".into(),
            related: not_ready.iter().map(|n| format!("Pod/{n}")).collect(),
        });
    }
    // Nothing matches: the closest label set — most selector entries equal, then most keys
    // present, then the most similar values (shared prefix, small edit distance).
    let closeness = |l: &BTreeMap<String, String>| -> i64 {
        let mut score = 0i64;
        for (k, v) in &selector {
            match l.get(k) {
                Some(x) if x == v => score += 10_000,
                Some(x) => {
                    let prefix =
                        x.chars().zip(v.chars()).take_while(|(a, b)| a == b).count() as i64;
                    score += 1_000 + prefix * 2 - crate::tools::edit_distance(x, v) as i64;
                }
                None => {}
            }
        }
        score
    };
    let mut ranked: Vec<(i64, &Pod)> = live
        .iter()
        .map(|p| (closeness(p.labels()), *p))
        .filter(|(s, _)| *s > 0)
        .collect();
    ranked.sort_by_key(|(s, p)| (std::cmp::Reverse(*s), p.name_any()));
    let best = ranked.first().copied();
    // Certain only when no pod of another workload is as close.
    let owner = |p: &Pod| {
        deployment_of(s, p)
            .or_else(|| p.owner_references().first().map(|o| o.name.clone()))
            .unwrap_or_else(|| p.name_any())
    };
    let unique = best.is_some_and(|(b, bp)| {
        ranked
            .iter()
            .filter(|(sc, q)| *sc == b && owner(q) != owner(bp))
            .count()
            == 0
    });
    let mut evidence = vec![format!(
        "selector {sel_text} matches none of the {} pod(s) in `{}`",
        live.len(),
        s.namespace
    )];
    let (fix, advice, related) = match best {
        Some((_, p)) => {
            let labels = p.labels();
            evidence.push(format!(
                "closest pod `{}` carries {}",
                p.name_any(),
                fmt_labels(labels)
            ));
            // The certain fix: every selector key exists on the pod (only values differ) and the
            // new selector matches the pods of exactly one workload.
            let new_sel: BTreeMap<String, String> = selector
                .keys()
                .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            let owners: std::collections::BTreeSet<Option<String>> = live
                .iter()
                .filter(|q| matches(&new_sel, q.labels()))
                .map(|q| {
                    deployment_of(s, q).or_else(|| {
                        q.owner_references().first().map(|o| o.name.clone())
                    })
                })
                .collect();
            if unique && new_sel.len() == selector.len() && owners.len() == 1 {
                let m = Mutation::PatchResource {
                    namespace: s.namespace.clone(),
                    kind: "Service".into(),
                    name: name.clone(),
                    patch: serde_json::json!({"spec": {"selector": new_sel}}),
                    strategy: PatchStrategy::Merge,
                };
                (
                    Some(m),
                    format!(
                        "patch the selector of Service `{name}` to {} (the labels its pods carry)",
                        fmt_labels(&new_sel)
                    ),
                    vec![format!("Pod/{}", p.name_any())],
                )
            } else {
                (
                    None,
                    format!(
                        "change the Service's selector to labels the intended pods carry (closest: {})",
                        fmt_labels(labels)
                    ),
                    vec![format!("Pod/{}", p.name_any())],
                )
            }
        }
        None => (
            None,
            "no pod carries any of the selector's labels: is the workload deployed in this namespace?".into(),
            vec![],
        ),
    };
    Some(Finding {
        object: format!("Service/{name}"),
        condition: Condition::NoEndpoints,
        evidence,
        cause: format!(
            "the selector of Service `{name}` ({sel_text}) matches no pod, so it has no endpoints"
        ),
        fix,
        advice,
        related,
    })
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let v: Vec<String> = l
        .iter()
        .filter(|(k, _)| k.as_str() != "pod-template-hash")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("`{}`", v.join(","))
}

// ------------------------------------------------------------------ storage, jobs, autoscaling

fn pvc_pending(s: &Snapshot, c: &PersistentVolumeClaim) -> Option<Finding> {
    let name = c.name_any();
    if c.status.as_ref().and_then(|st| st.phase.as_deref()) != Some("Pending") {
        return None;
    }
    let class = c.spec.as_ref().and_then(|sp| sp.storage_class_name.clone());
    let ev = event_message(s, "PersistentVolumeClaim", &name, "ProvisioningFailed")
        .or_else(|| event_message(s, "PersistentVolumeClaim", &name, "FailedBinding"));
    let mut evidence = vec![format!(
        "phase Pending, storageClassName: {}",
        class.clone().unwrap_or_else(|| "(none)".into())
    )];
    if let Some(e) = &ev {
        evidence.push(format!("events: {e}"));
    }
    let e = ev.clone().unwrap_or_default().to_ascii_lowercase();
    let cause = if e.contains("storageclass") && e.contains("not found") {
        format!(
            "StorageClass `{}` does not exist, so the claim is never provisioned",
            class.clone().unwrap_or_default()
        )
    } else if class.is_none() || e.contains("no storage class is set") {
        "the claim names no StorageClass and there is no default one, and no PersistentVolume matches it".into()
    } else if e.contains("waitforfirstconsumer") || e.contains("first consumer") {
        "the StorageClass binds on first use (WaitForFirstConsumer): no pod uses the claim yet"
            .into()
    } else {
        format!(
            "the claim is not bound: StorageClass `{}` has not provisioned a volume",
            class.clone().unwrap_or_default()
        )
    };
    let users: Vec<String> = s
        .pods
        .iter()
        .filter(|p| {
            p.spec.as_ref().is_some_and(|sp| {
                sp.volumes.iter().flatten().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|pv| pv.claim_name == name)
                })
            })
        })
        .map(|p| format!("Pod/{}", p.name_any()))
        .collect();
    Some(Finding {
        object: format!("PersistentVolumeClaim/{name}"),
        condition: Condition::PvcPending,
        evidence,
        cause,
        fix: None,
        advice: "use an existing StorageClass (`kubectl get storageclass`): storageClassName cannot be changed on a claim, so recreate it".into(),
        related: users,
    })
}

fn job_failed(s: &Snapshot, j: &Job) -> Option<Finding> {
    let name = j.name_any();
    let st = j.status.as_ref()?;
    let failed = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let reason = failed.reason.clone().unwrap_or_default();
    let mut evidence = vec![format!(
        "Failed ({reason}): {}",
        failed.message.clone().unwrap_or_default()
    )];
    evidence.push(format!(
        "failed pods: {}, backoffLimit: {}",
        st.failed.unwrap_or(0),
        j.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6)
    ));
    let pod = s.pods.iter().find(|p| {
        p.owner_references()
            .iter()
            .any(|o| o.kind == "Job" && o.name == name)
    });
    let mut code = None;
    if let Some(p) = pod {
        for cs in p
            .status
            .as_ref()
            .and_then(|st| st.container_statuses.clone())
            .unwrap_or_default()
        {
            if let Some(t) = cs.state.as_ref().and_then(|st| st.terminated.as_ref()) {
                code = Some(t.exit_code);
                evidence.push(format!(
                    "pod `{}` container `{}` exited with code {} ({})",
                    p.name_any(),
                    cs.name,
                    t.exit_code,
                    t.reason.clone().unwrap_or_default()
                ));
                if let Some(l) = s.logs.get(&format!("{}/{}", p.name_any(), cs.name)) {
                    evidence.push(format!("last log lines:\n{}", last_lines(l, 5)));
                }
            }
        }
    }
    let cause = if reason == "DeadlineExceeded" {
        format!("Job `{name}` ran longer than its activeDeadlineSeconds")
    } else {
        format!(
            "Job `{name}` reached its backoff limit: its pods keep failing{}",
            code.map(|c| format!(" with exit code {c}{}", exit_code_meaning(c)))
                .unwrap_or_default()
        )
    };
    Some(Finding {
        object: format!("Job/{name}"),
        condition: Condition::BackoffLimitExceeded,
        evidence,
        cause,
        fix: None,
        advice:
            "fix the command or its input, then create the Job again (a failed Job does not retry)"
                .into(),
        related: pod
            .map(|p| vec![format!("Pod/{}", p.name_any())])
            .unwrap_or_default(),
    })
}

fn hpa_metrics(h: &HorizontalPodAutoscaler) -> Option<Finding> {
    let name = h.name_any();
    let c = h
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ScalingActive" && c.status == "False")?;
    let reason = c.reason.clone().unwrap_or_default();
    let msg = c.message.clone().unwrap_or_default();
    let target =
        Some(&h.spec).map(|s| format!("{}/{}", s.scale_target_ref.kind, s.scale_target_ref.name));
    let m = msg.to_ascii_lowercase();
    let cause = if m.contains("metrics.k8s.io")
        || m.contains("resource metrics")
        || m.contains("metrics api")
    {
        format!(
            "HorizontalPodAutoscaler `{name}` cannot fetch resource metrics: the metrics API (metrics-server) is not available"
        )
    } else if m.contains("missing request") {
        format!(
            "HorizontalPodAutoscaler `{name}` cannot compute utilization: the target's containers set no resource requests"
        )
    } else {
        format!("HorizontalPodAutoscaler `{name}` cannot scale: {reason}")
    };
    Some(Finding {
        object: format!("HorizontalPodAutoscaler/{name}"),
        condition: Condition::HpaMetricsUnavailable,
        evidence: vec![format!("ScalingActive=False ({reason}): {msg}")],
        cause,
        fix: None,
        advice: "install metrics-server (or the custom metrics adapter the HPA uses) and set resource requests on the target".into(),
        related: target.into_iter().collect(),
    })
}

// ------------------------------------------------------------------ rendering

/// The tool's answer: one section per finding, or a clean bill of health.
pub fn render(namespace: &str, target: Option<&str>, findings: &[Finding]) -> String {
    let what = match target {
        Some(t) if !t.is_empty() => format!("`{t}` in `{namespace}`"),
        _ => format!("namespace `{namespace}`"),
    };
    if findings.is_empty() {
        return format!(
            "🩺 **Diagnosis of {what}**: no problem found (pods, deployments, services, claims, jobs and autoscalers look healthy)."
        );
    }
    let mut out = format!(
        "🩺 **Diagnosis of {what}**: {} finding(s).\n",
        findings.len()
    );
    for (i, f) in findings.iter().enumerate() {
        out.push_str(&format!(
            "\n{}. **{}** `{}`\n   - cause: {}\n",
            i + 1,
            f.condition.label(),
            f.object,
            f.cause
        ));
        for e in &f.evidence {
            out.push_str(&format!("   - evidence: {}\n", e.replace('\n', "\n     ")));
        }
        let tag = if f.fix.is_some() {
            "proposed fix (a plan step, runs only after approval)"
        } else {
            "suggestion"
        };
        out.push_str(&format!("   - {tag}: {}\n", f.advice));
    }
    out
}

/// The compact form for a model: one line per finding.
pub fn render_compact(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "no problem found".into();
    }
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {}: cause: {} | evidence: {} | fix: {}",
                f.condition.label(),
                f.object,
                f.cause,
                crate::api::truncate(&f.evidence.join("; ").replace('\n', " "), 300),
                if f.fix.is_some() {
                    f.advice.clone()
                } else {
                    format!("(suggestion) {}", f.advice)
                }
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
