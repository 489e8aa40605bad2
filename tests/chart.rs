//! The Helm chart: lint, schema, server-side dry run of its manifests, and
//! the operator running as the chart's ServiceAccount through real flows.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, api::ListParams};
use kubilitics_ai::api::reason;

const RELEASE_NS: &str = "kubilitics-system";

#[test]
fn chart_lints_and_its_schema_rejects_bad_values() {
    let _ = cluster_dir();
    tool("helm", &["lint", "charts/kubilitics-ai"], None);
    let rendered = tool(
        "helm",
        &[
            "template",
            "kubilitics-ai",
            "charts/kubilitics-ai",
            "-n",
            RELEASE_NS,
        ],
        None,
    );
    for kind in [
        "kind: Deployment",
        "kind: ClusterRole",
        "kind: ServiceAccount",
        "readOnlyRootFilesystem: true",
        // The release namespace is protected like kube-system.
        r#"KUBILITICS_PROTECTED_NAMESPACES, value: "kube-system,kube-public,kube-node-lease,kubilitics-system""#,
    ] {
        assert!(rendered.contains(kind), "missing {kind}");
    }
    // Never users' Secrets: in the release namespace only (a Role), get/update of the webhook
    // certificate's Secret by name, list/watch there for member cluster registrations (off with
    // operator.memberClusters=false), and no right to create Secrets.
    let secret_rules: Vec<&str> = rendered
        .split("\n---")
        .filter(|d| d.contains("secrets"))
        .collect();
    assert_eq!(secret_rules.len(), 1, "{secret_rules:?}");
    let role = secret_rules[0];
    assert!(role.contains("kind: Role\n") && role.contains("name: kubilitics-ai-state"));
    assert!(
        role.contains(
            "resources: [secrets]\n    resourceNames: [kubilitics-ai-webhook-tls]\n    verbs: [get, update]"
        ),
        "{role}"
    );
    assert!(
        role.contains("resources: [secrets]\n    verbs: [list, watch]"),
        "{role}"
    );
    assert_eq!(role.matches("secrets").count(), 2, "{role}");
    let off = tool(
        "helm",
        &[
            "template",
            "x",
            "charts/kubilitics-ai",
            "-n",
            RELEASE_NS,
            "--set",
            "operator.memberClusters=false",
        ],
        None,
    );
    assert_eq!(off.matches("resources: [secrets]").count(), 1);
    for bad in [
        "operator.maxReplicas=5000",
        "operator.logFormat=xml",
        "operator.planTTL=soon",
        "bogus=1",
    ] {
        let path = std::process::Command::new("bash")
            .args(["-c", "source hack/lib.sh && command -v helm"])
            .current_dir(repo())
            .output()
            .unwrap();
        let out = std::process::Command::new(String::from_utf8_lossy(&path.stdout).trim())
            .args(["template", "x", "charts/kubilitics-ai", "--set", bad])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(!out.status.success(), "values.schema.json accepted {bad}");
    }
}

/// The rules of the operator's ClusterRole and Role rendered with `sets`, as "verb resource" pairs.
fn operator_rules(sets: &[&str]) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    let mut args = vec!["template", "k", "charts/kubilitics-ai", "-n", RELEASE_NS];
    for s in sets {
        args.extend(["--set", s]);
    }
    let rendered = tool("helm", &args, None);
    let pairs = |doc: &serde_json::Value| -> Vec<String> {
        let mut out = vec![];
        for rule in doc["rules"].as_array().into_iter().flatten() {
            for r in rule["resources"].as_array().into_iter().flatten() {
                for v in rule["verbs"].as_array().into_iter().flatten() {
                    out.push(format!("{} {}", v.as_str().unwrap(), r.as_str().unwrap()));
                }
            }
        }
        out
    };
    let (mut cluster, mut roles) = (vec![], vec![]);
    for doc in rendered.split("\n---") {
        let Ok(doc) = serde_norway::from_str::<serde_json::Value>(doc) else {
            continue;
        };
        if doc["metadata"]["name"] != "kubilitics-ai-operator" {
            continue;
        }
        match doc["kind"].as_str() {
            Some("ClusterRole") => cluster = pairs(&doc),
            Some("Role") => roles.push((
                doc["metadata"]["namespace"].as_str().unwrap().to_string(),
                pairs(&doc),
            )),
            _ => {}
        }
    }
    (cluster, roles)
}

#[test]
fn a_namespaced_install_grants_nothing_outside_its_namespace() {
    let _ = cluster_dir();
    let (cluster_wide, roles) = operator_rules(&[]);
    assert!(roles.is_empty());
    let (cluster, roles) =
        operator_rules(&["rbac.scope=namespaced", "operator.watchNamespace=shop"]);
    // Only what is cluster-level by nature stays cluster-wide, and nothing that changes a workload.
    let mut want = vec![
        "create subjectaccessreviews",
        "get mutatingwebhookconfigurations",
        "patch mutatingwebhookconfigurations",
        "get validatingadmissionpolicies",
        "get validatingadmissionpolicybindings",
        "list aiclusterapprovalpolicies",
        "watch aiclusterapprovalpolicies",
        "patch aiclusterapprovalpolicies/status",
        "get nodes",
        "list nodes",
        "get namespaces",
    ];
    let mut got: Vec<&str> = cluster.iter().map(String::as_str).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // Everything else, exactly, in a Role in the watched namespace.
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].0, "shop");
    let mut split: Vec<String> = cluster.iter().chain(&roles[0].1).cloned().collect();
    let mut whole = cluster_wide.clone();
    split.sort();
    whole.sort();
    assert_eq!(
        split, whole,
        "the namespaced install must grant the same rights, only scoped"
    );
}

#[tokio::test]
async fn operator_runs_as_the_charts_service_account() {
    let _ = cluster_dir();
    // Server-side dry run of everything the chart renders, then a real install.
    let rendered = tool(
        "helm",
        &[
            "template",
            "kubilitics-ai",
            "charts/kubilitics-ai",
            "-n",
            RELEASE_NS,
        ],
        None,
    );
    tool(
        "kubectl",
        &[
            "create",
            "namespace",
            RELEASE_NS,
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    let _ = std::process::Command::new(kubectl())
        .args(["create", "namespace", RELEASE_NS])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output();
    tool(
        "kubectl",
        &["apply", "--dry-run=server", "-n", RELEASE_NS, "-f", "-"],
        Some(&rendered),
    );
    // The admission policies apply only to namespaces labelled for this test, so that the
    // other tests' operators (running as admin) are not affected.
    tool(
        "helm",
        &[
            "upgrade",
            "--install",
            "kubilitics-ai",
            "charts/kubilitics-ai",
            "-n",
            RELEASE_NS,
            "--wait=false",
            "--set",
            "admissionPolicy.namespaceSelector.matchLabels.kubilitics-ai/policy=enforced",
        ],
        None,
    );

    let ns = TestNs::new("chart").await;
    tool(
        "kubectl",
        &[
            "label",
            "namespace",
            &ns.name,
            "kubilitics-ai/policy=enforced",
        ],
        None,
    );
    // Requests come from admin; bob approves (separation of duties) and may do the steps.
    bind(&ns.name, "bob", "kubilitics-ai-approver");
    bind(&ns.name, "bob", "edit");
    let sa = format!("system:serviceaccount:{RELEASE_NS}:kubilitics-ai");
    // The ServiceAccount may patch its own webhook configuration and no other, nor create one.
    {
        use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
        let hooks = Api::<MutatingWebhookConfiguration>::all(client_as(&sa).await);
        let evil: MutatingWebhookConfiguration =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "kubilitics-ai-evil"}}))
                .unwrap();
        let refused = hooks.create(&Default::default(), &evil).await.unwrap_err();
        assert!(
            matches!(&refused, kube::Error::Api(s) if s.code == 403),
            "{refused}"
        );
        let other = kube::api::Patch::Apply(&evil);
        let refused = hooks
            .patch(
                "kubilitics-ai-evil",
                &kube::api::PatchParams::apply("x"),
                &other,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, kube::Error::Api(s) if s.code == 403),
            "{refused}"
        );
        hooks
            .get(&format!("kubilitics-ai-{RELEASE_NS}"))
            .await
            .expect("the chart created the operator's webhook configuration");
    }
    // Operator and webhook both as the chart's ServiceAccount, identities required.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook_cfg = kubilitics_ai::webhook::WebhookConfig {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        // The chart created this one (empty) and lets its ServiceAccount patch it by name only.
        configuration_name: format!("kubilitics-ai-{RELEASE_NS}"),
        endpoint: kubilitics_ai::webhook::Endpoint::Url(format!("https://127.0.0.1:{port}")),
        hosts: vec!["127.0.0.1".into()],
        namespace: Some(ns.name.clone()),
        separation_of_duties: true,
        gitops_identities: vec![],
        cert_secret: Some((
            RELEASE_NS.to_string(),
            "kubilitics-ai-webhook-tls".to_string(),
        )),
        clusters_namespace: None,
    };
    let stop = kubilitics_ai::webhook::ShutdownHandle::new();
    let (sa_client, stop2) = (client_as(&sa).await, stop.clone());
    let hook = tokio::spawn(async move {
        kubilitics_ai::webhook::run_with_handle(sa_client, hook_cfg, stop2)
            .await
            .expect("webhook as the chart's ServiceAccount");
    });
    let cfg = kubilitics_ai::controller::Config {
        namespace: Some(ns.name.clone()),
        require_identity: true,
        ..Default::default()
    };
    let sa_client = client_as(&sa).await;
    let op = tokio::spawn(async move {
        kubilitics_ai::controller::run(
            sa_client,
            cfg,
            std::sync::Arc::new(kubilitics_ai::agent::BuiltinPlanner),
            Default::default(),
        )
        .await
        .unwrap();
    });
    let _cleanup = scopeguard(move || {
        stop.shutdown();
        hook.abort();
        op.abort();
    });
    // Wait until the webhook answers (a dry-run create comes back stamped).
    wait_for("webhook serving", Duration::from_secs(20), || {
        webhook_stamps("admin", &ns.name)
    })
    .await;
    // An upgrade leaves the filled-in certificate alone (Helm restores fields a chart renders).
    let cert = || async {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client("admin").await, RELEASE_NS)
            .get("kubilitics-ai-webhook-tls")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("tls.key")
            .map(|k| k.0.clone())
            .unwrap_or_default()
    };
    let before = cert().await;
    assert!(
        !before.is_empty(),
        "the first replica fills the certificate"
    );
    tool(
        "helm",
        &[
            "upgrade",
            "kubilitics-ai",
            "charts/kubilitics-ai",
            "-n",
            RELEASE_NS,
            "--wait=false",
            "--reuse-values",
            "--set",
            "operator.maxSteps=9",
        ],
        None,
    );
    assert_eq!(
        cert().await,
        before,
        "helm upgrade changed the webhook certificate"
    );
    deployment(&ns.name, "nginx", 3).await;
    // Its pod is used for the logs and delete_pod tools; nothing else touches it.
    deployment(&ns.name, "solo", 1).await;

    // Read-only tools.
    for (name, prompt) in [
        ("pods", "how are my pods doing?"),
        ("deps", "list deployments"),
        ("svcs", "list services"),
        ("events", "show recent events"),
        ("health", "is my cluster healthy?"),
    ] {
        ask("admin", &ns.name, name, prompt).await;
        let r = wait_phase(&ns.name, name, "Answered").await;
        let s = r.status.unwrap();
        assert!(
            s.investigation.iter().all(|c| c.outcome == "Succeeded"),
            "{name}: {:?}",
            s.investigation
        );
    }

    // Every mutating tool, planned (dry run) and executed under the chart's RBAC.
    let prompts = [
        ("scale", "scale deployment nginx to 5 replicas"),
        ("restart", "restart deployment nginx"),
        ("cm", "create configmap settings with A=1"),
    ];
    for (name, prompt) in prompts {
        ask("admin", &ns.name, name, prompt).await;
        let s = approve_and_finish("bob", &ns.name, name)
            .await
            .status
            .unwrap();
        assert!(
            !events(
                &ns.name,
                s.plan_ref.as_deref().unwrap(),
                reason::STEP_SUCCEEDED
            )
            .await
            .is_empty()
        );
    }
    assert_eq!(replicas(&ns.name, "nginx").await, 5);
    assert!(
        Api::<ConfigMap>::namespaced(client("admin").await, &ns.name)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some()
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client("admin").await, &ns.name);
    let solo = ListParams::default().labels("app=solo");
    wait_for("a running pod", Duration::from_secs(30), || async {
        pods.list(&solo).await.unwrap().items.iter().any(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    })
    .await;
    let pod = pods
        .list(&solo)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .unwrap();
    let pod_name = pod.metadata.name.unwrap();
    ask(
        "admin",
        &ns.name,
        "logs",
        &format!("show the last 3 lines of logs for pod {pod_name}"),
    )
    .await;
    let s = wait_phase(&ns.name, "logs", "Answered")
        .await
        .status
        .unwrap();
    assert!(
        s.answer.as_deref().unwrap().contains("GET /healthz"),
        "{:?}",
        s.answer
    );
    assert!(
        !s.answer.as_deref().unwrap().contains("hunter2"),
        "log secrets must be redacted"
    );
    ask("admin", &ns.name, "del", &format!("delete pod {pod_name}")).await;
    let s = approve_and_finish("bob", &ns.name, "del")
        .await
        .status
        .unwrap();
    assert_eq!(
        s.requester.as_ref().unwrap().username,
        "admin",
        "identity stamped by the webhook"
    );

    // The ValidatingAdmissionPolicy: only the operator writes plan status, even for cluster admins.
    let err = Api::<kubilitics_ai::api::AIPlan>::namespaced(client("admin").await, &ns.name)
        .patch_status(
            s.plan_ref.as_deref().unwrap(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Approved"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.message.contains("written only by the kubilitics-ai operator")),
        "{err}"
    );
    let _ = std::process::Command::new(kubectl())
        .args([
            "delete",
            "mutatingwebhookconfiguration",
            &format!("kubilitics-ai-{}", ns.name),
        ])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output();
}

/// Runs `f` when dropped (also when the test panics).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The operator's ClusterRole rendered with `sets`, as "verb group/resource" pairs (core group
/// written as "core").
fn grouped_rules(sets: &[&str]) -> std::collections::BTreeSet<String> {
    let mut args = vec!["template", "k", "charts/kubilitics-ai", "-n", RELEASE_NS];
    for s in sets {
        args.extend(["--set", s]);
    }
    let rendered = tool("helm", &args, None);
    let mut out = std::collections::BTreeSet::new();
    for doc in rendered.split("\n---") {
        let Ok(doc) = serde_norway::from_str::<serde_json::Value>(doc) else {
            continue;
        };
        if doc["metadata"]["name"] != "kubilitics-ai-operator" || doc["kind"] != "ClusterRole" {
            continue;
        }
        for rule in doc["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                let g = match g.as_str().unwrap() {
                    "" => "core",
                    g => g,
                };
                for r in rule["resources"].as_array().into_iter().flatten() {
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        out.insert(format!(
                            "{} {g}/{}",
                            v.as_str().unwrap(),
                            r.as_str().unwrap()
                        ));
                    }
                }
            }
        }
    }
    out
}

/// One sample call of every tool (every kind where the tool takes one), from JSON.
fn tool_samples() -> (
    Vec<kubilitics_ai::tools::ReadCall>,
    Vec<kubilitics_ai::tools::Mutation>,
) {
    use kubilitics_ai::tools::GENERIC_KINDS;
    use serde_json::json;
    let ns = "shop";
    let mut reads = vec![];
    for call in [
        json!({"tool": "list_pods", "namespace": ns}),
        json!({"tool": "get_pod_details", "namespace": ns, "name": "p"}),
        json!({"tool": "get_pod_logs", "namespace": ns, "name": "p"}),
        json!({"tool": "list_deployments", "namespace": ns}),
        json!({"tool": "get_deployment_status", "namespace": ns, "name": "d"}),
        json!({"tool": "list_services", "namespace": ns}),
        json!({"tool": "get_events", "namespace": ns}),
        json!({"tool": "get_cluster_health"}),
        json!({"tool": "find_workload", "namespace": ns, "name": "w"}),
        json!({"tool": "diagnose", "namespace": ns}),
    ] {
        reads.push(serde_json::from_value(call).unwrap());
    }
    // describe_resource: every kind it reads (Secrets are refused before any API call).
    for kind in [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Service",
        "ConfigMap",
        "Node",
        "Namespace",
    ] {
        reads.push(
            serde_json::from_value(
                json!({"tool": "describe_resource", "namespace": ns, "kind": kind, "name": "x"}),
            )
            .unwrap(),
        );
    }
    let mut steps = vec![];
    for kind in ["Deployment", "StatefulSet"] {
        for tool in ["scale_deployment", "rollout_restart"] {
            steps.push(
                json!({"tool": tool, "namespace": ns, "name": "w", "kind": kind, "replicas": 1}),
            );
        }
    }
    steps.push(json!({"tool": "delete_pod", "namespace": ns, "name": "p"}));
    steps.push(json!({"tool": "create_configmap", "namespace": ns, "name": "c", "data": {}}));
    for (kind, ..) in GENERIC_KINDS {
        steps.push(json!({"tool": "patch_resource", "namespace": ns, "kind": kind, "name": "x", "patch": {}}));
        steps.push(json!({"tool": "apply_manifest", "namespace": ns,
            "manifest": {"kind": kind, "metadata": {"name": "x"}}}));
    }
    let steps = steps
        .into_iter()
        .map(|s| serde_json::from_value(s).unwrap())
        .collect();
    (reads, steps)
}

/// What the ServiceAccount may do is exactly what the code does: every "verb group/resource" of
/// the chart's operator ClusterRole is used by a tool, a step (its dry run, its drift read) or the
/// operator itself, and every one of those is granted. A tool added without its rule, or a
/// rule nothing uses, fails here.
#[test]
fn the_service_accounts_verbs_are_exactly_what_the_code_uses() {
    let _ = cluster_dir();
    let (reads, steps) = tool_samples();
    // Every tool the model is offered has a sample above.
    let mut sampled: Vec<String> = reads
        .iter()
        .map(|r| r.name().to_string())
        .chain(steps.iter().map(|s| s.tool_name().to_string()))
        .collect();
    sampled.sort();
    sampled.dedup();
    let mut offered: Vec<String> = kubilitics_ai::agent::schema::tool_specs()
        .into_iter()
        .map(|t| t.name)
        .collect();
    offered.sort();
    assert_eq!(sampled, offered, "a tool has no sample in tool_samples()");

    let pair = |p: &kubilitics_ai::access::Permission| {
        let g = if p.group.is_empty() { "core" } else { p.group };
        let r = match p.subresource {
            Some(s) => format!("{}/{s}", p.resource),
            None => p.resource.to_string(),
        };
        format!("{} {g}/{r}", p.verb)
    };
    let mut used = std::collections::BTreeSet::new();
    for r in &reads {
        used.extend(r.permissions().iter().map(pair));
    }
    for s in &steps {
        for p in s.permissions() {
            used.insert(pair(&p));
            // Before a step the executor reads the live object (drift check).
            used.insert(pair(&kubilitics_ai::access::Permission {
                verb: "get",
                ..p.clone()
            }));
            // A created object's rollback deletes it again.
            if s.tool_name() == "apply_manifest" && p.verb == "create" {
                used.insert(pair(&kubilitics_ai::access::Permission {
                    verb: "delete",
                    ..p
                }));
            }
        }
    }
    // The operator's own calls, each with its reason.
    for (p, _why) in [
        (
            "create authorization.k8s.io/subjectaccessreviews",
            "requester/approver checks",
        ),
        (
            "get admissionregistration.k8s.io/mutatingwebhookconfigurations",
            "its own webhook",
        ),
        (
            "patch admissionregistration.k8s.io/mutatingwebhookconfigurations",
            "CA bundle",
        ),
        (
            "get admissionregistration.k8s.io/validatingadmissionpolicies",
            "identity policy",
        ),
        (
            "get admissionregistration.k8s.io/validatingadmissionpolicybindings",
            "identity policy",
        ),
        ("get ai.kubilitics.io/airequests", "reconcile"),
        ("list ai.kubilitics.io/airequests", "watch cache"),
        ("watch ai.kubilitics.io/airequests", "watch cache"),
        ("get ai.kubilitics.io/aiplans", "reconcile"),
        ("list ai.kubilitics.io/aiplans", "watch cache"),
        ("watch ai.kubilitics.io/aiplans", "watch cache"),
        ("create ai.kubilitics.io/aiplans", "writes plans"),
        ("get ai.kubilitics.io/airequests/status", "status"),
        (
            "patch ai.kubilitics.io/airequests/status",
            "status (server-side apply)",
        ),
        (
            "update ai.kubilitics.io/airequests/status",
            "status (compare-and-swap)",
        ),
        ("get ai.kubilitics.io/aiplans/status", "status"),
        (
            "patch ai.kubilitics.io/aiplans/status",
            "status (server-side apply)",
        ),
        (
            "update ai.kubilitics.io/aiplans/status",
            "status (compare-and-swap)",
        ),
        ("create events.k8s.io/events", "every decision is an Event"),
        (
            "list ai.kubilitics.io/aiapprovalpolicies",
            "policy controller and plan gate",
        ),
        (
            "watch ai.kubilitics.io/aiapprovalpolicies",
            "policy controller",
        ),
        (
            "patch ai.kubilitics.io/aiapprovalpolicies/status",
            "policy Ready condition",
        ),
        (
            "list ai.kubilitics.io/aiclusterapprovalpolicies",
            "policy controller and plan gate",
        ),
        (
            "watch ai.kubilitics.io/aiclusterapprovalpolicies",
            "policy controller",
        ),
        (
            "patch ai.kubilitics.io/aiclusterapprovalpolicies/status",
            "policy Ready condition",
        ),
        (
            "get apps/replicasets",
            "verification: the rollout's new ReplicaSet",
        ),
        (
            "list apps/replicasets",
            "verification: the rollout's new ReplicaSet",
        ),
    ] {
        used.insert(p.to_string());
    }
    let granted = grouped_rules(&[]);
    let unused: Vec<&String> = granted.difference(&used).collect();
    let missing: Vec<&String> = used.difference(&granted).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "granted but unused: {unused:#?}\nused but not granted: {missing:#?}"
    );
}
