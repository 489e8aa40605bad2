//! Who asked, and what they may do: the requester's identity (stamped by the
//! admission webhook) and SubjectAccessReviews on exactly the verb, resource
//! and namespace of every tool call and plan step.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};

mod redact;

pub use redact::redact;

use crate::api::Requester;
use crate::k8s::ToolError;

/// Annotation the webhook sets on AIRequest creation: JSON of [`Requester`].
pub const REQUESTER_ANNOTATION: &str = "ai.kubilitics.io/requester";
/// Annotation the webhook sets on AIRequest creation when the requester's authenticator gave
/// extra attributes (e.g. token scopes): `key=value` lines, see [`extra_annotation`].
pub const REQUESTER_EXTRA_ANNOTATION: &str = "ai.kubilitics.io/requester-extra";
/// Annotation the webhook sets when an approval is written: JSON of [`Requester`].
pub const APPROVED_BY_ANNOTATION: &str = "ai.kubilitics.io/approved-by";

/// Parses an identity annotation (an empty `uid` is no uid).
pub fn identity_from(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<Requester> {
    annotations
        .and_then(|a| a.get(key))
        .and_then(|v| serde_json::from_str::<Requester>(v).ok())
        .map(|mut r| {
            if r.uid.as_deref() == Some("") {
                r.uid = None;
            }
            r
        })
        .filter(|r| !r.username.is_empty())
        .map(|mut r| {
            if key == REQUESTER_ANNOTATION {
                r.extra = extra_from(annotations);
            }
            r
        })
}

/// The requester's extra attributes as the annotation [`REQUESTER_EXTRA_ANNOTATION`] holds
/// them: one `key=value` line per value, keys sorted, values in order (`None` without extra).
/// The shipped identity policy checks that the lines are exactly `request.userInfo.extra`.
pub fn extra_annotation(user: &Requester) -> Option<String> {
    let lines: Vec<String> = user
        .extra
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The extra attributes recorded in [`REQUESTER_EXTRA_ANNOTATION`].
pub fn extra_from(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let lines = annotations
        .and_then(|a| a.get(REQUESTER_EXTRA_ANNOTATION))
        .map(String::as_str)
        .unwrap_or("");
    for line in lines.lines() {
        if let Some((k, v)) = line.split_once('=') {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

/// The identity annotation's value, byte for byte what the shipped
/// ValidatingAdmissionPolicy builds from `request.userInfo` in CEL
/// (`crds/kubilitics-ai.identity-policy.yaml`): every field always present,
/// no escaping. Names containing `"` or `\` are refused by that policy, so
/// plain concatenation is exact and cannot be used to smuggle fields.
pub fn identity_annotation(user: &Requester) -> String {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        "{{\"username\":\"{}\",\"uid\":\"{}\",\"groups\":[{}]}}",
        user.username,
        user.uid.as_deref().unwrap_or(""),
        groups.join(",")
    )
}

/// Whether two identities are the same person: the same username, or the
/// same (non-empty) uid.
pub fn same_person(a: &Requester, b: &Requester) -> bool {
    a.username == b.username || (a.uid.is_some() && a.uid == b.uid)
}

/// Separation of duties, one rule for the webhook and the controller: the
/// requester never approves their own plan, except a configured GitOps
/// identity (e.g. Flux's kustomize-controller), whose approval stands for a
/// reviewed commit — separation of duties is then git's branch protection.
pub fn separation_of_duties(
    requester: &Requester,
    approver: &Requester,
    gitops_identities: &[String],
) -> Result<(), String> {
    if gitops_identities.contains(&approver.username) {
        return Ok(());
    }
    if same_person(requester, approver) {
        return Err(format!(
            "separation of duties: {} requested this plan and cannot approve it",
            approver.username
        ));
    }
    Ok(())
}

/// Approving is a permission of its own, like CSR approval in Kubernetes:
/// verb `approve` on the exact `aiplans` object (any plan in the namespace
/// when there is none yet, e.g. an `approvedPlanId` set at creation).
pub fn approve_permission(namespace: &str, plan: Option<&str>) -> Permission {
    Permission {
        name: plan.map(String::from),
        ..Permission::ns("approve", "ai.kubilitics.io", "aiplans", namespace)
    }
}

/// Verb `use` on `clusters.ai.kubilitics.io/<cluster>` (cluster-scoped): who may send
/// requests to a member cluster. No built-in role holds it; an admin grants it per cluster.
pub fn use_cluster_permission(cluster: &str) -> Permission {
    Permission {
        name: Some(cluster.to_string()),
        ..Permission::cluster("use", "ai.kubilitics.io", "clusters")
    }
}

/// A client that acts as `who`: the operator's own credentials (`own`) impersonating the
/// user's name, uid, groups and extra, so the API server's RBAC, admission policies keyed on
/// the user and the audit log see the person, not the operator.
pub fn impersonating(own: &kube::Config, who: &Requester) -> Result<Client, kube::Error> {
    let mut cfg = own.clone();
    cfg.auth_info.impersonate = Some(who.username.clone());
    cfg.auth_info.impersonate_uid = who.uid.clone();
    // The API server adds system:authenticated to every impersonated user itself.
    cfg.auth_info.impersonate_groups = Some(
        who.groups
            .iter()
            .filter(|g| g.as_str() != "system:authenticated")
            .cloned()
            .collect(),
    );
    cfg.auth_info.impersonate_user_extra = (!who.extra.is_empty()).then(|| {
        who.extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    });
    crate::telemetry::counted_client(cfg)
}

/// One permission a tool call needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    /// `None`: cluster-wide (all namespaces or cluster-scoped).
    pub namespace: Option<String>,
    /// One object (`resourceNames` in RBAC); `None`: any.
    pub name: Option<String>,
}

impl Permission {
    pub fn ns(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: &str,
    ) -> Self {
        Self {
            verb,
            group,
            resource,
            subresource: None,
            namespace: Some(namespace.to_string()),
            name: None,
        }
    }

    pub fn cluster(verb: &'static str, group: &'static str, resource: &'static str) -> Self {
        Self {
            verb,
            group,
            resource,
            subresource: None,
            namespace: None,
            name: None,
        }
    }

    /// `list pods in namespace shop`.
    pub fn describe(&self) -> String {
        let res = match self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.to_string(),
        };
        let res = if self.group.is_empty() {
            res
        } else {
            format!("{res}.{}", self.group)
        };
        let res = match &self.name {
            Some(n) => format!("{res} {n}"),
            None => res,
        };
        match &self.namespace {
            Some(ns) => format!("{} {res} in namespace {ns}", self.verb),
            None => format!("{} {res} cluster-wide", self.verb),
        }
    }
}

/// The SubjectAccessReview of one permission for `user`: name, uid, groups and extra, and the
/// exact verb, resource, namespace and object name.
pub fn review(user: &Requester, p: &Permission) -> SubjectAccessReview {
    SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(p.verb.into()),
                group: Some(p.group.into()),
                resource: Some(p.resource.into()),
                subresource: p.subresource.map(String::from),
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        status: None,
    }
}

/// Checks permissions of one user with SubjectAccessReviews.
#[derive(Clone)]
pub struct Authorizer {
    client: Client,
    pub user: Requester,
}

impl Authorizer {
    pub fn new(client: Client, user: Requester) -> Self {
        Self { client, user }
    }

    /// Ok when every permission is allowed; otherwise `Forbidden` naming the first missing one.
    pub async fn check(&self, perms: &[Permission]) -> Result<(), ToolError> {
        for p in perms {
            let sar = review(&self.user, p);
            let res = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &sar)
                .await
                .map_err(ToolError::Kube)?;
            if !res.status.is_some_and(|s| s.allowed) {
                return Err(ToolError::Forbidden(format!(
                    "{} may not {} (missing RBAC permission)",
                    self.user.username,
                    p.describe()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_attributes_round_trip_through_the_annotation_and_reach_the_review() {
        let mut alice = who("alice", Some("u-1"));
        alice
            .extra
            .insert("scopes".into(), vec!["read".into(), "list".into()]);
        alice
            .extra
            .insert("a.io/team".into(), vec!["pay=ments".into()]);
        let line = extra_annotation(&alice).unwrap();
        assert_eq!(line, "a.io/team=pay=ments\nscopes=read\nscopes=list");
        let ann = std::collections::BTreeMap::from([
            (
                REQUESTER_ANNOTATION.to_string(),
                identity_annotation(&alice),
            ),
            (REQUESTER_EXTRA_ANNOTATION.to_string(), line),
        ]);
        let back = identity_from(Some(&ann), REQUESTER_ANNOTATION).unwrap();
        assert_eq!(back.extra, alice.extra);
        // Only the requester's identity carries them; an approver's never does.
        assert!(identity_from(Some(&ann), REQUESTER_ANNOTATION).is_some());
        assert_eq!(extra_annotation(&who("bob", None)), None);
        let sar = review(
            &alice,
            &Permission::ns("patch", "apps", "deployments", "shop"),
        );
        assert_eq!(
            sar.spec.extra.as_ref().unwrap()["scopes"],
            vec!["read", "list"]
        );
        assert_eq!(sar.spec.uid.as_deref(), Some("u-1"));
        assert_eq!(sar.spec.user.as_deref(), Some("alice"));
        let sar = review(
            &who("bob", None),
            &Permission::ns("get", "", "pods", "shop"),
        );
        assert_eq!(sar.spec.extra, None);
    }

    fn who(name: &str, uid: Option<&str>) -> Requester {
        Requester {
            username: name.into(),
            uid: uid.map(String::from),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn separation_of_duties_by_username_or_uid_with_gitops_exempt() {
        let alice = who("alice", Some("u-1"));
        let bob = who("bob", Some("u-2"));
        assert!(separation_of_duties(&alice, &bob, &[]).is_ok());
        let err = separation_of_duties(&alice, &alice, &[]).unwrap_err();
        assert!(err.contains("alice requested this plan"), "{err}");
        // Renamed, same uid: the same person.
        assert!(separation_of_duties(&alice, &who("alice2", Some("u-1")), &[]).is_err());
        // No uids: the username decides; two missing uids are not a match.
        assert!(separation_of_duties(&who("a", None), &who("b", None), &[]).is_ok());
        assert!(separation_of_duties(&who("a", None), &who("a", None), &[]).is_err());
        // A GitOps identity may approve what it requested; nobody else gets that.
        let flux = who("system:serviceaccount:flux-system:kc", Some("u-9"));
        let gitops = vec![flux.username.clone()];
        assert!(separation_of_duties(&flux, &flux, &gitops).is_ok());
        assert!(separation_of_duties(&alice, &alice, &gitops).is_err());
    }

    #[test]
    fn approving_is_verb_approve_on_the_exact_plan() {
        assert_eq!(
            approve_permission("shop", Some("scale-1")).describe(),
            "approve aiplans.ai.kubilitics.io scale-1 in namespace shop"
        );
        assert_eq!(
            approve_permission("shop", None).describe(),
            "approve aiplans.ai.kubilitics.io in namespace shop"
        );
    }

    #[test]
    fn stamped_identity_parses_back_and_empty_fields_are_absent() {
        let r = who("alice", Some("u-1"));
        let mut a = std::collections::BTreeMap::new();
        a.insert(REQUESTER_ANNOTATION.to_string(), identity_annotation(&r));
        assert_eq!(identity_from(Some(&a), REQUESTER_ANNOTATION), Some(r));
        a.insert(
            REQUESTER_ANNOTATION.to_string(),
            identity_annotation(&who("alice", None)),
        );
        assert_eq!(
            identity_from(Some(&a), REQUESTER_ANNOTATION).unwrap().uid,
            None
        );
        a.insert(
            REQUESTER_ANNOTATION.to_string(),
            identity_annotation(&who("", None)),
        );
        assert_eq!(identity_from(Some(&a), REQUESTER_ANNOTATION), None);
    }

    #[test]
    fn identity_annotation_round_trips() {
        let r = Requester {
            username: "alice".into(),
            uid: Some("u".into()),
            groups: vec!["g".into()],
            ..Default::default()
        };
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            REQUESTER_ANNOTATION.to_string(),
            serde_json::to_string(&r).unwrap(),
        );
        assert_eq!(identity_from(Some(&a), REQUESTER_ANNOTATION), Some(r));
        assert_eq!(identity_from(Some(&a), APPROVED_BY_ANNOTATION), None);
        a.insert(APPROVED_BY_ANNOTATION.into(), "not json".into());
        assert_eq!(identity_from(Some(&a), APPROVED_BY_ANNOTATION), None);
    }
}
