//! The analyzers on hand-built objects (no API server). The accuracy set
//! (examples/diagnosis/cases.yaml) uses other fixtures and other questions.

use serde_json::{Value, json};

use super::*;

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, labels: Value, spec: Value, status: Value) -> Pod {
    obj(json!({
        "metadata": {"name": name, "namespace": "ns", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "api-2", "uid": "u"}]},
        "spec": spec, "status": status}))
}

fn container(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image}]})
}

fn rs(name: &str, rev: &str, image: &str, ready: i32) -> ReplicaSet {
    obj(json!({
        "metadata": {"name": name, "namespace": "ns",
            "annotations": {"deployment.kubernetes.io/revision": rev},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api", "uid": "d"}]},
        "spec": {"selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api", "pod-template-hash": name}}, "spec": container(image)}},
        "status": {"replicas": ready, "readyReplicas": ready}}))
}

fn deploy(image: &str) -> Deployment {
    obj(json!({
        "metadata": {"name": "api", "namespace": "ns"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api"}}, "spec": container(image)}},
        "status": {"replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"api-2\" has timed out progressing."}]}}))
}

fn snap() -> Snapshot {
    Snapshot {
        namespace: "ns".into(),
        configmaps: Some(vec!["present".into()]),
        ..Default::default()
    }
}

fn crashing(image: &str, code: i32, reason: &str) -> Pod {
    pod(
        "api-2-x",
        json!({"app": "api"}),
        container(image),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": image, "imageID": "",
            "ready": false, "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": code, "reason": reason}}}]}),
    )
}

#[test]
fn crashloop_names_exit_code_restarts_logs_and_rolls_back_to_the_healthy_revision() {
    let mut s = snap();
    s.pods = vec![crashing("api:v2", 127, "Error")];
    s.deployments = vec![deploy("api:v2")];
    s.replicasets = vec![rs("api-1", "1", "api:v1", 2), rs("api-2", "2", "api:v2", 0)];
    s.logs.insert(
        "api-2-x/app".into(),
        "starting\nexec: \"serve\": executable file not found".into(),
    );
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::CrashLoopBackOff, "{f:#?}");
    assert!(f[0].cause.contains("code 127"), "{}", f[0].cause);
    assert!(f[0].evidence.iter().any(|e| e.contains("restarts 7")));
    assert!(
        f[0].evidence
            .iter()
            .any(|e| e.contains("executable file not found"))
    );
    let Some(Mutation::PatchResource {
        name,
        patch,
        strategy,
        ..
    }) = &f[0].fix
    else {
        panic!("no fix: {f:#?}")
    };
    assert_eq!(name, "api");
    assert_eq!(*strategy, PatchStrategy::Strategic);
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["image"],
        "api:v1"
    );
    // The stuck rollout is reported too, with the pods' failure as its cause.
    let r = f
        .iter()
        .find(|f| f.condition == Condition::RolloutStuck)
        .unwrap();
    assert!(r.cause.contains("code 127"), "{}", r.cause);
}

#[test]
fn no_rollback_without_a_revision_proven_healthy_or_when_more_than_images_changed() {
    let mut s = snap();
    s.pods = vec![crashing("api:v2", 1, "Error")];
    s.deployments = vec![deploy("api:v2")];
    // The older revision has no ready pods: not proven healthy.
    s.replicasets = vec![rs("api-1", "1", "api:v1", 0), rs("api-2", "2", "api:v2", 0)];
    assert!(analyze(&s).iter().all(|f| f.fix.is_none()));
    // The older revision differs in more than its image (an env var): not certain.
    let mut old = rs("api-1", "1", "api:v1", 2);
    old.spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .env = Some(vec![obj(json!({"name": "MODE", "value": "x"}))]);
    s.replicasets = vec![old, rs("api-2", "2", "api:v2", 0)];
    assert!(analyze(&s).iter().all(|f| f.fix.is_none()));
}

#[test]
fn oom_reports_the_limit() {
    let mut s = snap();
    let mut p = crashing("api:v1", 137, "OOMKilled");
    p.spec.as_mut().unwrap().containers[0].resources =
        Some(obj(json!({"limits": {"memory": "64Mi"}})));
    s.pods = vec![p];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::OOMKilled);
    assert!(f[0].cause.contains("64Mi"));
    assert!(f[0].fix.is_none());
}

#[test]
fn image_pull_names_the_image() {
    let mut s = snap();
    s.pods = vec![pod(
        "api-2-y",
        json!({"app": "api"}),
        container("registry.invalid/api:nope"),
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "registry.invalid/api:nope",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}}]}),
    )];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::ImagePullBackOff);
    assert!(f[0].cause.contains("registry.invalid/api:nope"));
    assert!(f[0].evidence.iter().any(|e| e.contains("manifest unknown")));
}

#[test]
fn unschedulable_reads_the_scheduler() {
    for (msg, want) in [
        ("0/3 nodes are available: 3 Insufficient memory.", "memory"),
        (
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
            "nodeSelector",
        ),
        (
            "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}.",
            "taint",
        ),
    ] {
        let mut s = snap();
        s.pods = vec![pod(
            "api-2-z",
            json!({}),
            container("x"),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": msg}]}),
        )];
        let f = analyze(&s);
        assert_eq!(f[0].condition, Condition::Unschedulable);
        assert!(f[0].cause.contains(want), "{} / {want}", f[0].cause);
    }
}

#[test]
fn service_selector_typo_gets_a_selector_patch_to_the_pods_labels() {
    let mut s = snap();
    s.pods = vec![pod(
        "web-1",
        json!({"app": "web", "tier": "front"}),
        container("w"),
        json!({"phase": "Running"}),
    )];
    s.services = vec![obj(json!({"metadata": {"name": "web", "namespace": "ns"},
        "spec": {"selector": {"app": "wbe"}, "ports": [{"port": 80}]}}))];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::NoEndpoints, "{f:#?}");
    let Some(Mutation::PatchResource { kind, patch, .. }) = &f[0].fix else {
        panic!("{f:#?}")
    };
    assert_eq!(kind, "Service");
    assert_eq!(patch, &json!({"spec": {"selector": {"app": "web"}}}));
    // With ready endpoints, nothing is wrong.
    s.ready_endpoints.insert("web".into(), 1);
    assert!(analyze(&s).is_empty());
}

#[test]
fn missing_configmap_by_name_and_secret_from_the_kubelet_message_only() {
    let mut s = snap();
    s.pods = vec![pod(
        "api-2-c",
        json!({}),
        json!({"containers": [{"name": "app", "image": "x",
            "envFrom": [{"configMapRef": {"name": "absent-config"}}, {"configMapRef": {"name": "present"}}]}]}),
        json!({"phase": "Pending"}),
    )];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::MissingConfigMap);
    assert!(f[0].cause.contains("absent-config"));
    s.pods = vec![pod(
        "api-2-d",
        json!({}),
        json!({"containers": [{"name": "app", "image": "x",
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db-pass", "key": "pw"}}}]}]}),
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError",
            "message": "secret \"db-pass\" not found"}}}]}),
    )];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::MissingSecret);
    assert!(f[0].cause.contains("db-pass"));
}

#[test]
fn pvc_job_and_hpa() {
    let mut s = snap();
    s.pvcs = vec![obj(json!({"metadata": {"name": "data", "namespace": "ns"},
        "spec": {"storageClassName": "fast-ssd", "accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Pending"}}))];
    s.events = vec![obj(
        json!({"metadata": {"name": "e1", "namespace": "ns"}, "reason": "ProvisioningFailed",
        "message": "storageclass.storage.k8s.io \"fast-ssd\" not found",
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data"}}),
    )];
    s.jobs = vec![obj(
        json!({"metadata": {"name": "migrate", "namespace": "ns"}, "spec": {"backoffLimit": 1,
        "template": {"spec": {"containers": [{"name": "m", "image": "x"}], "restartPolicy": "Never"}}},
        "status": {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit"}]}}),
    )];
    s.hpas = vec![obj(json!({"metadata": {"name": "api", "namespace": "ns"},
        "spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "api", "apiVersion": "apps/v1"}},
        "status": {"desiredReplicas": 0, "conditions": [{"type": "ScalingActive", "status": "False",
            "reason": "FailedGetResourceMetric",
            "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)"}]}}))];
    let f = analyze(&s);
    let c: Vec<Condition> = f.iter().map(|f| f.condition).collect();
    assert_eq!(
        c,
        [
            Condition::PvcPending,
            Condition::BackoffLimitExceeded,
            Condition::HpaMetricsUnavailable
        ]
    );
    assert!(f[0].cause.contains("fast-ssd"));
    assert!(f[2].cause.contains("metrics"));
    // Narrowed to one object.
    assert_eq!(analyze_for(&s, Some("migrate")).len(), 1);
}

#[test]
fn readiness_probe_failure_uses_the_kubelet_event() {
    let mut s = snap();
    s.pods = vec![pod(
        "api-2-r",
        json!({}),
        json!({"containers": [{"name": "app", "image": "x",
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
    )];
    s.events = vec![obj(
        json!({"metadata": {"name": "e", "namespace": "ns"}, "reason": "Unhealthy",
        "message": "Readiness probe failed: HTTP probe failed with statuscode: 503",
        "involvedObject": {"kind": "Pod", "name": "api-2-r"}}),
    )];
    let f = analyze(&s);
    assert_eq!(f[0].condition, Condition::ProbeFailing);
    assert!(f[0].cause.contains("503"));
    assert!(f[0].evidence.iter().any(|e| e.contains("/healthz")));
}

#[test]
fn healthy_namespace_has_no_findings_and_says_so() {
    let mut s = snap();
    s.pods = vec![pod(
        "ok",
        json!({}),
        container("x"),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "x", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    )];
    assert!(analyze(&s).is_empty());
    assert!(render("ns", None, &[]).contains("no problem found"));
}
