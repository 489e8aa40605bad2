//! The admission webhook: stamps who asked and who approved, so nobody can
//! forge either, and holds the approval gate at admission.
//!
//! - `AIRequest` CREATE: sets `ai.kubilitics.io/requester` to the
//!   authenticated user (overwriting anything sent); an `approvedPlanId` set
//!   at creation is an approval like any other (below).
//! - `AIRequest` UPDATE: keeps the requester as it was; refuses a change of
//!   the inputs (prompt, targetNamespace, mode, model, conversation, rollback) by
//!   anyone but the requester (username and uid); a new `approvedPlanId` is an
//!   approval.
//! - `AIPlan` UPDATE: a new `spec.approval` or `spec.rejection` is an approval;
//!   so is a new entry of `spec.approvals` (quorums), stamped with its writer
//!   and time; changing or removing someone else's entry is refused.
//! - An approval needs: not the requester (separation of duties, except
//!   configured GitOps identities), verb `approve` on the plan
//!   (SubjectAccessReview, like CSR approval), and — to approve — the
//!   approver's own rights on every step of the **stored** plan (never the
//!   submitted object, whose `status` the API server ignores). It is stamped
//!   as `ai.kubilitics.io/approved-by`.
//!
//! Identity annotations are written in the exact form the shipped
//! ValidatingAdmissionPolicy checks (`crds/kubilitics-ai.identity-policy.yaml`),
//! so they cannot be forged even when this webhook is down. The serving
//! certificate is shared by all replicas through a Secret (created once,
//! rotated before expiry). `failurePolicy: Fail`: when the webhook is down,
//! requests are refused rather than run with an unknown identity.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
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
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::{Value, json};

use crate::api::{AIPlan, AIRequest, MANAGER, Requester};
use crate::safety::authz::{
    APPROVED_BY_ANNOTATION, Authorizer, REQUESTER_ANNOTATION, REQUESTER_EXTRA_ANNOTATION,
    approve_permission, extra_annotation, identity_annotation, identity_from, separation_of_duties,
    use_cluster_permission,
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
    /// Usernames whose approvals stand for a reviewed commit (e.g.
    /// `system:serviceaccount:flux-system:kustomize-controller`): exempt from
    /// separation of duties, never from the approve permission or step rights.
    pub gitops_identities: Vec<String>,
    /// The Secret (namespace, name) holding the serving certificate shared by
    /// all replicas; `None`: a certificate of this process only (one replica).
    pub cert_secret: Option<(String, String)>,
    /// Namespace of the Secrets registering member clusters (approvals of a member's plan
    /// are checked against the member's RBAC); `None`: no member clusters.
    pub clusters_namespace: Option<String>,
}

struct Shared {
    client: Client,
    separation_of_duties: bool,
    gitops_identities: Vec<String>,
    clusters: Option<crate::clusters::Clusters>,
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
    let cert = match &cfg.cert_secret {
        Some((ns, name)) => shared_certificate(&client, ns, name, &cfg.hosts).await?,
        None => new_certificate(&cfg.hosts)?,
    };
    apply_configuration(&client, &cfg, cert.ca_bundle.as_bytes()).await?;
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert_pem.clone().into_bytes(),
        cert.key_pem.clone().into_bytes(),
    )
    .await?;
    // Replicas share one certificate: each looks again now and then, picks up a
    // rotation done by another replica (or does it when due) and reloads.
    if let Some((ns, name)) = cfg.cert_secret.clone() {
        let (client, cfg, tls) = (client.clone(), cfg.clone(), tls.clone());
        tokio::spawn(async move {
            let mut current = cert;
            loop {
                tokio::time::sleep(CERT_CHECK_INTERVAL).await;
                match shared_certificate(&client, &ns, &name, &cfg.hosts).await {
                    Ok(c) if c != current => {
                        let reloaded = tls
                            .reload_from_pem(
                                c.cert_pem.clone().into_bytes(),
                                c.key_pem.clone().into_bytes(),
                            )
                            .await;
                        let applied =
                            apply_configuration(&client, &cfg, c.ca_bundle.as_bytes()).await;
                        if let (Ok(()), Ok(())) = (&reloaded, &applied) {
                            tracing::info!(secret = %name, "webhook serving certificate rotated");
                            current = c;
                        } else {
                            tracing::warn!(
                                ?reloaded,
                                ?applied,
                                "could not switch to the rotated certificate"
                            );
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "checking the webhook certificate"),
                }
            }
        });
    }
    let clusters = cfg
        .clusters_namespace
        .as_deref()
        .map(|ns| crate::clusters::Clusters::start(client.clone(), ns).0);
    let shared = Arc::new(Shared {
        client,
        separation_of_duties: cfg.separation_of_duties,
        gitops_identities: cfg.gitops_identities.clone(),
        clusters,
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

/// How often a replica looks at the shared certificate.
const CERT_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
/// Validity of a serving certificate, and how long before its end it is replaced.
const CERT_VALIDITY_DAYS: i64 = 365;
const CERT_RENEW_BEFORE_DAYS: i64 = 30;
const NOT_AFTER_ANNOTATION: &str = "ai.kubilitics.io/not-after";
const HOSTS_ANNOTATION: &str = "ai.kubilitics.io/hosts";

/// A serving certificate, its key, and the CA bundle the API server trusts
/// (the current certificate, plus the previous one during a rotation).
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_bundle: String,
    not_after: Timestamp,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A new self-signed certificate for `hosts`, valid for a year.
pub fn new_certificate(hosts: &[String]) -> anyhow::Result<ServingCert> {
    let now = Timestamp::now();
    let not_after = now + SignedDuration::from_hours(24 * CERT_VALIDITY_DAYS);
    let day = |t: Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())?;
    params.not_before = day(now - SignedDuration::from_hours(24));
    params.not_after = day(not_after);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    Ok(ServingCert {
        ca_bundle: pem.clone(),
        cert_pem: pem,
        key_pem: key.serialize_pem(),
        not_after,
    })
}

fn from_secret(s: &Secret) -> Option<ServingCert> {
    let data = s.data.as_ref()?;
    // Empty or foreign data (a Secret emptied by hand or by a tool) is no certificate: make one.
    let text = |k: &str| {
        data.get(k)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|t| t.contains("-----BEGIN "))
    };
    let not_after = s.annotations().get(NOT_AFTER_ANNOTATION)?.parse().ok()?;
    Some(ServingCert {
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
        ca_bundle: text("ca.crt").or_else(|| text("tls.crt"))?,
        not_after,
    })
}

fn to_secret(ns: &str, name: &str, c: &ServingCert, hosts: &[String]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                MANAGER.to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (NOT_AFTER_ANNOTATION.to_string(), c.not_after.to_string()),
                (HOSTS_ANNOTATION.to_string(), hosts.join(",")),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".to_string(),
                ByteString(c.cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".to_string(),
                ByteString(c.key_pem.clone().into_bytes()),
            ),
            (
                "ca.crt".to_string(),
                ByteString(c.ca_bundle.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

/// The serving certificate all replicas share, kept in a Secret: created once
/// (the first replica's create wins; the others read it), replaced before it
/// expires or when the hosts change with a compare-and-swap update (the
/// resourceVersion), the previous certificate staying in the CA bundle so
/// replicas that have not reloaded yet are still trusted.
pub async fn shared_certificate(
    client: &Client,
    ns: &str,
    name: &str,
    hosts: &[String],
) -> anyhow::Result<ServingCert> {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    for _ in 0..5 {
        let Some(existing) = api.get_opt(name).await? else {
            let c = new_certificate(hosts)?;
            match api
                .create(&PostParams::default(), &to_secret(ns, name, &c, hosts))
                .await
            {
                Ok(_) => return Ok(c),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let current = from_secret(&existing);
        let same_hosts = existing.annotations().get(HOSTS_ANNOTATION) == Some(&hosts.join(","));
        let renew_at = Timestamp::now() + SignedDuration::from_hours(24 * CERT_RENEW_BEFORE_DAYS);
        match current {
            Some(c) if same_hosts && c.not_after > renew_at => return Ok(c),
            previous => {
                let mut c = new_certificate(hosts)?;
                if let Some(p) = previous {
                    c.ca_bundle = format!("{}{}", c.cert_pem, p.cert_pem);
                }
                let mut next = to_secret(ns, name, &c, hosts);
                next.metadata.resource_version = existing.metadata.resource_version.clone();
                match api.replace(name, &PostParams::default(), &next).await {
                    Ok(_) => return Ok(c),
                    // Another replica rotated it first: use theirs.
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    anyhow::bail!("could not agree on the webhook certificate in Secret {ns}/{name}")
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
        uid: req.user_info.uid.clone().filter(|u| !u.is_empty()),
        groups: req.user_info.groups.clone().unwrap_or_default(),
        extra: req
            .user_info
            .extra
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Identities with a quote or backslash cannot be recorded exactly (the
/// shipped ValidatingAdmissionPolicy refuses them too).
fn plain(user: &Requester) -> Result<(), String> {
    let fields = std::iter::once(&user.username)
        .chain(user.uid.iter())
        .chain(user.groups.iter());
    for f in fields {
        if f.contains(['"', '\\']) {
            return Err(format!(
                "kubilitics-ai: the identity {:?} contains a quote or backslash and cannot be recorded",
                user.username
            ));
        }
    }
    // Extra attributes are recorded one `key=value` per line.
    for (k, vs) in &user.extra {
        if k.contains(['=', '\n']) || vs.iter().any(|v| v.contains('\n')) {
            return Err(format!(
                "kubilitics-ai: the identity {:?} has an extra attribute with '=' in its key or a line break, which cannot be recorded",
                user.username
            ));
        }
    }
    Ok(())
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

/// The fields that define a request: only its requester may change them.
const INPUTS: [&str; 7] = [
    "prompt",
    "targetNamespace",
    "mode",
    "model",
    "conversation",
    "rollback",
    "cluster",
];

fn spec_field<'a>(o: Option<&'a DynamicObject>, field: &str) -> Option<&'a Value> {
    o.and_then(|o| o.data.get("spec"))
        .and_then(|s| s.get(field))
        .filter(|v| !v.is_null())
}

/// Which kind an admission review is for.
#[derive(Clone, Copy)]
enum Kind {
    Request,
    Plan,
}

async fn mutate_request(
    State(s): State<Arc<Shared>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    admit(&s, review, Kind::Request).await
}

async fn mutate_plan(
    State(s): State<Arc<Shared>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    admit(&s, review, Kind::Plan).await
}

/// One admission review: parse, decide for its kind, answer.
async fn admit(
    s: &Shared,
    review: AdmissionReview<DynamicObject>,
    kind: Kind,
) -> Json<AdmissionReview<DynamicObject>> {
    let req = match parse(review) {
        Ok(r) => r,
        Err(j) => return *j,
    };
    let result = match (req.object.as_ref(), kind) {
        (None, _) => Ok(vec![]),
        (Some(obj), Kind::Request) => admit_request(s, &req, obj).await,
        (Some(obj), Kind::Plan) => admit_plan(s, &req, obj).await,
    };
    respond(&req, result)
}

async fn admit_request(
    s: &Shared,
    req: &AdmissionRequest<DynamicObject>,
    obj: &DynamicObject,
) -> Result<Vec<Value>, String> {
    let user = identity(req);
    plain(&user)?;
    let me = identity_annotation(&user);
    let ns = obj
        .namespace()
        .or_else(|| req.namespace.clone())
        .unwrap_or_default();
    let old = req.old_object.as_ref();
    let old_ann = annotations(old).unwrap_or_default();
    let approval = |o: Option<&DynamicObject>| spec_field(o, "approvedPlanId").cloned();
    let approving = approval(Some(obj)).is_some() && approval(Some(obj)) != approval(old);
    match req.operation {
        Operation::Create => {
            // Self-approval at creation: the creator is the requester.
            if approving {
                check_approval(s, &ns, None, None, Some(&user), &user, true).await?;
            }
            Ok(annotate(
                obj,
                &[
                    (REQUESTER_ANNOTATION, Some(me.clone())),
                    (REQUESTER_EXTRA_ANNOTATION, extra_annotation(&user)),
                    (APPROVED_BY_ANNOTATION, approving.then_some(me)),
                ],
            ))
        }
        Operation::Update => {
            let stored = old_ann.get(REQUESTER_ANNOTATION).cloned();
            let stored_extra = old_ann.get(REQUESTER_EXTRA_ANNOTATION).cloned();
            let owner = identity_from(Some(&old_ann), REQUESTER_ANNOTATION);
            let changed: Vec<&str> = INPUTS
                .iter()
                .copied()
                .filter(|f| spec_field(Some(obj), f) != spec_field(old, f))
                .collect();
            if !changed.is_empty() {
                match &owner {
                    Some(o) if o.username == user.username && o.uid == user.uid => {}
                    Some(o) => {
                        return Err(format!(
                            "only the requester ({}) may change spec.{} of this AIRequest; {} may only approve it (spec.approvedPlanId) — create your own request instead",
                            o.username,
                            changed.join(", spec."),
                            user.username
                        ));
                    }
                    // No recorded requester (created before the webhook was
                    // installed): the operator never plans it, so editing it is harmless.
                    None => {}
                }
            }
            if approving {
                // The plan the approval is for: the one stored in the request's status.
                let plan_name = old
                    .and_then(|o| o.data.pointer("/status/planRef"))
                    .and_then(Value::as_str);
                let plan = match plan_name {
                    Some(p) => Api::<AIPlan>::namespaced(s.client.clone(), &ns)
                        .get_opt(p)
                        .await
                        .map_err(|e| format!("cannot read AIPlan {p}: {e}"))?,
                    None => None,
                };
                check_approval(
                    s,
                    &ns,
                    plan_name,
                    plan.as_ref(),
                    owner.as_ref(),
                    &user,
                    true,
                )
                .await?;
            }
            let approver = if approving {
                Some(me)
            } else {
                old_ann.get(APPROVED_BY_ANNOTATION).cloned()
            };
            Ok(annotate(
                obj,
                &[
                    (REQUESTER_ANNOTATION, stored),
                    (REQUESTER_EXTRA_ANNOTATION, stored_extra),
                    (APPROVED_BY_ANNOTATION, approver),
                ],
            ))
        }
        _ => Ok(vec![]),
    }
}

async fn admit_plan(
    s: &Shared,
    req: &AdmissionRequest<DynamicObject>,
    obj: &DynamicObject,
) -> Result<Vec<Value>, String> {
    let user = identity(req);
    plain(&user)?;
    let old = req.old_object.as_ref();
    let old_ann = annotations(old).unwrap_or_default();
    let new_approval = spec_field(Some(obj), "approval");
    let new_rejection = spec_field(Some(obj), "rejection");
    let approving = new_approval.is_some() && new_approval != spec_field(old, "approval");
    let rejecting = new_rejection.is_some() && new_rejection != spec_field(old, "rejection");
    // Entries of spec.approvals (N-of-M quorums): each names who wrote it.
    let new_entries = approval_entries(old, obj, &user)?;
    let listing = !new_entries.is_empty();
    if !approving && !rejecting && !listing {
        return Ok(annotate(
            obj,
            &[(
                APPROVED_BY_ANNOTATION,
                old_ann.get(APPROVED_BY_ANNOTATION).cloned(),
            )],
        ));
    }
    let ns = obj
        .namespace()
        .or_else(|| req.namespace.clone())
        .unwrap_or_default();
    // The stored plan, never the submitted one: a patch may carry a `status`
    // that the API server ignores but this webhook would see.
    let stored: Option<AIPlan> = match old {
        Some(o) => Some(
            serde_json::to_value(o)
                .and_then(serde_json::from_value)
                .map_err(|e| format!("invalid stored AIPlan: {e}"))?,
        ),
        None => {
            return Err(
                "approve or reject a plan after the operator has written it, not in the create"
                    .into(),
            );
        }
    };
    let request_name = stored
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|st| st.request.clone())
        .or_else(|| obj.labels().get("ai.kubilitics.io/request").cloned());
    let requester = match request_name {
        Some(name) => Api::<AIRequest>::namespaced(s.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|e| format!("cannot read AIRequest {name}: {e}"))?
            .and_then(|r| identity_from(r.metadata.annotations.as_ref(), REQUESTER_ANNOTATION)),
        None => None,
    };
    check_approval(
        s,
        &ns,
        Some(&obj.name_any()),
        stored.as_ref(),
        requester.as_ref(),
        &user,
        approving || listing,
    )
    .await?;
    let approver = if approving || rejecting {
        Some(identity_annotation(&user))
    } else {
        old_ann.get(APPROVED_BY_ANNOTATION).cloned()
    };
    let mut ops = annotate(obj, &[(APPROVED_BY_ANNOTATION, approver)]);
    ops.extend(stamp_entries(&new_entries, &user));
    Ok(ops)
}

/// The indexes of the `spec.approvals` entries this update adds (anything not
/// in the stored list, byte for byte). Refuses an update that changes or
/// removes an entry someone else wrote; one's own may be withdrawn.
fn approval_entries(
    old: Option<&DynamicObject>,
    obj: &DynamicObject,
    user: &Requester,
) -> Result<Vec<usize>, String> {
    let list = |o: Option<&DynamicObject>| {
        spec_field(o, "approvals")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (list(old), list(Some(obj)));
    for entry in &before {
        if after.contains(entry) {
            continue;
        }
        let owner = entry
            .get("approver")
            .and_then(Value::as_str)
            .and_then(|a| serde_json::from_str::<Requester>(a).ok());
        match owner {
            Some(o) if crate::access::same_person(&o, user) && o.username == user.username => {}
            _ => {
                return Err(format!(
                    "kubilitics-ai: {} may not change or remove an entry of spec.approvals written by {}; append your own entry instead",
                    user.username,
                    owner.map_or("someone else".to_string(), |o| o.username)
                ));
            }
        }
    }
    Ok(after
        .iter()
        .enumerate()
        .filter(|(_, e)| !before.contains(e))
        .map(|(i, _)| i)
        .collect())
}

/// JSON patch stamping new `spec.approvals` entries with their writer and the time.
fn stamp_entries(indexes: &[usize], user: &Requester) -> Vec<Value> {
    let now = Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| Timestamp::now());
    let at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    indexes
        .iter()
        .flat_map(|i| {
            [
                json!({"op": "add", "path": format!("/spec/approvals/{i}/approver"), "value": identity_annotation(user)}),
                json!({"op": "add", "path": format!("/spec/approvals/{i}/approvedAt"), "value": at}),
            ]
        })
        .collect()
}

/// Who may approve (or reject) a plan: not its requester (separation of
/// duties, unless a configured GitOps identity), someone holding verb
/// `approve` on the plan, and — to approve — someone allowed to perform every
/// step of the **stored** plan themselves.
async fn check_approval(
    s: &Shared,
    ns: &str,
    plan_name: Option<&str>,
    plan: Option<&AIPlan>,
    requester: Option<&Requester>,
    user: &Requester,
    approving: bool,
) -> Result<(), String> {
    if s.separation_of_duties
        && let Some(r) = requester
    {
        separation_of_duties(r, user, &s.gitops_identities)?;
    }
    let authz = Authorizer::new(s.client.clone(), user.clone());
    authz
        .check(&[approve_permission(ns, plan_name)])
        .await
        .map_err(|e| format!("{e}: approving needs verb approve on aiplans.ai.kubilitics.io (the kubilitics-ai-approver ClusterRole)"))?;
    // A member cluster's plan: verb use on that cluster here, the steps by the member's RBAC.
    let cluster = plan
        .and_then(|p| p.status.as_ref())
        .and_then(|st| st.cluster.clone());
    let there = match &cluster {
        None => None,
        Some(c) => {
            authz
                .check(&[use_cluster_permission(c)])
                .await
                .map_err(|e| format!("{e}: approving a plan for cluster {c} needs verb use on clusters.ai.kubilitics.io/{c}"))?;
            let clusters = s
                .clusters
                .as_ref()
                .ok_or_else(|| crate::clusters::ClusterError::Disabled(c.clone()).to_string())?;
            let m = clusters.get(c).await.map_err(|e| e.to_string())?;
            Some(Authorizer::new(m.client.clone(), user.clone()))
        }
    };
    if approving {
        let steps = plan
            .and_then(|p| p.status.as_ref())
            .map(|st| st.steps.clone())
            .unwrap_or_default();
        for step in steps {
            let m = Mutation::from_step(&step).map_err(|e| e.to_string())?;
            match there
                .as_ref()
                .unwrap_or(&authz)
                .check(&m.permissions())
                .await
            {
                Ok(()) => {}
                // The member does not answer: the operator's gate checks these rights
                // there again before the first step, and refuses the approval if they fail.
                Err(e) if e.is_transient() && there.is_some() => {
                    tracing::warn!(error = %e, "member cluster unreachable at admission; the gate checks the approver's rights there");
                }
                Err(e) => {
                    return Err(format!("approver cannot approve step `{}`: {e}", step.tool));
                }
            }
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

    fn plan_with(entries: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIPlan",
            "metadata": {"name": "p"}, "spec": {"approvals": entries}
        }))
        .unwrap()
    }

    fn who(name: &str) -> Requester {
        Requester {
            username: name.into(),
            uid: Some(name.into()),
            groups: vec![],
            ..Default::default()
        }
    }

    #[test]
    fn approval_entries_are_append_only_except_ones_own() {
        let bob =
            json!({"planId": "0123456789abcdef", "approver": identity_annotation(&who("bob"))});
        let old = plan_with(json!([bob.clone()]));
        // Appending: the new index is stamped.
        let new =
            plan_with(json!([bob.clone(), {"planId": "0123456789abcdef", "approver": "forged"}]));
        assert_eq!(
            approval_entries(Some(&old), &new, &who("carol")),
            Ok(vec![1])
        );
        let ops = stamp_entries(&[1], &who("carol"));
        assert_eq!(ops[0]["path"], "/spec/approvals/1/approver");
        assert!(
            ops[0]["value"]
                .as_str()
                .unwrap()
                .contains("\"username\":\"carol\"")
        );
        // Removing or changing bob's entry: only bob.
        let gone = plan_with(json!([]));
        assert!(
            approval_entries(Some(&old), &gone, &who("carol"))
                .unwrap_err()
                .contains("written by bob")
        );
        assert_eq!(approval_entries(Some(&old), &gone, &who("bob")), Ok(vec![]));
        let mut changed = bob.clone();
        changed["comment"] = json!("edited");
        let edited = plan_with(json!([changed]));
        assert!(approval_entries(Some(&old), &edited, &who("carol")).is_err());
        // Nothing changed: nothing to stamp.
        assert_eq!(
            approval_entries(Some(&old), &old, &who("carol")),
            Ok(vec![])
        );
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
