//! The MCP server with a real MCP client (rmcp) over stdio and streamable
//! HTTP, against the real control plane and the operator.

mod common;

use std::time::Duration;

use common::*;
use kube::{Api, api::ListParams};
use kubilitics_ai::api::AIRequest;
use rmcp::{
    ServiceExt,
    model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams},
    transport::{
        StreamableHttpClientTransport, TokioChildProcess,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use serde_json::json;

fn args(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap()
}

fn text_of(r: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&r.content).unwrap().to_string()
}

fn token(user: &str) -> String {
    let kc = std::fs::read_to_string(kubeconfig(user)).unwrap();
    kc.lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn stdio_tools_resources_prompts_and_the_approval_gate() {
    let ns = TestNs::new("mcp").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 2).await;
    wait_ready(&ns.name, "web").await;

    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"));
    cmd.arg("mcp")
        .env("KUBECONFIG", kubeconfig("admin"))
        .env("RUST_LOG", "error");
    let mcp =
        ().serve(TokioChildProcess::new(cmd).unwrap())
            .await
            .expect("MCP handshake over stdio");

    let tools: Vec<String> = mcp
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for t in [
        "k8s_list_pods",
        "k8s_get_logs",
        "k8s_describe_resource",
        "k8s_cluster_health",
        "k8s_scale_deployment",
        "k8s_rollout_restart",
    ] {
        assert!(tools.contains(&t.to_string()), "{t} missing: {tools:?}");
    }
    let pods = mcp
        .call_tool(
            CallToolRequestParams::new("k8s_list_pods")
                .with_arguments(args(json!({"namespace": ns.name}))),
        )
        .await
        .unwrap();
    assert!(text_of(&pods).contains("web-"), "{}", text_of(&pods));
    let health = mcp
        .call_tool(CallToolRequestParams::new("k8s_cluster_health"))
        .await
        .unwrap();
    assert!(text_of(&health).contains("Cluster health"));

    // A mutating tool only plans: the answer carries the plan id and the approval command.
    let scale = mcp
        .call_tool(
            CallToolRequestParams::new("k8s_scale_deployment").with_arguments(args(
                json!({"namespace": ns.name, "name": "web", "replicas": 4}),
            )),
        )
        .await
        .unwrap();
    let out = text_of(&scale);
    assert_eq!(scale.is_error, Some(false), "{out}");
    assert!(
        out.contains("Nothing has changed")
            && out.contains("plan id")
            && out.contains("kubectl patch aiplan"),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replicas(&ns.name, "web").await, 2);
    let reqs = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let req = reqs
        .items
        .iter()
        .find(|r| {
            r.metadata
                .name
                .as_deref()
                .unwrap_or("")
                .starts_with("mcp-scale-")
        })
        .unwrap();
    let s = req.status.clone().unwrap();
    approve_status("admin", &ns.name, &s).await.unwrap();
    wait_for("4 replicas", Duration::from_secs(20), || async {
        replicas(&ns.name, "web").await == 4
    })
    .await;

    let templates = mcp.list_all_resource_templates().await.unwrap();
    assert_eq!(templates[0].uri_template, "k8s://namespace/{ns}");
    let res = mcp
        .read_resource(ReadResourceRequestParams::new(format!(
            "k8s://namespace/{}",
            ns.name
        )))
        .await
        .unwrap();
    let body = serde_json::to_string(&res.contents).unwrap();
    assert!(
        body.contains("deployments") && body.contains("web"),
        "{body}"
    );

    let prompts: Vec<String> = mcp
        .list_all_prompts()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        prompts.contains(&"troubleshoot_pod".to_string())
            && prompts.contains(&"scale_safely".to_string())
    );
    let p = mcp
        .get_prompt(
            GetPromptRequestParams::new("scale_safely").with_arguments(args(
                json!({"namespace": ns.name, "deployment": "web", "replicas": 0}),
            )),
        )
        .await
        .unwrap();
    assert!(
        serde_json::to_string(&p.messages)
            .unwrap()
            .contains("outage")
    );
    mcp.cancel().await.unwrap();
}

/// A ServiceAccount token for `audience` (`kubectl create token`).
fn sa_token(ns: &str, sa: &str, audience: Option<&str>) -> String {
    let mut args = vec!["create", "token", sa, "-n", ns];
    if let Some(a) = audience {
        args.extend(["--audience", a]);
    }
    tool("kubectl", &args, None).trim().to_string()
}

#[tokio::test]
async fn http_reviews_tokens_for_its_audience_and_acts_as_their_owner() {
    let ns = TestNs::new("mcphttp").await;
    deployment(&ns.name, "web", 1).await;
    for sa in ["reader", "nobody"] {
        tool(
            "kubectl",
            &["create", "serviceaccount", sa, "-n", &ns.name],
            None,
        );
    }
    tool(
        "kubectl",
        &[
            "create",
            "rolebinding",
            "reader-view",
            "--clusterrole",
            "view",
            "--serviceaccount",
            &format!("{}:reader", ns.name),
            "-n",
            &ns.name,
        ],
        None,
    );
    let port = free_port();
    // The server's own identity (admin here; the chart's ServiceAccount in a cluster) reviews
    // tokens and impersonates their owners.
    let kc = kube::config::Kubeconfig::read_from(kubeconfig("admin")).unwrap();
    let own = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let opts = kubilitics_ai::mcp::HttpOptions {
        allowed_origins: vec!["https://console.example".into()],
        rate_limit_per_minute: 40,
        ..Default::default()
    };
    let server = tokio::spawn(kubilitics_ai::mcp::serve_http(addr, own, opts));
    let url = format!("http://127.0.0.1:{port}/mcp");
    wait_for("MCP HTTP server", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    let connect = |token: String| {
        let url = url.clone();
        async move {
            let cfg =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(token);
            ().serve(StreamableHttpClientTransport::from_config(cfg))
                .await
        }
    };
    // Refused before MCP: no token, garbage, a token for the API server's own audience (the
    // token passthrough the MCP spec forbids), even the cluster admin's static token.
    let no_token = ().serve(StreamableHttpClientTransport::from_uri(url.as_str())).await;
    assert!(
        no_token.is_err(),
        "a client without a token must be refused"
    );
    let reader = &ns.name;
    for (what, t) in [
        ("garbage", "not-a-token".to_string()),
        ("another audience", sa_token(reader, "reader", None)),
        ("the admin's static token", token("admin")),
    ] {
        assert!(connect(t).await.is_err(), "{what} must be refused");
    }
    let raw = |token: String, origin: Option<&str>| {
        let url = url.clone();
        let origin = origin.map(str::to_string);
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}});
            let mut req = reqwest::Client::new()
                .post(&url)
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body.to_string());
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }
    };
    let good = sa_token(reader, "reader", Some("kubilitics-ai"));
    let (code, body) = raw(sa_token(reader, "reader", None), None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("--audience kubilitics-ai"), "{body}");
    // DNS rebinding: a valid token from a page on a foreign origin is refused; the allowed one passes.
    let (code, body) = raw(good.clone(), Some("http://evil.example")).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = raw(good.clone(), Some("https://console.example")).await;
    assert_eq!(code, 200, "{body}");

    // The reviewed ServiceAccount sees the pods; one without rights is refused by the API server
    // (the server impersonated it: its own admin rights did not leak).
    let params = CallToolRequestParams::new("k8s_list_pods")
        .with_arguments(args(json!({"namespace": ns.name})));
    let ok = connect(good.clone())
        .await
        .expect("a token for our audience");
    let r = ok.call_tool(params.clone()).await.unwrap();
    assert_eq!(r.is_error, Some(false), "{}", text_of(&r));
    let nobody = connect(sa_token(reader, "nobody", Some("kubilitics-ai")))
        .await
        .expect("a token for our audience");
    let r = nobody.call_tool(params).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(
        text_of(&r).contains("forbidden") || text_of(&r).contains("not allowed"),
        "{}",
        text_of(&r)
    );
    // Per-caller rate limit: 40 requests a minute, then 429 for that caller only.
    let mut codes = vec![];
    for _ in 0..45 {
        codes.push(raw(good.clone(), None).await.0);
    }
    assert!(codes.contains(&429), "{codes:?}");
    let other = sa_token(reader, "nobody", Some("kubilitics-ai"));
    assert_ne!(raw(other, None).await.0, 429);
    server.abort();
}
