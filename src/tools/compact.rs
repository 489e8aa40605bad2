//! Tool output for the model: counts, then only the rows that matter, within
//! a token budget.
//!
//! The rich markdown tables of [`super::read`] are for people (`status.answer`
//! of the builtin planner). A model pays for every token of them on every
//! later call of the request, and a small model reads a 50-row table poorly.
//! Here a list is summarised: how many, which need attention (not-ready pods
//! first, worst first; warnings before normal events, newest first), then the
//! healthy ones by name while the budget lasts, and "and 23 more healthy pods".

use jiff::Timestamp;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Pod, Service},
};
use kube::{ResourceExt, api::ListParams};

use super::format::age;
use super::read::{Listed, deployment_counts, pod_phase, pod_restarts};
use super::{ReadCall, ReadTools, ToolError};
use crate::api::ToolCall;
use crate::safety::redact;

/// Bytes per token the budgets assume (see [`crate::agent::budget`]).
const BYTES_PER_TOKEN: usize = crate::agent::budget::BYTES_PER_TOKEN;

impl ReadTools {
    /// Runs a call like [`ReadTools::run`] (same RBAC check, same record),
    /// answering in the compact form within `budget` tokens.
    pub async fn run_for_model(
        &self,
        call: &ReadCall,
        budget: usize,
    ) -> (Result<String, ToolError>, ToolCall) {
        self.recorded(call, async {
            let now = Timestamp::now();
            let text = match call {
                ReadCall::ListPods {
                    namespace,
                    label_selector,
                    status_filter,
                } => {
                    let pods = self
                        .pods(
                            namespace,
                            label_selector.as_deref(),
                            status_filter.as_deref(),
                        )
                        .await?;
                    pods_text(namespace, &pods, now, budget) + &pods.note("pods")
                }
                ReadCall::ListDeployments { namespace } => {
                    let list: Listed<Deployment> = self
                        .listed(namespace, "deployments", &ListParams::default())
                        .await?;
                    deployments_text(namespace, &list, budget) + &list.note("deployments")
                }
                ReadCall::ListServices { namespace } => {
                    let list: Listed<Service> = self
                        .listed(namespace, "services", &ListParams::default())
                        .await?;
                    services_text(namespace, &list, budget) + &list.note("services")
                }
                ReadCall::GetEvents { namespace, name } => {
                    let list = self.events_about(namespace, name.as_deref()).await?;
                    events_text(namespace, &list, now, budget) + &list.note("events")
                }
                ReadCall::Diagnose {
                    namespace, name, ..
                } => crate::diagnose::render_compact(
                    &self.findings(namespace, name.as_deref()).await?,
                ),
                other => self.dispatch(other).await?,
            };
            Ok(fit(&redact(&text), budget))
        })
        .await
    }
}

/// `text` cut to `budget` tokens, saying so when it was cut.
pub fn fit(text: &str, budget: usize) -> String {
    let max = budget * BYTES_PER_TOKEN;
    if text.len() <= max {
        return text.to_string();
    }
    let note = "\n[cut to fit the tool-output budget]";
    format!(
        "{}{note}",
        crate::api::truncate(text, max.saturating_sub(note.len()))
    )
}

/// Rows under a budget: each row while it fits, then "and N more …".
struct Budgeted {
    out: String,
    max: usize,
}

impl Budgeted {
    fn new(budget: usize) -> Self {
        Self {
            out: String::new(),
            max: budget * BYTES_PER_TOKEN,
        }
    }

    /// Adds `line` if it fits (keeping room for a closing line); whether it did.
    fn line(&mut self, line: &str) -> bool {
        if self.out.len() + line.len() + 1 + 48 > self.max {
            return false;
        }
        self.out.push_str(line);
        self.out.push('\n');
        true
    }

    /// Adds names after `prefix` (comma separated) while they fit; how many did.
    fn names(&mut self, prefix: &str, names: &[String]) -> usize {
        let mut line = prefix.to_string();
        let mut n = 0;
        for name in names {
            let sep = if n == 0 { "" } else { ", " };
            if self.out.len() + line.len() + sep.len() + name.len() + 1 + 48 > self.max {
                break;
            }
            line.push_str(sep);
            line.push_str(name);
            n += 1;
        }
        if n > 0 {
            self.out.push_str(&line);
            self.out.push('\n');
        }
        n
    }
}

fn pod_ready(p: &Pod) -> (usize, usize) {
    let cs = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    (cs.iter().filter(|c| c.ready).count(), cs.len())
}

/// The reason a pod is not fine (`CrashLoopBackOff`, `ImagePullBackOff`, `Pending`…).
fn pod_reason(p: &Pod) -> String {
    let waiting = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter().find_map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.clone())
                    .or_else(|| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.terminated.as_ref())
                            .and_then(|t| t.reason.clone())
                    })
            })
        });
    waiting.unwrap_or_else(|| pod_phase(p))
}

/// 0: fine; higher: worse.
fn pod_severity(p: &Pod) -> u8 {
    let phase = pod_phase(p);
    let (ready, total) = pod_ready(p);
    match phase.as_str() {
        "Succeeded" => 0,
        "Failed" => 4,
        "Running" if ready < total => 3,
        "Running" if pod_restarts(p) > 0 => 1,
        "Running" => 0,
        _ => 2,
    }
}

/// `list_pods` for the model.
pub fn pods_text(ns: &str, pods: &[Pod], now: Timestamp, budget: usize) -> String {
    if pods.is_empty() {
        return format!("No pods found in namespace '{ns}'.");
    }
    let mut bad: Vec<&Pod> = pods.iter().filter(|p| pod_severity(p) > 0).collect();
    bad.sort_by(|a, b| {
        pod_severity(b)
            .cmp(&pod_severity(a))
            .then(pod_restarts(b).cmp(&pod_restarts(a)))
            .then(a.name_any().cmp(&b.name_any()))
    });
    let mut good: Vec<String> = pods
        .iter()
        .filter(|p| pod_severity(p) == 0)
        .map(|p| p.name_any())
        .collect();
    good.sort();
    let mut b = Budgeted::new(budget);
    b.line(&format!(
        "{} pods in '{ns}': {} healthy, {} need attention.",
        pods.len(),
        good.len(),
        bad.len()
    ));
    let mut shown_bad = 0;
    if !bad.is_empty() {
        b.line("Need attention (name, state, ready, restarts, age):");
        for p in &bad {
            let (r, t) = pod_ready(p);
            if !b.line(&format!(
                "- {} {} {r}/{t} restarts={} age={}",
                p.name_any(),
                pod_reason(p),
                pod_restarts(p),
                age(p.metadata.creation_timestamp.as_ref(), now)
            )) {
                break;
            }
            shown_bad += 1;
        }
        if shown_bad < bad.len() {
            b.out.push_str(&format!(
                "and {} more pods that need attention\n",
                bad.len() - shown_bad
            ));
        }
    }
    if !good.is_empty() {
        let n = b.names("Healthy (Running, ready, no restarts): ", &good);
        if n < good.len() {
            b.out
                .push_str(&format!("and {} more healthy pods\n", good.len() - n));
        }
    }
    b.out
}

/// `list_deployments` for the model.
pub fn deployments_text(ns: &str, ds: &[Deployment], budget: usize) -> String {
    if ds.is_empty() {
        return format!("No deployments found in namespace '{ns}'.");
    }
    let mut bad: Vec<(String, i32, i32, i32)> = vec![];
    let mut good: Vec<String> = vec![];
    for d in ds {
        let (desired, ready, updated, _) = deployment_counts(d);
        if ready < desired || updated < desired {
            bad.push((d.name_any(), ready, desired, updated));
        } else {
            good.push(format!("{} {ready}/{desired}", d.name_any()));
        }
    }
    bad.sort_by(|a, b| (a.2 - a.1).cmp(&(b.2 - b.1)).reverse().then(a.0.cmp(&b.0)));
    good.sort();
    let mut b = Budgeted::new(budget);
    b.line(&format!(
        "{} deployments in '{ns}': {} fully ready, {} not.",
        ds.len(),
        good.len(),
        bad.len()
    ));
    let mut shown = 0;
    for (name, ready, desired, updated) in &bad {
        if !b.line(&format!(
            "- NOT READY {name}: {ready}/{desired} ready, {updated} up to date"
        )) {
            break;
        }
        shown += 1;
    }
    if shown < bad.len() {
        b.out.push_str(&format!(
            "and {} more deployments that are not ready\n",
            bad.len() - shown
        ));
    }
    let n = b.names("Ready (name ready/desired): ", &good);
    if n < good.len() {
        b.out.push_str(&format!(
            "and {} more fully ready deployments\n",
            good.len() - n
        ));
    }
    b.out
}

/// `list_services` for the model.
pub fn services_text(ns: &str, svcs: &[Service], budget: usize) -> String {
    if svcs.is_empty() {
        return format!("No services found in namespace '{ns}'.");
    }
    let mut rows: Vec<String> = svcs
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            let ports: Vec<String> = spec
                .ports
                .unwrap_or_default()
                .iter()
                .map(|p| p.port.to_string())
                .collect();
            let sel: Vec<String> = spec
                .selector
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!(
                "- {} {} ports={} selector={}",
                s.name_any(),
                spec.type_.unwrap_or_else(|| "ClusterIP".into()),
                ports.join(","),
                if sel.is_empty() {
                    "none".into()
                } else {
                    sel.join(",")
                }
            )
        })
        .collect();
    rows.sort();
    let mut b = Budgeted::new(budget);
    b.line(&format!("{} services in '{ns}':", svcs.len()));
    let mut shown = 0;
    for r in &rows {
        if !b.line(r) {
            break;
        }
        shown += 1;
    }
    if shown < rows.len() {
        b.out
            .push_str(&format!("and {} more services\n", rows.len() - shown));
    }
    b.out
}

fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `get_events` for the model: warnings first, newest first, messages short.
pub fn events_text(ns: &str, events: &[Event], now: Timestamp, budget: usize) -> String {
    if events.is_empty() {
        return format!("No events in namespace '{ns}'.");
    }
    let mut evs: Vec<&Event> = events.iter().collect();
    let warning = |e: &Event| e.type_.as_deref() == Some("Warning");
    evs.sort_by(|a, b| {
        warning(b)
            .cmp(&warning(a))
            .then(event_time(b).cmp(&event_time(a)))
    });
    let warnings = evs.iter().filter(|e| warning(e)).count();
    let mut b = Budgeted::new(budget);
    b.line(&format!(
        "{} events in '{ns}': {warnings} warnings, {} normal (warnings first, newest first).",
        evs.len(),
        evs.len() - warnings
    ));
    let mut shown = 0;
    for e in &evs {
        let when = event_time(e)
            .map(|t| {
                age(
                    Some(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)),
                    now,
                )
            })
            .unwrap_or_else(|| "-".into());
        let count = e
            .count
            .filter(|c| *c > 1)
            .map(|c| format!(" x{c}"))
            .unwrap_or_default();
        if !b.line(&format!(
            "- {} {} {}/{}{count} {when}: {}",
            if warning(e) { "Warning" } else { "Normal" },
            e.reason.clone().unwrap_or_default(),
            e.involved_object
                .kind
                .clone()
                .unwrap_or_default()
                .to_lowercase(),
            e.involved_object.name.clone().unwrap_or_default(),
            crate::api::truncate(&e.message.clone().unwrap_or_default(), 120),
        )) {
            break;
        }
        shown += 1;
    }
    if shown < evs.len() {
        let rest_warnings = warnings.saturating_sub(shown);
        b.out.push_str(&format!(
            "and {} more events ({rest_warnings} of them warnings)\n",
            evs.len() - shown
        ));
    }
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, ready: bool, restarts: i32, waiting: Option<&str>) -> Pod {
        let state = match waiting {
            Some(r) => json!({"waiting": {"reason": r}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "node-1"},
            "status": {"phase": phase, "containerStatuses": [{
                "name": "c", "image": "nginx", "imageID": "", "ready": ready,
                "restartCount": restarts, "state": state
            }]}
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn many_healthy_pods_become_a_count_and_the_broken_ones_come_first() {
        let mut pods: Vec<Pod> = (0..40)
            .map(|i| pod(&format!("web-{i:02}-abcde"), "Running", true, 0, None))
            .collect();
        pods.push(pod(
            "api-7f9-x1",
            "Running",
            false,
            12,
            Some("CrashLoopBackOff"),
        ));
        pods.push(pod(
            "worker-5-p",
            "Pending",
            false,
            0,
            Some("ImagePullBackOff"),
        ));
        pods.push(pod("cache-1", "Running", true, 3, None));
        let text = pods_text("shop", &pods, now(), 150);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "43 pods in 'shop': 40 healthy, 3 need attention.");
        // Worst first: crash-looping, then pending, then restarted-but-ready.
        assert!(
            lines[2].starts_with("- api-7f9-x1 CrashLoopBackOff 0/1 restarts=12"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("- worker-5-p ImagePullBackOff"),
            "{text}"
        );
        assert!(
            lines[4].starts_with("- cache-1 Running 1/1 restarts=3"),
            "{text}"
        );
        assert!(text.contains("Healthy (Running, ready, no restarts): web-00-abcde"));
        let more = lines.last().unwrap();
        assert!(
            more.starts_with("and ") && more.ends_with(" more healthy pods"),
            "{text}"
        );
        assert!(text.len() <= 150 * BYTES_PER_TOKEN, "{} bytes", text.len());
        // Compact: far smaller than the human table of the same pods.
        let rich_row = "| web-00-abcde | ✅ Running | 0 | node-1 | 60m |\n".len();
        assert!(text.len() < rich_row * 43 / 3, "{text}");
    }

    #[test]
    fn a_small_list_is_complete() {
        let pods = vec![
            pod("a", "Running", true, 0, None),
            pod("b", "Running", true, 0, None),
        ];
        let text = pods_text("ns", &pods, now(), 600);
        assert_eq!(
            text,
            "2 pods in 'ns': 2 healthy, 0 need attention.\nHealthy (Running, ready, no restarts): a, b\n"
        );
    }

    #[test]
    fn deployments_not_ready_first() {
        let d = |name: &str, want: i32, ready: i32| -> Deployment {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"replicas": want, "selector": {}, "template": {}},
                "status": {"readyReplicas": ready, "updatedReplicas": want, "availableReplicas": ready}
            }))
            .unwrap()
        };
        let mut ds: Vec<Deployment> = (0..30).map(|i| d(&format!("svc-{i:02}"), 2, 2)).collect();
        ds.push(d("web", 4, 1));
        let text = deployments_text("shop", &ds, 100);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "31 deployments in 'shop': 30 fully ready, 1 not.");
        assert_eq!(lines[1], "- NOT READY web: 1/4 ready, 4 up to date");
        assert!(lines[2].starts_with("Ready (name ready/desired): svc-00 2/2, svc-01 2/2"));
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with("more fully ready deployments"),
            "{text}"
        );
    }

    #[test]
    fn warnings_come_before_newer_normal_events() {
        let e = |reason: &str, t: &str, at: &str| -> Event {
            serde_json::from_value(json!({
                "metadata": {"name": format!("e-{reason}")},
                "involvedObject": {"kind": "Pod", "name": "api-1"},
                "type": t, "reason": reason, "message": format!("{reason} happened"),
                "lastTimestamp": at
            }))
            .unwrap()
        };
        let evs = vec![
            e("Scheduled", "Normal", "2026-01-01T00:59:00Z"),
            e("BackOff", "Warning", "2026-01-01T00:30:00Z"),
            e("Failed", "Warning", "2026-01-01T00:40:00Z"),
        ];
        let text = events_text("shop", &evs, now(), 600);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("3 events in 'shop': 2 warnings, 1 normal"));
        assert!(
            lines[1].starts_with("- Warning Failed pod/api-1 20m"),
            "{text}"
        );
        assert!(lines[2].starts_with("- Warning BackOff"), "{text}");
        assert!(lines[3].starts_with("- Normal Scheduled"), "{text}");
    }

    #[test]
    fn long_text_is_cut_to_the_budget() {
        let t = "x".repeat(10_000);
        let f = fit(&t, 100);
        assert!(f.len() <= 100 * BYTES_PER_TOKEN && f.ends_with("budget]"));
        assert_eq!(fit("short", 100), "short");
    }
}
