//! The API of the operator: the `AIRequest` and `AIPlan` custom resources
//! (group `ai.kubilitics.io`, version `v1alpha1`) and the vocabulary their
//! statuses share (phases, condition reasons).
//!
//! Everything here is data. The `///` docs on user-facing fields become the
//! CRD's descriptions, so `kubectl explain airequest.spec` reads them.

mod conditions;
mod plan;
mod policy;
mod request;

pub use conditions::*;
pub use plan::*;
pub use policy::*;
pub use request::*;

use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};

/// The API group of both kinds.
pub const GROUP: &str = "ai.kubilitics.io";
/// The name every write of the operator uses (server-side apply field manager,
/// event reporter).
pub const MANAGER: &str = "kubilitics-ai";

/// Free-form JSON object kept as the operator wrote it (tool arguments, the
/// `before` state of a step, dry-run previews).
pub(crate) fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a list of free-form objects (JSON Patch operations; copies of validated spec parts
/// kept in a status, e.g. the change windows an approval policy had when a plan was offered).
pub(crate) fn any_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

/// The CRDs of this operator as one multi-document YAML stream, in the order
/// `crds/` keeps them.
/// The ValidatingAdmissionPolicy shipped with the CRDs that makes identities unforgeable.
pub const IDENTITY_POLICY_YAML: &str =
    include_str!("../../crds/kubilitics-ai.identity-policy.yaml");

pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for crd in [
        AIRequest::crd(),
        AIPlan::crd(),
        AIApprovalPolicy::crd(),
        AIClusterApprovalPolicy::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}
