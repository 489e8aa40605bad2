//! Who asked, and what they may do: the requester's identity (stamped by the
//! admission webhook) and SubjectAccessReviews on exactly the verb, resource
//! and namespace of every tool call and plan step.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};

use crate::api::Requester;
use crate::tools::{Mutation, ReadCall, ToolError};

/// Annotation the webhook sets on AIRequest creation: JSON of [`Requester`].
pub const REQUESTER_ANNOTATION: &str = "ai.kubilitics.io/requester";
/// Annotation the webhook sets when an approval is written: JSON of [`Requester`].
pub const APPROVED_BY_ANNOTATION: &str = "ai.kubilitics.io/approved-by";

/// Parses an identity annotation.
pub fn identity_from(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    key: &str,
) -> Option<Requester> {
    annotations
        .and_then(|a| a.get(key))
        .and_then(|v| serde_json::from_str(v).ok())
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
}

impl Permission {
    fn ns(
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
        }
    }

    fn cluster(verb: &'static str, group: &'static str, resource: &'static str) -> Self {
        Self {
            verb,
            group,
            resource,
            subresource: None,
            namespace: None,
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
        match &self.namespace {
            Some(ns) => format!("{} {res} in namespace {ns}", self.verb),
            None => format!("{} {res} cluster-wide", self.verb),
        }
    }
}

fn kind_resource(kind: &str) -> (&'static str, &'static str, bool) {
    match kind.to_ascii_lowercase().trim_end_matches('s') {
        "deployment" | "deploy" => ("apps", "deployments", true),
        "statefulset" | "st" => ("apps", "statefulsets", true),
        "daemonset" | "d" => ("apps", "daemonsets", true),
        "service" | "svc" => ("", "services", true),
        "configmap" | "cm" => ("", "configmaps", true),
        "node" | "no" => ("", "nodes", false),
        "namespace" | "n" => ("", "namespaces", false),
        "secret" => ("", "secrets", true),
        _ => ("", "pods", true),
    }
}

/// The permissions a read-only call needs.
pub fn read_permissions(call: &ReadCall) -> Vec<Permission> {
    match call {
        ReadCall::ListPods { namespace, .. } => vec![Permission::ns("list", "", "pods", namespace)],
        ReadCall::GetPodDetails { namespace, .. } => {
            vec![Permission::ns("get", "", "pods", namespace)]
        }
        ReadCall::GetPodLogs { namespace, .. } => vec![Permission {
            subresource: Some("log"),
            ..Permission::ns("get", "", "pods", namespace)
        }],
        ReadCall::ListDeployments { namespace } => {
            vec![Permission::ns("list", "apps", "deployments", namespace)]
        }
        ReadCall::GetDeploymentStatus { namespace, .. } => {
            vec![Permission::ns("get", "apps", "deployments", namespace)]
        }
        ReadCall::ListServices { namespace } => {
            vec![Permission::ns("list", "", "services", namespace)]
        }
        ReadCall::DescribeResource {
            namespace, kind, ..
        } => {
            let (group, resource, namespaced) = kind_resource(kind);
            if namespaced {
                vec![Permission::ns("get", group, resource, namespace)]
            } else {
                vec![Permission::cluster("get", group, resource)]
            }
        }
        ReadCall::GetEvents { namespace, .. } => {
            vec![Permission::ns("list", "", "events", namespace)]
        }
        ReadCall::GetClusterHealth {} => vec![
            Permission::cluster("list", "", "nodes"),
            Permission::cluster("list", "", "pods"),
            Permission::cluster("list", "apps", "deployments"),
        ],
        ReadCall::FindWorkload { namespace, .. } => vec![
            Permission::ns("list", "apps", "deployments", namespace),
            Permission::ns("list", "apps", "statefulsets", namespace),
        ],
    }
}

/// The permissions a plan step needs (checked at planning and again before it runs).
pub fn mutation_permissions(m: &Mutation) -> Vec<Permission> {
    let ns = m.namespace();
    match m {
        Mutation::ScaleDeployment { kind, .. } | Mutation::RolloutRestart { kind, .. } => {
            let resource = match kind {
                crate::tools::WorkloadKind::Deployment => "deployments",
                crate::tools::WorkloadKind::StatefulSet => "statefulsets",
            };
            vec![Permission::ns("patch", "apps", resource, ns)]
        }
        Mutation::DeletePod { .. } => vec![Permission::ns("delete", "", "pods", ns)],
        Mutation::CreateConfigmap { .. } => vec![Permission::ns("create", "", "configmaps", ns)],
        Mutation::PatchResource { kind, .. } => crate::tools::generic_kind(kind)
            .map(|(_, g, _, plural)| vec![Permission::ns("patch", g, plural, ns)])
            .unwrap_or_default(),
        Mutation::ApplyManifest { manifest, .. } => {
            crate::tools::generic_kind(manifest["kind"].as_str().unwrap_or(""))
                .map(|(_, g, _, plural)| {
                    vec![
                        Permission::ns("create", g, plural, ns),
                        Permission::ns("patch", g, plural, ns),
                    ]
                })
                .unwrap_or_default()
        }
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
            let sar = SubjectAccessReview {
                metadata: Default::default(),
                spec: SubjectAccessReviewSpec {
                    user: Some(self.user.username.clone()),
                    uid: self.user.uid.clone(),
                    groups: Some(self.user.groups.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(p.verb.into()),
                        group: Some(p.group.into()),
                        resource: Some(p.resource.into()),
                        subresource: p.subresource.map(String::from),
                        namespace: p.namespace.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                status: None,
            };
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
    fn permissions_are_exact() {
        let p = read_permissions(&ReadCall::GetPodLogs {
            namespace: "shop".into(),
            name: "x".into(),
            container: None,
            tail_lines: None,
            since_seconds: None,
        });
        assert_eq!(p[0].describe(), "get pods/log in namespace shop");
        let p = read_permissions(&ReadCall::DescribeResource {
            namespace: "shop".into(),
            kind: "Node".into(),
            name: "n".into(),
        });
        assert_eq!(p[0].describe(), "get nodes cluster-wide");
        let m = Mutation::ScaleDeployment {
            namespace: "shop".into(),
            name: "n".into(),
            kind: crate::tools::WorkloadKind::StatefulSet,
            replicas: 1,
        };
        assert_eq!(
            mutation_permissions(&m)[0].describe(),
            "patch statefulsets.apps in namespace shop"
        );
    }

    #[test]
    fn identity_annotation_round_trips() {
        let r = Requester {
            username: "alice".into(),
            uid: Some("u".into()),
            groups: vec!["g".into()],
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
