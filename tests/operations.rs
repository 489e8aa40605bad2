//! Operating it: metrics on /metrics after a real flow, health endpoints,
//! and TTL housekeeping of finished requests.

mod common;

use std::time::Duration;

use common::*;
use kube::{Api, api::ListParams};
use kubilitics_ai::api::{AIPlan, AIRequest};

async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn metric(body: &str, name_and_labels: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_a_demo_flow_and_health_endpoints_answer() {
    let ns = TestNs::new("metrics").await;
    deployment(&ns.name, "nginx", 3).await;
    let port = free_port();
    let mut op = std::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"))
        .args([
            "run",
            "--insecure-dev-mode",
            "--namespace",
            &ns.name,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", kubeconfig("admin"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("/readyz", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
            && http_get(port, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);

    ask("admin", &ns.name, "pods", "how are my pods doing?").await;
    wait_phase(&ns.name, "pods", "Answered").await;
    ask(
        "admin",
        &ns.name,
        "scale-nginx",
        "scale deployment nginx to 5 replicas",
    )
    .await;
    approve_and_finish("admin", &ns.name, "scale-nginx").await;

    let (code, body) = http_get(port, "/metrics").await;
    let _ = op.kill();
    let _ = op.wait();
    assert_eq!(code, 200);
    for (series, want) in [
        (
            r#"kubilitics_ai_requests_total{operation_type="list_pods",status="answered"}"#,
            1.0,
        ),
        (
            r#"kubilitics_ai_requests_total{operation_type="scale_deployment",status="planned"}"#,
            1.0,
        ),
        (
            r#"kubilitics_ai_requests_total{operation_type="scale_deployment",status="succeeded"}"#,
            1.0,
        ),
        (
            r#"kubilitics_tool_executions_total{status="Succeeded",tool_name="list_pods"}"#,
            1.0,
        ),
        (
            r#"kubilitics_tool_executions_total{status="Succeeded",tool_name="get_deployment_status"}"#,
            1.0,
        ),
        (
            r#"kubilitics_ai_plans_total{phase="AwaitingApproval"}"#,
            1.0,
        ),
        (r#"kubilitics_ai_plans_total{phase="Approved"}"#, 1.0),
        (r#"kubilitics_ai_plans_total{phase="Succeeded"}"#, 1.0),
        (
            r#"kubilitics_ai_request_duration_seconds_count{operation_type="scale_deployment"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&body, series), want, "{series}\n{body}");
    }
    assert!(body.contains(
        r#"kubilitics_ai_request_duration_seconds_bucket{operation_type="list_pods",le="0.1"}"#
    ));
    assert!(body.contains(r#"le="30"}"#));
}

#[tokio::test]
async fn finished_requests_and_their_plans_are_deleted_after_the_ttl() {
    let ns = TestNs::new("ttl").await;
    let _op = start_operator(&ns.name, |c| c.finished_ttl = Some(Duration::from_secs(2))).await;
    deployment(&ns.name, "web", 1).await;
    ask("admin", &ns.name, "q", "list deployments").await;
    ask("admin", &ns.name, "s", "scale deployment web to 2 replicas").await;
    let s = wait_phase(&ns.name, "s", "AwaitingApproval")
        .await
        .status
        .unwrap();
    approve_status("admin", &ns.name, &s).await.unwrap();
    let requests = Api::<AIRequest>::namespaced(client("admin").await, &ns.name);
    let plans = Api::<AIPlan>::namespaced(client("admin").await, &ns.name);
    wait_for(
        "requests deleted after TTL",
        Duration::from_secs(30),
        || async {
            requests
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        },
    )
    .await;
    wait_for(
        "plans garbage-collected with their request",
        Duration::from_secs(30),
        || async {
            plans
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
        },
    )
    .await;
    assert_eq!(replicas(&ns.name, "web").await, 2);
}

#[tokio::test]
async fn rate_limit_holds_across_operator_restarts() {
    use kubilitics_ai::safety::quota::QuotaConfig;
    let ns = TestNs::new("quota").await;
    let quota = QuotaConfig {
        max_requests: Some(2),
        max_tokens: None,
        window: Duration::from_secs(3600),
        namespace: ns.name.clone(),
        configmap: "kubilitics-ai-quota".into(),
    };
    let q = quota.clone();
    let op = start_operator(&ns.name, move |c| c.quota = Some(q)).await;
    ask("admin", &ns.name, "r1", "list pods").await;
    wait_phase(&ns.name, "r1", "Answered").await;
    ask("admin", &ns.name, "r2", "list services").await;
    wait_phase(&ns.name, "r2", "Answered").await;
    ask("admin", &ns.name, "r3", "list deployments").await;
    let r = wait_phase(&ns.name, "r3", "Pending").await;
    let ready = r
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "RateLimited");
    assert!(ready.message.contains("limit 2"), "{}", ready.message);
    assert!(!events(&ns.name, "r3", "RateLimited").await.is_empty());

    // A restarted operator still counts the first two requests.
    drop(op);
    let _op = start_operator(&ns.name, move |c| c.quota = Some(quota)).await;
    ask("admin", &ns.name, "r4", "list pods").await;
    // Pending (with RateLimited) is the proof the restarted operator counted it.
    wait_phase(&ns.name, "r4", "Pending").await;
    let cm =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client("admin").await, &ns.name)
            .get("kubilitics-ai-quota")
            .await
            .unwrap();
    let counter: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["unknown"]).unwrap();
    assert_eq!(counter["requests"], 2);
}
