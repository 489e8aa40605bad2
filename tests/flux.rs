//! GitOps for real: Flux's own source-controller and kustomize-controller
//! (built from their Go modules by hack/build-flux.sh) sync AIRequests from a
//! git repository served on loopback over smart HTTP (`git http-backend`).
//! The approval is a commit: `spec.approvedPlanId` lands in git, Flux applies
//! it, the operator executes the plan, and the Kustomization — with the
//! shipped examples/flux health checks — reports Ready.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, Method, Response, StatusCode, Uri},
};
use common::*;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    run(Command::new("git")
        .args([
            "-c",
            "user.name=Platform Team",
            "-c",
            "user.email=platform@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir))
}

/// Flux binaries and CRDs, built (or found in the cache) by hack/build-flux.sh.
fn flux() -> (PathBuf, PathBuf) {
    run(Command::new("bash")
        .arg(repo().join("hack/build-flux.sh"))
        .current_dir(repo()));
    let paths = run(Command::new("bash")
        .args([
            "-c",
            "source hack/lib.sh && echo \"$FLUX_BIN\" && echo \"$FLUX_CRDS\"",
        ])
        .current_dir(repo()));
    let mut l = paths.lines();
    (l.next().unwrap().into(), l.next().unwrap().into())
}

/// Smart HTTP for the repositories under `root`, through `git http-backend` (CGI).
async fn git_http(root: PathBuf) -> u16 {
    let app = Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, req: Request| {
            let root = root.clone();
            async move {
                let body: Bytes = axum::body::to_bytes(req.into_body(), 64 << 20)
                    .await
                    .unwrap_or_default();
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let mut child = tokio::process::Command::new("git")
                    .arg("http-backend")
                    .env("GIT_PROJECT_ROOT", &root)
                    .env("GIT_HTTP_EXPORT_ALL", "1")
                    .env("REQUEST_METHOD", method.as_str())
                    .env("PATH_INFO", uri.path())
                    .env("QUERY_STRING", uri.query().unwrap_or(""))
                    .env("CONTENT_TYPE", h("content-type"))
                    .env("CONTENT_LENGTH", body.len().to_string())
                    .env("HTTP_CONTENT_ENCODING", h("content-encoding"))
                    .env("GIT_PROTOCOL", h("git-protocol"))
                    .env("REMOTE_ADDR", "127.0.0.1")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                {
                    use tokio::io::AsyncWriteExt;
                    let mut stdin = child.stdin.take().unwrap();
                    let _ = stdin.write_all(&body).await;
                }
                let out = child.wait_with_output().await.unwrap().stdout;
                let split = out
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| (i, 4))
                    .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
                let Some((at, gap)) = split else {
                    return Response::builder().status(500).body(Body::empty()).unwrap();
                };
                let mut resp = Response::builder().status(StatusCode::OK);
                for line in String::from_utf8_lossy(&out[..at]).lines() {
                    if let Some((k, v)) = line.split_once(':') {
                        let v = v.trim();
                        if k.eq_ignore_ascii_case("status") {
                            let code: u16 = v
                                .split(' ')
                                .next()
                                .and_then(|c| c.parse().ok())
                                .unwrap_or(500);
                            resp = resp.status(code);
                        } else {
                            resp = resp.header(k.trim(), v);
                        }
                    }
                }
                resp.body(Body::from(out[at + gap..].to_vec())).unwrap()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A Flux controller process watching only `ns`; killed on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(bin: &Path, ns: &str, extra: &[String]) -> Controller {
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let log = std::fs::File::create(cluster_dir().join(format!("logs/{name}-{ns}.log"))).unwrap();
    let child = Command::new(bin)
        .args([
            "--watch-all-namespaces=false",
            &format!("--metrics-addr=127.0.0.1:{}", free_port()),
            &format!("--health-addr=127.0.0.1:{}", free_port()),
            "--log-level=debug",
        ])
        .args(extra)
        .env("RUNTIME_NAMESPACE", ns)
        .env("KUBECONFIG", kubeconfig("admin"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    Controller(child)
}

fn api(
    kind: &str,
    group: &str,
    version: &str,
    plural: &str,
    ns: &str,
    c: kube::Client,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(c, ns, &ar)
}

fn ready(obj: &DynamicObject) -> Option<(String, String, String)> {
    let c = obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        c["status"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
        c["message"].as_str().unwrap_or("").into(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn flux_applies_the_request_and_its_approval_from_git() {
    let (bin, crds) = flux();
    let ns = TestNs::new("flux").await;
    let admin = client("admin").await;
    run(Command::new(kubectl())
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&crds)
        .env("KUBECONFIG", kubeconfig("admin")));
    run(Command::new(kubectl())
        .args([
            "wait",
            "--for=condition=Established",
            "crd/gitrepositories.source.toolkit.fluxcd.io",
            "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        ])
        .env("KUBECONFIG", kubeconfig("admin")));

    // The platform team's repository, served over smart HTTP on loopback.
    let tmp = cluster_dir().join(format!("flux-{}", ns.name));
    let _ = std::fs::remove_dir_all(&tmp);
    let (bare, work) = (tmp.join("git/platform.git"), tmp.join("work"));
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    git(&bare, &["init", "--bare", "-q"]);
    git(&work, &["init", "-q"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let git_port = git_http(tmp.join("git")).await;

    deployment(&ns.name, "web", 1).await;
    let path = work.join("ai-requests");
    std::fs::create_dir_all(&path).unwrap();
    let request = |approved: Option<&str>| {
        let mut spec = json!({"prompt": "scale deployment web to 3 replicas"});
        if let Some(id) = approved {
            spec["approvedPlanId"] = json!(id);
        }
        serde_json::to_string_pretty(&json!({
            "apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIRequest",
            "metadata": {"name": "scale-web", "namespace": ns.name}, "spec": spec
        }))
        .unwrap()
    };
    std::fs::write(path.join("scale-web.yaml"), request(None)).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "Ask: scale web to 3"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);

    // Flux itself, from its own binaries, watching this namespace only.
    let storage_port = free_port();
    let storage = tmp.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let _source = controller(
        &bin.join("source-controller"),
        &ns.name,
        &[
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr=127.0.0.1:{storage_port}"),
            format!("--storage-adv-addr=127.0.0.1:{storage_port}"),
        ],
    );
    let _kustomize = controller(&bin.join("kustomize-controller"), &ns.name, &[]);
    // Identities on: Flux applies as its own ServiceAccount (the Kustomization's
    // serviceAccountName, impersonated by kustomize-controller), which is both the
    // requester and the approver of what it syncs: a configured GitOps identity,
    // exempt from separation of duties (the reviewed commit is the approval).
    let applier = format!("system:serviceaccount:{}:flux-applier", ns.name);
    tool(
        "kubectl",
        &["-n", &ns.name, "create", "serviceaccount", "flux-applier"],
        None,
    );
    let _op = guarded_with(
        &ns.name,
        |h| h.gitops_identities = vec![applier.clone()],
        |c| c.gitops_identities = vec![applier.clone()],
    )
    .await;
    for role in ["kubilitics-ai-requester", "kubilitics-ai-approver", "edit"] {
        tool(
            "kubectl",
            &[
                "-n",
                &ns.name,
                "create",
                "rolebinding",
                &format!("flux-applier-{role}"),
                "--clusterrole",
                role,
                "--serviceaccount",
                &format!("{}:flux-applier", ns.name),
            ],
            None,
        );
    }

    let gitrepo = api(
        "GitRepository",
        "source.toolkit.fluxcd.io",
        "v1",
        "gitrepositories",
        &ns.name,
        admin.clone(),
    );
    let gr: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "platform", "namespace": ns.name},
        "spec": {"url": format!("http://127.0.0.1:{git_port}/platform.git"), "interval": "2s", "ref": {"branch": "main"}}
    }))
    .unwrap();
    gitrepo
        .patch(
            "platform",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&gr),
        )
        .await
        .unwrap();
    // The shipped example, pointed at this repository.
    let mut ks: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo().join("examples/flux/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    ks["metadata"]["namespace"] = json!(ns.name);
    ks["spec"]["path"] = json!("./ai-requests");
    ks["spec"]["interval"] = json!("2s");
    ks["spec"]["timeout"] = json!("60s");
    ks["spec"]["serviceAccountName"] = json!("flux-applier");
    let kustomizations = api(
        "Kustomization",
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        &ns.name,
        admin.clone(),
    );
    kustomizations
        .patch(
            "ai-requests",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&serde_json::from_value::<DynamicObject>(ks).unwrap()),
        )
        .await
        .unwrap();

    // Flux applies the request; the operator plans; the sync is healthy while it waits.
    let requests = Api::<kubilitics_ai::api::AIRequest>::namespaced(admin.clone(), &ns.name);
    wait_for(
        "Flux to apply the AIRequest from git",
        Duration::from_secs(120),
        || async { requests.get_opt("scale-web").await.ok().flatten().is_some() },
    )
    .await;
    let s = wait_phase_within(
        &ns.name,
        "scale-web",
        &["AwaitingApproval"],
        Duration::from_secs(120),
    )
    .await
    .status
    .unwrap();
    let id = s.plan_id.unwrap();
    wait_for(
        "Kustomization Ready while the plan awaits approval",
        Duration::from_secs(90),
        || async {
            kustomizations
                .get("ai-requests")
                .await
                .ok()
                .as_ref()
                .and_then(ready)
                .is_some_and(|r| r.0 == "True")
        },
    )
    .await;
    assert_eq!(
        replicas(&ns.name, "web").await,
        1,
        "nothing runs before the approval commit"
    );

    // The approval is a reviewed commit naming the exact plan id.
    std::fs::write(path.join("scale-web.yaml"), request(Some(&id))).unwrap();
    git(
        &work,
        &["commit", "-q", "-am", &format!("Approve plan {id}")],
    );
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let head = git(&work, &["rev-parse", "HEAD"]).trim().to_string();

    let r = wait_phase_within(
        &ns.name,
        "scale-web",
        &["Succeeded"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(replicas(&ns.name, "web").await, 3);
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(answer.contains("approvedPlanId"), "{answer}");
    assert!(
        answer.contains(&format!("GitOps identity {applier}")),
        "{answer}"
    );
    let stamped = requests.get("scale-web").await.unwrap();
    assert!(
        stamped.metadata.annotations.unwrap_or_default()
            [kubilitics_ai::safety::authz::REQUESTER_ANNOTATION]
            .contains(&applier),
        "the request's identity is Flux's applier"
    );
    wait_for(
        "Kustomization Ready at the approval commit",
        Duration::from_secs(90),
        || async {
            let k = kustomizations.get("ai-requests").await.ok();
            let rev = k
                .as_ref()
                .and_then(|k| {
                    k.data["status"]["lastAppliedRevision"]
                        .as_str()
                        .map(String::from)
                })
                .unwrap_or_default();
            k.as_ref().and_then(ready).is_some_and(|r| r.0 == "True") && rev.contains(&head)
        },
    )
    .await;
    let k = kustomizations.get("ai-requests").await.unwrap();
    eprintln!(
        "Kustomization: {:?} at {}",
        ready(&k),
        k.data["status"]["lastAppliedRevision"]
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
