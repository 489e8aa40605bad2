//! Guardrails and redaction: pure functions, enforced in code whatever the
//! planner (or a model) says.

pub mod quota;
pub mod risk;

/// Identities and SubjectAccessReviews live in [`crate::access`] (below `tools`); this path stays.
pub use crate::access as authz;
pub use crate::access::redact;

use serde::{Deserialize, Serialize};

use crate::api::Risk;
use crate::tools::Mutation;

/// Operations that are never planned, whatever the request says (seed: `DANGEROUS_OPERATIONS`).
pub const BLOCKED_OPERATIONS: &[(&str, &str)] = &[
    ("delete", "namespace"),
    ("delete", "node"),
    ("delete", "clusterrole"),
    ("delete", "clusterrolebinding"),
];

/// Guardrail settings (defaults from the seed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Guardrails {
    /// Namespaces no plan may change.
    pub protected_namespaces: Vec<String>,
    /// Highest replica count a scale step may set.
    pub max_replicas: i32,
    /// Most steps one plan may have.
    pub max_steps: usize,
    /// Refuse `apply_manifest` / `patch_resource` steps with risky content (privileged or
    /// host-namespace pods, hostPath, added capabilities, another ServiceAccount, Services open
    /// to the outside: [`risk::content_risks`]) instead of planning them as High.
    #[serde(default)]
    pub block_risky_content: bool,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            protected_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            max_replicas: 1000,
            max_steps: 10,
            block_risky_content: false,
        }
    }
}

/// What the guardrails say about one planned mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed { risk: Risk, warning: Option<String> },
    Blocked { reason: String },
}

/// What the guardrails say of a whole plan: why it is blocked (empty when it
/// is not), and the risk and warnings of each allowed step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlanVerdict {
    pub blocked: Vec<String>,
    pub risks: Vec<Risk>,
    pub warnings: Vec<String>,
}

impl Guardrails {
    /// Whether an operation (verb, lower-case kind) in a namespace may be planned at all.
    pub fn check_operation(
        &self,
        verb: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<(), String> {
        if BLOCKED_OPERATIONS.contains(&(verb, kind)) {
            return Err(format!(
                "Operation '{verb}' on '{kind}' is not allowed via Kubilitics AI"
            ));
        }
        if let Some(ns) = namespace
            && self.protected_namespaces.iter().any(|p| p == ns)
        {
            return Err(format!(
                "Namespace '{ns}' is protected and cannot be modified via Kubilitics AI"
            ));
        }
        Ok(())
    }

    /// Checks every step of a plan, and the plan's length (`max_steps`).
    pub fn check_plan(&self, mutations: &[Mutation]) -> PlanVerdict {
        let mut v = PlanVerdict::default();
        if mutations.len() > self.max_steps {
            v.blocked.push(format!(
                "a plan may have at most {} steps, not {}",
                self.max_steps,
                mutations.len()
            ));
        }
        for m in mutations {
            match self.check(m) {
                Verdict::Allowed { risk, warning } => {
                    v.risks.push(risk);
                    v.warnings.extend(warning);
                }
                Verdict::Blocked { reason } => v.blocked.push(reason),
            }
        }
        v
    }

    /// Checks a mutation and assigns its risk.
    pub fn check(&self, m: &Mutation) -> Verdict {
        let (verb, kind) = m.operation();
        if let Err(reason) = self.check_operation(verb, kind, Some(m.namespace())) {
            return Verdict::Blocked { reason };
        }
        if let Err(reason) = m.validate() {
            return Verdict::Blocked { reason };
        }
        let content = match m {
            Mutation::PatchResource { patch, .. } => Some(patch),
            Mutation::ApplyManifest { manifest, .. } => Some(manifest),
            _ => None,
        };
        let risks = content.map(risk::content_risks).unwrap_or_default();
        if !risks.is_empty() {
            let list = risks.join("; ");
            return if self.block_risky_content {
                Verdict::Blocked {
                    reason: format!(
                        "The step carries risky content ({list}), which this operator is configured to refuse (--block-risky-content)"
                    ),
                }
            } else {
                Verdict::Allowed {
                    risk: Risk::High,
                    warning: Some(format!("⚠️ Risky content: {list}.")),
                }
            };
        }
        match m {
            Mutation::PatchResource { .. } => Verdict::Allowed {
                risk: Risk::Medium,
                warning: Some(
                    "⚠️ Review the dry-run diff: the patch changes a live object.".into(),
                ),
            },
            Mutation::ApplyManifest { .. } => Verdict::Allowed {
                risk: Risk::Low,
                warning: None,
            },
            Mutation::ScaleDeployment { replicas, .. }
                if *replicas < 0 || *replicas > self.max_replicas =>
            {
                Verdict::Blocked {
                    reason: format!(
                        "Replicas must be between 0 and {}, not {replicas}",
                        self.max_replicas
                    ),
                }
            }
            Mutation::ScaleDeployment { replicas: 0, .. } => Verdict::Allowed {
                risk: Risk::High,
                warning: Some(
                    "⚠️ Scaling to 0 replicas will stop all instances of this workload.".into(),
                ),
            },
            Mutation::ScaleDeployment { .. } => Verdict::Allowed {
                risk: Risk::Medium,
                warning: None,
            },
            Mutation::RolloutRestart { .. } => Verdict::Allowed {
                risk: Risk::High,
                warning: Some(
                    "⚠️ Rolling restart will temporarily reduce available capacity.".into(),
                ),
            },
            Mutation::DeletePod { .. } => Verdict::Allowed {
                risk: Risk::High,
                warning: Some(
                    "⚠️ You are about to delete a pod. Active connections to it will be dropped."
                        .into(),
                ),
            },
            Mutation::CreateConfigmap { .. } => Verdict::Allowed {
                risk: Risk::Low,
                warning: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::WorkloadKind;

    fn scale(ns: &str, replicas: i32) -> Mutation {
        Mutation::ScaleDeployment {
            namespace: ns.into(),
            name: "x".into(),
            kind: WorkloadKind::Deployment,
            replicas,
        }
    }

    #[test]
    fn protected_namespaces_block_mutations() {
        let g = Guardrails::default();
        for ns in ["kube-system", "kube-public", "kube-node-lease"] {
            assert!(
                matches!(g.check(&scale(ns, 2)), Verdict::Blocked { .. }),
                "{ns}"
            );
        }
        assert!(matches!(
            g.check(&scale("shop", 2)),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn blocked_operations_and_risk() {
        let g = Guardrails::default();
        assert!(g.check_operation("delete", "namespace", None).is_err());
        assert!(g.check_operation("delete", "node", None).is_err());
        assert!(
            g.check_operation("delete", "clusterrolebinding", Some("x"))
                .is_err()
        );
        assert!(g.check_operation("delete", "pod", Some("x")).is_ok());
        assert_eq!(
            g.check(&scale("a", 0)),
            Verdict::Allowed {
                risk: Risk::High,
                warning: Some(
                    "⚠️ Scaling to 0 replicas will stop all instances of this workload.".into()
                )
            }
        );
        assert!(matches!(
            g.check(&scale("a", 1001)),
            Verdict::Blocked { .. }
        ));
        assert!(matches!(g.check(&scale("a", -1)), Verdict::Blocked { .. }));
        let restart = Mutation::RolloutRestart {
            namespace: "a".into(),
            name: "d".into(),
            kind: WorkloadKind::Deployment,
            restarted_at: None,
        };
        assert!(matches!(
            g.check(&restart),
            Verdict::Allowed {
                risk: Risk::High,
                ..
            }
        ));
    }
}
