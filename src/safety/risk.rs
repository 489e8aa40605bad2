//! Content risk: what a manifest or a patch would let a workload do — reach the node, run as
//! another identity, open a Service to the world. Steps that carry such content are never Low:
//! they are High with the reasons shown, or blocked outright by a guardrail option.
//!
//! The rules read the document by structure wherever it sits (a Pod, a workload's pod template,
//! a CronJob's job template, a merge patch fragment, or a JSON patch operation's `path`/`value`),
//! so the same rule holds for `apply_manifest` and `patch_resource`.

use serde_json::Value;

/// Why a manifest or patch is risky, one sentence per finding (empty: nothing risky found).
pub fn content_risks(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    walk(doc, &mut found);
    found.sort();
    found.dedup();
    found
}

fn walk(v: &Value, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            // A JSON patch operation: its last path segment is the key it writes.
            if let (Some(Value::String(path)), Some(value)) = (map.get("path"), map.get("value"))
                && map.contains_key("op")
            {
                let key = path.rsplit('/').next().unwrap_or_default();
                rule(key, value, found);
                // `add /spec/template/spec/volumes/-` with a hostPath volume, etc.
                walk(value, found);
                return;
            }
            for (k, value) in map {
                rule(k, value, found);
                // Free-form maps: a ConfigMap key or a label named `nodeName` configures nothing.
                if !matches!(
                    k.as_str(),
                    "data" | "binaryData" | "stringData" | "labels" | "annotations"
                ) {
                    walk(value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
        _ => {}
    }
}

fn rule(key: &str, value: &Value, found: &mut Vec<String>) {
    let truthy = value.as_bool() == Some(true);
    let text = value.as_str();
    match key {
        "privileged" if truthy => found.push("a privileged container".into()),
        "allowPrivilegeEscalation" if truthy => found.push("allowPrivilegeEscalation: true".into()),
        "hostPath" if value.is_object() => found.push(format!(
            "a hostPath volume ({})",
            value["path"].as_str().unwrap_or("?")
        )),
        "hostNetwork" | "hostPID" | "hostIPC" if truthy => found.push(format!("{key}: true")),
        "add" if value.as_array().is_some_and(|a| !a.is_empty()) => {
            let caps: Vec<&str> = value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            found.push(format!("added capabilities ({})", caps.join(", ")));
        }
        "runAsUser" if value.as_i64() == Some(0) => found.push("runAsUser: 0 (root)".into()),
        "nodeName" if text.is_some_and(|t| !t.is_empty()) => found.push(format!(
            "nodeName {} (bypasses the scheduler)",
            text.unwrap_or_default()
        )),
        "serviceAccountName" | "serviceAccount" if text.is_some() => found.push(format!(
            "serviceAccountName {} (runs with that account's rights)",
            text.unwrap_or_default()
        )),
        "automountServiceAccountToken" if value.is_boolean() => {
            found.push(format!("automountServiceAccountToken: {value}"))
        }
        "type" if matches!(text, Some("LoadBalancer" | "NodePort" | "ExternalName")) => {
            found.push(format!("a Service of type {}", text.unwrap_or_default()))
        }
        "externalIPs" if value.as_array().is_some_and(|a| !a.is_empty()) => {
            found.push("Service externalIPs".into())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn each_pod_escape_is_found_wherever_the_pod_spec_sits() {
        let cases = [
            (
                json!({"containers": [{"name": "c", "securityContext": {"privileged": true}}]}),
                "a privileged container",
            ),
            (
                json!({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}),
                "a hostPath volume (/)",
            ),
            (json!({"hostNetwork": true}), "hostNetwork: true"),
            (json!({"hostPID": true}), "hostPID: true"),
            (json!({"hostIPC": true}), "hostIPC: true"),
            (
                json!({"containers": [{"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
                "added capabilities (SYS_ADMIN)",
            ),
            (
                json!({"containers": [{"securityContext": {"allowPrivilegeEscalation": true}}]}),
                "allowPrivilegeEscalation: true",
            ),
            (
                json!({"securityContext": {"runAsUser": 0}}),
                "runAsUser: 0 (root)",
            ),
            (
                json!({"nodeName": "node-1"}),
                "nodeName node-1 (bypasses the scheduler)",
            ),
            (
                json!({"serviceAccountName": "admin"}),
                "serviceAccountName admin (runs with that account's rights)",
            ),
            (
                json!({"automountServiceAccountToken": true}),
                "automountServiceAccountToken: true",
            ),
        ];
        for (spec, want) in cases {
            // As a Pod, as a Deployment's template, as a CronJob's job template, as a patch.
            let docs = [
                pod(spec.clone()),
                json!({"kind": "Deployment", "spec": {"template": {"spec": spec.clone()}}}),
                json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": spec.clone()}}}}}),
                json!({"spec": {"template": {"spec": spec.clone()}}}),
            ];
            for doc in docs {
                assert_eq!(content_risks(&doc), vec![want.to_string()], "{doc}");
            }
        }
    }

    #[test]
    fn services_open_to_the_outside_are_risky() {
        for t in ["LoadBalancer", "NodePort", "ExternalName"] {
            let svc = json!({"kind": "Service", "spec": {"type": t, "ports": [{"port": 80}]}});
            assert_eq!(content_risks(&svc), vec![format!("a Service of type {t}")]);
        }
        let ips = json!({"spec": {"externalIPs": ["1.2.3.4"]}});
        assert_eq!(content_risks(&ips), vec!["Service externalIPs".to_string()]);
    }

    #[test]
    fn json_patch_operations_are_read_by_their_path() {
        let patch = json!([
            {"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true},
            {"op": "add", "path": "/spec/template/spec/volumes/-",
             "value": {"name": "root", "hostPath": {"path": "/etc"}}},
            {"op": "replace", "path": "/spec/replicas", "value": 3}
        ]);
        assert_eq!(
            content_risks(&patch),
            vec![
                "a hostPath volume (/etc)".to_string(),
                "hostNetwork: true".to_string()
            ]
        );
    }

    #[test]
    fn ordinary_workloads_are_not_flagged() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"},
                     "template": {"spec": {
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{"name": "web", "image": "nginx",
                            "securityContext": {"privileged": false, "allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"], "add": []}}}],
                        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]}}}
        });
        assert!(content_risks(&deployment).is_empty());
        let svc = json!({"kind": "Service", "spec": {"type": "ClusterIP", "externalIPs": []}});
        assert!(content_risks(&svc).is_empty());
        assert!(content_risks(&json!({"data": {"hostNetwork": "true"}})).is_empty());
        let cm = json!({"kind": "ConfigMap", "data": {"nodeName": "n1", "type": "NodePort"},
                        "metadata": {"labels": {"serviceAccountName": "x"}}});
        assert!(content_risks(&cm).is_empty());
    }
}
