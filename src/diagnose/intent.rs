//! How the builtin planner recognises an alert prompt (written by [`crate::incidents`]) and the
//! object and namespace its labels name. The alert's text is data: only `label=value` pairs of
//! known Kubernetes object labels are read, and only as names to narrow the diagnosis.

use std::sync::LazyLock;

use regex::Regex;

/// The first line of every prompt the Alertmanager receiver writes.
pub const ALERT_PREFIX: &str = "Investigate firing alert";

/// Whether the prompt is one the receiver wrote for an alert.
pub fn is_alert_prompt(prompt: &str) -> bool {
    prompt.trim_start().starts_with(ALERT_PREFIX)
}

static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*-\s*([a-z_]+)=([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)\s*$")
        .expect("static regex")
});

/// Alert labels that name an object, most specific first (kube-state-metrics' names).
const OBJECT_LABELS: &[(&str, &str)] = &[
    ("pod", "pod"),
    ("persistentvolumeclaim", "persistentvolumeclaim"),
    ("job_name", "job"),
    ("horizontalpodautoscaler", "horizontalpodautoscaler"),
    ("service", "service"),
    ("deployment", "deployment"),
    ("statefulset", "statefulset"),
];

fn labels(prompt: &str) -> Vec<(String, String)> {
    if !is_alert_prompt(prompt) {
        return vec![];
    }
    LABEL
        .captures_iter(prompt)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// The (kind word, name) an alert's labels point at.
pub fn alert_object(prompt: &str) -> Option<(&'static str, String)> {
    let l = labels(prompt);
    OBJECT_LABELS.iter().find_map(|(label, kind)| {
        l.iter()
            .find(|(k, _)| k == label)
            .map(|(_, v)| (*kind, v.clone()))
    })
}
