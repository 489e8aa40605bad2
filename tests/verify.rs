//! Changes that check themselves, against the real control plane: the
//! admission chain's verdict before approval (a real ValidatingAdmissionPolicy
//! that denies, one that only warns), and verification with automatic
//! rollback after (kwok's `verify-fail.invalid/` image stage makes a rollout
//! fail; see hack/kwok-stages/image-pull-fail.yaml).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubilitics_ai::agent::{Outcome, PlanInput, Planner};
use kubilitics_ai::api::{AIPlan, RollbackKind, StepState, VerificationKind};
use kubilitics_ai::tools::{Mutation, ReadTools};
use serde_json::{Value, json};

/// A planner that proposes exactly the mutations written (as JSON) in the prompt.
struct Scripted;

#[async_trait::async_trait]
impl Planner for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn plan(
        &self,
        input: &PlanInput,
        _tools: &ReadTools,
    ) -> Result<Outcome, kubilitics_ai::agent::AgentError> {
        let mutations: Vec<Mutation> = serde_json::from_str(&input.prompt)
            .map_err(|e| kubilitics_ai::agent::AgentError::Failed(e.to_string()))?;
        Ok(Outcome {
            answer: "scripted plan".into(),
            mutations,
            operation: "scripted".into(),
            ..Default::default()
        })
    }
}

fn set_image(ns: &str, name: &str, image: &str) -> Value {
    json!({"tool": "patch_resource", "namespace": ns, "kind": "Deployment", "name": name,
        "strategy": "strategic",
        "patch": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}})
}

fn scale(ns: &str, name: &str, replicas: i32) -> Value {
    json!({"tool": "scale_deployment", "namespace": ns, "name": name, "replicas": replicas})
}

async fn get_deploy(ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client("admin").await, ns)
        .get(name)
        .await
        .unwrap()
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Waits until the Deployment's rollout is complete and returns it.
async fn rolled_out(ns: &str, name: &str) -> Deployment {
    wait_for(
        &format!("deployment {name} rolled out"),
        Duration::from_secs(60),
        || async { rollout_complete(&get_deploy(ns, name).await) },
    )
    .await;
    get_deploy(ns, name).await
}

fn rollout_complete(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
}

/// Asks with the scripted planner and approves as admin; returns the plan.
async fn plan_and_approve(ns: &str, name: &str, steps: &[Value]) -> AIPlan {
    ask("admin", ns, name, &Value::from(steps.to_vec()).to_string()).await;
    let s = wait_phase(ns, name, "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.unwrap();
    approve("admin", ns, &plan, s.plan_id.as_deref().unwrap())
        .await
        .unwrap();
    get_plan(ns, &plan).await
}

fn cond<'a>(
    c: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    c.iter().find(|c| c.type_ == t)
}

#[tokio::test]
async fn a_healthy_change_succeeds_only_after_its_rollout_completed() {
    let ns = TestNs::new("verify-ok").await;
    let n = ns.name.as_str();
    deployment(n, "web", 2).await;
    rolled_out(n, "web").await;
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;
    let plan = plan_and_approve(n, "ok", &[set_image(n, "web", "nginx:1.28")]).await;
    wait_phase_within(n, "ok", &["Succeeded"], Duration::from_secs(60)).await;
    // Read right when the request says Succeeded: the rollout must be complete
    // already (an operator that finished right after the patch fails here).
    let d = get_deploy(n, "web").await;
    assert!(
        rollout_complete(&d),
        "Succeeded before the rollout completed: {:?}",
        d.status
    );
    assert_eq!(image_of(&d), "nginx:1.28");
    let ps = get_plan(n, &plan.metadata.name.clone().unwrap())
        .await
        .status
        .unwrap();
    assert_eq!(ps.steps[0].state, StepState::Succeeded);
    let step = &plan.status.as_ref().unwrap().steps[0];
    assert_eq!(
        step.verification.as_ref().map(|v| v.kind),
        Some(VerificationKind::RolloutComplete)
    );
    assert_eq!(
        step.rollback_action.as_ref().map(|r| r.action),
        Some(RollbackKind::RestoreBefore)
    );
    assert!(
        ps.steps[0]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("verified: 2/2 replicas available"),
        "{:?}",
        ps.steps[0].message
    );
    assert_eq!(
        events(
            n,
            plan.metadata.name.as_deref().unwrap(),
            "VerificationPassed"
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn a_failed_verification_rolls_back_every_applied_step_in_reverse() {
    let ns = TestNs::new("verify-rb").await;
    let n = ns.name.as_str();
    deployment(n, "web", 2).await;
    let before = rolled_out(n, "web").await;
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;
    let plan = plan_and_approve(
        n,
        "bad",
        &[
            scale(n, "web", 3),
            set_image(n, "web", "verify-fail.invalid/nginx:9"),
        ],
    )
    .await;
    let pname = plan.metadata.name.clone().unwrap();
    let r = wait_phase_within(n, "bad", &["RolledBack"], Duration::from_secs(90)).await;
    let rs = r.status.clone().unwrap();
    // kstatus / Flux: not Ready, Stalled (a person must look); the answer says what happened.
    let ready = cond(&rs.conditions, "Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "RolledBack");
    assert_eq!(cond(&rs.conditions, "Stalled").unwrap().status, "True");
    assert!(rs.answer.unwrap().contains("ImagePullBackOff"));
    // Argo CD (the shipped Lua health check): Degraded, for the request and its plan.
    assert_eq!(argo_health(&r).0, "Degraded");
    assert_eq!(argo_health(&get_plan(n, &pname).await).0, "Degraded");
    // The cluster is back where it was: replicas and pod template.
    let d = get_deploy(n, "web").await;
    assert_eq!(image_of(&d), image_of(&before));
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    rolled_out(n, "web").await;
    let ps = get_plan(n, &pname).await.status.unwrap();
    assert_eq!(format!("{:?}", ps.phase.unwrap()), "RolledBack");
    assert_eq!(ps.steps[0].state, StepState::RolledBack);
    assert_eq!(ps.steps[1].state, StepState::RolledBack);
    assert!(
        ps.steps[1]
            .message
            .as_deref()
            .unwrap()
            .contains("verification failed")
    );
    // Evidence, and one event per rollback, the later step first.
    let failed = events(n, &pname, "VerificationFailed").await;
    assert_eq!(failed.len(), 1);
    let note = failed[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("ImagePullBackOff") && note.contains("verify-fail.invalid/nginx:9"),
        "{note}"
    );
    let mut undone = events(n, &pname, "StepRolledBack").await;
    assert_eq!(undone.len(), 2, "{undone:?}");
    undone.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    assert_eq!(undone[0].action.as_deref(), Some("Rollback2"));
    assert_eq!(undone[1].action.as_deref(), Some("Rollback1"));
    // On the Deployment too.
    assert_eq!(events(n, "web", "StepRolledBack").await.len(), 2);

    // Time from the failed verification to the rollback finished (the request's RolledBack event).
    let finished = events(n, "bad", "RolledBack").await;
    let t0 = failed[0].event_time.clone().unwrap().0;
    let t1 = finished[0].event_time.clone().unwrap().0;
    let ms = t1.duration_since(t0).as_millis();
    let out = format!(
        "# Written by tests/verify.rs (a_failed_verification_rolls_back_every_applied_step_in_reverse);\n\
         # do not edit. Local control plane (kube-apiserver v1.36, kwok nodes), 2-step plan\n\
         # (scale 2->3, image -> verify-fail.invalid/nginx:9): from the VerificationFailed event to\n\
         # the request's RolledBack event (both rollbacks applied, events published, statuses written).\n\
         failed_verification_to_rolled_back_ms {ms}\n"
    );
    std::fs::create_dir_all(repo().join("docs/bench")).unwrap();
    std::fs::write(repo().join("docs/bench/rollback.txt"), out).unwrap();
    eprintln!("[verify] failed verification -> rolled back: {ms} ms");
}

#[tokio::test]
async fn someone_elses_change_during_verification_is_evidence_and_never_overwritten() {
    let ns = TestNs::new("verify-drift").await;
    let n = ns.name.as_str();
    // Pods that never become ready: the scale's verification keeps waiting.
    deployment(n, "slow", 1).await;
    let api = Api::<Deployment>::namespaced(client("admin").await, n);
    api.patch(
        "slow",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "verify-fail.invalid/slow:1"}]}}}})),
    )
    .await
    .unwrap();
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;
    let plan = plan_and_approve(n, "drift", &[scale(n, "slow", 2)]).await;
    let pname = plan.metadata.name.clone().unwrap();
    wait_for("step Verifying", Duration::from_secs(30), || async {
        get_plan(n, &pname)
            .await
            .status
            .is_some_and(|s| s.steps[0].state == StepState::Verifying)
    })
    .await;
    // Someone else scales it meanwhile.
    api.patch(
        "slow",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    let r = wait_phase_within(
        n,
        "drift",
        &["Failed", "RolledBack"],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        format!("{:?}", r.status.as_ref().unwrap().phase.unwrap()),
        "Failed"
    );
    let ps = get_plan(n, &pname).await.status.unwrap();
    let msg = ps.steps[0].rollback_message.clone().unwrap_or_default();
    assert!(
        msg.contains("changed by someone else") && msg.contains("not overwritten"),
        "{msg}"
    );
    assert!(
        ps.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("during verification"),
        "{:?}",
        ps.steps[0].message
    );
    // Their change stands.
    assert_eq!(replicas(n, "slow").await, 4);
    assert_eq!(events(n, &pname, "RollbackSkipped").await.len(), 1);
}

#[tokio::test]
async fn people_cannot_forge_a_plans_status_to_change_its_rollback() {
    let ns = TestNs::new("verify-forge").await;
    let n = ns.name.as_str();
    ensure_chart_rbac();
    bind(n, "bob", "kubilitics-ai-approver");
    bind(n, "alice", "kubilitics-ai-requester");
    deployment(n, "web", 1).await;
    rolled_out(n, "web").await;
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;
    ask(
        "admin",
        n,
        "forge",
        &Value::from(vec![scale(n, "web", 2)]).to_string(),
    )
    .await;
    let s = wait_phase(n, "forge", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.unwrap();
    for who in ["bob", "alice", "mallory"] {
        let r = Api::<AIPlan>::namespaced(client(who).await, n)
            .patch_status(
                &plan,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"steps": [{"tool": "scale_deployment",
                    "arguments": {}, "target": {"apiVersion": "apps/v1", "kind": "Deployment",
                    "namespace": n, "name": "web"}, "risk": "Low", "reason": "x", "before": {},
                    "rollback": "", "rollbackAction": {"action": "Never"}}]}})),
            )
            .await;
        assert!(
            matches!(&r, Err(kube::Error::Api(e)) if e.code == 403),
            "{who} wrote a plan's status: {r:?}"
        );
    }
    let ps = get_plan(n, &plan).await.status.unwrap();
    assert_eq!(
        ps.steps[0].rollback_action.as_ref().unwrap().action,
        RollbackKind::RestoreBefore
    );
}

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut c = std::process::Command::new(kubectl())
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", kubeconfig("admin"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "kubectl apply failed");
}

fn kubectl_delete(kind: &str, name: &str) {
    let _ = std::process::Command::new(kubectl())
        .args(["delete", kind, name, "--wait=false", "--ignore-not-found"])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output();
}

/// Two real ValidatingAdmissionPolicies bound to the test namespace: images
/// must come from registry.example.com (Deny), more than 3 replicas needs a
/// capacity review (Warn).
fn policies(ns: &str) -> Vec<(String, String)> {
    let deny = format!("verify-registry-{ns}");
    let warn = format!("verify-capacity-{ns}");
    kubectl_apply(&format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {deny}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments]}}
  validations:
  - expression: "object.spec.template == oldObject.spec.template || object.spec.template.spec.containers.all(c, c.image.startsWith('registry.example.com/'))"
    message: images must come from registry.example.com
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {deny}}}
spec:
  policyName: {deny}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {warn}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {{apiGroups: [apps], apiVersions: [v1], operations: [UPDATE], resources: [deployments]}}
  validations:
  - expression: "!has(object.spec.replicas) || object.spec.replicas <= 3"
    message: more than 3 replicas needs a capacity review
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {warn}}}
spec:
  policyName: {warn}
  validationActions: [Warn]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
"#
    ));
    vec![
        ("validatingadmissionpolicybinding".into(), deny.clone()),
        ("validatingadmissionpolicy".into(), deny),
        ("validatingadmissionpolicybinding".into(), warn.clone()),
        ("validatingadmissionpolicy".into(), warn),
    ]
}

struct Cleanup(Vec<(String, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (k, n) in &self.0 {
            kubectl_delete(k, n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_policies_deny_before_approval_and_their_warnings_are_shown() {
    let ns = TestNs::new("verify-vap").await;
    let n = ns.name.as_str();
    deployment(n, "web", 1).await;
    let _cleanup = Cleanup(policies(n));
    // Proof the policies are active (they load asynchronously): a dry run is denied.
    let api = Api::<Deployment>::namespaced(client("admin").await, n);
    wait_for("policy active", Duration::from_secs(30), || async {
        let dry = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        let denied = api
            .patch(
                "web",
                &dry,
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "docker.io/nginx:2"}]}}}})),
            )
            .await
            .is_err();
        let warned = api
            .patch("web", &dry, &Patch::Merge(json!({"spec": {"replicas": 5}})))
            .await
            .is_ok();
        denied && warned
    })
    .await;
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;

    // Denied: never offered for approval; the policy is named, its message quoted.
    ask(
        "admin",
        n,
        "denied",
        &Value::from(vec![set_image(n, "web", "docker.io/nginx:2")]).to_string(),
    )
    .await;
    let r = wait_phase(n, "denied", "Failed").await;
    let rs = r.status.unwrap();
    let ready = cond(&rs.conditions, "Ready").unwrap();
    assert_eq!(ready.reason, "DeniedByPolicy");
    assert!(rs.plan_ref.is_none(), "a denied plan was offered");
    let answer = rs.answer.unwrap();
    assert!(
        answer.contains(&format!("ValidatingAdmissionPolicy 'verify-registry-{n}'"))
            && answer.contains("images must come from registry.example.com"),
        "{answer}"
    );
    let ev = events(n, "denied", "DeniedByPolicy").await;
    assert_eq!(ev.len(), 1);
    let plans = Api::<AIPlan>::namespaced(client("admin").await, n)
        .list(&ListParams::default().labels("ai.kubilitics.io/request=denied"))
        .await
        .unwrap();
    assert!(plans.items.is_empty());
    assert_eq!(image_of(&get_deploy(n, "web").await), "nginx:1.27");

    // Warned: offered, with the warning in the step's preview, the answer and the plugin.
    ask(
        "admin",
        n,
        "warned",
        &Value::from(vec![scale(n, "web", 5)]).to_string(),
    )
    .await;
    let s = wait_phase(n, "warned", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.clone().unwrap();
    let ps = get_plan(n, &plan).await.status.unwrap();
    assert!(
        ps.steps[0]
            .admission_warnings
            .iter()
            .any(|w| w.contains("more than 3 replicas needs a capacity review")),
        "{:?}",
        ps.steps[0].admission_warnings
    );
    assert!(s.answer.unwrap().contains("admission warning"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-kubilitics"))
        .args(["show", &plan, "-n", n])
        .env("KUBECONFIG", kubeconfig("admin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "admission warning:",
        "more than 3 replicas needs a capacity review",
        "verify: ReplicasAvailable within",
        "automatic rollback: RestoreBefore",
    ] {
        assert!(text.contains(want), "`{want}` missing in:\n{text}");
    }
}

#[tokio::test]
async fn rollback_never_is_shown_hashed_and_honoured() {
    use kubilitics_ai::api::{AIRequest, AIRequestSpec, RollbackPolicy};
    let ns = TestNs::new("verify-never").await;
    let n = ns.name.as_str();
    deployment(n, "web", 1).await;
    rolled_out(n, "web").await;
    let _op = start_operator_with_planner(n, Arc::new(Scripted)).await;
    let req = AIRequest::new(
        "never",
        AIRequestSpec {
            prompt: Value::from(vec![set_image(n, "web", "verify-fail.invalid/nginx:7")])
                .to_string(),
            rollback: Some(RollbackPolicy::Never),
            ..Default::default()
        },
    );
    Api::<AIRequest>::namespaced(client("admin").await, n)
        .create(&Default::default(), &req)
        .await
        .unwrap();
    let s = wait_phase(n, "never", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.clone().unwrap();
    let ps = get_plan(n, &plan).await.status.unwrap();
    let rb = ps.steps[0].rollback_action.clone().unwrap();
    assert_eq!(rb.action, RollbackKind::Never);
    assert!(
        s.answer
            .unwrap()
            .contains("automatic rollback if verification fails: Never")
    );
    approve("admin", n, &plan, s.plan_id.as_deref().unwrap())
        .await
        .unwrap();
    let r = wait_phase_within(
        n,
        "never",
        &["Failed", "RolledBack"],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        format!("{:?}", r.status.as_ref().unwrap().phase.unwrap()),
        "Failed"
    );
    // Not undone, as approved; and said so.
    assert_eq!(
        image_of(&get_deploy(n, "web").await),
        "verify-fail.invalid/nginx:7"
    );
    let ps = get_plan(n, &plan).await.status.unwrap();
    assert!(
        ps.steps[0]
            .rollback_message
            .as_deref()
            .unwrap_or("")
            .starts_with("not rolled back: never"),
        "{:?}",
        ps.steps[0].rollback_message
    );
    assert_eq!(events(n, &plan, "RollbackSkipped").await.len(), 1);
    assert_eq!(events(n, &plan, "StepRolledBack").await.len(), 0);
}

/// A rollout that takes long does not hold a reconcile worker: with one worker, another
/// request is answered while the first still verifies (the verification lets the worker go
/// every few seconds and comes back), and the slow one still ends by its own deadline.
#[tokio::test]
async fn a_slow_rollout_does_not_hold_the_only_worker() {
    let ns = TestNs::new("verify-slow").await;
    let n = ns.name.as_str();
    deployment(n, "web", 1).await;
    rolled_out(n, "web").await;
    // The rollout's deadline (and so the verification's timeout): 30 s.
    Api::<Deployment>::namespaced(client("admin").await, n)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"progressDeadlineSeconds": 30}})),
        )
        .await
        .unwrap();
    rolled_out(n, "web").await;
    let _op = start_operator_tuned(n, Arc::new(Scripted), |c| c.concurrency = 1).await;
    // New pods that no node accepts: the rollout waits (Pending is not broken), until its deadline.
    let unschedulable = json!({"tool": "patch_resource", "namespace": n, "kind": "Deployment",
        "name": "web", "strategy": "strategic",
        "patch": {"spec": {"template": {"spec": {"nodeSelector": {"kubilitics.test/none": "x"}}}}}});
    let plan = plan_and_approve(n, "slow", &[unschedulable]).await;
    let pname = plan.metadata.name.clone().unwrap();
    wait_for("step verifying", Duration::from_secs(30), || async {
        get_plan(n, &pname)
            .await
            .status
            .is_some_and(|s| s.steps[0].state == StepState::Verifying)
    })
    .await;
    ask("admin", n, "quick", "[]").await;
    wait_phase_within(n, "quick", &["Answered"], Duration::from_secs(20)).await;
    let slow = wait_phase(n, "slow", "Executing").await;
    assert_eq!(
        format!("{:?}", slow.status.unwrap().phase.unwrap()),
        "Executing",
        "the slow request must still be verifying when the other one is answered"
    );
    // It still ends by the rollout's deadline, and is rolled back.
    let r = wait_phase_within(n, "slow", &["RolledBack"], Duration::from_secs(90)).await;
    let answer = r.status.unwrap().answer.unwrap_or_default();
    assert!(
        answer.contains("ProgressDeadlineExceeded") || answer.contains("not verified within 30s"),
        "the rollout's deadline is the evidence: {answer}"
    );
}
