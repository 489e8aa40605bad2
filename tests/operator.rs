//! The core operator against the real control plane: planning, the approval
//! gate, execution, events, rejection, expiry, drift, guardrails, restarts
//! and admission validation.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use kubilitics_ai::api::{AIPlan, AIRequest, PlanPhase, RequestPhase, StepState, reason};

/// Creates a scale request and waits for its plan; returns (plan name, plan id).
async fn planned_scale(ns: &str, req: &str, deploy: &str, to: i32) -> (String, String) {
    ask(
        "admin",
        ns,
        req,
        &format!("Scale my {deploy} deployment to {to} replicas"),
    )
    .await;
    let r = wait_phase(ns, req, "AwaitingApproval").await;
    let s = r.status.unwrap();
    (s.plan_ref.unwrap(), s.plan_id.unwrap())
}

#[tokio::test]
async fn read_only_question_is_answered_without_a_plan() {
    let ns = TestNs::new("ro").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "catalog", 2).await;
    ask("admin", &ns.name, "q", "list deployments").await;
    let r = wait_phase(&ns.name, "q", "Answered").await;
    let s = r.status.unwrap();
    let answer = s.answer.unwrap();
    assert!(answer.contains("| catalog |"), "{answer}");
    assert_eq!(s.investigation[0].tool, "list_deployments");
    assert_eq!(s.investigation[0].outcome, "Succeeded");
    assert!(s.plan_ref.is_none());
    assert_eq!(s.observed_generation, r.metadata.generation);
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Answered")
    );
    let plans = Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(plans.items.is_empty());

    // Something it does not understand: a helpful answer, never a plan.
    ask("admin", &ns.name, "huh", "make everything faster please").await;
    let r = wait_phase(&ns.name, "huh", "Answered").await;
    assert!(
        r.status
            .unwrap()
            .answer
            .unwrap()
            .contains("I can help with")
    );
}

#[tokio::test]
async fn scale_is_planned_gated_by_exact_id_and_executed_once_approved() {
    let ns = TestNs::new("scale").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    let d = deployment(&ns.name, "nginx", 3).await;
    let t0 = Instant::now();
    let (plan_name, id) = planned_scale(&ns.name, "scale-nginx", "nginx", 5).await;
    eprintln!("create -> plan written: {:?}", t0.elapsed());
    assert_eq!(plan_name, "scale-nginx-1");
    assert_eq!(id.len(), 16);

    let plan = get_plan(&ns.name, &plan_name).await;
    let owner = &plan.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("AIRequest", "scale-nginx", Some(true))
    );
    let ps = plan.status.unwrap();
    assert_eq!(ps.plan_id.as_deref(), Some(id.as_str()));
    assert_eq!(ps.step_count, Some(1));
    let step = &ps.steps[0];
    assert_eq!(step.tool, "scale_deployment");
    assert_eq!(step.target.uid, d.metadata.uid);
    assert_eq!(step.before["replicas"], 3);
    assert_eq!(step.preview.as_deref(), Some("~ spec.replicas: 3 -> 5"));
    assert!(step.rollback.contains("--replicas=3"), "{}", step.rollback);
    assert_eq!(step.state, StepState::Pending);
    assert!(ps.expires_at.is_some());

    // Nothing runs without an approval (the plan awaiting it is the operator's proof).
    assert_eq!(replicas(&ns.name, "nginx").await, 3);

    // A wrong id changes nothing and says so.
    approve("admin", &ns.name, &plan_name, "0000000000000000")
        .await
        .unwrap();
    wait_for(
        "ApprovalMismatch event",
        Duration::from_secs(10),
        || async {
            !events(&ns.name, &plan_name, reason::APPROVAL_MISMATCH)
                .await
                .is_empty()
        },
    )
    .await;
    assert_eq!(replicas(&ns.name, "nginx").await, 3);
    assert_eq!(plan_phase(&ns.name, &plan_name).await, "AwaitingApproval");

    // The exact id runs it.
    let t1 = Instant::now();
    approve("admin", &ns.name, &plan_name, &id).await.unwrap();
    wait_for("5 replicas", Duration::from_secs(10), || async {
        replicas(&ns.name, "nginx").await == 5
    })
    .await;
    eprintln!("approval -> deployment updated: {:?}", t1.elapsed());
    let r = wait_phase(&ns.name, "scale-nginx", "Succeeded").await;
    let rs = r.status.unwrap();
    assert!(rs.answer.unwrap().contains("✅ Done"));
    assert!(
        rs.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
    let ps = get_plan(&ns.name, &plan_name).await.status.unwrap();
    assert_eq!(ps.phase, Some(PlanPhase::Succeeded));
    assert_eq!(ps.steps[0].state, StepState::Succeeded);
    assert!(ps.approved_at.is_some() && ps.approved_by.is_some());

    // The audit trail: events on the request, the plan and the touched object.
    for (obj, why) in [
        ("scale-nginx", reason::PLANNED),
        ("scale-nginx", reason::APPROVAL_MISMATCH),
        ("scale-nginx", reason::SUCCEEDED),
        (plan_name.as_str(), reason::APPROVAL_REQUIRED),
        (plan_name.as_str(), reason::APPROVED),
        (plan_name.as_str(), reason::STEP_STARTED),
        (plan_name.as_str(), reason::STEP_SUCCEEDED),
        ("nginx", reason::STEP_STARTED),
        ("nginx", reason::STEP_SUCCEEDED),
    ] {
        let evs = events(&ns.name, obj, why).await;
        assert!(!evs.is_empty(), "no {why} event on {obj}");
        assert_eq!(
            evs[0].reporting_controller.as_deref(),
            Some("kubilitics-ai")
        );
    }
    let after = events(&ns.name, "nginx", reason::STEP_SUCCEEDED).await;
    let note = after[0].note.clone().unwrap_or_default();
    assert!(
        note.contains(r#"before: {"replicas":3}"#) && note.contains(r#"after: {"replicas":5}"#),
        "{note}"
    );
}

#[tokio::test]
async fn gitops_approval_on_the_request_executes_and_does_not_change_the_plan() {
    let ns = TestNs::new("gitops").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "api", 1).await;
    let (plan_name, id) = planned_scale(&ns.name, "scale-api", "api", 2).await;
    Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .patch(
            "scale-api",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"approvedPlanId": id}})),
        )
        .await
        .unwrap();
    wait_phase(&ns.name, "scale-api", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "api").await, 2);
    let r = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .get("scale-api")
        .await
        .unwrap();
    let s = r.status.unwrap();
    assert_eq!(
        s.plan_ref.as_deref(),
        Some(plan_name.as_str()),
        "approval must not create a new plan"
    );
    assert_eq!(s.plan_id.as_deref(), Some(id.as_str()));
    assert_eq!(s.observed_generation, r.metadata.generation);
}

#[tokio::test]
async fn rejection_and_superseding_never_run_the_plan() {
    let ns = TestNs::new("reject").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 2).await;
    let (plan_name, id) = planned_scale(&ns.name, "scale-web", "web", 4).await;
    Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .patch(
            &plan_name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rejection": {"reason": "not now"}}})),
        )
        .await
        .unwrap();
    wait_phase(&ns.name, "scale-web", "Rejected").await;
    assert_eq!(plan_phase(&ns.name, &plan_name).await, "Rejected");
    // Approving a rejected plan (after removing the rejection) does nothing.
    Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .patch(
            &plan_name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"rejection": null, "approval": {"planId": id}}}),
            ),
        )
        .await
        .unwrap();
    wait_plan_observed(&ns.name, &plan_name).await;
    assert_eq!(plan_phase(&ns.name, &plan_name).await, "Rejected");
    assert_eq!(replicas(&ns.name, "web").await, 2);

    // Changing the prompt supersedes the old plan with a new one and a new id.
    let (p2, id2) = planned_scale(&ns.name, "scale-web2", "web", 3).await;
    Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .patch(
            "scale-web2",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"prompt": "scale deployment web to 6 replicas"}}),
            ),
        )
        .await
        .unwrap();
    wait_for("new plan", Duration::from_secs(10), || async {
        let r = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
            .get("scale-web2")
            .await
            .unwrap();
        r.status.and_then(|s| s.plan_ref).as_deref() == Some("scale-web2-2")
    })
    .await;
    assert_eq!(plan_phase(&ns.name, &p2).await, "Superseded");
    let new = get_plan(&ns.name, "scale-web2-2").await.status.unwrap();
    assert_ne!(new.plan_id.as_deref(), Some(id2.as_str()));
    let generation = || async {
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client("admin").await, &ns.name)
            .get("web")
            .await
            .unwrap()
            .metadata
            .generation
    };
    let before = generation().await;
    approve("admin", &ns.name, &p2, &id2).await.unwrap();
    // Then the current plan: reconciles of one request are serialized, so once it
    // has run, the approval of the superseded plan was seen before it.
    approve(
        "admin",
        &ns.name,
        "scale-web2-2",
        new.plan_id.as_deref().unwrap(),
    )
    .await
    .unwrap();
    wait_phase(&ns.name, "scale-web2", "Succeeded").await;
    assert_eq!(plan_phase(&ns.name, &p2).await, "Superseded");
    assert_eq!(replicas(&ns.name, "web").await, 6);
    assert_eq!(
        generation().await,
        before.map(|g| g + 1),
        "exactly one change: a superseded plan must never run"
    );
}

#[tokio::test]
async fn expired_plans_never_execute() {
    let ns = TestNs::new("expiry").await;
    let _op = start_operator(&ns.name, |c| c.plan_ttl = Duration::from_secs(2)).await;
    deployment(&ns.name, "web", 1).await;
    let (plan_name, id) = planned_scale(&ns.name, "scale-web", "web", 3).await;
    wait_phase(&ns.name, "scale-web", "Expired").await;
    assert_eq!(plan_phase(&ns.name, &plan_name).await, "Expired");
    approve("admin", &ns.name, &plan_name, &id).await.unwrap();
    wait_plan_observed(&ns.name, &plan_name).await;
    assert_eq!(plan_phase(&ns.name, &plan_name).await, "Expired");
    assert_eq!(replicas(&ns.name, "web").await, 1);
    assert!(
        !events(&ns.name, &plan_name, reason::EXPIRED)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn drift_between_plan_and_approval_stops_the_plan() {
    let ns = TestNs::new("drift").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 2).await;
    let (plan_name, id) = planned_scale(&ns.name, "scale-web", "web", 5).await;
    // Someone else changes the deployment.
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client("admin").await, &ns.name)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    approve("admin", &ns.name, &plan_name, &id).await.unwrap();
    let r = wait_phase(&ns.name, "scale-web", "Failed").await;
    assert_eq!(
        replicas(&ns.name, "web").await,
        4,
        "a drifted plan must not change anything"
    );
    let ps = get_plan(&ns.name, &plan_name).await.status.unwrap();
    assert_eq!(ps.phase, Some(PlanPhase::Failed));
    let ready = ps.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason, reason::DRIFTED);
    assert!(
        !events(&ns.name, &plan_name, reason::DRIFTED)
            .await
            .is_empty()
    );
    assert!(
        r.status
            .unwrap()
            .answer
            .unwrap()
            .contains("the cluster changed")
    );
}

#[tokio::test]
async fn protected_namespace_is_blocked_without_a_plan() {
    let ns = TestNs::new("protect").await;
    let _op = start_operator(&ns.name, |c| {
        c.guardrails
            .protected_namespaces
            .push(format!("{}-prod", "zz"))
    })
    .await;
    let name = format!("sys-{}", &ns.name);
    deployment("kube-system", &name, 1).await;
    let req = AIRequest::new(
        "scale-sys",
        kubilitics_ai::api::AIRequestSpec {
            prompt: format!("scale deployment {name} to 3 replicas"),
            target_namespace: Some("kube-system".into()),
            ..Default::default()
        },
    );
    Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .create(&PostParams::default(), &req)
        .await
        .unwrap();
    let r = wait_phase(&ns.name, "scale-sys", "Failed").await;
    let s = r.status.unwrap();
    assert!(s.plan_ref.is_none());
    assert!(s.answer.unwrap().contains("protected"));
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.reason == reason::BLOCKED)
    );
    assert!(
        !events(&ns.name, "scale-sys", reason::BLOCKED)
            .await
            .is_empty()
    );
    assert_eq!(replicas("kube-system", &name).await, 1);
    let plans = Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(plans.items.is_empty());
    let _ = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        client("admin").await,
        "kube-system",
    )
    .delete(&name, &Default::default())
    .await;

    // Blocked operations hold whatever the prompt says.
    ask("admin", &ns.name, "del-ns", "delete namespace default").await;
    let r = wait_phase(&ns.name, "del-ns", "Answered").await;
    assert!(r.status.unwrap().answer.unwrap().contains("not allowed"));
}

#[tokio::test]
async fn restart_delete_pod_and_configmap_plans_execute() {
    let ns = TestNs::new("tools").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "api", 1).await;
    ask("admin", &ns.name, "restart", "restart deployment api").await;
    let r = wait_phase(&ns.name, "restart", "AwaitingApproval").await;
    let s = r.status.unwrap();
    let plan = get_plan(&ns.name, s.plan_ref.as_deref().unwrap()).await;
    assert_eq!(
        plan.status.as_ref().unwrap().risk,
        Some(kubilitics_ai::api::Risk::High)
    );
    approve_status("admin", &ns.name, &s).await.unwrap();
    wait_phase(&ns.name, "restart", "Succeeded").await;
    let d =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client("admin").await, &ns.name)
            .get("api")
            .await
            .unwrap();
    let ann = d
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert!(ann.contains_key("kubectl.kubernetes.io/restartedAt"));

    ask(
        "admin",
        &ns.name,
        "cm",
        "create configmap app-config with LOG_LEVEL=debug MODE=fast",
    )
    .await;
    approve_and_finish("admin", &ns.name, "cm").await;
    let cm = Api::<ConfigMap>::namespaced(client("admin").await, &ns.name)
        .get("app-config")
        .await
        .unwrap();
    assert_eq!(
        cm.data.unwrap().get("LOG_LEVEL").map(String::as_str),
        Some("debug")
    );

    // A pod of a deployment nobody else touches.
    deployment(&ns.name, "solo", 1).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client("admin").await, &ns.name);
    let solo = ListParams::default().labels("app=solo");
    wait_for("a running solo pod", Duration::from_secs(30), || async {
        pods.list(&solo)
            .await
            .unwrap()
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let pod = pods.list(&solo).await.unwrap().items.remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    ask("admin", &ns.name, "del", &format!("delete pod {pod_name}")).await;
    approve_and_finish("admin", &ns.name, "del").await;
    let now = pods.get_opt(&pod_name).await.unwrap();
    assert!(now.is_none_or(
        |p| p.metadata.uid != pod.metadata.uid || p.metadata.deletion_timestamp.is_some()
    ));
}

/// Runs the operator binary as a separate process against the test namespace.
fn spawn_operator_process(ns: &str, failpoint: Option<&str>) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"));
    cmd.args([
        "run",
        "--insecure-dev-mode",
        "--namespace",
        ns,
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .env("KUBECONFIG", kubeconfig("admin"))
    .env("RUST_LOG", "warn")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("KUBILITICS_AI_FAILPOINT", f);
    }
    cmd.spawn().expect("spawn operator")
}

#[tokio::test]
async fn operator_killed_mid_plan_runs_each_step_exactly_once() {
    for failpoint in ["after-step-running", "after-step-applied"] {
        let ns = TestNs::new("crash").await;
        deployment(&ns.name, "web", 1).await;
        let mut op = spawn_operator_process(&ns.name, Some(failpoint));
        let (plan_name, id) = planned_scale(&ns.name, "scale-web", "web", 3).await;
        approve("admin", &ns.name, &plan_name, &id).await.unwrap();
        // The process aborts at the failpoint, like kill -9.
        let start = Instant::now();
        while op.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "operator did not hit {failpoint}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ps = get_plan(&ns.name, &plan_name).await.status.unwrap();
        assert_eq!(
            ps.steps[0].state,
            StepState::Running,
            "{failpoint}: Running is persisted before the call"
        );
        let expected_now = if failpoint == "after-step-applied" {
            3
        } else {
            1
        };
        assert_eq!(replicas(&ns.name, "web").await, expected_now, "{failpoint}");

        let mut op2 = spawn_operator_process(&ns.name, None);
        let r = wait_phase(&ns.name, "scale-web", "Succeeded").await;
        let _ = op2.kill();
        let _ = op2.wait();
        assert_eq!(r.status.unwrap().phase, Some(RequestPhase::Succeeded));
        assert_eq!(replicas(&ns.name, "web").await, 3);
        let ps = get_plan(&ns.name, &plan_name).await.status.unwrap();
        let msg = ps.steps[0].message.clone().unwrap_or_default();
        let succeeded = events(&ns.name, &plan_name, reason::STEP_SUCCEEDED)
            .await
            .len();
        let verified = events(&ns.name, &plan_name, reason::STEP_VERIFIED)
            .await
            .len();
        if failpoint == "after-step-applied" {
            assert!(msg.contains("verified after restart"), "{msg}");
            assert_eq!(
                (succeeded, verified),
                (0, 1),
                "the applied step must be verified, not re-run"
            );
        } else {
            assert_eq!(
                (succeeded, verified),
                (1, 0),
                "the step that never ran runs once"
            );
        }
    }
}

#[tokio::test]
async fn invalid_manifests_are_rejected_at_admission_with_clear_messages() {
    let ns = TestNs::new("invalid").await;
    // Raw objects: the typed client would refuse some of them before they reach the server.
    let api: Api<DynamicObject> = Api::namespaced_with(
        client("admin").await,
        &ns.name,
        &ApiResource::erase::<AIRequest>(&()),
    );
    let cases = [
        (serde_json::json!({"prompt": ""}), "spec.prompt"),
        (
            serde_json::json!({"prompt": "x".repeat(8193)}),
            "spec.prompt",
        ),
        (
            serde_json::json!({"prompt": "hi", "targetNamespace": "Bad_NS"}),
            "targetNamespace must be a DNS label",
        ),
        (
            serde_json::json!({"prompt": "hi", "mode": "Write"}),
            "spec.mode",
        ),
        (
            serde_json::json!({"prompt": "hi", "approvedPlanId": "abc"}),
            "approvedPlanId must be",
        ),
        (serde_json::json!({}), "spec.prompt"),
    ];
    for (i, (spec, expect)) in cases.iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIRequest",
            "metadata": {"name": format!("bad-{i}")}, "spec": spec,
        }))
        .unwrap();
        let err = api
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("case {i} must be rejected"));
        let kube::Error::Api(s) = err else {
            panic!("case {i}: not an API error")
        };
        assert_eq!(s.code, 422, "case {i}: {}", s.message);
        assert!(s.message.contains(expect), "case {i}: {}", s.message);
    }
    // Plans: approval and rejection together, and a malformed id.
    let plans = Api::<AIPlan>::namespaced(client("admin").await, &ns.name);
    for (spec, expect) in [
        (
            serde_json::json!({"approval": {"planId": "0123456789abcdef"}, "rejection": {"reason": "no"}}),
            "not both",
        ),
        (
            serde_json::json!({"approval": {"planId": "XYZ"}}),
            "planId must be",
        ),
    ] {
        let p: AIPlan = serde_json::from_value(serde_json::json!({
            "apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIPlan", "metadata": {"name": "p"}, "spec": spec,
        }))
        .unwrap();
        let err = plans
            .create(&PostParams::default(), &p)
            .await
            .expect_err("must be rejected");
        let kube::Error::Api(s) = err else {
            panic!("not an API error")
        };
        assert!(s.message.contains(expect), "{}", s.message);
    }
}

#[tokio::test]
async fn names_without_a_kind_resolve_and_several_actions_make_one_plan() {
    let ns = TestNs::new("names").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 1).await;
    deployment(&ns.name, "api", 1).await;

    // No kind word, two actions: one plan, steps in the order asked.
    ask(
        "admin",
        &ns.name,
        "two",
        "scale web to 2 and then restart api",
    )
    .await;
    let r = wait_phase(&ns.name, "two", "AwaitingApproval").await;
    let s = r.status.unwrap();
    let answer = s.answer.clone().unwrap_or_default();
    assert!(answer.contains("`web` is a Deployment"), "{answer}");
    let lookup = s
        .investigation
        .iter()
        .find(|c| c.tool == "find_workload")
        .expect("the name was looked up with find_workload");
    assert_eq!(lookup.outcome, "Succeeded");
    let plan = Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .get(&s.plan_ref.unwrap())
        .await
        .unwrap();
    let steps = plan.status.unwrap().steps;
    let tools: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s.tool.as_str(),
                s.arguments["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        tools,
        [("scale_deployment", "web"), ("rollout_restart", "api")]
    );

    // A name that is not there: no plan, and the close name is offered.
    ask("admin", &ns.name, "typo", "restart wbe please").await;
    let r = wait_phase(&ns.name, "typo", "Answered").await;
    let s = r.status.unwrap();
    assert!(s.plan_ref.is_none());
    let answer = s.answer.unwrap_or_default();
    assert!(answer.contains("Did you mean Deployment `web`"), "{answer}");
}

#[tokio::test]
async fn a_conversation_refers_back_to_its_last_object() {
    let ns = TestNs::new("conv").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 1).await;
    let api = Api::<AIRequest>::namespaced(client("admin").await, &ns.name);
    let turn = |name: &str, prompt: &str| {
        AIRequest::new(
            name,
            kubilitics_ai::api::AIRequestSpec {
                prompt: prompt.into(),
                conversation: Some("thread-1".into()),
                ..Default::default()
            },
        )
    };
    api.create(&PostParams::default(), &turn("t1", "scale web to 3"))
        .await
        .unwrap();
    wait_phase(&ns.name, "t1", "AwaitingApproval").await;
    // Creation timestamps have second resolution: the next turn must be later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    api.create(&PostParams::default(), &turn("t2", "actually make it 4"))
        .await
        .unwrap();
    let s = wait_phase(&ns.name, "t2", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .get(&s.plan_ref.unwrap())
        .await
        .unwrap();
    let step = &plan.status.unwrap().steps[0];
    assert_eq!(
        (
            step.tool.as_str(),
            &step.arguments["name"],
            &step.arguments["replicas"]
        ),
        (
            "scale_deployment",
            &serde_json::json!("web"),
            &serde_json::json!(4)
        )
    );
}
