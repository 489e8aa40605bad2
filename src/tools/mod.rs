//! Kubernetes tools. Read-only tools ([`ReadTools`], [`ReadCall`]) answer
//! questions and run during investigation. Mutating tools ([`Mutation`]) are
//! only *planned* here: [`Mutation::prepare`] reads the live object and asks
//! the API server for a dry run. Applying a mutation lives in
//! [`crate::execute`] and needs an approval token only [`crate::approval`] can mint,
//! so no read-only path can reach a mutating call.

pub mod compact;
mod diagnose;
mod format;
mod lookup;
mod mutate;
mod permissions;
mod read;
pub mod verify_plan;

pub use crate::k8s::{ToolError, kube_is_transient};
pub use format::age;
pub use lookup::{
    Resolution, Workload, WorkloadLookup, describe_resolution, edit_distance, resolve,
};
pub use mutate::{Check, GENERIC_KINDS, Mutation, PatchStrategy, WorkloadKind, diff, generic_kind};
pub use read::{LIST_CAP, LOG_LIMIT_BYTES, Listed, ReadCall, ReadTools, paged};
