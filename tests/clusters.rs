//! Many clusters from one place: requests with `spec.cluster` act in a registered member
//! cluster — a second, independent control plane started by `hack/cluster-up.sh MEMBERS=1`
//! (its own etcd, kube-apiserver and CA, the same token users) — with the management
//! cluster's gate (`use` on the cluster, approve on the plan) and the member's own RBAC.
//!
//! The member's API server is stopped in one test: every test here holds the member lock
//! (shared), that one exclusively.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use kubilitics_ai::api::{AIPlan, AIRequest};
use tokio::sync::RwLock;

const MEMBER: &str = "member-1";

fn member_lock() -> &'static RwLock<()> {
    static L: OnceLock<RwLock<()>> = OnceLock::new();
    L.get_or_init(|| RwLock::new(()))
}

fn member_dir() -> PathBuf {
    let d = cluster_dir().join("members").join(MEMBER);
    assert!(
        d.join("kubeconfig/admin-inline.kubeconfig").exists(),
        "no member control plane in {}: start it with `make cluster-up MEMBERS=1` (make test does)",
        d.display()
    );
    d
}

/// A client in the member cluster as one of the harness users.
async fn member_client(user: &str) -> Client {
    let path = member_dir().join(format!("kubeconfig/{user}.kubeconfig"));
    let kc = Kubeconfig::read_from(&path).expect("member kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("member config");
    Client::try_from(cfg).unwrap()
}

fn member_kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new(kubectl())
        .args(args)
        .env(
            "KUBECONFIG",
            member_dir().join("kubeconfig/admin.kubeconfig"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?} in the member: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Registers the member in `ns` (the operator's namespace in these tests) under `name`,
/// with `kubeconfig` (the member's admin, inline) and extra annotations.
async fn register(ns: &str, secret: &str, kubeconfig: &str, annotations: &[(&str, &str)]) {
    let s: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": secret, "labels": {"ai.kubilitics.io/cluster": "true"},
                     "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>()},
        "stringData": {"value": kubeconfig},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client("admin").await, ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// Registers the member under the test's cluster name, with its admin's inline kubeconfig.
async fn register_member(n: &str) {
    register(
        n,
        &format!("{}-kubeconfig", cname(n)),
        &member_kubeconfig(),
        &[],
    )
    .await;
}

fn member_kubeconfig() -> String {
    std::fs::read_to_string(member_dir().join("kubeconfig/admin-inline.kubeconfig")).unwrap()
}

/// The same namespace in the member, with a Deployment `web` (1 replica), and `users`
/// bound to `edit` there.
async fn member_ns(ns: &str, users: &[&str]) -> Deployment {
    let n: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    let admin = member_client("admin").await;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), ns);
    wait_for("member default SA", Duration::from_secs(30), || async {
        sa.get_opt("default").await.ok().flatten().is_some()
    })
    .await;
    for u in users {
        member_kubectl(&[
            "-n",
            ns,
            "create",
            "rolebinding",
            &format!("{u}-edit"),
            "--clusterrole",
            "edit",
            "--user",
            u,
        ]);
        let me = member_client(u).await;
        let deploys: Api<Deployment> = Api::namespaced(me, ns);
        wait_for("member binding", Duration::from_secs(10), || async {
            deploys.list(&ListParams::default()).await.is_ok()
        })
        .await;
    }
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(admin, ns)
        .create(&PostParams::default(), &d)
        .await
        .unwrap()
}

/// The member's registered name in one test (unique: `use` grants are cluster-wide, and
/// one test's grant must not be another's).
fn cname(ns: &str) -> String {
    format!("m-{}", &ns[ns.len() - 8..])
}

/// Grants `user` verb `use` on the test's member cluster name (cluster-scoped, by name).
async fn grant_use(ns: &str, user: &str) {
    let c = cname(ns);
    let role = format!("use-{c}-{user}");
    let yaml = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}, labels: {{kubilitics.test/clusters: {c}}}}}\n\
         rules:\n- {{apiGroups: [ai.kubilitics.io], resources: [clusters], resourceNames: [{c}], verbs: [use]}}\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {role}, labels: {{kubilitics.test/clusters: {c}}}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    );
    tool("kubectl", &["apply", "-f", "-"], Some(&yaml));
    let who = kubilitics_ai::api::Requester {
        username: user.into(),
        ..Default::default()
    };
    let authz = kubilitics_ai::access::Authorizer::new(client("admin").await, who);
    let perm = kubilitics_ai::access::use_cluster_permission(&c);
    wait_for("use binding in force", Duration::from_secs(10), || async {
        authz.check(std::slice::from_ref(&perm)).await.is_ok()
    })
    .await;
}

/// Deletes the test's cluster-scoped `use` grants.
struct Grants(String);

impl Drop for Grants {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = std::process::Command::new(kubectl())
                .args([
                    "delete",
                    kind,
                    "-l",
                    &format!("kubilitics.test/clusters={}", self.0),
                ])
                .args(["--wait=false"])
                .env("KUBECONFIG", kubeconfig("admin"))
                .output();
        }
    }
}

async fn setup(prefix: &str) -> (TestNs, Guarded, Grants) {
    let ns = TestNs::new(prefix).await;
    let n = ns.name.clone();
    let n2 = n.clone();
    let g = guarded_with(
        &n,
        |h| h.clusters_namespace = Some(n2),
        |c| c.clusters_namespace = Some(n.clone()),
    )
    .await;
    bind(&ns.name, "alice", "kubilitics-ai-requester");
    bind(&ns.name, "bob", "kubilitics-ai-approver");
    let grants = Grants(cname(&ns.name));
    (ns, g, grants)
}

async fn ask_in(user: &str, ns: &str, name: &str, prompt: &str, cluster: &str) -> AIRequest {
    let mut r = request(name, prompt);
    r.spec.cluster = Some(cluster.into());
    create_as(user, ns, &r).await.expect("create request")
}

async fn condition_of(ns: &str, name: &str, type_: &str) -> Option<String> {
    let r = Api::<AIRequest>::namespaced(client("admin").await, ns)
        .get(name)
        .await
        .ok()?;
    r.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| c.message)
}

#[tokio::test]
async fn a_plan_for_a_member_changes_the_member_only_with_the_same_gate() {
    let _m = member_lock().read().await;
    let (ns, _g, _c) = setup("mc-scale").await;
    let n = &ns.name;
    register_member(n).await;
    let here = deployment(n, "web", 1).await;
    let there = member_ns(n, &["alice", "bob"]).await;
    bind(n, "bob", "edit"); // bob's rights here must not be what counts there
    grant_use(n, "alice").await;

    ask_in(
        "alice",
        n,
        "scale",
        "scale deployment web to 3 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase(n, "scale", "AwaitingApproval").await;
    let s = r.status.unwrap();
    // The reviewer sees where it will run.
    let answer = s.answer.clone().unwrap_or_default();
    assert!(
        answer.contains(&format!("In member cluster `{}`", cname(n))),
        "{answer}"
    );
    let plan = get_plan(n, s.plan_ref.as_deref().unwrap()).await;
    let ps = plan.status.clone().unwrap();
    assert_eq!(ps.cluster, Some(cname(n)));
    // The step names the member's object (its uid), not the same-named one here.
    assert_eq!(ps.steps[0].target.uid, there.metadata.uid);
    assert_ne!(ps.steps[0].target.uid, here.metadata.uid);
    // The plan id binds the cluster: recomputed without it, it differs.
    let uid = plan.metadata.uid.clone().unwrap();
    let id = s.plan_id.clone().unwrap();
    assert_eq!(
        kubilitics_ai::execute::plan_id::plan_id_in(&uid, Some(&cname(n)), n, &ps.steps),
        id
    );
    assert_ne!(kubilitics_ai::execute::plan_id(&uid, n, &ps.steps), id);

    // bob may approve plans here but may not use the member: refused at admission.
    let plan_name = plan.name_any();
    let err = approve("bob", n, &plan_name, &id).await.unwrap_err();
    assert!(err.to_string().contains("use"), "{err}");
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);

    // With `use` but without rights in the member's namespace: refused, the member's reason.
    grant_use(n, "bob").await;
    member_kubectl(&["-n", n, "delete", "rolebinding", "bob-edit"]);
    let bob_there: Api<Deployment> = Api::namespaced(member_client("bob").await, n);
    wait_for(
        "bob loses edit in the member",
        Duration::from_secs(10),
        || async { bob_there.list(&ListParams::default()).await.is_err() },
    )
    .await;
    let err = approve("bob", n, &plan_name, &id).await.unwrap_err();
    assert!(
        err.to_string().contains("approver cannot approve step"),
        "{err}"
    );
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);

    // With rights there too: it runs there, and only there.
    member_kubectl(&[
        "-n",
        n,
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole",
        "edit",
        "--user",
        "bob",
    ]);
    wait_for(
        "bob has edit in the member",
        Duration::from_secs(10),
        || async { bob_there.list(&ListParams::default()).await.is_ok() },
    )
    .await;
    let started = Instant::now();
    approve("bob", n, &plan_name, &id).await.unwrap();
    let done = wait_phase(n, "scale", "Succeeded").await;
    let latency = started.elapsed();
    assert_eq!(replicas_in(member_client("admin").await, n).await, 3);
    assert_eq!(replicas(n, "web").await, 1);
    assert!(
        done.status
            .unwrap()
            .answer
            .unwrap_or_default()
            .contains("3"),
        "answer"
    );
    // Events: the step's on the plan here, and on the Deployment in the member.
    assert!(!events(n, &plan_name, "StepSucceeded").await.is_empty());
    let member_events: Vec<Event> = Api::<Event>::namespaced(member_client("admin").await, n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_controller.as_deref() == Some("kubilitics-ai")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web")
        })
        .collect();
    assert!(
        member_events
            .iter()
            .any(|e| e.reason.as_deref() == Some("StepSucceeded")),
        "{member_events:?}"
    );
    record(latency).await;
}

async fn replicas_in(c: Client, ns: &str) -> i32 {
    Api::<Deployment>::namespaced(c, ns)
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap_or(1)
}

/// Plan → execution latency against the member and the memory of one more member client,
/// written for the README and the closing note.
async fn record(latency: Duration) {
    let kc = Kubeconfig::from_yaml(&member_kubeconfig()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let rss = || {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm.split(' ').nth(1).unwrap().parse::<u64>().unwrap() * 4096
    };
    const N: u64 = 50;
    let before = rss();
    let mut clients = vec![];
    for _ in 0..N {
        let c = Client::try_from(cfg.clone()).unwrap();
        c.apiserver_version().await.unwrap();
        clients.push(c);
    }
    let per = rss().saturating_sub(before) / N;
    let text = format!(
        "# Member clusters: cost and latency\n\nWritten by `tests/clusters.rs` \
         (`a_plan_for_a_member_changes_the_member_only_with_the_same_gate`) against a second local \
         control plane (`make cluster-up MEMBERS=1`).\n\n| measure | value |\n|---|---|\n\
         | approval → request Succeeded, one scale step in the member (gate SubjectAccessReviews in both clusters, drift read, the step, its verification, status writes and events) | {:.2} s |\n\
         | resident memory per member client (one connection pool and TLS session; {N} clients built, each after one request) | {} KiB |\n",
        latency.as_secs_f64(),
        per / 1024
    );
    std::fs::write(repo().join("docs/bench/multi-cluster.md"), text).unwrap();
    drop(clients);
}

#[tokio::test]
async fn without_use_or_without_rights_in_the_member_alice_is_refused() {
    let _m = member_lock().read().await;
    let (ns, _g, _c) = setup("mc-refuse").await;
    let n = &ns.name;
    register_member(n).await;
    member_ns(n, &[]).await;
    // No `use` on the cluster: refused before anything is read there.
    ask_in(
        "alice",
        n,
        "nouse",
        "scale deployment web to 3 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase(n, "nouse", "Failed").await;
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(
        answer.contains(&format!("may not send requests to cluster {}", cname(n)))
            && answer.contains(&format!("clusters.ai.kubilitics.io/{}", cname(n))),
        "{answer}"
    );
    // `use` granted, but alice holds nothing in the member's namespace: no plan, and the
    // member's RBAC says why.
    grant_use(n, "alice").await;
    ask_in(
        "alice",
        n,
        "norights",
        "scale deployment web to 3 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase_within(
        n,
        "norights",
        &["Failed", "Answered", "AwaitingApproval"],
        Duration::from_secs(60),
    )
    .await;
    let s = r.status.unwrap();
    assert_ne!(
        s.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("AwaitingApproval"),
        "{:?}",
        s.answer
    );
    assert!(s.plan_ref.is_none());
    let answer = s.answer.unwrap_or_default();
    assert!(
        answer.contains("alice")
            && (answer.contains("not allowed") || answer.contains("forbidden")),
        "{answer}"
    );
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);
}

/// A registered member (`users` with edit there, alice and bob with `use`), and alice's
/// "restart deployment web" for it, awaiting approval: the Deployment there, plan name and id.
async fn restart_awaiting(n: &str, users: &[&str]) -> (Deployment, String, String) {
    register_member(n).await;
    let before = member_ns(n, users).await;
    grant_use(n, "alice").await;
    grant_use(n, "bob").await;
    ask_in("alice", n, "restart", "restart deployment web", &cname(n)).await;
    let r = wait_phase(n, "restart", "AwaitingApproval").await;
    let s = r.status.unwrap();
    (before, s.plan_ref.unwrap(), s.plan_id.unwrap())
}

/// Stops the member's API server until the returned guard is dropped.
fn member_down() -> Restart {
    let stop = std::process::Command::new(member_dir().join("stop-apiserver.sh"))
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    Restart
}

#[tokio::test]
async fn a_member_down_during_execution_waits_then_runs_exactly_once() {
    let _m = member_lock().write().await;
    let (ns, _g, _c) = setup("mc-down").await;
    let n = &ns.name;
    let (before, plan_name, id) = restart_awaiting(n, &["alice", "bob"]).await;

    // The member's API server goes away; the approval is admitted (the gate checks bob's
    // rights there before the first step), and the request says what it waits for.
    let restarted = member_down();
    approve("bob", n, &plan_name, &id).await.unwrap();
    let api = Api::<AIRequest>::namespaced(client("admin").await, n);
    wait_for("ClusterUnavailable", Duration::from_secs(60), || async {
        condition_of(n, "restart", "ClusterUnavailable")
            .await
            .is_some_and(|m| m.contains(&format!("{} cannot be reached", cname(n))))
    })
    .await;
    assert!(!events(n, "restart", "ClusterUnavailable").await.is_empty());
    let phase = api.get("restart").await.unwrap().status.unwrap().phase;
    assert_ne!(format!("{phase:?}"), "Some(Succeeded)");
    drop(restarted); // the member comes back

    let done = wait_phase_within(
        n,
        "restart",
        &["Succeeded", "Failed"],
        Duration::from_secs(120),
    )
    .await;
    let st = done.status.unwrap();
    assert_eq!(
        st.phase.map(|p| format!("{p:?}")).as_deref(),
        Some("Succeeded"),
        "{:?}",
        st.answer
    );
    assert!(
        condition_of(n, "restart", "ClusterUnavailable")
            .await
            .is_none()
    );
    // Exactly once: a rollout restart is not idempotent (each one is a new template, a new
    // generation and a new ReplicaSet).
    let admin = member_client("admin").await;
    let after = Api::<Deployment>::namespaced(admin.clone(), n)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1)
    );
    wait_for("the restart's ReplicaSet", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            Api::<ReplicaSet>::namespaced(admin, n)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len()
                == 2
        }
    })
    .await;
    let plan = Api::<AIPlan>::namespaced(client("admin").await, n)
        .get(&plan_name)
        .await
        .unwrap();
    assert_eq!(
        plan.status.unwrap().steps[0].state,
        kubilitics_ai::api::StepState::Succeeded
    );
}

/// Restarts the member's API server when dropped (also when the test fails).
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let out = std::process::Command::new(member_dir().join("restart-apiserver.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

#[tokio::test]
async fn unusable_or_removed_registrations_fail_requests_clearly() {
    let _m = member_lock().read().await;
    let (ns, _g, _c) = setup("mc-gone").await;
    let n = &ns.name;
    grant_use(n, "alice").await;
    member_ns(n, &["alice", "bob"]).await;
    // A kubeconfig that would make the operator send its own token elsewhere: refused.
    let hostile: String = member_kubeconfig()
        .lines()
        .map(|l| match l.split_once("token:") {
            Some((indent, _)) => {
                format!("{indent}tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n")
            }
            None => format!("{l}\n"),
        })
        .collect();
    assert!(hostile.contains("tokenFile"));
    register(
        n,
        "evil",
        &hostile,
        &[("ai.kubilitics.io/cluster-name", &cname(n))],
    )
    .await;
    ask_in(
        "alice",
        n,
        "hostile",
        "scale deployment web to 2 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase(n, "hostile", "Failed").await;
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(answer.contains("tokenFile"), "{answer}");

    // A good registration, a plan, then the Secret goes: the approval is refused, clearly.
    Api::<Secret>::namespaced(client("admin").await, n)
        .delete("evil", &Default::default())
        .await
        .unwrap();
    register_member(n).await;
    grant_use(n, "bob").await;
    ask_in(
        "alice",
        n,
        "scale",
        "scale deployment web to 2 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase(n, "scale", "AwaitingApproval").await;
    let s = r.status.unwrap();
    Api::<Secret>::namespaced(client("admin").await, n)
        .delete(&format!("{}-kubeconfig", cname(n)), &Default::default())
        .await
        .unwrap();
    // The registry sees the deletion through its watch: wait for the refusal, then check it.
    let plan_name = s.plan_ref.unwrap();
    let id = s.plan_id.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match approve("bob", n, &plan_name, &id).await {
            Err(e)
                if e.to_string()
                    .contains(&format!("no cluster named \"{}\"", cname(n))) =>
            {
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "last refusal: {e}"),
            Ok(_) => panic!("an approval for an unregistered cluster was admitted"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);
    // A new request for it fails at once, saying so.
    ask_in(
        "alice",
        n,
        "after",
        "scale deployment web to 2 replicas",
        &cname(n),
    )
    .await;
    let r = wait_phase(n, "after", "Failed").await;
    let st = r.status.unwrap();
    assert!(
        st.answer.unwrap_or_default().contains("no cluster named"),
        "{:?}",
        st.conditions
    );
    assert!(!events(n, "after", "ClusterUnavailable").await.is_empty());
}

#[tokio::test]
async fn member_protected_namespaces_come_from_its_registration() {
    let _m = member_lock().read().await;
    let (ns, _g, _c) = setup("mc-prot").await;
    let n = &ns.name;
    // The member protects this namespace (the management cluster does not).
    register(
        n,
        &format!("{}-kubeconfig", cname(n)),
        &member_kubeconfig(),
        &[(
            "ai.kubilitics.io/protected-namespaces",
            &format!("kube-system,{n}"),
        )],
    )
    .await;
    member_ns(n, &["alice"]).await;
    grant_use(n, "alice").await;
    // `kubectl kubilitics clusters` (an admin's command) lists it and says it answers; an
    // unusable registration is listed with its reason.
    register(n, "broken-kubeconfig", "not: [a kubeconfig", &[]).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-kubilitics"))
        .args(["clusters", "--operator-namespace", n])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed: {text}"))
            .to_string()
    };
    assert!(line(&cname(n)).contains("Reachable (v1."), "{text}");
    assert!(line("broken").contains("Invalid"), "{text}");
    // alice asks with the plugin's --cluster (not blocking this runtime: it serves the webhook).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-kubilitics"))
        .args(["ask", "-n", n, "--cluster", &cname(n)])
        .arg("scale deployment web to 2 replicas")
        .env("KUBECONFIG", kubeconfig("alice"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created = String::from_utf8_lossy(&out.stdout);
    let name = created
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.split('/').nth(1))
        .unwrap()
        .to_string();
    let r = wait_phase(n, &name, "Failed").await;
    assert_eq!(r.spec.cluster, Some(cname(n)));
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(answer.contains("protected"), "{answer}");
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);
}

#[tokio::test]
async fn the_mcp_server_with_cluster_reads_and_plans_in_the_member_as_the_caller() {
    use rmcp::{ServiceExt, model::CallToolRequestParams, transport::TokioChildProcess};
    let _m = member_lock().read().await;
    let (ns, _g, _c) = setup("mc-mcp").await;
    let n = &ns.name;
    register_member(n).await;
    // Only the member has `web` (with 1 replica): what the tools see comes from there.
    member_ns(n, &["alice"]).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(member_client("admin").await, n);
    wait_for(
        "web's pod in the member",
        Duration::from_secs(30),
        || async {
            !pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
                .items
                .is_empty()
        },
    )
    .await;
    grant_use(n, "alice").await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"));
    cmd.args(["mcp", "--cluster", &cname(n)])
        .env("KUBECONFIG", kubeconfig("alice"))
        .env("RUST_LOG", "error");
    let mcp = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let args = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let text =
        |r: &rmcp::model::CallToolResult| serde_json::to_value(&r.content).unwrap().to_string();
    let pods = mcp
        .call_tool(
            CallToolRequestParams::new("k8s_list_pods")
                .with_arguments(args(serde_json::json!({"namespace": n}))),
        )
        .await
        .unwrap();
    assert_eq!(pods.is_error, Some(false), "{}", text(&pods));
    assert!(text(&pods).contains("web-"), "{}", text(&pods));
    let scale = mcp
        .call_tool(
            CallToolRequestParams::new("k8s_scale_deployment").with_arguments(args(
                serde_json::json!({"namespace": n, "name": "web", "replicas": 2}),
            )),
        )
        .await
        .unwrap();
    assert!(
        text(&scale).contains("Nothing has changed"),
        "{}",
        text(&scale)
    );
    // Both went through the operator as alice, for the member.
    let reqs = Api::<AIRequest>::namespaced(client("admin").await, n)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.spec.cluster == Some(cname(n))));
    assert_eq!(replicas_in(member_client("admin").await, n).await, 1);
    mcp.cancel().await.unwrap();
}

/// The operator's gate alone holds the member's RBAC: while the member is down, admission cannot
/// ask it and admits the approval; when it is back, the gate asks it and refuses.
#[tokio::test]
async fn the_gate_checks_the_approver_in_the_member_when_admission_could_not() {
    let _m = member_lock().write().await;
    let (ns, _g, _c) = setup("mc-gate").await;
    let n = &ns.name;
    bind(n, "bob", "edit"); // edit here, which must not count in the member
    // bob: nothing in the member.
    let (before, plan_name, id) = restart_awaiting(n, &["alice"]).await;
    let restarted = member_down();
    approve("bob", n, &plan_name, &id)
        .await
        .expect("admitted: the member cannot be asked");
    wait_for("ClusterUnavailable", Duration::from_secs(60), || async {
        condition_of(n, "restart", "ClusterUnavailable")
            .await
            .is_some()
    })
    .await;
    drop(restarted);
    wait_for("the gate's refusal", Duration::from_secs(60), || async {
        events(n, &plan_name, "ApprovalMismatch")
            .await
            .iter()
            .any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|t| t.contains("the approver cannot approve this plan"))
            })
    })
    .await;
    let after = Api::<Deployment>::namespaced(member_client("admin").await, n)
        .get("web")
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(plan_phase(n, &plan_name).await, "AwaitingApproval");
}
