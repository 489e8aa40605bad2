//! End to end with a real local LLM (llama.cpp serving Qwen2.5-Coder-0.5B,
//! built by hack/llm/install.sh) behind the OpenAI-compatible API.
//! `make test` always provides it through KUBILITICS_TEST_LLM_URL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kubilitics_ai::agent::{LlmConfig, OpenAiPlanner};

#[tokio::test]
async fn real_model_investigates_and_plans_behind_the_approval_gate() {
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
    ask(
        "admin",
        &ns.name,
        "scale",
        &format!(
            "scale deployment nginx in namespace {} to 5 replicas",
            ns.name
        ),
    )
    .await;
    let r = wait_phase_within(
        &ns.name,
        "scale",
        &["AwaitingApproval", "Answered"],
        Duration::from_secs(300),
    )
    .await;
    let s = r.status.unwrap();
    eprintln!(
        "phase {:?}\nanswer:\n{}",
        s.phase,
        s.answer.clone().unwrap_or_default()
    );
    let usage = s.usage.clone().expect("usage is recorded");
    assert!(
        usage.llm_calls >= 1 && usage.prompt_tokens > 0 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    // The model called at least one of the offered tools (read-only or plan-only).
    assert!(
        !s.investigation.is_empty() || s.plan_ref.is_some(),
        "the model made no tool call: {:?}",
        s.answer
    );
    // Nothing changed without an approval, whatever the model said.
    assert_eq!(replicas(&ns.name, "nginx").await, 3);
    if let (Some(plan), Some(id)) = (s.plan_ref.as_deref(), s.plan_id.as_deref()) {
        let steps = get_plan(&ns.name, plan).await.status.unwrap().steps;
        assert!(
            steps
                .iter()
                .all(|st| st.state == kubilitics_ai::api::StepState::Pending)
        );
        approve("admin", &ns.name, plan, id).await.unwrap();
        let done = wait_phase_within(
            &ns.name,
            "scale",
            &["Succeeded", "Failed"],
            Duration::from_secs(30),
        )
        .await;
        if steps.len() == 1
            && steps[0].tool == "scale_deployment"
            && steps[0].arguments["name"] == "nginx"
        {
            assert_eq!(
                format!("{:?}", done.status.unwrap().phase.unwrap()),
                "Succeeded"
            );
            assert_eq!(
                i64::from(replicas(&ns.name, "nginx").await),
                steps[0].arguments["replicas"].as_i64().unwrap()
            );
        }
    }
}
