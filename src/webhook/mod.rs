//! The admission webhook: stamps who asked and who approved, so nobody can
//! forge either, and enforces separation of duties at admission.
//!
//! - `AIRequest` CREATE: sets the `ai.kubilitics.io/requester` annotation
//!   from the authenticated user (overwriting anything sent).
//! - `AIRequest` UPDATE: keeps that annotation as it was; when
//!   `spec.approvedPlanId` changes, stamps `ai.kubilitics.io/approved-by`
//!   and refuses the requester approving their own plan.
//! - `AIPlan` CREATE/UPDATE: when `spec.approval` or `spec.rejection`
//!   changes, stamps `approved-by` and refuses the requester, and an approver
//!   who may not perform the plan's steps; otherwise keeps it as it was.
//!
//! The operator serves it over TLS with a self-generated certificate and
//! keeps the `caBundle` of its MutatingWebhookConfiguration current.
//! `failurePolicy: Fail`: when the webhook is down, requests are refused
//! rather than run with an unknown identity.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use k8s_openapi::{
    ByteString,
    api::admissionregistration::v1::{
        MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
        WebhookClientConfig,
    },
    apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::{Value, json};

use crate::api::{AIPlan, AIRequest, MANAGER, Requester};
use crate::safety::authz::{
    APPROVED_BY_ANNOTATION, Authorizer, REQUESTER_ANNOTATION, identity_from, mutation_permissions,
};
use crate::tools::Mutation;

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// In-cluster: a Service in front of the operator.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// Out of cluster (local development, tests): `https://host:port`.
    Url(String),
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    /// Name of the MutatingWebhookConfiguration the operator keeps current.
    pub configuration_name: String,
    pub endpoint: Endpoint,
    /// DNS names / IPs the serving certificate is valid for.
    pub hosts: Vec<String>,
    /// Only requests in this namespace (when the operator watches one namespace).
    pub namespace: Option<String>,
    pub separation_of_duties: bool,
}

struct Shared {
    client: Client,
    separation_of_duties: bool,
}

/// Stops a running webhook server (closing open connections too).
pub type ShutdownHandle = axum_server::Handle<SocketAddr>;

/// Generates a certificate, publishes the webhook configuration with its CA
/// bundle, and serves until the process ends.
pub async fn run(client: Client, cfg: WebhookConfig) -> anyhow::Result<()> {
    run_with_handle(client, cfg, ShutdownHandle::new()).await
}

/// Like [`run`], stoppable through `handle`.
pub async fn run_with_handle(
    client: Client,
    cfg: WebhookConfig,
    handle: ShutdownHandle,
) -> anyhow::Result<()> {
    let ck = rcgen::generate_simple_self_signed(cfg.hosts.clone())?;
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    apply_configuration(&client, &cfg, cert_pem.as_bytes()).await?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert_pem.into_bytes(),
        key_pem.into_bytes(),
    )
    .await?;
    let shared = Arc::new(Shared {
        client,
        separation_of_duties: cfg.separation_of_duties,
    });
    let app = Router::new()
        .route("/mutate/airequests", post(mutate_request))
        .route("/mutate/aiplans", post(mutate_plan))
        .with_state(shared);
    tracing::info!(addr = %cfg.addr, "serving the admission webhook");
    axum_server::bind_rustls(cfg.addr, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

async fn apply_configuration(
    client: &Client,
    cfg: &WebhookConfig,
    ca: &[u8],
) -> anyhow::Result<()> {
    let client_config = |path: &str| WebhookClientConfig {
        ca_bundle: Some(ByteString(ca.to_vec())),
        service: match &cfg.endpoint {
            Endpoint::Service {
                namespace,
                name,
                port,
            } => Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                port: Some(*port),
                path: Some(path.into()),
            }),
            Endpoint::Url(_) => None,
        },
        url: match &cfg.endpoint {
            Endpoint::Url(u) => Some(format!("{}{path}", u.trim_end_matches('/'))),
            Endpoint::Service { .. } => None,
        },
    };
    let selector = cfg.namespace.as_ref().map(|ns| LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            ns.clone(),
        )])),
        ..Default::default()
    });
    let hook = |name: &str, resource: &str, path: &str| MutatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(path),
        failure_policy: Some("Fail".into()),
        side_effects: "None".into(),
        timeout_seconds: Some(10),
        reinvocation_policy: Some("IfNeeded".into()),
        namespace_selector: selector.clone(),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec!["ai.kubilitics.io".into()]),
            api_versions: Some(vec!["v1alpha1".into()]),
            operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
            resources: Some(vec![resource.into()]),
            scope: Some("Namespaced".into()),
        }]),
        ..Default::default()
    };
    let config = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(cfg.configuration_name.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                MANAGER.to_string(),
            )])),
            ..Default::default()
        },
        webhooks: Some(vec![
            hook(
                "airequests.ai.kubilitics.io",
                "airequests",
                "/mutate/airequests",
            ),
            hook("aiplans.ai.kubilitics.io", "aiplans", "/mutate/aiplans"),
        ]),
    };
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .patch(
            &cfg.configuration_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&config),
        )
        .await?;
    Ok(())
}

fn identity(req: &AdmissionRequest<DynamicObject>) -> Requester {
    Requester {
        username: req.user_info.username.clone().unwrap_or_default(),
        uid: req.user_info.uid.clone(),
        groups: req.user_info.groups.clone().unwrap_or_default(),
    }
}

fn annotations(o: Option<&DynamicObject>) -> Option<BTreeMap<String, String>> {
    o.and_then(|o| o.metadata.annotations.clone())
}

/// JSON patch setting (or restoring) annotations on the object.
fn annotate(obj: &DynamicObject, set: &[(&str, Option<String>)]) -> Vec<Value> {
    let mut ops = vec![];
    let has_any = obj.metadata.annotations.is_some();
    let current = obj.metadata.annotations.clone().unwrap_or_default();
    let mut created = false;
    for (key, value) in set {
        let path = format!(
            "/metadata/annotations/{}",
            key.replace('~', "~0").replace('/', "~1")
        );
        match (value, current.get(*key)) {
            (Some(v), Some(cur)) if cur == v => {}
            (Some(v), Some(_)) => ops.push(json!({"op": "replace", "path": path, "value": v})),
            (Some(v), None) => {
                if !has_any && !created {
                    ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
                    created = true;
                }
                ops.push(json!({"op": "add", "path": path, "value": v}));
            }
            (None, Some(_)) => ops.push(json!({"op": "remove", "path": path})),
            (None, None) => {}
        }
    }
    ops
}

fn respond(
    req: &AdmissionRequest<DynamicObject>,
    result: Result<Vec<Value>, String>,
) -> Json<AdmissionReview<DynamicObject>> {
    let resp = AdmissionResponse::from(req);
    let resp = match result {
        Err(msg) => resp.deny(msg),
        Ok(ops) if ops.is_empty() => resp,
        Ok(ops) => match serde_json::from_value::<json_patch::Patch>(Value::Array(ops)) {
            Ok(p) => resp
                .with_patch(p)
                .unwrap_or_else(|e| AdmissionResponse::from(req).deny(e.to_string())),
            Err(e) => AdmissionResponse::from(req).deny(e.to_string()),
        },
    };
    Json(resp.into_review())
}

fn parse(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review
        .try_into()
        .map_err(|e: kube::core::admission::ConvertAdmissionReviewError| {
            Box::new(Json(
                AdmissionResponse::invalid(e.to_string()).into_review(),
            ))
        })
}

async fn mutate_request(
    State(_s): State<Arc<Shared>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(j) => return *j,
    };
    let Some(obj) = req.object.as_ref() else {
        return respond(&req, Ok(vec![]));
    };
    let user = identity(&req);
    let user_json = serde_json::to_string(&user).unwrap_or_default();
    let result = match req.operation {
        Operation::Create => Ok(annotate(
            obj,
            &[
                (REQUESTER_ANNOTATION, Some(user_json.clone())),
                (APPROVED_BY_ANNOTATION, None),
            ],
        )),
        Operation::Update => {
            let old = annotations(req.old_object.as_ref()).unwrap_or_default();
            let requester = old.get(REQUESTER_ANNOTATION).cloned();
            let approved = |o: Option<&DynamicObject>| {
                o.and_then(|o| o.data.pointer("/spec/approvedPlanId").cloned())
            };
            let changed = approved(Some(obj)) != approved(req.old_object.as_ref())
                && approved(Some(obj)).is_some_and(|v| !v.is_null());
            if changed {
                let owner: Option<Requester> = requester
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok());
                if _s.separation_of_duties
                    && owner.as_ref().is_some_and(|o| o.username == user.username)
                {
                    Err(format!(
                        "separation of duties: {} created this AIRequest and cannot approve its plan (spec.approvedPlanId)",
                        user.username
                    ))
                } else {
                    Ok(annotate(
                        obj,
                        &[
                            (REQUESTER_ANNOTATION, requester),
                            (APPROVED_BY_ANNOTATION, Some(user_json)),
                        ],
                    ))
                }
            } else {
                Ok(annotate(
                    obj,
                    &[
                        (REQUESTER_ANNOTATION, requester),
                        (
                            APPROVED_BY_ANNOTATION,
                            old.get(APPROVED_BY_ANNOTATION).cloned(),
                        ),
                    ],
                ))
            }
        }
        _ => Ok(vec![]),
    };
    respond(&req, result)
}

async fn mutate_plan(
    State(s): State<Arc<Shared>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(j) => return *j,
    };
    let Some(obj) = req.object.as_ref() else {
        return respond(&req, Ok(vec![]));
    };
    let user = identity(&req);
    let decision = |o: Option<&DynamicObject>| {
        o.map(|o| {
            (
                o.data.pointer("/spec/approval").cloned(),
                o.data.pointer("/spec/rejection").cloned(),
            )
        })
    };
    let new = decision(Some(obj)).unwrap_or((None, None));
    let old = decision(req.old_object.as_ref()).unwrap_or((None, None));
    let old_ann = annotations(req.old_object.as_ref()).unwrap_or_default();
    let decided = (new.0 != old.0 && new.0.as_ref().is_some_and(|v| !v.is_null()))
        || (new.1 != old.1 && new.1.as_ref().is_some_and(|v| !v.is_null()));
    let result = if !decided {
        Ok(annotate(
            obj,
            &[(
                APPROVED_BY_ANNOTATION,
                old_ann.get(APPROVED_BY_ANNOTATION).cloned(),
            )],
        ))
    } else {
        match check_approver(&s, obj, &user, new.0.is_some_and(|v| !v.is_null())).await {
            Ok(()) => Ok(annotate(
                obj,
                &[(APPROVED_BY_ANNOTATION, serde_json::to_string(&user).ok())],
            )),
            Err(msg) => Err(msg),
        }
    };
    respond(&req, result)
}

/// Separation of duties, and an approver must be allowed to do the steps themselves.
async fn check_approver(
    s: &Shared,
    plan: &DynamicObject,
    user: &Requester,
    approving: bool,
) -> Result<(), String> {
    let ns = plan.namespace().unwrap_or_default();
    let request_name = plan
        .data
        .pointer("/status/request")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| plan.labels().get("ai.kubilitics.io/request").cloned());
    if let Some(name) = request_name
        && s.separation_of_duties
    {
        let request = Api::<AIRequest>::namespaced(s.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| format!("cannot read AIRequest {name}: {e}"))?;
        let requester = request
            .and_then(|r| identity_from(r.metadata.annotations.as_ref(), REQUESTER_ANNOTATION));
        if requester.is_some_and(|r| r.username == user.username) {
            return Err(format!(
                "separation of duties: {} requested this plan and cannot approve or reject it",
                user.username
            ));
        }
    }
    if approving {
        let plan: AIPlan = serde_json::from_value(serde_json::to_value(plan).unwrap_or_default())
            .map_err(|e| format!("invalid AIPlan: {e}"))?;
        let authz = Authorizer::new(s.client.clone(), user.clone());
        for step in plan.status.map(|st| st.steps).unwrap_or_default() {
            let m = Mutation::from_step(&step).map_err(|e| e.to_string())?;
            authz
                .check(&mutation_permissions(&m))
                .await
                .map_err(|e| format!("approver cannot approve step `{}`: {e}", step.tool))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(ann: Option<&[(&str, &str)]>) -> DynamicObject {
        let mut o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIRequest", "metadata": {"name": "x"}
        }))
        .unwrap();
        o.metadata.annotations = ann.map(|a| {
            a.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        o
    }

    #[test]
    fn annotate_adds_replaces_and_removes() {
        let ops = annotate(&obj(None), &[(REQUESTER_ANNOTATION, Some("a".into()))]);
        assert_eq!(ops[0]["path"], "/metadata/annotations");
        assert_eq!(
            ops[1]["path"],
            "/metadata/annotations/ai.kubilitics.io~1requester"
        );
        let ops = annotate(
            &obj(Some(&[(REQUESTER_ANNOTATION, "forged")])),
            &[(REQUESTER_ANNOTATION, Some("real".into()))],
        );
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/metadata/annotations/ai.kubilitics.io~1requester", "value": "real"})
            ]
        );
        let ops = annotate(
            &obj(Some(&[(APPROVED_BY_ANNOTATION, "forged")])),
            &[(APPROVED_BY_ANNOTATION, None)],
        );
        assert_eq!(ops[0]["op"], "remove");
        assert!(
            annotate(
                &obj(Some(&[(REQUESTER_ANNOTATION, "a")])),
                &[(REQUESTER_ANNOTATION, Some("a".into()))]
            )
            .is_empty()
        );
    }
}
