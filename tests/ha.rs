//! High availability: two operator processes against one control plane.
//! Only the Lease holder reconciles; when it is killed mid-plan the standby
//! takes over and finishes without repeating the step.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubilitics_ai::api::reason;

fn replica(ns: &str, name: &str, failpoint: Option<&str>) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"));
    cmd.args([
        "run",
        "--namespace",
        ns,
        "--metrics-addr",
        "127.0.0.1:0",
        "--leader-elect",
    ])
    .args(["--leader-lease-duration", "3s", "--leader-retry", "1s"])
    .env("POD_NAME", name)
    .env("POD_NAMESPACE", ns)
    .env("KUBECONFIG", kubeconfig("admin"))
    .env("RUST_LOG", "warn")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    if let Some(f) = failpoint {
        cmd.env("KUBILITICS_AI_FAILPOINT", f);
    }
    cmd.spawn().expect("spawn replica")
}

async fn holder(ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client("admin").await, ns)
        .get_opt("kubilitics-ai-leader")
        .await
        .unwrap()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn two_replicas_execute_each_step_once_and_the_standby_takes_over() {
    let ns = TestNs::new("ha").await;
    deployment(&ns.name, "web", 1).await;
    let mut a = replica(&ns.name, "replica-a", Some("after-step-applied"));
    wait_for("replica-a leads", Duration::from_secs(20), || async {
        holder(&ns.name).await.as_deref() == Some("replica-a")
    })
    .await;
    let mut b = replica(&ns.name, "replica-b", None);

    ask(
        "admin",
        &ns.name,
        "scale-web",
        "scale deployment web to 3 replicas",
    )
    .await;
    let s = wait_phase(&ns.name, "scale-web", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.unwrap();
    assert_eq!(
        holder(&ns.name).await.as_deref(),
        Some("replica-a"),
        "the standby must not take over while the leader renews"
    );
    approve("admin", &ns.name, &plan, &s.plan_id.unwrap())
        .await
        .unwrap();

    // The leader dies right after applying the step (like kill -9), before recording it.
    let start = Instant::now();
    while a.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "leader did not reach the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Instant::now();
    wait_for("replica-b leads", Duration::from_secs(20), || async {
        holder(&ns.name).await.as_deref() == Some("replica-b")
    })
    .await;
    let takeover = killed.elapsed();
    wait_phase(&ns.name, "scale-web", "Succeeded").await;
    let finished = killed.elapsed();
    eprintln!("takeover after leader death: {takeover:?}; plan finished {finished:?} after it");
    let _ = b.kill();
    let _ = b.wait();

    assert_eq!(replicas(&ns.name, "web").await, 3);
    assert_eq!(
        events(&ns.name, &plan, reason::STEP_STARTED).await.len(),
        1,
        "the step started once"
    );
    assert_eq!(
        events(&ns.name, &plan, reason::STEP_SUCCEEDED).await.len(),
        0,
        "and was not run again"
    );
    assert_eq!(
        events(&ns.name, &plan, reason::STEP_VERIFIED).await.len(),
        1,
        "the new leader verified it"
    );
    assert!(
        takeover < Duration::from_secs(8),
        "takeover took {takeover:?}"
    );
}
