//! Planner accuracy: a table of natural-language requests with the expected
//! tool and arguments, run through the builtin intent parser and, when
//! `ACCURACY_LLM_URL` is set (an OpenAI-compatible `/v1` base URL), through a
//! model with the same tool schemas the operator sends. Prints accuracy and
//! latency per category. `make accuracy` runs it against the local model (`cargo run --example accuracy`).

use std::time::Instant;

use kubilitics_ai::agent::{intent, openai::system_prompt, schema::tool_specs};
use kubilitics_ai::api::Mode;
use serde_json::{Value, json};

/// (category, prompt, expected tool, expected arguments subset)
fn cases() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    vec![
        ("list", "How are my pods doing?", "list_pods", json!({})),
        (
            "list",
            "list pods in namespace shop",
            "list_pods",
            json!({"namespace": "shop"}),
        ),
        ("list", "show me all pods", "list_pods", json!({})),
        (
            "list",
            "which pods are failing in shop",
            "list_pods",
            json!({}),
        ),
        ("list", "list deployments", "list_deployments", json!({})),
        (
            "list",
            "show deployments in the payments namespace",
            "list_deployments",
            json!({"namespace": "payments"}),
        ),
        ("list", "list services", "list_services", json!({})),
        (
            "list",
            "what services are there in namespace shop",
            "list_services",
            json!({"namespace": "shop"}),
        ),
        (
            "list",
            "get pods -n monitoring",
            "list_pods",
            json!({"namespace": "monitoring"}),
        ),
        ("list", "what pods are crashing?", "list_pods", json!({})),
        (
            "describe",
            "describe pod web-7d876db474-4779w",
            "get_pod_details",
            json!({"name": "web-7d876db474-4779w"}),
        ),
        (
            "describe",
            "what's wrong with pod worker-ghi789?",
            "get_pod_details",
            json!({"name": "worker-ghi789"}),
        ),
        (
            "describe",
            "status of deployment nginx",
            "get_deployment_status",
            json!({"name": "nginx"}),
        ),
        (
            "describe",
            "what is the rollout status of the api deployment",
            "get_deployment_status",
            json!({"name": "api"}),
        ),
        (
            "describe",
            "describe service web",
            "describe_resource",
            json!({"name": "web"}),
        ),
        (
            "describe",
            "describe configmap app-config",
            "describe_resource",
            json!({"name": "app-config"}),
        ),
        (
            "describe",
            "describe statefulset db",
            "describe_resource",
            json!({"name": "db"}),
        ),
        (
            "describe",
            "show me node kwok-node-0",
            "describe_resource",
            json!({"name": "kwok-node-0"}),
        ),
        (
            "logs",
            "show logs of pod web-abc",
            "get_pod_logs",
            json!({"name": "web-abc"}),
        ),
        (
            "logs",
            "show the last 50 lines of logs for pod api-1",
            "get_pod_logs",
            json!({"name": "api-1", "tail_lines": 50}),
        ),
        (
            "logs",
            "logs of pod checkout-6b7f9 from the last 10 minutes",
            "get_pod_logs",
            json!({"name": "checkout-6b7f9", "since_seconds": 600}),
        ),
        (
            "logs",
            "tail 20 lines of pod worker-1 container sidecar",
            "get_pod_logs",
            json!({"name": "worker-1", "tail_lines": 20, "container": "sidecar"}),
        ),
        (
            "logs",
            "what did pod db-0 print recently?",
            "get_pod_logs",
            json!({"name": "db-0"}),
        ),
        ("events", "show recent events", "get_events", json!({})),
        (
            "events",
            "what happened in namespace shop?",
            "get_events",
            json!({"namespace": "shop"}),
        ),
        (
            "events",
            "events for pod web-abc",
            "get_events",
            json!({"name": "web-abc"}),
        ),
        (
            "health",
            "is my cluster healthy?",
            "get_cluster_health",
            json!({}),
        ),
        ("health", "cluster health", "get_cluster_health", json!({})),
        (
            "health",
            "give me an overview of the cluster health",
            "get_cluster_health",
            json!({}),
        ),
        (
            "health",
            "how is the cluster doing",
            "get_cluster_health",
            json!({}),
        ),
        (
            "scale",
            "Scale my nginx deployment to 5 replicas",
            "scale_deployment",
            json!({"name": "nginx", "replicas": 5}),
        ),
        (
            "scale",
            "scale deployment nginx in namespace shop to 5 replicas",
            "scale_deployment",
            json!({"name": "nginx", "namespace": "shop", "replicas": 5}),
        ),
        (
            "scale",
            "scale the api deployment to 2 replicas",
            "scale_deployment",
            json!({"name": "api", "replicas": 2}),
        ),
        (
            "scale",
            "scale down web to zero",
            "scale_deployment",
            json!({"name": "web", "replicas": 0}),
        ),
        (
            "scale",
            "set replicas of deployment frontend to 6",
            "scale_deployment",
            json!({"name": "frontend", "replicas": 6}),
        ),
        (
            "scale",
            "scale statefulset db to 3",
            "scale_deployment",
            json!({"name": "db", "replicas": 3}),
        ),
        (
            "scale",
            "scale the redis deployment in namespace cache to 4",
            "scale_deployment",
            json!({"name": "redis", "namespace": "cache", "replicas": 4}),
        ),
        (
            "scale",
            "scale deployment checkout to 10",
            "scale_deployment",
            json!({"name": "checkout", "replicas": 10}),
        ),
        (
            "restart",
            "restart deployment api",
            "rollout_restart",
            json!({"name": "api"}),
        ),
        (
            "restart",
            "rollout restart the web deployment",
            "rollout_restart",
            json!({"name": "web"}),
        ),
        (
            "restart",
            "please restart my payments deployment",
            "rollout_restart",
            json!({"name": "payments"}),
        ),
        (
            "restart",
            "bounce deployment/worker",
            "rollout_restart",
            json!({"name": "worker"}),
        ),
        (
            "restart",
            "restart statefulset kafka",
            "rollout_restart",
            json!({"name": "kafka"}),
        ),
        (
            "delete",
            "delete pod web-7d876db474-4779w",
            "delete_pod",
            json!({"name": "web-7d876db474-4779w"}),
        ),
        (
            "delete",
            "kill pod worker-ghi789",
            "delete_pod",
            json!({"name": "worker-ghi789"}),
        ),
        (
            "delete",
            "remove pod flaky-1 in namespace shop",
            "delete_pod",
            json!({"name": "flaky-1", "namespace": "shop"}),
        ),
        (
            "delete",
            "Delete the api-abc123 pod",
            "delete_pod",
            json!({"name": "api-abc123"}),
        ),
        (
            "configmap",
            "create configmap app-config with LOG_LEVEL=debug",
            "create_configmap",
            json!({"name": "app-config"}),
        ),
        (
            "configmap",
            "create a configmap named settings with mode=fast",
            "create_configmap",
            json!({"name": "settings"}),
        ),
        (
            "configmap",
            "make configmap flags with beta=true and gamma=false",
            "create_configmap",
            json!({"name": "flags"}),
        ),
        ("refuse", "delete namespace production", "none", json!({})),
        ("refuse", "what is the meaning of life", "none", json!({})),
        ("refuse", "how do I scale a deployment?", "none", json!({})),
    ]
}

/// The builtin planner's first tool for an intent.
fn builtin_tool(i: &intent::Intent) -> (&'static str, Value) {
    use intent::Action::*;
    let mut args = json!({});
    if let Some(n) = &i.name {
        args["name"] = json!(n);
    }
    if let Some(ns) = &i.namespace {
        args["namespace"] = json!(ns);
    }
    if let Some(r) = i.replicas {
        args["replicas"] = json!(r);
    }
    if let Some(t) = i.tail_lines {
        args["tail_lines"] = json!(t);
    }
    if let Some(s) = i.since_seconds {
        args["since_seconds"] = json!(s);
    }
    if let Some(c) = &i.container {
        args["container"] = json!(c);
    }
    let tool = match &i.action {
        ListPods => "list_pods",
        PodDetails => "get_pod_details",
        PodLogs => "get_pod_logs",
        ListDeployments => "list_deployments",
        DeploymentStatus => "get_deployment_status",
        ListServices => "list_services",
        Describe => "describe_resource",
        Events => "get_events",
        ClusterHealth => "get_cluster_health",
        Scale => "scale_deployment",
        Restart => "rollout_restart",
        DeletePod => "delete_pod",
        CreateConfigMap => "create_configmap",
        Blocked(_) | Clarify(_) | Help => "none",
    };
    (tool, args)
}

fn matches(got: &Value, want: &Value) -> bool {
    want.as_object()
        .is_none_or(|w| w.iter().all(|(k, v)| got.get(k) == Some(v)))
}

fn report(name: &str, rows: &[(&str, bool, bool, f64)]) {
    let mut cats: Vec<&str> = rows.iter().map(|r| r.0).collect();
    cats.dedup();
    println!(
        "\n## {name}\n\n| category | cases | right tool | tool + args | mean latency ms |\n|---|---|---|---|---|"
    );
    for c in cats.iter().chain(std::iter::once(&"all")) {
        let sel: Vec<_> = rows.iter().filter(|r| *c == "all" || r.0 == *c).collect();
        let tool = sel.iter().filter(|r| r.1).count();
        let full = sel.iter().filter(|r| r.2).count();
        let lat = sel.iter().map(|r| r.3).sum::<f64>() / sel.len().max(1) as f64;
        println!("| {c} | {} | {tool} | {full} | {lat:.2} |", sel.len());
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cases = cases();
    println!("{} cases", cases.len());
    let mut rows = vec![];
    for (cat, prompt, tool, want) in &cases {
        let t = Instant::now();
        let (got, args) = builtin_tool(&intent::parse(prompt));
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let ok_tool = got == *tool;
        rows.push((*cat, ok_tool, ok_tool && matches(&args, want), ms));
        if !(ok_tool && matches(&args, want)) {
            println!("builtin miss: {prompt:?} -> {got} {args}");
        }
    }
    report("builtin planner", &rows);

    let Ok(url) = std::env::var("ACCURACY_LLM_URL") else {
        println!("\n(set ACCURACY_LLM_URL=http://127.0.0.1:PORT/v1 to also measure a model)");
        return Ok(());
    };
    let model = std::env::var("ACCURACY_LLM_MODEL").unwrap_or_else(|_| "local".into());
    let http = reqwest::Client::new();
    let tools: Vec<Value> = tool_specs().into_iter().map(|s| s.function).collect();
    let mut rows = vec![];
    for (cat, prompt, tool, want) in &cases {
        let body = json!({
            "model": model, "temperature": 0.1, "max_tokens": 256, "stream": false, "parallel_tool_calls": false,
            "tool_choice": "auto", "tools": tools,
            "messages": [{"role": "system", "content": system_prompt("default", Mode::Plan)}, {"role": "user", "content": prompt}],
        });
        let t = Instant::now();
        let resp = http
            .post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?)
            .send()
            .await?;
        let resp: Value = serde_json::from_slice(&resp.bytes().await?)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let call = resp
            .pointer("/choices/0/message/tool_calls/0/function")
            .cloned()
            .unwrap_or(Value::Null);
        let got = call["name"].as_str().unwrap_or("none").to_string();
        let args: Value = call["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or(json!({}));
        let ok_tool = got == *tool;
        rows.push((*cat, ok_tool, ok_tool && matches(&args, want), ms));
    }
    report(&format!("model {model} at {url}"), &rows);
    Ok(())
}
