//! Least privilege, live: with `--execute-as requester` the API server itself sees the
//! requester on every dry run and step (issue 17).

mod common;

use common::*;
use kubilitics_ai::controller::ExecuteAs;
use serde_json::json;

/// A ValidatingAdmissionPolicy keyed on the user, bound to `ns`: alice may not set 7 replicas
/// at all, nor 8 outside a dry run. The operator's ServiceAccount is not alice.
fn alice_policy(ns: &str) {
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": format!("alice-limits-{ns}")},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                "resources": ["deployments", "deployments/scale"]
            }]},
            "validations": [
                {"expression": "!(request.userInfo.username == 'alice' && object.spec.replicas == 7)",
                 "message": "alice-limits: alice may not run 7 replicas"},
                {"expression": "!(request.userInfo.username == 'alice' && object.spec.replicas == 8 && !request.dryRun)",
                 "message": "alice-limits: alice may not really run 8 replicas"}
            ]
        }
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": format!("alice-limits-{ns}")},
        "spec": {
            "policyName": format!("alice-limits-{ns}"),
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        }
    });
    for doc in [policy, binding] {
        tool(
            "kubectl",
            &["apply", "-f", "-"],
            Some(&serde_json::to_string(&doc).unwrap()),
        );
    }
}

fn drop_policy(ns: &str) {
    for kind in [
        "validatingadmissionpolicybinding",
        "validatingadmissionpolicy",
    ] {
        tool(
            "kubectl",
            &[
                "delete",
                kind,
                &format!("alice-limits-{ns}"),
                "--ignore-not-found",
            ],
            None,
        );
    }
}

async fn setup(ns: &str) {
    alice_policy(ns);
    deployment(ns, "web7", 1).await;
    deployment(ns, "web8", 1).await;
    for role in ["kubilitics-ai-requester", "edit"] {
        bind(ns, "alice", role);
    }
    for role in ["kubilitics-ai-approver", "edit"] {
        bind(ns, "bob", role);
    }
    // The policy is in force (the API server loads policies from a watch): alice's own
    // dry-run scale to 7 is refused.
    wait_for(
        "alice-limits policy in force",
        std::time::Duration::from_secs(30),
        || async {
            let out = std::process::Command::new(kubectl())
                .args(["-n", ns, "scale", "deployment/web7", "--replicas=7"])
                .args(["--dry-run=server"])
                .env("KUBECONFIG", kubeconfig("alice"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stderr).contains("alice-limits")
        },
    )
    .await;
}

#[tokio::test]
async fn execute_as_requester_puts_the_person_in_front_of_the_api_servers_policies() {
    let ns = TestNs::new("exas").await;
    let control = TestNs::new("exsa").await;
    let _cleanup = Cleanup(vec![ns.name.clone(), control.name.clone()]);
    let own = config("admin").await;
    let _g = guarded_with(
        &ns.name,
        |_| {},
        |c| c.execute_as = ExecuteAs::Requester(Box::new(own)),
    )
    .await;
    let _c = guarded(&control.name).await;
    setup(&ns.name).await;
    setup(&control.name).await;

    // The dry run is alice's own: her policy refuses it, and no plan is offered.
    for n in [&ns.name, &control.name] {
        create_as(
            "alice",
            n,
            &request("seven", "scale deployment web7 to 7 replicas"),
        )
        .await
        .unwrap();
        create_as(
            "alice",
            n,
            &request("eight", "scale deployment web8 to 8 replicas"),
        )
        .await
        .unwrap();
    }
    let r = wait_phase(&ns.name, "seven", "Failed").await;
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(
        answer.contains("alice-limits: alice may not run 7"),
        "{answer}"
    );

    // The step is alice's own request: her dry run passed, bob approved, the real write is
    // refused by the API server and nothing changed.
    let s = wait_phase(&ns.name, "eight", "AwaitingApproval")
        .await
        .status
        .unwrap();
    approve(
        "bob",
        &ns.name,
        s.plan_ref.as_deref().unwrap(),
        s.plan_id.as_deref().unwrap(),
    )
    .await
    .unwrap();
    let r = wait_phase(&ns.name, "eight", "Failed").await;
    let plan = get_plan(&ns.name, s.plan_ref.as_deref().unwrap()).await;
    let msg = plan.status.unwrap().steps[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(msg.contains("alice may not really run 8"), "{msg} / {r:?}");
    assert_eq!(replicas(&ns.name, "web8").await, 1);
    assert_eq!(replicas(&ns.name, "web7").await, 1);

    // The control: the same requests under the default ServiceAccount pass the same policy
    // (it is keyed on alice, and the API server sees the operator), so both plans are offered
    // and run. Without impersonation, the first half of this test would look like this.
    approve_and_finish("bob", &control.name, "seven").await;
    approve_and_finish("bob", &control.name, "eight").await;
    assert_eq!(replicas(&control.name, "web7").await, 7);
    assert_eq!(replicas(&control.name, "web8").await, 8);
}

/// Removes the cluster-scoped policies when the test ends, also on failure.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in &self.0 {
            drop_policy(ns);
        }
    }
}

/// A namespace with more events than a list reads: the tools page through the API server
/// (`limit`/`continue`), stop at the cap, and say so, for people and for the model alike.
#[tokio::test]
async fn lists_stop_at_the_cap_and_say_showing_n_of_m() {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Event;
    use kube::Api;
    use kube::api::PostParams;
    use kubilitics_ai::tools::{LIST_CAP, ReadCall, ReadTools};

    let ns = TestNs::new("paged").await;
    let n = LIST_CAP + 37;
    let api = Api::<Event>::namespaced(client("admin").await, &ns.name);
    let created = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let ns = ns.name.clone();
            async move {
                let e: Event = serde_json::from_value(json!({
                    "metadata": {"name": format!("e{i:05}")},
                    "involvedObject": {"kind": "Pod", "name": format!("p{i}"), "namespace": ns},
                    "reason": "Test", "message": "m", "type": "Normal"
                }))
                .unwrap();
                api.create(&PostParams::default(), &e)
                    .await
                    .map_err(|e| eprintln!("{e}"))
                    .is_ok()
            }
        })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(created, n);
    let tools = ReadTools::new(client("admin").await);
    let call = ReadCall::GetEvents {
        namespace: ns.name.clone(),
        name: None,
    };
    let want = format!("showing the first {LIST_CAP} of {n} events");
    let (text, _) = tools.run(&call).await;
    let text = text.unwrap();
    assert!(text.contains(&want), "{text}");
    let (compact, _) = tools.run_for_model(&call, 100_000).await;
    let compact = compact.unwrap();
    assert!(compact.contains(&want), "{compact}");
    // Under the cap nothing is said.
    let few = TestNs::new("paged-few").await;
    deployment(&few.name, "web", 1).await;
    let (text, _) = tools
        .run(&ReadCall::ListDeployments {
            namespace: few.name.clone(),
        })
        .await;
    assert!(!text.unwrap().contains("showing the first"));
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A pod printing 1000 lines of 1 MiB (kwok serves `huge.log` for containers named
/// `huge-logger`): the operator reads at most 256 KiB of it (`limitBytes`, and a cap on the
/// stream), cuts long lines, and its peak memory stays under 128 MiB.
#[tokio::test]
async fn a_pod_printing_huge_lines_cannot_grow_the_operators_memory() {
    use std::io::Write;
    let huge = cluster_dir().join("huge.log");
    if std::fs::metadata(&huge).map(|m| m.len()).unwrap_or(0) < 1000 << 20 {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
        let line = "y".repeat(1 << 20);
        for i in 0..1000 {
            writeln!(
                f,
                "2026-01-01T00:00:{:02}.000000000Z stdout F {i:04} {line}",
                i % 60
            )
            .unwrap();
        }
    }
    let ns = TestNs::new("hugelog").await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "huge", "namespace": ns.name},
        "spec": {"containers": [{"name": "huge-logger", "image": "busybox"}]}
    });
    tool("kubectl", &["apply", "-f", "-"], Some(&pod.to_string()));
    wait_for(
        "pod huge running",
        std::time::Duration::from_secs(60),
        || async {
            let p: k8s_openapi::api::core::v1::Pod =
                kube::Api::namespaced(client("admin").await, &ns.name)
                    .get("huge")
                    .await
                    .unwrap();
            p.status.and_then(|s| s.phase).as_deref() == Some("Running")
        },
    )
    .await;
    let mut op = operator_process(&ns.name, "op-hugelog", None, None);
    for i in 0..3 {
        let name = format!("logs-{i}");
        ask("admin", &ns.name, &name, "show the logs of pod huge").await;
        let r = wait_phase(&ns.name, &name, "Answered").await;
        let answer = r.status.unwrap().answer.unwrap_or_default();
        assert!(answer.contains("more bytes]"), "{answer}");
        assert!(answer.len() < 64 * 1024, "answer of {} bytes", answer.len());
    }
    let peak = peak_rss_kib(op.id());
    let _ = op.kill();
    let _ = op.wait();
    println!(
        "operator peak RSS after 3 reads of a 1 GiB log: {} MiB",
        peak / 1024
    );
    assert!(peak < 128 * 1024, "operator peak RSS {} MiB", peak / 1024);
}

/// A client that is admin impersonating `user` with `extra` attributes (like a scoped token).
async fn as_user_with_extra(user: &str, extra: &[(&str, &[&str])]) -> kube::Client {
    let mut cfg = config("admin").await;
    cfg.auth_info.impersonate = Some(user.into());
    cfg.auth_info.impersonate_uid = Some(format!("uid-{user}"));
    cfg.auth_info.impersonate_groups = Some(vec!["kubilitics:requesters".into()]);
    cfg.auth_info.impersonate_user_extra = Some(
        extra
            .iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect(),
    );
    kube::Client::try_from(cfg).unwrap()
}

/// Extra attributes (token scopes narrow what a token may do; a dropped scope would widen the
/// requester in every later SubjectAccessReview) are recorded at admission exactly, cannot be
/// forged, dropped, padded or changed later, and reach the operator's SubjectAccessReviews.
#[tokio::test]
async fn the_requesters_extra_attributes_are_recorded_exactly_and_cannot_be_forged() {
    use kube::Api;
    use kube::api::{Patch, PatchParams, PostParams};
    use kubilitics_ai::api::{AIRequest, Requester};
    use kubilitics_ai::safety::authz::{
        REQUESTER_ANNOTATION, REQUESTER_EXTRA_ANNOTATION, identity_annotation, identity_from,
    };

    // Without a webhook: the identity policy shipped with the CRDs alone.
    let ns = TestNs::new("extra").await;
    bind(&ns.name, "alice", "kubilitics-ai-requester");
    let scoped = as_user_with_extra("alice", &[("scopes", &["read", "list"])]).await;
    let me = identity_annotation(&Requester {
        username: "alice".into(),
        uid: Some("uid-alice".into()),
        groups: vec![
            "kubilitics:requesters".into(),
            "system:authenticated".into(),
        ],
        ..Default::default()
    });
    let with = |name: &str, extra: Option<&str>| {
        let mut r = request(name, "how are my pods?");
        let mut ann =
            std::collections::BTreeMap::from([(REQUESTER_ANNOTATION.to_string(), me.clone())]);
        if let Some(e) = extra {
            ann.insert(REQUESTER_EXTRA_ANNOTATION.to_string(), e.to_string());
        }
        r.metadata.annotations = Some(ann);
        r
    };
    let api = Api::<AIRequest>::namespaced(scoped.clone(), &ns.name);
    let pp = PostParams::default();
    // The API server loads policies from a watch: wait until this one is in force.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_for(
        "identity policy with the extra rule in force",
        std::time::Duration::from_secs(30),
        || async { api.create(&dry, &with("probe", None)).await.is_err() },
    )
    .await;
    for (name, extra) in [
        ("dropped", None),
        ("one-missing", Some("scopes=read")),
        ("padded", Some("scopes=read\nscopes=list\nscopes=admin")),
        ("other-key", Some("scopes=read\nscopes=list\nteam=root")),
    ] {
        let err = api.create(&pp, &with(name, extra)).await.unwrap_err();
        assert!(err.to_string().contains("requester-extra"), "{name}: {err}");
    }
    // The exact set (any order) is what admission would write.
    api.create(&pp, &with("exact", Some("scopes=list\nscopes=read")))
        .await
        .unwrap();
    // Never changed afterwards, not even by the requester.
    let err = api
        .patch(
            "exact",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {REQUESTER_EXTRA_ANNOTATION: "scopes=read"}}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requester-extra"), "{err}");
    // Someone without extra attributes cannot claim any.
    bind(&ns.name, "mallory", "kubilitics-ai-requester");
    let mallory_me = identity_annotation(&Requester {
        username: "mallory".into(),
        uid: Some("mallory".into()),
        groups: vec!["system:authenticated".into()],
        ..Default::default()
    });
    let mut forged = request("forged", "how are my pods?");
    forged.metadata.annotations = Some(std::collections::BTreeMap::from([
        (REQUESTER_ANNOTATION.to_string(), mallory_me),
        (
            REQUESTER_EXTRA_ANNOTATION.to_string(),
            "scopes=cluster-admin".to_string(),
        ),
    ]));
    let err = create_as("mallory", &ns.name, &forged).await.unwrap_err();
    assert!(err.to_string().contains("requester"), "{err}");

    // With the webhook: it stamps the extra attributes, and the operator reads them back into
    // the identity its SubjectAccessReviews are made for.
    let hooked = TestNs::new("extra-hook").await;
    let _g = guarded(&hooked.name).await;
    bind(&hooked.name, "alice", "kubilitics-ai-requester");
    let created = Api::<AIRequest>::namespaced(scoped, &hooked.name)
        .create(&pp, &request("stamped", "how are my pods?"))
        .await
        .unwrap();
    let ann = created.metadata.annotations.as_ref();
    assert_eq!(
        ann.and_then(|a| a.get(REQUESTER_EXTRA_ANNOTATION))
            .map(String::as_str),
        Some("scopes=read\nscopes=list")
    );
    let who = identity_from(ann, REQUESTER_ANNOTATION).unwrap();
    assert_eq!(who.extra["scopes"], vec!["read", "list"]);
    let sar = kubilitics_ai::access::review(
        &who,
        &kubilitics_ai::access::Permission::ns("list", "", "pods", &hooked.name),
    );
    assert_eq!(sar.spec.extra.unwrap()["scopes"], vec!["read", "list"]);
    assert_eq!(sar.spec.uid.as_deref(), Some("uid-alice"));
}
