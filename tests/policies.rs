//! Approval policies (issue 23), live against the real API server with the
//! admission webhook and the shipped identity policy on: N-of-M quorums
//! (distinct approvers, never the requester, each through the gate), change
//! windows and freezes (`WaitingForWindow`), pre-approval of declared-safe
//! steps, and rules that a policy change never loosens. Users as in
//! tests/gate.rs: alice (requester + edit), bob and carol (approver + edit),
//! mallory (requester only). Cluster policies select only the test's namespace.

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use kubilitics_ai::api::{
    AIApprovalPolicy, AIClusterApprovalPolicy, AIPlan, AIPlanStatus, WAITING_FOR_WINDOW,
};
use serde_json::{Value, json};

fn bind_roles(ns: &str) {
    for (user, roles) in [
        ("alice", &["kubilitics-ai-requester", "edit"][..]),
        ("bob", &["kubilitics-ai-approver", "edit"][..]),
        ("carol", &["kubilitics-ai-approver", "edit"][..]),
        ("mallory", &["kubilitics-ai-requester"][..]),
    ] {
        for role in roles {
            bind(ns, user, role);
        }
    }
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

/// `alice` asks `prompt` as request `name`; returns its plan's name and id.
async fn planned(ns: &str, name: &str, prompt: &str) -> (String, String) {
    create_as("alice", ns, &request(name, prompt))
        .await
        .unwrap();
    let s = wait_phase(ns, name, "AwaitingApproval")
        .await
        .status
        .unwrap();
    (s.plan_ref.unwrap(), s.plan_id.unwrap())
}

/// Appends an entry to the plan's `spec.approvals` as `user` (a JSON patch, so
/// nobody else's entry is sent along), optionally claiming an `approver`.
async fn append(
    user: &str,
    ns: &str,
    plan: &str,
    id: &str,
    comment: &str,
    claim: Option<&str>,
) -> Result<AIPlan, kube::Error> {
    let api = Api::<AIPlan>::namespaced(client(user).await, ns);
    let mut entry = json!({"planId": id, "comment": comment});
    if let Some(c) = claim {
        entry["approver"] = json!(c);
    }
    let current = get_plan(ns, plan).await;
    let op = if current.spec.approvals.is_empty() {
        json!([{"op": "add", "path": "/spec/approvals", "value": [entry]}])
    } else {
        json!([{"op": "add", "path": "/spec/approvals/-", "value": entry}])
    };
    api.patch(
        plan,
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(op).unwrap()),
    )
    .await
}

async fn plan_status(ns: &str, plan: &str) -> AIPlanStatus {
    get_plan(ns, plan).await.status.unwrap_or_default()
}

/// Waits until the plan's status satisfies `f` (proof the operator decided).
async fn wait_plan(ns: &str, plan: &str, what: &str, f: impl Fn(&AIPlanStatus) -> bool) {
    wait_for(what, Duration::from_secs(60), || async {
        f(&plan_status(ns, plan).await)
    })
    .await;
}

async fn cluster_policy(name: &str, spec: Value) -> Result<AIClusterApprovalPolicy, kube::Error> {
    let p: AIClusterApprovalPolicy =
        serde_json::from_value(json!({"apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIClusterApprovalPolicy", "metadata": {"name": name}, "spec": spec}))
            .unwrap();
    Api::<AIClusterApprovalPolicy>::all(client("admin").await)
        .create(&PostParams::default(), &p)
        .await
}

/// Deletes a cluster policy when the test ends (also when it fails).
struct ClusterPolicy(String);

impl Drop for ClusterPolicy {
    fn drop(&mut self) {
        let _ = std::process::Command::new(kubectl())
            .args(["delete", "aiclusterapprovalpolicy", &self.0, "--wait=false"])
            .env("KUBECONFIG", kubeconfig("admin"))
            .output();
    }
}

async fn ns_policy(
    user: &str,
    ns: &str,
    name: &str,
    spec: Value,
) -> Result<AIApprovalPolicy, kube::Error> {
    let p: AIApprovalPolicy = serde_json::from_value(json!({"apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIApprovalPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})).unwrap();
    Api::<AIApprovalPolicy>::namespaced(client(user).await, ns)
        .create(&PostParams::default(), &p)
        .await
}

#[tokio::test]
async fn two_of_m_needs_two_distinct_approvers_and_never_the_requester() {
    let ns = TestNs::new("pol-quorum").await;
    // Separation of duties is switched off (webhook and operator): under a quorum
    // policy the requester's approval must still never count.
    let _g = guarded_with(
        &ns.name,
        |h| h.separation_of_duties = false,
        |c| c.separation_of_duties = false,
    )
    .await;
    bind_roles(&ns.name);
    // alice may approve plans in general (she is on the approving team too).
    bind(&ns.name, "alice", "kubilitics-ai-approver");
    let name = format!("two-of-m-{}", ns.name);
    let _cp = ClusterPolicy(name.clone());
    cluster_policy(
        &name,
        json!({"namespaces": [ns.name], "rules": [{"risk": "High", "quorum": 2}]}),
    )
    .await
    .unwrap();
    deployment(&ns.name, "web", 3).await;
    let (plan, id) = planned(&ns.name, "r", "scale deployment web to 0 replicas").await;
    wait_plan(&ns.name, &plan, "quorum 2 recorded", |s| {
        s.approvals_required == Some(2)
    })
    .await;

    // The requester's own approval is admitted here but never counts ...
    append("alice", &ns.name, &plan, &id, "mine", None)
        .await
        .unwrap();
    wait_plan_observed(&ns.name, &plan).await;
    let s = plan_status(&ns.name, &plan).await;
    assert!(s.approvals.is_empty(), "{:?}", s.approvals);
    let warned = events(&ns.name, &plan, "ApprovalMismatch").await;
    assert!(
        warned.iter().any(|e| e
            .note
            .as_deref()
            .unwrap_or("")
            .contains("the requester's approval never counts")),
        "{warned:?}"
    );
    // ... mallory holds no verb approve ...
    refused(
        append("mallory", &ns.name, &plan, &id, "me too", None).await,
        "cannot patch",
    );
    // ... and bob cannot write an entry in carol's name: admission stamps bob.
    let carol = r#"{"username":"carol","uid":"","groups":["system:authenticated"]}"#;
    let p = append("bob", &ns.name, &plan, &id, "as carol", Some(carol))
        .await
        .unwrap();
    let entry = p.spec.approvals.last().unwrap();
    let stamped = entry.approver.clone().unwrap();
    assert!(stamped.contains(r#""username":"bob""#), "{stamped}");
    assert!(entry.approved_at.is_some());
    wait_plan(&ns.name, &plan, "1/2 counted", |s| s.approvals.len() == 1).await;
    let s = plan_status(&ns.name, &plan).await;
    assert_eq!(s.approvals[0].user, "bob");
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(
        ready.message.contains("1/2 approvals (bob)"),
        "{}",
        ready.message
    );

    // Bob approving twice still counts once.
    append("bob", &ns.name, &plan, &id, "again", None)
        .await
        .unwrap();
    wait_plan_observed(&ns.name, &plan).await;
    let s = plan_status(&ns.name, &plan).await;
    assert_eq!(s.approvals.len(), 1);
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 3);

    // Carol may not remove or change bob's entries (a merge patch replaces the list).
    refused(
        Api::<AIPlan>::namespaced(client("carol").await, &ns.name)
            .patch(
                &plan,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"approvals": [{"planId": id}]}})),
            )
            .await,
        "may not change or remove an entry of spec.approvals written by",
    );

    // A policy loosened after the approval does not loosen this plan: quorum 1
    // now, but the plan was offered under 2.
    Api::<AIClusterApprovalPolicy>::all(client("admin").await)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rules": [{"risk": "High", "quorum": 1}]}})),
        )
        .await
        .unwrap();
    append("bob", &ns.name, &plan, &id, "third time", None)
        .await
        .unwrap();
    wait_plan_observed(&ns.name, &plan).await;
    let s = plan_status(&ns.name, &plan).await;
    assert_eq!(s.approvals_required, Some(2), "{s:?}");
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 3);

    // The second distinct approver: it runs.
    append("carol", &ns.name, &plan, &id, "lgtm", None)
        .await
        .unwrap();
    wait_phase(&ns.name, "r", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 0);
    let s = plan_status(&ns.name, &plan).await;
    let by = s.approved_by.unwrap();
    assert!(
        by.contains("bob") && by.contains("carol") && by.contains("2/2"),
        "{by}"
    );
    let users: Vec<&str> = s.approvals.iter().map(|a| a.user.as_str()).collect();
    assert_eq!(users, ["bob", "carol"]);
}

#[tokio::test]
async fn a_plan_waits_for_its_window_and_a_freeze_outlasts_it() {
    let ns = TestNs::new("pol-window").await;
    // Plans expire after 40 s here: long enough for the window test, short for the freeze.
    let _g = guarded_with(&ns.name, |_| {}, |c| c.plan_ttl = Duration::from_secs(40)).await;
    bind_roles(&ns.name);
    // A window opening about 20 s from now (seconds field), open for 10 minutes.
    let opens = Timestamp::now() + SignedDuration::from_secs(20);
    let z = opens.to_zoned(jiff::tz::TimeZone::UTC);
    let schedule = format!("{} {} {} * * *", z.second(), z.minute(), z.hour());
    ns_policy(
        "admin",
        &ns.name,
        "window",
        json!({"windows": [{"schedule": schedule, "duration": "10m", "timeZone": "UTC"}]}),
    )
    .await
    .unwrap();
    // The policy is reconciled: Ready with the current generation.
    wait_for("policy Ready", Duration::from_secs(30), || async {
        let p = Api::<AIApprovalPolicy>::namespaced(client("admin").await, &ns.name)
            .get("window")
            .await
            .unwrap();
        let st = p.status.unwrap_or_default();
        st.observed_generation == p.metadata.generation
            && st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    deployment(&ns.name, "web", 1).await;
    let (plan, id) = planned(&ns.name, "r", "scale deployment web to 2 replicas").await;
    approve("bob", &ns.name, &plan, &id).await.unwrap();
    wait_plan(&ns.name, &plan, "WaitingForWindow", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == WAITING_FOR_WINDOW && c.status == "True")
    })
    .await;
    let s = plan_status(&ns.name, &plan).await;
    let at = s.window_opens_at.unwrap().0;
    assert!(
        at.as_second() == opens.as_second(),
        "opens {at}, expected {opens}"
    );
    assert_eq!(replicas(&ns.name, "web").await, 1);
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    // When it opens, the plan runs (it has not expired).
    wait_phase(&ns.name, "r", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 2);
    let s = plan_status(&ns.name, &plan).await;
    assert!(s.approved_at.unwrap().0.as_second() >= opens.as_second());
    assert!(!s.conditions.iter().any(|c| c.type_ == WAITING_FOR_WINDOW));

    // A freeze for the next hour: approved, but never runs before it expires.
    let now = Timestamp::now();
    let fmt = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    ns_policy(
        "admin",
        &ns.name,
        "freeze",
        json!({"freezes": [{"start": fmt(now - SignedDuration::from_secs(60)), "end": fmt(now + SignedDuration::from_hours(1)), "reason": "release freeze"}]}),
    )
    .await
    .unwrap();
    let (plan, id) = planned(&ns.name, "r2", "scale deployment web to 4 replicas").await;
    approve("bob", &ns.name, &plan, &id).await.unwrap();
    wait_plan(&ns.name, &plan, "frozen", |s| {
        s.conditions.iter().any(|c| {
            c.type_ == WAITING_FOR_WINDOW
                && c.message.contains("frozen")
                && c.message.contains("release freeze")
        })
    })
    .await;
    wait_phase_within(&ns.name, "r2", &["Expired"], Duration::from_secs(60)).await;
    assert_eq!(replicas(&ns.name, "web").await, 2);
    assert!(plan_status(&ns.name, &plan).await.approved_at.is_none());
}

#[tokio::test]
async fn pre_approval_only_where_the_cluster_policy_says() {
    let ns = TestNs::new("pol-pre").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    let name = format!("safe-{}", ns.name);
    let _cp = ClusterPolicy(name.clone());

    // Validation: High is never pre-approved; quorum at least 1; windows must parse.
    refused(
        cluster_policy(&format!("{name}-bad"), json!({"namespaces": [ns.name], "preApprove": [{"tool": "scale_deployment", "namespaces": [ns.name], "maxRisk": "High"}]})).await,
        "High risk is never pre-approved",
    );
    refused(
        cluster_policy(
            &format!("{name}-bad"),
            json!({"rules": [{"risk": "High", "quorum": 0}]}),
        )
        .await,
        "quorum",
    );
    refused(
        ns_policy(
            "admin",
            &ns.name,
            "bad",
            json!({"windows": [{"schedule": "every day", "duration": "8h"}]}),
        )
        .await,
        "schedule must be a cron expression",
    );
    refused(
        ns_policy(
            "admin",
            &ns.name,
            "bad",
            json!({"windows": [{"schedule": "0 9 * * *", "duration": "1d"}]}),
        )
        .await,
        "duration must look like",
    );
    // A requester cannot write a policy (namespace admins can; cluster ones: cluster admins).
    refused(
        ns_policy(
            "alice",
            &ns.name,
            "mine",
            json!({"rules": [{"risk": "Low", "quorum": 1}]}),
        )
        .await,
        "forbidden",
    );

    cluster_policy(
        &name,
        json!({"namespaces": [ns.name], "preApprove": [{"tool": "scale_deployment", "namespaces": [ns.name], "maxRisk": "Medium", "maxReplicas": 5}]}),
    )
    .await
    .unwrap();
    deployment(&ns.name, "web", 1).await;
    // Within bounds: runs with no person, recorded as the policy.
    create_as(
        "alice",
        &ns.name,
        &request("small", "scale deployment web to 4 replicas"),
    )
    .await
    .unwrap();
    let done = wait_phase(&ns.name, "small", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 4);
    let plan = done.status.unwrap().plan_ref.unwrap();
    assert_eq!(
        plan_status(&ns.name, &plan).await.approved_by.as_deref(),
        Some(format!("policy/{name}").as_str())
    );
    // Out of bounds (8 > 5) and High risk (scale to 0): people approve.
    for (r, prompt) in [
        ("big", "scale deployment web to 8 replicas"),
        ("zero", "scale deployment web to 0 replicas"),
    ] {
        let (plan, _) = planned(&ns.name, r, prompt).await;
        wait_plan(&ns.name, &plan, "policy evaluated", |s| {
            s.approvals_required == Some(1)
        })
        .await;
        assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
        assert!(plan_status(&ns.name, &plan).await.approved_by.is_none());
    }
    assert_eq!(replicas(&ns.name, "web").await, 4);

    // A namespaced rule for the plan's risk turns the cluster pre-approval off (stricter wins).
    ns_policy(
        "admin",
        &ns.name,
        "people",
        json!({"rules": [{"risk": "Low", "quorum": 1}, {"risk": "Medium", "quorum": 1}]}),
    )
    .await
    .unwrap();
    let (plan, _) = planned(&ns.name, "again", "scale deployment web to 3 replicas").await;
    wait_plan(&ns.name, &plan, "policy evaluated", |s| {
        s.policy.as_ref().is_some_and(|p| p.sources.len() == 2)
    })
    .await;
    assert_eq!(plan_phase(&ns.name, &plan).await, "AwaitingApproval");
    assert_eq!(replicas(&ns.name, "web").await, 4);
}

#[tokio::test]
async fn gitops_and_plan_approvals_count_together_towards_a_quorum() {
    let ns = TestNs::new("pol-gitops").await;
    let _g = guarded(&ns.name).await;
    bind_roles(&ns.name);
    let name = format!("gitops-{}", ns.name);
    let _cp = ClusterPolicy(name.clone());
    cluster_policy(
        &name,
        json!({"namespaces": [ns.name], "rules": [{"risk": "High", "quorum": 2}]}),
    )
    .await
    .unwrap();
    deployment(&ns.name, "web", 2).await;
    let (plan, id) = planned(&ns.name, "r", "scale deployment web to 0 replicas").await;
    // The GitOps path (spec.approvedPlanId on the request) is one approver ...
    Api::<kubilitics_ai::api::AIRequest>::namespaced(client("bob").await, &ns.name)
        .patch(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"approvedPlanId": id}})),
        )
        .await
        .unwrap();
    wait_plan(&ns.name, &plan, "1/2 counted", |s| s.approvals.len() == 1).await;
    let s = plan_status(&ns.name, &plan).await;
    assert_eq!(s.approvals[0].source, "AIRequest spec.approvedPlanId");
    assert_eq!(replicas(&ns.name, "web").await, 2);
    // ... and a second person on the plan completes the quorum.
    append("carol", &ns.name, &plan, &id, "second pair of eyes", None)
        .await
        .unwrap();
    wait_phase(&ns.name, "r", "Succeeded").await;
    assert_eq!(replicas(&ns.name, "web").await, 0);
}

#[tokio::test]
async fn the_example_policies_are_valid() {
    let ns = TestNs::new("pol-example").await;
    let example = std::fs::read_to_string(repo().join("examples/approval-policies.yaml"))
        .unwrap()
        .replace("namespace: payments", &format!("namespace: {}", ns.name));
    let out = tool(
        "kubectl",
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&example),
    );
    assert!(
        out.contains("aiclusterapprovalpolicy.ai.kubilitics.io/default created"),
        "{out}"
    );
    assert!(
        out.contains("aiapprovalpolicy.ai.kubilitics.io/payments created"),
        "{out}"
    );
}

#[tokio::test]
async fn without_the_webhook_the_identity_policy_guards_spec_approvals() {
    // No webhook and no operator in this namespace: only the shipped
    // ValidatingAdmissionPolicy stands between a user and a forged entry.
    let ns = TestNs::new("pol-vap").await;
    ensure_chart_rbac();
    bind_roles(&ns.name);
    let p: AIPlan = serde_json::from_value(json!({"apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIPlan", "metadata": {"name": "p"}, "spec": {}})).unwrap();
    Api::<AIPlan>::namespaced(client("admin").await, &ns.name)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    let id = "0123456789abcdef";
    let carol = r#"{"username":"carol","uid":"carol","groups":["system:authenticated"]}"#;
    refused(
        append("bob", &ns.name, "p", id, "as carol", Some(carol)).await,
        "names the user who wrote it",
    );
    refused(
        append("bob", &ns.name, "p", id, "nobody", None).await,
        "names the user who wrote it",
    );
    assert!(get_plan(&ns.name, "p").await.spec.approvals.is_empty());
}
