//! Test support: one real control plane per test run (started by
//! `hack/cluster-up.sh`, or reused from `KUBILITICS_TEST_CLUSTER`), a fresh
//! namespace per test (deleted even when the test panics), clients for the
//! test users, and an in-process operator scoped to the test's namespace.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::{
    Api, Client, Config,
    api::{ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use kubilitics_ai::{
    agent::BuiltinPlanner,
    api::{AIPlan, AIRequest, AIRequestSpec},
    controller,
    safety::authz::REQUESTER_ANNOTATION,
    telemetry::Ready,
    webhook::{self, Endpoint, WebhookConfig},
};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory of the running control plane (started on first use).
pub fn cluster_dir() -> PathBuf {
    static START: Once = Once::new();
    let dir = std::env::var("KUBILITICS_TEST_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".cluster"));
    START.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if !dir.join("kubeconfig/admin.kubeconfig").exists() {
            let status = std::process::Command::new("bash")
                .arg(repo().join("hack/cluster-up.sh"))
                .env("KUBILITICS_CLUSTER_DIR", &dir)
                .status()
                .expect("run hack/cluster-up.sh");
            assert!(status.success(), "hack/cluster-up.sh failed");
        }
        let status = std::process::Command::new(kubectl())
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(repo().join("crds"))
            .env("KUBECONFIG", dir.join("kubeconfig/admin.kubeconfig"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("kubectl apply crds");
        assert!(status.success(), "installing CRDs failed");
        let status = std::process::Command::new(kubectl())
            .args([
                "wait",
                "--for=condition=Established",
                "crd/airequests.ai.kubilitics.io",
                "crd/aiplans.ai.kubilitics.io",
            ])
            .env("KUBECONFIG", dir.join("kubeconfig/admin.kubeconfig"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("kubectl wait");
        assert!(status.success());
    });
    dir
}

/// The harness's kubectl.
pub fn kubectl() -> PathBuf {
    let out = std::process::Command::new("bash")
        .args(["-c", "source hack/lib.sh && command -v kubectl"])
        .current_dir(repo())
        .output()
        .expect("find kubectl");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn kubeconfig(user: &str) -> PathBuf {
    cluster_dir().join(format!("kubeconfig/{user}.kubeconfig"))
}

/// A client authenticated as one of the harness users (`admin`, `alice`, `bob`, `mallory`).
pub async fn client(user: &str) -> Client {
    Client::try_from(config(user).await).expect("client")
}

/// The client configuration of one of the harness users.
pub async fn config(user: &str) -> Config {
    let path = kubeconfig(user);
    let kc = Kubeconfig::read_from(&path).expect("read kubeconfig");
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig")
}

/// A namespace for one test; deleted on drop, also when the test fails.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub async fn new(prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client("admin").await)
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        // Pods need the default ServiceAccount, which the controller manager creates.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client("admin").await, &name);
        wait_for(
            "default serviceaccount",
            Duration::from_secs(30),
            || async { sa.get_opt("default").await.ok().flatten().is_some() },
        )
        .await;
        Self { name }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new(kubectl())
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .env("KUBECONFIG", kubeconfig("admin"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

/// Polls `f` every 100 ms until it is true; panics after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator, in-process, watching only `ns`. Stops on drop.
pub struct Operator {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub async fn start_operator(ns: &str, tweak: impl FnOnce(&mut controller::Config)) -> Operator {
    // Without the admission webhook: the reconcile as such, in insecure dev
    // mode. The gate with identities is tested in tests/safety.rs and tests/gate.rs.
    let mut cfg = controller::Config {
        namespace: Some(ns.to_string()),
        require_identity: false,
        ..Default::default()
    };
    tweak(&mut cfg);
    let client = client("admin").await;
    let handle = tokio::spawn(async move {
        if let Err(e) =
            controller::run(client, cfg, Arc::new(BuiltinPlanner), Ready::default()).await
        {
            panic!("operator failed: {e}");
        }
    });
    Operator { handle }
}

/// Creates an AIRequest as `user`.
pub async fn ask(user: &str, ns: &str, name: &str, prompt: &str) -> AIRequest {
    let req = AIRequest::new(
        name,
        AIRequestSpec {
            prompt: prompt.into(),
            ..Default::default()
        },
    );
    Api::<AIRequest>::namespaced(client(user).await, ns)
        .create(&PostParams::default(), &req)
        .await
        .expect("create AIRequest")
}

/// Waits until the request's phase is `phase` and returns it.
pub async fn wait_phase(ns: &str, name: &str, phase: &str) -> AIRequest {
    wait_phase_within(ns, name, &[phase], Duration::from_secs(30)).await
}

/// Waits until the request's phase is one of `phases` (within `timeout`) and returns it.
pub async fn wait_phase_within(
    ns: &str,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> AIRequest {
    let phase = phases.join("|");
    let api = Api::<AIRequest>::namespaced(client("admin").await, ns);
    let start = Instant::now();
    loop {
        let r = api.get(name).await.expect("get AIRequest");
        let p = r
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_default();
        if phases.contains(&p.as_str()) {
            return r;
        }
        assert!(
            start.elapsed() < timeout,
            "AIRequest {name} never reached {phase} (last phase {p}); status: {:?}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn get_plan(ns: &str, name: &str) -> AIPlan {
    Api::<AIPlan>::namespaced(client("admin").await, ns)
        .get(name)
        .await
        .expect("get AIPlan")
}

pub async fn plan_phase(ns: &str, name: &str) -> String {
    get_plan(ns, name)
        .await
        .status
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_default()
}

/// Approves the current plan of a request (by its status) as `user`.
pub async fn approve_status(
    user: &str,
    ns: &str,
    s: &kubilitics_ai::api::AIRequestStatus,
) -> Result<AIPlan, kube::Error> {
    approve(
        user,
        ns,
        s.plan_ref.as_deref().expect("a plan"),
        s.plan_id.as_deref().expect("a plan id"),
    )
    .await
}

/// The operator binary as its own process watching `ns` (so it can be killed
/// -9), as pod `name`, logging to the cluster's `logs/operator-<ns>.log`. With
/// `lease`, it runs with leader election and that lease duration (renewed every
/// second); with `failpoint`, it aborts there in the first step it executes.
pub fn operator_process(
    ns: &str,
    name: &str,
    lease: Option<&str>,
    failpoint: Option<&str>,
) -> std::process::Child {
    operator_process_with(ns, name, lease, failpoint, &kubeconfig("admin"), &[])
}

/// Who holds the operator's leader Lease in `ns` (None also while it cannot be read).
pub async fn lease_holder(ns: &str) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client("admin").await, ns)
        .get_opt("kubilitics-ai-leader")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sets `spec.approval.planId` on a plan as `user`.
pub async fn approve(user: &str, ns: &str, plan: &str, id: &str) -> Result<AIPlan, kube::Error> {
    Api::<AIPlan>::namespaced(client(user).await, ns)
        .patch(
            plan,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"approval": {"planId": id}}})),
        )
        .await
}

/// events.k8s.io Events in `ns` about the object named `name` with `reason`.
pub async fn events(ns: &str, name: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client("admin").await, ns)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

/// Creates a Deployment with `replicas` as admin.
pub async fn deployment(
    ns: &str,
    name: &str,
    replicas: i32,
) -> k8s_openapi::api::apps::v1::Deployment {
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap();
    Api::namespaced(client("admin").await, ns)
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment")
}

pub async fn replicas(ns: &str, name: &str) -> i32 {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client("admin").await, ns)
        .get(name)
        .await
        .expect("get deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// A client that acts as a ServiceAccount (admin impersonating it), to prove
/// that the RBAC a chart grants is enough.
pub async fn client_as(user: &str) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig("admin")).expect("read kubeconfig");
    let mut cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    cfg.auth_info.impersonate = Some(user.to_string());
    Client::try_from(cfg).expect("client")
}

/// The operator in-process with a given client (e.g. impersonating the chart's ServiceAccount).
pub async fn start_operator_with(client: Client, ns: &str) -> Operator {
    let cfg = controller::Config {
        namespace: Some(ns.to_string()),
        require_identity: false,
        ..Default::default()
    };
    let handle = tokio::spawn(async move {
        if let Err(e) =
            controller::run(client, cfg, Arc::new(BuiltinPlanner), Ready::default()).await
        {
            panic!("operator failed: {e}");
        }
    });
    Operator { handle }
}

/// Runs a harness tool (kubectl, helm) with the admin kubeconfig; returns stdout, panics with stderr.
pub fn tool(name: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let path = std::process::Command::new("bash")
        .args(["-c", &format!("source hack/lib.sh && command -v {name}")])
        .current_dir(repo())
        .output()
        .expect("find tool");
    let bin = String::from_utf8_lossy(&path.stdout).trim().to_string();
    assert!(
        !bin.is_empty(),
        "{name} not found: run hack/build-controlplane.sh"
    );
    let mut child = std::process::Command::new(bin)
        .args(args)
        .current_dir(repo())
        .env("KUBECONFIG", kubeconfig("admin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tool");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operator in-process with a given planner (e.g. the openai planner against a scripted server).
pub async fn start_operator_with_planner(
    ns: &str,
    planner: Arc<dyn kubilitics_ai::agent::Planner>,
) -> Operator {
    start_operator_tuned(ns, planner, |_| {}).await
}

/// Like [`start_operator_with_planner`], with the controller's settings adjusted.
pub async fn start_operator_tuned(
    ns: &str,
    planner: Arc<dyn kubilitics_ai::agent::Planner>,
    tweak: impl FnOnce(&mut controller::Config),
) -> Operator {
    let mut cfg = controller::Config {
        namespace: Some(ns.to_string()),
        require_identity: false,
        ..Default::default()
    };
    tweak(&mut cfg);
    let client = client("admin").await;
    let handle = tokio::spawn(async move {
        if let Err(e) = controller::run(client, cfg, planner, Ready::default()).await {
            panic!("operator failed: {e}");
        }
    });
    Operator { handle }
}

/// The chart's ClusterRoles for people (requester, approver), applied once per run.
pub fn ensure_chart_rbac() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = cluster_dir();
        let rbac = tool(
            "helm",
            &[
                "template",
                "kubilitics-ai",
                "charts/kubilitics-ai",
                "-n",
                "kubilitics-system",
                "--show-only",
                "templates/rbac.yaml",
            ],
            None,
        );
        // Only the ClusterRoles: the binding names a namespace that may not exist.
        let roles: Vec<&str> = rbac
            .split("\n---")
            .filter(|d| d.contains("\nkind: ClusterRole\n"))
            .collect();
        tool(
            "kubectl",
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(&roles.join("\n---\n")),
        );
        // Marked as the Helm release's, so that tests/chart.rs's `helm install` adopts
        // them in whichever order the test binaries run.
        for role in [
            "kubilitics-ai-operator",
            "kubilitics-ai-requester",
            "kubilitics-ai-approver",
            "kubilitics-ai-policy-admin",
            "kubilitics-ai-policy-viewer",
        ] {
            tool(
                "kubectl",
                &[
                    "annotate",
                    "--overwrite",
                    "clusterrole",
                    role,
                    "meta.helm.sh/release-name=kubilitics-ai",
                    "meta.helm.sh/release-namespace=kubilitics-system",
                ],
                None,
            );
        }
    });
}

/// Binds `user` to a ClusterRole within `ns`.
pub fn bind(ns: &str, user: &str, cluster_role: &str) {
    let name = format!("{user}-{cluster_role}");
    tool(
        "kubectl",
        &[
            "-n",
            ns,
            "create",
            "rolebinding",
            &name,
            "--clusterrole",
            cluster_role,
            "--user",
            user,
        ],
        None,
    );
    wait_bound(ns, user, cluster_role);
}

/// The RBAC authorizer learns of a new binding from a watch: a request sent right after
/// `create rolebinding` can still be refused (seen in CI). Waits until the API server
/// grants `user` the first rule of `cluster_role` in `ns`.
fn wait_bound(ns: &str, user: &str, cluster_role: &str) {
    let role: serde_json::Value = serde_json::from_str(&tool(
        "kubectl",
        &["get", "clusterrole", cluster_role, "-o", "json"],
        None,
    ))
    .unwrap();
    let Some(rule) = role["rules"].as_array().and_then(|r| {
        r.iter()
            .find(|r| r["resources"].is_array() && r["resourceNames"].is_null())
    }) else {
        return;
    };
    let first = |k: &str| rule[k][0].as_str().unwrap_or_default().to_string();
    let (verb, group) = (first("verbs"), first("apiGroups"));
    let resource = match group.as_str() {
        "" => first("resources"),
        g => format!("{}.{g}", first("resources")),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !can_i(ns, user, &verb, &resource) {
        assert!(
            std::time::Instant::now() < deadline,
            "{user} still cannot {verb} {resource} in {ns} after binding {cluster_role}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the API server lets `user` do `verb` on `resource` (`kubectl auth can-i` syntax,
/// e.g. `deployments.apps/web`) in `ns`.
pub fn can_i(ns: &str, user: &str, verb: &str, resource: &str) -> bool {
    let out = std::process::Command::new(kubectl())
        .args(["auth", "can-i", verb, resource, "-n", ns, "--as", user])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output()
        .expect("kubectl auth can-i");
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// Waits until every replica of a Deployment is ready (kwok runs its pods).
pub async fn wait_ready(ns: &str, name: &str) {
    let api = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client("admin").await, ns);
    wait_for("deployment ready", Duration::from_secs(30), || async {
        let d = api.get(name).await.unwrap();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        d.status.and_then(|s| s.ready_replicas).unwrap_or(0) == want
    })
    .await;
}

/// Waits for a request's plan, approves it by its exact id as `approver`, and
/// waits until the request Succeeded.
pub async fn approve_and_finish(approver: &str, ns: &str, request: &str) -> AIRequest {
    let s = wait_phase(ns, request, "AwaitingApproval")
        .await
        .status
        .unwrap();
    approve(
        approver,
        ns,
        s.plan_ref.as_deref().unwrap(),
        s.plan_id.as_deref().unwrap(),
    )
    .await
    .unwrap();
    wait_phase(ns, request, "Succeeded").await
}

/// The operator (requiring identities) and its webhook, scoped to `ns`.
pub struct Guarded {
    pub op: tokio::task::JoinHandle<()>,
    pub hook: tokio::task::JoinHandle<()>,
    pub stop: webhook::ShutdownHandle,
    pub config: String,
    /// The port the webhook serves on.
    pub port: u16,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.op.abort();
        self.stop.shutdown();
        self.hook.abort();
        let _ = std::process::Command::new(kubectl())
            .args([
                "delete",
                "mutatingwebhookconfiguration",
                &self.config,
                "--wait=false",
            ])
            .env("KUBECONFIG", kubeconfig("admin"))
            .output();
    }
}

/// Whether a webhook serves `ns`: a dry-run create of an AIRequest as `user` comes back
/// stamped with the requester (one probe; wait with [`wait_for`]).
pub async fn webhook_stamps(user: &str, ns: &str) -> bool {
    let probe = AIRequest::new(
        "probe",
        AIRequestSpec {
            prompt: "x".into(),
            ..Default::default()
        },
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    Api::<AIRequest>::namespaced(client(user).await, ns)
        .create(&dry, &probe)
        .await
        .is_ok_and(|o| o.annotations().contains_key(REQUESTER_ANNOTATION))
}

pub async fn guarded(ns: &str) -> Guarded {
    guarded_with(ns, |_| {}, |_| {}).await
}

/// Like [`guarded`], with the webhook's and the controller's settings adjusted.
pub async fn guarded_with(
    ns: &str,
    hook_tweak: impl FnOnce(&mut WebhookConfig),
    op_tweak: impl FnOnce(&mut controller::Config),
) -> Guarded {
    ensure_chart_rbac();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!("kubilitics-ai-{ns}");
    let mut cfg = WebhookConfig {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        configuration_name: config.clone(),
        endpoint: Endpoint::Url(format!("https://127.0.0.1:{port}")),
        hosts: vec!["127.0.0.1".into()],
        namespace: Some(ns.to_string()),
        separation_of_duties: true,
        gitops_identities: vec![],
        cert_secret: None,
        clusters_namespace: None,
    };
    hook_tweak(&mut cfg);
    let port = cfg.addr.port();
    let admin = client("admin").await;
    let stop = webhook::ShutdownHandle::new();
    let stop2 = stop.clone();
    let hook = tokio::spawn(async move {
        if let Err(e) = webhook::run_with_handle(admin, cfg, stop2).await {
            panic!("webhook failed: {e}");
        }
    });
    let mut ccfg = controller::Config {
        namespace: Some(ns.to_string()),
        require_identity: true,
        ..Default::default()
    };
    op_tweak(&mut ccfg);
    let admin = client("admin").await;
    let op = tokio::spawn(async move {
        controller::run(admin, ccfg, Arc::new(BuiltinPlanner), Ready::default())
            .await
            .unwrap();
    });
    wait_for("webhook serving", Duration::from_secs(20), || {
        webhook_stamps("admin", ns)
    })
    .await;
    Guarded {
        op,
        hook,
        stop,
        config,
        port,
    }
}

/// Waits until the operator has processed the plan's latest spec change
/// (`status.observedGeneration` caught up): proof, instead of a sleep, before
/// asserting that nothing happened.
pub async fn wait_plan_observed(ns: &str, plan: &str) {
    let api = Api::<AIPlan>::namespaced(client("admin").await, ns);
    wait_for(
        &format!("AIPlan {plan} observedGeneration"),
        Duration::from_secs(30),
        || async {
            let p = api.get(plan).await.unwrap();
            p.status.and_then(|s| s.observed_generation) == p.metadata.generation
        },
    )
    .await;
}

/// An AIRequest with this prompt.
pub fn request(name: &str, prompt: &str) -> AIRequest {
    AIRequest::new(
        name,
        AIRequestSpec {
            prompt: prompt.into(),
            ..Default::default()
        },
    )
}

/// Creates an AIRequest as `user`, returning the API server's answer.
pub async fn create_as(user: &str, ns: &str, r: &AIRequest) -> Result<AIRequest, kube::Error> {
    Api::<AIRequest>::namespaced(client(user).await, ns)
        .create(&PostParams::default(), r)
        .await
}

/// Like [`operator_process`], with its own kubeconfig (e.g. one that goes
/// through a recording proxy) and extra environment variables.
pub fn operator_process_with(
    ns: &str,
    name: &str,
    lease: Option<&str>,
    failpoint: Option<&str>,
    kubeconfig: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cluster_dir().join(format!("logs/operator-{ns}.log")))
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kubilitics-ai"));
    cmd.args([
        "run",
        "--insecure-dev-mode",
        "--namespace",
        ns,
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .env("POD_NAME", name)
    .env("POD_NAMESPACE", ns)
    .env("KUBECONFIG", kubeconfig)
    .env("RUST_LOG", "info,kube=warn")
    .stdout(std::process::Stdio::null())
    .stderr(log);
    if let Some(f) = failpoint {
        cmd.env("KUBILITICS_AI_FAILPOINT", f);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(lease) = lease {
        cmd.args(["--leader-elect", "--leader-lease-duration", lease])
            .args(["--leader-retry", "1s"]);
    }
    cmd.spawn().expect("spawn operator")
}

/// A JSON value as a Lua table literal.
pub fn lua(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "nil".into(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(a) => {
            format!("{{{}}}", a.iter().map(lua).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs examples/argocd/health.lua on an object; returns (status, message).
pub fn argo_health(obj: &impl serde::Serialize) -> (String, String) {
    let v = serde_json::to_value(obj).unwrap();
    let script = format!(
        "obj = {}\nlocal hs = dofile('examples/argocd/health.lua')\nprint(hs.status)\nprint(hs.message or '')",
        lua(&v)
    );
    let out = std::process::Command::new("lua5.4")
        .args(["-e", &script])
        .current_dir(repo())
        .output()
        .expect("lua5.4 (Debian package lua5.4; make test installs it)");
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or("").to_string(),
        lines.next().unwrap_or("").to_string(),
    )
}
