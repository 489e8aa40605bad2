//! End to end with a real local LLM (llama.cpp serving Qwen2.5-Coder-0.5B,
//! built by hack/llm/install.sh) behind the OpenAI-compatible API.
//! `make test` always provides it through KUBILITICS_TEST_LLM_URL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kubilitics_ai::agent::{LlmConfig, OpenAiPlanner};

/// One fixed case the 0.5B model handles reliably (measured over 5 runs each
/// with `LOCAL_MODEL_RUNS=5`): the prompt, the tool it must choose and the
/// arguments it must give. The rest of accuracy lives in `make accuracy`.
struct Case {
    name: &'static str,
    prompt: &'static str,
    tool: &'static str,
    args: serde_json::Value,
    /// A plan (mutating tool) rather than an answer.
    plans: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "scale",
            prompt: "scale deployment nginx in namespace {ns} to 5 replicas",
            tool: "scale_deployment",
            args: serde_json::json!({"name": "nginx", "replicas": 5}),
            plans: true,
        },
        Case {
            name: "restart",
            prompt: "restart deployment nginx in namespace {ns}",
            tool: "rollout_restart",
            args: serde_json::json!({"name": "nginx"}),
            plans: true,
        },
        Case {
            name: "pods",
            prompt: "list the pods in namespace {ns}",
            tool: "list_pods",
            args: serde_json::json!({}),
            plans: false,
        },
    ]
}

fn generation(d: &k8s_openapi::api::apps::v1::Deployment) -> i64 {
    d.metadata.generation.unwrap_or(0)
}

#[tokio::test]
async fn real_model_picks_the_right_tool_and_arguments_behind_the_gate() {
    let Ok(url) = std::env::var("KUBILITICS_TEST_LLM_URL") else {
        eprintln!(
            "KUBILITICS_TEST_LLM_URL not set: the local model is not running (make test starts it)"
        );
        assert!(
            std::env::var("CI").is_err(),
            "CI must run the local model test"
        );
        return;
    };
    let runs: usize = std::env::var("LOCAL_MODEL_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let ns = TestNs::new("model").await;
    deployment(&ns.name, "nginx", 3).await;
    let planner = OpenAiPlanner::new(LlmConfig {
        base_url: url,
        model: "qwen2.5-coder-0.5b-instruct".into(),
        api_key: Some("sk-local".into()),
        timeout: Duration::from_secs(120),
        max_iterations: 4,
        max_tokens: 256,
        ..Default::default()
    })
    .unwrap();
    let _op = start_operator_with_planner(&ns.name, Arc::new(planner)).await;
    let deployments = kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        client("admin").await,
        &ns.name,
    );
    let mut misses = vec![];
    for run in 0..runs {
        for c in cases() {
            let name = format!("{}-{run}", c.name);
            let before = deployments.get("nginx").await.unwrap();
            ask(
                "admin",
                &ns.name,
                &name,
                &c.prompt.replace("{ns}", &ns.name),
            )
            .await;
            let r = wait_phase_within(
                &ns.name,
                &name,
                &["AwaitingApproval", "Answered", "Failed"],
                Duration::from_secs(300),
            )
            .await;
            let s = r.status.unwrap();
            let usage = s.usage.clone().expect("usage is recorded");
            assert!(usage.llm_calls >= 1 && usage.prompt_tokens > 0, "{usage:?}");
            // The gate: nothing changed, whatever the model said.
            let now = deployments.get("nginx").await.unwrap();
            assert_eq!(
                generation(&now),
                generation(&before),
                "{name}: changed without approval"
            );
            let got = if c.plans {
                match (s.plan_ref.as_deref(), s.plan_id.as_deref()) {
                    (Some(plan), Some(_)) => {
                        let steps = get_plan(&ns.name, plan).await.status.unwrap().steps;
                        steps
                            .first()
                            .map(|st| (st.tool.clone(), st.arguments.clone()))
                    }
                    _ => None,
                }
            } else {
                s.investigation
                    .iter()
                    .find(|t| t.tool == c.tool)
                    .map(|t| (t.tool.clone(), t.arguments.clone()))
            };
            let ok = got.as_ref().is_some_and(|(tool, args)| {
                tool == c.tool
                    && c.args
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| &args[k] == v)
            });
            eprintln!(
                "[local model] {name}: {} -> {got:?}",
                if ok { "right" } else { "WRONG" }
            );
            if !ok {
                misses.push(format!(
                    "{name}: expected {} {} got {got:?}; answer {:?}",
                    c.tool, c.args, s.answer
                ));
            }
            // The scale plan is approved: the model's arguments are what runs.
            if ok && c.name == "scale" && run + 1 == runs {
                let (plan, id) = (s.plan_ref.unwrap(), s.plan_id.unwrap());
                approve("admin", &ns.name, &plan, &id).await.unwrap();
                wait_phase_within(&ns.name, &name, &["Succeeded"], Duration::from_secs(60)).await;
                assert_eq!(replicas(&ns.name, "nginx").await, 5);
            }
        }
    }
    assert!(misses.is_empty(), "the local model missed: {misses:#?}");
}
