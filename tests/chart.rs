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
    ] {
        assert!(rendered.contains(kind), "missing {kind}");
    }
    assert!(
        !rendered.contains("secrets"),
        "the operator must never be granted Secrets"
    );
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
        ],
        None,
    );

    let ns = TestNs::new("chart").await;
    let sa = format!("system:serviceaccount:{RELEASE_NS}:kubilitics-ai");
    let _op = start_operator_with(client_as(&sa).await, &ns.name).await;
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
        let s = wait_phase(&ns.name, name, "AwaitingApproval")
            .await
            .status
            .unwrap();
        approve(
            "admin",
            &ns.name,
            s.plan_ref.as_deref().unwrap(),
            s.plan_id.as_deref().unwrap(),
        )
        .await
        .unwrap();
        wait_phase(&ns.name, name, "Succeeded").await;
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
    let s = wait_phase(&ns.name, "del", "AwaitingApproval")
        .await
        .status
        .unwrap();
    approve(
        "admin",
        &ns.name,
        s.plan_ref.as_deref().unwrap(),
        s.plan_id.as_deref().unwrap(),
    )
    .await
    .unwrap();
    wait_phase(&ns.name, "del", "Succeeded").await;
}
