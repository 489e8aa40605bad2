//! What each read-only call and plan step needs of the requester's RBAC: exactly the verb,
//! resource, namespace and (where the verb has one) object name, checked by
//! [`crate::access::Authorizer`] before the call and again before a step runs.

use super::{Mutation, ReadCall};
use crate::access::Permission;

impl ReadCall {
    /// The permissions this call needs.
    pub fn permissions(&self) -> Vec<Permission> {
        read_permissions(self)
    }
}

impl Mutation {
    /// The permissions this step needs (at planning and again before it runs).
    pub fn permissions(&self) -> Vec<Permission> {
        mutation_permissions(self)
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
fn read_permissions(call: &ReadCall) -> Vec<Permission> {
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
        ReadCall::Diagnose { namespace, .. } => crate::diagnose::fetch::permissions(namespace),
        ReadCall::FindWorkload { namespace, .. } => vec![
            Permission::ns("list", "apps", "deployments", namespace),
            Permission::ns("list", "apps", "statefulsets", namespace),
        ],
    }
}

/// The permissions a plan step needs (checked at planning and again before it runs), on the
/// named object wherever the verb has one, so that RBAC `resourceNames` rules are honoured.
/// `patch_resource` also needs `get`: its preview shows the object.
fn mutation_permissions(m: &Mutation) -> Vec<Permission> {
    let ns = m.namespace();
    let named = |p: Permission, name: &str| Permission {
        name: Some(name.to_string()),
        ..p
    };
    match m {
        Mutation::ScaleDeployment { kind, name, .. }
        | Mutation::RolloutRestart { kind, name, .. } => {
            let resource = match kind {
                crate::tools::WorkloadKind::Deployment => "deployments",
                crate::tools::WorkloadKind::StatefulSet => "statefulsets",
            };
            vec![named(Permission::ns("patch", "apps", resource, ns), name)]
        }
        Mutation::DeletePod { name, .. } => {
            vec![named(Permission::ns("delete", "", "pods", ns), name)]
        }
        // Creating has no object name in RBAC's eyes.
        Mutation::CreateConfigmap { .. } => vec![Permission::ns("create", "", "configmaps", ns)],
        Mutation::PatchResource { kind, name, .. } => crate::tools::generic_kind(kind)
            .map(|(_, g, _, plural)| {
                vec![
                    named(Permission::ns("get", g, plural, ns), name),
                    named(Permission::ns("patch", g, plural, ns), name),
                ]
            })
            .unwrap_or_default(),
        Mutation::ApplyManifest { manifest, .. } => {
            let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
            crate::tools::generic_kind(manifest["kind"].as_str().unwrap_or(""))
                .map(|(_, g, _, plural)| {
                    vec![
                        Permission::ns("create", g, plural, ns),
                        named(Permission::ns("patch", g, plural, ns), name),
                    ]
                })
                .unwrap_or_default()
        }
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
            "patch statefulsets.apps n in namespace shop"
        );
        let patch = Mutation::PatchResource {
            namespace: "shop".into(),
            kind: "Service".into(),
            name: "web".into(),
            patch: serde_json::json!({}),
            strategy: Default::default(),
        };
        let d: Vec<String> = mutation_permissions(&patch)
            .iter()
            .map(Permission::describe)
            .collect();
        assert_eq!(
            d,
            [
                "get services web in namespace shop",
                "patch services web in namespace shop"
            ]
        );
    }
}
