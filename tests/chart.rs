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
    // Never users' Secrets: one rule, on the webhook certificate's Secret by name, in the
    // release namespace only (a Role), and no right to create or list Secrets.
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
    assert_eq!(role.matches("secrets").count(), 1, "{role}");
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
        "get aiclusterapprovalpolicies",
        "list aiclusterapprovalpolicies",
        "watch aiclusterapprovalpolicies",
        "patch aiclusterapprovalpolicies/status",
        "get nodes",
        "list nodes",
        "watch nodes",
        "get namespaces",
        "list namespaces",
        "watch namespaces",
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
