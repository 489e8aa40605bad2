//! The container image (`make image`, `KUBILITICS_TEST_IMAGE`) as the operator: `podman run`
//! read-only, without capabilities, as uid 65532, the webhook on and identities required. A
//! request is planned through an OpenAI-compatible endpoint the container reaches by host *name*,
//! approved by another person, executed; then `podman stop` ends the container with exit 0.
//! Skipped (with a message) when no image was built; `make test` always builds one.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use common::*;
use serde_json::{Value, json};

/// The name the container resolves through its /etc/hosts (`podman run --add-host`).
const LLM_HOST: &str = "llm.kubilitics.test";

fn image() -> Option<String> {
    std::env::var("KUBILITICS_TEST_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
}

fn podman(args: &[&str]) -> std::process::Output {
    std::process::Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", repo().join("hack/image/containers.conf"))
        .output()
        .expect("run podman")
}

/// A model that scales `web` to 3, then says so; every request it saw (headers, body).
type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

async fn model(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let n = {
        let mut s = seen.lock().unwrap();
        s.push((headers, body));
        s.len()
    };
    let message = if n == 1 {
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_scale", "type": "function",
            "function": {"name": "scale_deployment",
                         "arguments": json!({"name": "web", "replicas": 3}).to_string()}}]})
    } else {
        json!({"role": "assistant", "content": "The plan scales web to 3 replicas."})
    };
    Json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
}

/// Removes the container and the webhook configuration however the test ends.
struct Cleanup {
    container: String,
    webhook: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.container]);
        let _ = std::process::Command::new(kubectl())
            .args([
                "delete",
                "mutatingwebhookconfiguration",
                &self.webhook,
                "--wait=false",
            ])
            .env("KUBECONFIG", kubeconfig("admin"))
            .output();
    }
}

#[tokio::test]
async fn the_image_runs_the_operator_and_stops_cleanly() {
    let Some(image) = image() else {
        eprintln!("skipped: KUBILITICS_TEST_IMAGE is not set (make image; make test sets it)");
        return;
    };
    let ns = TestNs::new("image").await;
    ensure_chart_rbac();
    bind(&ns.name, "alice", "kubilitics-ai-requester");
    bind(&ns.name, "alice", "edit");
    bind(&ns.name, "bob", "kubilitics-ai-approver");
    bind(&ns.name, "bob", "edit");
    deployment(&ns.name, "web", 1).await;

    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(model))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let llm_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (hook_port, metrics_port) = (free_port(), free_port());
    let container = format!("kubilitics-ai-{}", ns.name);
    let webhook = format!("kubilitics-ai-{}", ns.name);
    let _cleanup = Cleanup {
        container: container.clone(),
        webhook: webhook.clone(),
    };
    // Read-only mounts of the admin kubeconfig and the CA it names, at the same paths.
    let kc = kubeconfig("admin");
    let ca = cluster_dir().join("pki/ca.crt");
    let (kc, ca) = (kc.to_str().unwrap(), ca.to_str().unwrap());
    let started = Instant::now();
    let run = podman(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "host",
        "--read-only",
        "--cap-drop=ALL",
        "--user",
        "65532",
        "--add-host",
        &format!("{LLM_HOST}:127.0.0.1"),
        "-v",
        &format!("{kc}:{kc}:ro"),
        "-v",
        &format!("{ca}:{ca}:ro"),
        "-e",
        &format!("KUBECONFIG={kc}"),
        "-e",
        &format!("POD_NAMESPACE={}", ns.name),
        "-e",
        "RUST_LOG=info,kube=warn",
        &image,
        "run",
        "--namespace",
        &ns.name,
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
        "--webhook-addr",
        &format!("127.0.0.1:{hook_port}"),
        "--webhook-url",
        &format!("https://127.0.0.1:{hook_port}"),
        "--webhook-configuration",
        &webhook,
        "--provider",
        "openai",
        "--llm-base-url",
        &format!("http://{LLM_HOST}:{llm_port}/v1"),
        "--llm-model",
        "scripted",
        "--llm-api-key",
        "test-key",
    ]);
    assert!(
        run.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let logs = || {
        let out = podman(&["logs", &container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // The containerised webhook stamps identities (a dry-run create comes back stamped).
    let serving = tokio::time::timeout(Duration::from_secs(60), async {
        while !webhook_stamps("alice", &ns.name).await {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(
        serving.is_ok(),
        "the image's webhook never served:\n{}",
        logs()
    );

    // alice asks; the plan comes from the model reached by name; bob approves; it runs.
    create_as(
        "alice",
        &ns.name,
        &request("scale", "make web run 3 replicas"),
    )
    .await
    .unwrap();
    let s = wait_phase(&ns.name, "scale", "AwaitingApproval")
        .await
        .status
        .unwrap();
    {
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty(), "the model was never called:\n{}", logs());
        let host = seen[0].0.get("host").and_then(|h| h.to_str().ok());
        assert_eq!(host, Some(format!("{LLM_HOST}:{llm_port}").as_str()));
        assert!(seen[0].1.to_string().contains("make web run 3 replicas"));
    }
    approve(
        "bob",
        &ns.name,
        s.plan_ref.as_deref().unwrap(),
        s.plan_id.as_deref().unwrap(),
    )
    .await
    .unwrap();
    wait_phase(&ns.name, "scale", "Succeeded").await;
    let to_succeeded = started.elapsed();
    assert_eq!(replicas(&ns.name, "web").await, 3);

    // SIGTERM to PID 1: a graceful stop with exit 0 (an ignored SIGTERM ends in SIGKILL, 137).
    let stopping = Instant::now();
    let stop = podman(&["stop", "--time", "10", &container]);
    let stop_time = stopping.elapsed();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &container]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout).trim(),
        "0",
        "exit code after podman stop:\n{}",
        logs()
    );
    let report = format!(
        "# Written by tests/image.rs (make test); do not edit.\nimage: {image}\nrun_to_succeeded_seconds: {:.1}\nstop_seconds: {:.2}\n",
        to_succeeded.as_secs_f64(),
        stop_time.as_secs_f64()
    );
    eprint!("{report}");
    std::fs::write(repo().join("docs/image-run.txt"), report).unwrap();
}

/// The chart rendered with the built image runs it the way the image needs: its uid, non-root,
/// a read-only root filesystem, no capabilities.
#[test]
fn the_chart_runs_the_image_as_built() {
    let Some(image) = image() else {
        eprintln!("skipped: KUBILITICS_TEST_IMAGE is not set (make image; make test sets it)");
        return;
    };
    let _ = cluster_dir();
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let rendered = tool(
        "helm",
        &[
            "template",
            "kubilitics-ai",
            "charts/kubilitics-ai",
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
        ],
        None,
    );
    let deployment: Value = rendered
        .split("\n---")
        .filter(|d| d.contains("kind: Deployment"))
        .map(|d| serde_norway::from_str(d).unwrap())
        .next()
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], json!(image));
    let inspect = podman(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    let user = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    let uid: i64 = user.split(':').next().unwrap().parse().unwrap();
    assert_eq!(
        pod["securityContext"]["runAsUser"],
        json!(uid),
        "image user {user}"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"],
        json!(true)
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
}
