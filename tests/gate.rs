//! The approval gate across users, live against the real API server with the
//! admission webhook and the shipped identity policy on. Users as the chart's
//! roles bind them in one namespace: alice (requester + edit), bob (approver +
//! edit), mallory (requester only), carol (approver only). Every attack asserts
//! that nothing changed in the cluster and that the refusal says why.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use kubilitics_ai::{
    api::{AIPlan, AIRequest},
    safety::authz::{APPROVED_BY_ANNOTATION, REQUESTER_ANNOTATION},
};
use serde_json::json;

async fn patch_request(
    user: &str,
    ns: &str,
    name: &str,
    body: serde_json::Value,
) -> Result<AIRequest, kube::Error> {
    Api::<AIRequest>::namespaced(client(user).await, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(body))
        .await
}

/// The refusal of an API call, with its message.
fn refused(r: Result<impl std::fmt::Debug, kube::Error>, says: &str) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert!(
                s.message.contains(says),
                "refusal should say {says:?}: {}",
                s.message
            );
            s.message
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

/// `user` asks `prompt` as request `name`; returns its plan's name and id.
async fn planned(user: &str, ns: &str, name: &str, prompt: &str) -> (String, String) {
    create_as(user, ns, &request(name, prompt)).await.unwrap();
    let s = wait_phase(ns, name, "AwaitingApproval")
        .await
        .status
        .unwrap();
    (s.plan_ref.unwrap(), s.plan_id.unwrap())
}

fn bind_roles(ns: &str) {
    for (user, roles) in [
        ("alice", &["kubilitics-ai-requester", "edit"][..]),
        ("bob", &["kubilitics-ai-approver", "edit"][..]),
        ("mallory", &["kubilitics-ai-requester"][..]),
        ("carol", &["kubilitics-ai-approver"][..]),
    ] {
        for role in roles {
            bind(ns, user, role);
        }
    }
}

async fn generation(ns: &str, name: &str) -> i64 {
    Api::<Deployment>::namespaced(client("admin").await, ns)
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap_or(0)
}

/// Waits for an event with this reason on the object whose note contains `text`.
async fn wait_event(ns: &str, object: &str, reason: &str, text: &str) {
    wait_for(
        &format!("{reason} event on {object} saying {text:?}"),
        Duration::from_secs(30),
        || async {
            events(ns, object, reason)
                .await
                .iter()
                .any(|e| e.note.as_deref().unwrap_or("").contains(text))
        },
    )
    .await;
}

#[tokio::test]
async fn nobody_but_the_requester_changes_a_requests_inputs() {
    let ns = TestNs::new("gate-edit").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    create_as("alice", &ns.name, &request("q", "list deployments"))
        .await
        .unwrap();
    wait_phase(&ns.name, "q", "Answered").await;

    // mallory turns alice's question into a change, or points it elsewhere.
    for body in [
        json!({"spec": {"prompt": "scale deployment web to 0"}}),
        json!({"spec": {"targetNamespace": "kube-system"}}),
        json!({"spec": {"mode": "Plan", "prompt": "restart deployment web"}}),
        json!({"spec": {"conversation": "mine"}}),
        json!({"spec": {"model": "other"}}),
        // Switching off the automatic rollback of alice's change is hers to decide.
        json!({"spec": {"rollback": "Never"}}),
    ] {
        refused(
            patch_request("mallory", &ns.name, "q", body).await,
            "only the requester (alice) may change spec.",
        );
    }
    // Nor may bob, an approver: approving is not editing.
    refused(
        patch_request(
            "bob",
            &ns.name,
            "q",
            json!({"spec": {"prompt": "scale deployment web to 0"}}),
        )
        .await,
        "only the requester (alice)",
    );
    refused(
        patch_request("bob", &ns.name, "q", json!({"spec": {"rollback": "Never"}})).await,
        "only the requester (alice) may change spec.rollback",
    );
    // mallory may not approve either (no verb approve).
    refused(
        patch_request(
            "mallory",
            &ns.name,
            "q",
            json!({"spec": {"approvedPlanId": "0123456789abcdef"}}),
        )
        .await,
        "mallory may not approve",
    );
    // alice herself may.
    patch_request(
        "alice",
        &ns.name,
        "q",
        json!({"spec": {"prompt": "list pods"}}),
    )
    .await
    .unwrap();
    let r = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .get("q")
        .await
        .unwrap();
    assert_eq!(r.spec.prompt, "list pods");
    assert!(r.annotations()[REQUESTER_ANNOTATION].contains(r#""username":"alice""#));
    assert_eq!(replicas(&ns.name, "web").await, 3);
    assert!(
        Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn self_approval_and_copied_ids_approve_nothing() {
    let ns = TestNs::new("gate-copy").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    create_as(
        "alice",
        &ns.name,
        &request("r1", "scale deployment web to 5 replicas"),
    )
    .await
    .unwrap();
    let s1 = wait_phase(&ns.name, "r1", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let id1 = s1.plan_id.unwrap();

    // Approving at creation is approving: not by the requester.
    let mut pre = request("r0", "scale deployment web to 5 replicas");
    pre.spec.approved_plan_id = Some(id1.clone());
    refused(
        create_as("alice", &ns.name, &pre).await,
        "separation of duties",
    );

    // Same content in another request: another plan object, another id.
    create_as(
        "alice",
        &ns.name,
        &request("r2", "scale deployment web to 5 replicas"),
    )
    .await
    .unwrap();
    let s2 = wait_phase(&ns.name, "r2", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let (plan2, id2) = (s2.plan_ref.unwrap(), s2.plan_id.unwrap());
    assert_ne!(id1, id2, "the id binds the AIPlan object");

    // r1's id copied onto r2 (by an approver) runs nothing.
    patch_request(
        "bob",
        &ns.name,
        "r2",
        json!({"spec": {"approvedPlanId": id1}}),
    )
    .await
    .unwrap();
    wait_event(&ns.name, &plan2, "ApprovalMismatch", &id1).await;
    assert_eq!(plan_phase(&ns.name, &plan2).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 3);
}

#[tokio::test]
async fn approving_needs_the_approve_verb_and_rights_on_the_stored_plan() {
    let ns = TestNs::new("gate-verb").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    let (plan, id) = planned("alice", &ns.name, "r", "scale deployment web to 0 replicas").await;

    // mallory (requester role: may update requests) writes the GitOps approval.
    refused(
        patch_request(
            "mallory",
            &ns.name,
            "r",
            json!({"spec": {"approvedPlanId": id}}),
        )
        .await,
        "mallory may not approve aiplans.ai.kubilitics.io",
    );
    // carol may approve, but not a scale she could not do herself: neither path,
    // and not with an empty `status.steps` sent along (the stored plan counts).
    refused(
        approve("carol", &ns.name, &plan, &id).await,
        "carol may not patch deployments.apps",
    );
    refused(
        Api::<AIPlan>::namespaced(client("carol").await, &ns.name)
            .patch(
                &plan,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"approval": {"planId": id}}, "status": {"steps": []}}),
                ),
            )
            .await,
        "carol may not patch deployments.apps",
    );
    refused(
        patch_request(
            "carol",
            &ns.name,
            "r",
            json!({"spec": {"approvedPlanId": id}}),
        )
        .await,
        "carol may not patch deployments.apps",
    );
    let annotations = get_plan(&ns.name, &plan).await.annotations().clone();
    assert!(!annotations.contains_key(APPROVED_BY_ANNOTATION));
    assert_eq!(replicas(&ns.name, "web").await, 3);
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");

    // bob may: the plan runs, once.
    let before = generation(&ns.name, "web").await;
    patch_request(
        "bob",
        &ns.name,
        "r",
        json!({"spec": {"approvedPlanId": id}}),
    )
    .await
    .unwrap();
    let done = wait_phase(&ns.name, "r", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 0);
    assert_eq!(generation(&ns.name, "web").await, before + 1);
    let ps = get_plan(&ns.name, &plan).await.status.unwrap();
    assert!(
        ps.approved_by.as_deref().unwrap().starts_with("bob via"),
        "{:?}",
        ps.approved_by
    );
    assert_eq!(done.status.unwrap().used_plan_ids, vec![id]);
}

#[tokio::test]
async fn an_approval_is_single_use() {
    let ns = TestNs::new("gate-replay").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    create_as(
        "alice",
        &ns.name,
        &request("r", "scale deployment web to 5 replicas"),
    )
    .await
    .unwrap();
    let s = wait_phase(&ns.name, "r", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let id = s.plan_id.unwrap();
    patch_request(
        "bob",
        &ns.name,
        "r",
        json!({"spec": {"approvedPlanId": id}}),
    )
    .await
    .unwrap();
    wait_phase(&ns.name, "r", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 5);

    // The cluster is put back exactly as it was planned against (same object,
    // same replicas), and alice asks again: the same content as before, while
    // the used approval stays committed on the request.
    Api::<Deployment>::namespaced(client("admin").await, &ns.name)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let gen_before = generation(&ns.name, "web").await;
    patch_request(
        "alice",
        &ns.name,
        "r",
        json!({"spec": {"conversation": "again"}}),
    )
    .await
    .unwrap();
    wait_for("a new plan", Duration::from_secs(30), || async {
        let r = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
            .get("r")
            .await
            .unwrap();
        r.status.and_then(|s| s.plan_id).is_some_and(|p| p != id)
    })
    .await;
    let r = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
        .get("r")
        .await
        .unwrap();
    let s = r.status.unwrap();
    let plan = s.plan_ref.unwrap();
    wait_event(&ns.name, &plan, "ApprovalMismatch", "single-use").await;
    assert_eq!(s.used_plan_ids, vec![id]);
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 3);
    assert_eq!(generation(&ns.name, "web").await, gen_before);
}

#[tokio::test]
async fn forged_identities_are_refused_without_the_webhook_and_nothing_runs_without_one() {
    // No webhook in this namespace: only the shipped identity policy and the
    // operator's own checks stand.
    let ns = TestNs::new("gate-forge").await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    let forged = |who: &str| {
        let mut r = request("f", "scale deployment web to 0 replicas");
        r.metadata.annotations = Some(
            [(
                REQUESTER_ANNOTATION.to_string(),
                format!(
                    r#"{{"username":"{who}","uid":"{who}","groups":["system:authenticated"]}}"#
                ),
            )]
            .into(),
        );
        r
    };
    refused(
        create_as("mallory", &ns.name, &forged("alice")).await,
        "ai.kubilitics.io/requester annotation is set by admission",
    );
    let mut approved = request("g", "scale deployment web to 0 replicas");
    approved.metadata.annotations = Some(
        [(
            APPROVED_BY_ANNOTATION.to_string(),
            r#"{"username":"bob","uid":"bob","groups":["kubilitics:approvers","system:authenticated"]}"#.to_string(),
        )]
        .into(),
    );
    refused(
        create_as("alice", &ns.name, &approved).await,
        "approved-by annotation names the user who wrote the approval",
    );
    // Without an identity, the operator (secure by default) plans nothing.
    let op = operator_process_secure(&ns.name);
    create_as(
        "alice",
        &ns.name,
        &request("plain", "scale deployment web to 0 replicas"),
    )
    .await
    .unwrap();
    let r = wait_phase_within(&ns.name, "plain", &["Failed"], Duration::from_secs(60)).await;
    let s = r.status.unwrap();
    assert!(
        s.answer
            .as_deref()
            .unwrap_or("")
            .contains("no requester identity"),
        "{:?}",
        s.answer
    );
    assert!(s.plan_ref.is_none());
    assert_eq!(replicas(&ns.name, "web").await, 3);
    drop(op);
}

/// The operator binary with its defaults (secure: no --insecure-dev-mode), no webhook.
struct Process(std::process::Child);
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
fn operator_process_secure(ns: &str) -> Process {
    let log = std::fs::File::create(cluster_dir().join(format!("logs/operator-{ns}.log"))).unwrap();
    Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"))
            .args(["run", "--namespace", ns, "--metrics-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig("admin"))
            .env("POD_NAMESPACE", ns)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn a_gitops_identity_approves_what_it_synced_and_nobody_else_self_approves() {
    let ns = TestNs::new("gate-gitops").await;
    let flux = "system:serviceaccount:flux-system:kustomize-controller";
    let _g = guarded_with(
        &ns.name,
        |h| h.gitops_identities = vec![flux.into()],
        |c| c.gitops_identities = vec![flux.into()],
    )
    .await;
    bind_roles(&ns.name);
    for role in ["kubilitics-ai-requester", "kubilitics-ai-approver", "edit"] {
        tool(
            "kubectl",
            &[
                "-n",
                &ns.name,
                "create",
                "rolebinding",
                &format!("flux-{role}"),
                "--clusterrole",
                role,
                "--serviceaccount",
                "flux-system:kustomize-controller",
            ],
            None,
        );
    }
    deployment(&ns.name, "web", 3).await;
    let sync = client_as(flux).await;
    let api = Api::<AIRequest>::namespaced(sync, &ns.name);
    api.create(
        &PostParams::default(),
        &request("from-git", "scale deployment web to 4 replicas"),
    )
    .await
    .unwrap();
    let s = wait_phase(&ns.name, "from-git", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let id = s.plan_id.unwrap();
    // The approval commit, synced by the same account.
    api.patch(
        "from-git",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"approvedPlanId": id}})),
    )
    .await
    .unwrap();
    let done = wait_phase(&ns.name, "from-git", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 4);
    let answer = done.status.unwrap().answer.unwrap();
    assert!(answer.contains("GitOps identity"), "{answer}");
    assert!(answer.contains("branch protection"), "{answer}");

    // alice is no GitOps identity: her own approval is still refused.
    create_as(
        "alice",
        &ns.name,
        &request("mine", "scale deployment web to 2 replicas"),
    )
    .await
    .unwrap();
    let s = wait_phase(&ns.name, "mine", "AwaitingApproval")
        .await
        .status
        .unwrap();
    refused(
        patch_request(
            "alice",
            &ns.name,
            "mine",
            json!({"spec": {"approvedPlanId": s.plan_id.unwrap()}}),
        )
        .await,
        "separation of duties",
    );
    assert_eq!(replicas(&ns.name, "web").await, 4);
}

/// A TCP proxy that hands connections to `backends` in turn, like a Service
/// in front of replicas. Returns its port and per-backend connection counts.
async fn round_robin(
    backends: Vec<u16>,
) -> (u16, std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = std::sync::Arc::new(
        backends
            .iter()
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let c = counts.clone();
    tokio::spawn(async move {
        let mut next = 0usize;
        while let Ok((mut inbound, _)) = listener.accept().await {
            let i = next % backends.len();
            next += 1;
            c[i].fetch_add(1, Ordering::SeqCst);
            let port = backends[i];
            tokio::spawn(async move {
                // Connections live briefly, so the API server's kept-alive
                // connection is re-made and lands on the other replica.
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(250),
                        tokio::io::copy_bidirectional(&mut inbound, &mut out),
                    )
                    .await;
                }
            });
        }
    });
    (port, counts)
}

#[tokio::test]
async fn replicas_share_one_webhook_certificate() {
    use std::sync::atomic::Ordering;
    let ns = TestNs::new("gate-ha").await;
    let a = free_port();
    let b = free_port();
    let (front, counts) = round_robin(vec![a, b]).await;
    let secret = (ns.name.clone(), "kubilitics-ai-webhook-tls".to_string());
    // Two replicas, each serving on its own port, one configuration pointing
    // at the proxy; the second starts after the first published its CA.
    let first = guarded_with(
        &ns.name,
        |h| {
            h.addr = format!("127.0.0.1:{a}").parse().unwrap();
            h.endpoint =
                kubilitics_ai::webhook::Endpoint::Url(format!("https://127.0.0.1:{front}"));
            h.cert_secret = Some(secret.clone());
        },
        |_| {},
    )
    .await;
    let stop = kubilitics_ai::webhook::ShutdownHandle::new();
    let cfg = kubilitics_ai::webhook::WebhookConfig {
        addr: format!("127.0.0.1:{b}").parse().unwrap(),
        configuration_name: first.config.clone(),
        endpoint: kubilitics_ai::webhook::Endpoint::Url(format!("https://127.0.0.1:{front}")),
        hosts: vec!["127.0.0.1".into()],
        namespace: Some(ns.name.clone()),
        separation_of_duties: true,
        gitops_identities: vec![],
        cert_secret: Some(secret.clone()),
        clusters_namespace: None,
    };
    let (admin, stop2) = (client("admin").await, stop.clone());
    let second = tokio::spawn(async move {
        kubilitics_ai::webhook::run_with_handle(admin, cfg, stop2)
            .await
            .unwrap();
    });
    wait_for(
        "second replica serving",
        Duration::from_secs(20),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", b))
                .await
                .is_ok()
        },
    )
    .await;
    // Every admission call succeeds, whichever replica answers it.
    let api = Api::<AIRequest>::namespaced(client("admin").await, &ns.name);
    for i in 0..12 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let created = api
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &request(&format!("p{i}"), "list pods"),
            )
            .await
            .unwrap_or_else(|e| panic!("admission call {i} failed: {e}"));
        assert!(created.annotations().contains_key(REQUESTER_ANNOTATION));
    }
    let (na, nb) = (
        counts[0].load(Ordering::SeqCst),
        counts[1].load(Ordering::SeqCst),
    );
    assert!(na > 0 && nb > 0, "both replicas answered: {na} / {nb}");
    stop.shutdown();
    second.abort();
    drop(first);
}

#[tokio::test]
async fn the_operator_checks_the_approval_again_when_admission_was_bypassed() {
    let ns = TestNs::new("gate-recheck").await;
    let g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    deployment(&ns.name, "web", 3).await;
    let (plan, id) = planned("alice", &ns.name, "r", "scale deployment web to 1 replicas").await;
    // The webhook is taken out (deleted configuration): approvals are no longer
    // stamped. bob's approval passes the identity policy (he holds verb
    // approve), but it carries no approver: the operator refuses to run it.
    tool(
        "kubectl",
        &["delete", "mutatingwebhookconfiguration", &g.config],
        None,
    );
    wait_for("webhook gone", Duration::from_secs(20), || async {
        let probe = Api::<AIRequest>::namespaced(client("admin").await, &ns.name)
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &request("probe", "x"),
            )
            .await;
        probe.is_ok_and(|p| !p.annotations().contains_key(REQUESTER_ANNOTATION))
    })
    .await;
    approve("bob", &ns.name, &plan, &id).await.unwrap();
    wait_event(
        &ns.name,
        &plan,
        "ApprovalMismatch",
        "no recorded approver identity",
    )
    .await;
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 3);
    // Nor can anyone write an approver identity other than their own.
    refused(
        Api::<AIPlan>::namespaced(client("bob").await, &ns.name)
            .patch(
                &plan,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {APPROVED_BY_ANNOTATION:
                    r#"{"username":"admin","uid":"admin","groups":["system:masters","system:authenticated"]}"#}}})),
            )
            .await,
        "approved-by annotation names the user who wrote the approval",
    );
    assert_eq!(replicas(&ns.name, "web").await, 3);
}

/// 200 AIRequests created at once through the webhook: every one admitted and stamped with its
/// requester, none lost; the admission latency (p50/p99 of the create calls) is written to
/// docs/bench/webhook-load.txt.
#[tokio::test]
async fn the_webhook_admits_a_burst_of_requests_without_failures() {
    let ns = TestNs::new("burst").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    let api = Api::<AIRequest>::namespaced(client("alice").await, &ns.name);
    let started = std::time::Instant::now();
    let creates = (0..200).map(|i| {
        let api = api.clone();
        async move {
            let t = std::time::Instant::now();
            let r = api
                .create(
                    &PostParams::default(),
                    &request(&format!("b{i}"), "list pods"),
                )
                .await;
            (r, t.elapsed())
        }
    });
    let results = futures::future::join_all(creates).await;
    let wall = started.elapsed();
    let mut latencies = vec![];
    for (r, took) in results {
        let created = r.expect("every create admitted");
        let who = created.annotations().get(REQUESTER_ANNOTATION).cloned();
        assert!(
            who.is_some_and(|w| w.contains("\"alice\"")),
            "{:?}",
            created.annotations()
        );
        latencies.push(took.as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).min(latencies.len()) - 1];
    let report = format!(
        "# Written by tests/gate.rs (make test): 200 concurrent AIRequest creates through the webhook; do not edit.\ncreates: {}\nfailures: 0\nwall_seconds: {:.2}\np50_ms: {:.0}\np99_ms: {:.0}\nmax_ms: {:.0}\n",
        latencies.len(),
        wall.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        latencies.last().unwrap()
    );
    eprint!("{report}");
    std::fs::write(repo().join("docs/bench/webhook-load.txt"), report).unwrap();
    // And the operator got to each one.
    for i in [0, 99, 199] {
        wait_phase(&ns.name, &format!("b{i}"), "Answered").await;
    }
}
