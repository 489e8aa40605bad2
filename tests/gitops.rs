//! GitOps: the shipped Argo CD Lua health check, run by a real Lua interpreter
//! on statuses the operator really writes, and kstatus-style conditions.

mod common;

use std::time::Duration;

use common::*;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use kubilitics_ai::api::{AIPlan, AIRequest};

fn ready(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> (String, String) {
    let c = conds
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn argo_cd_health_and_kstatus_conditions_follow_real_statuses() {
    let ns = TestNs::new("gitops").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 1).await;
    let requests = Api::<AIRequest>::namespaced(client("admin").await, &ns.name);

    // No status yet: Progressing.
    let fresh = AIRequest::new("fresh", Default::default());
    assert_eq!(argo_health(&fresh).0, "Progressing");

    // Answered: Healthy, Ready=True.
    ask("admin", &ns.name, "q", "list deployments").await;
    let r = wait_phase(&ns.name, "q", "Answered").await;
    assert_eq!(argo_health(&r).0, "Healthy");
    assert_eq!(ready(&r.status.as_ref().unwrap().conditions).0, "True");

    // Awaiting approval: Suspended on both kinds (a person must act), Ready=False, not Reconciling.
    ask("admin", &ns.name, "s", "scale deployment web to 2 replicas").await;
    let r = wait_phase(&ns.name, "s", "AwaitingApproval").await;
    let st = r.status.clone().unwrap();
    let plan = get_plan(&ns.name, st.plan_ref.as_deref().unwrap()).await;
    let (status, message) = argo_health(&r);
    assert_eq!(status, "Suspended");
    assert!(
        message.contains(st.plan_id.as_deref().unwrap()),
        "{message}"
    );
    assert_eq!(argo_health(&plan).0, "Suspended");
    assert_eq!(
        ready(&st.conditions),
        ("False".into(), "ApprovalRequired".into())
    );
    assert!(
        !st.conditions
            .iter()
            .any(|c| c.type_ == "Reconciling" || c.type_ == "Stalled")
    );

    // A newer generation not yet observed: Progressing (the operator has not caught up).
    let mut stale = r.clone();
    stale.metadata.generation = Some(r.metadata.generation.unwrap() + 1);
    assert_eq!(argo_health(&stale).0, "Progressing");

    // GitOps approval (as a commit would set it): Healthy when done, observedGeneration current.
    requests
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"approvedPlanId": st.plan_id}})),
        )
        .await
        .unwrap();
    let r = wait_phase(&ns.name, "s", "Succeeded").await;
    wait_for(
        "observedGeneration current",
        Duration::from_secs(10),
        || async {
            let r = requests.get("s").await.unwrap();
            r.status.and_then(|s| s.observed_generation) == r.metadata.generation
        },
    )
    .await;
    assert_eq!(argo_health(&r).0, "Healthy");
    let plan = get_plan(&ns.name, st.plan_ref.as_deref().unwrap()).await;
    assert_eq!(argo_health(&plan).0, "Healthy");
    assert_eq!(ready(&plan.status.unwrap().conditions).0, "True");

    // Rejected: Degraded, Stalled.
    ask("admin", &ns.name, "x", "scale deployment web to 4 replicas").await;
    let st = wait_phase(&ns.name, "x", "AwaitingApproval")
        .await
        .status
        .unwrap();
    Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .patch(
            st.plan_ref.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"rejection": {"reason": "not today"}}})),
        )
        .await
        .unwrap();
    let r = wait_phase(&ns.name, "x", "Rejected").await;
    assert_eq!(argo_health(&r).0, "Degraded");
    assert!(
        r.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );
}
