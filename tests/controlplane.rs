//! The harness itself: a real kube-apiserver with RBAC, kwok nodes, logs.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api,
    api::{ListParams, LogParams},
};
use kubilitics_ai::api::AIRequest;

#[tokio::test]
async fn admin_creates_and_reads_a_deployment_and_pods_run_on_kwok_with_logs() {
    let ns = TestNs::new("cp").await;
    deployment(&ns.name, "web", 2).await;
    let d = Api::<Deployment>::namespaced(client("admin").await, &ns.name)
        .get("web")
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(2));

    let pods: Api<Pod> = Api::namespaced(client("admin").await, &ns.name);
    wait_for("2 running pods", Duration::from_secs(30), || async {
        let l = pods.list(&ListParams::default()).await.unwrap();
        l.items.len() == 2
            && l.items
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    let pod = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let logs = pods
        .logs(
            &pod.metadata.name.unwrap(),
            &LogParams {
                tail_lines: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(logs.lines().count(), 3, "{logs}");
}

#[tokio::test]
async fn mallory_is_forbidden() {
    let ns = TestNs::new("rbac").await;
    let err = Api::<Pod>::namespaced(client("mallory").await, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 403, "{s:?}"),
        e => panic!("expected 403, got {e}"),
    }
}

#[tokio::test]
async fn crds_are_served() {
    let ns = TestNs::new("crd").await;
    let list = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(list.items.is_empty());
}
