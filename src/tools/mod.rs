//! Kubernetes tools. Read-only tools ([`ReadTools`], [`ReadCall`]) answer
//! questions and run during investigation. Mutating tools ([`Mutation`]) are
//! only *planned* here: [`Mutation::prepare`] reads the live object and asks
//! the API server for a dry run. Applying a mutation lives in
//! [`crate::execute`] and needs an approval token only that module can mint,
//! so no read-only path can reach a mutating call.

pub mod compact;
mod format;
mod lookup;
mod mutate;
mod read;

pub use format::age;
pub use lookup::{
    Resolution, Workload, WorkloadLookup, describe_resolution, edit_distance, resolve,
};
pub use mutate::{Check, GENERIC_KINDS, Mutation, PatchStrategy, WorkloadKind, diff, generic_kind};
pub use read::{ReadCall, ReadTools};

/// Errors of tool calls. The message is shown to the user, so it says what
/// went wrong in their terms.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{kind} '{name}' not found in namespace '{namespace}'")]
    NotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("invalid arguments: {0}")]
    Invalid(String),
    #[error("Kubernetes API error: {0}")]
    Kube(#[source] kube::Error),
}

impl ToolError {
    /// Maps an API error on a named object to a precise tool error.
    pub fn from_kube(e: kube::Error, kind: &str, namespace: &str, name: &str) -> Self {
        match &e {
            kube::Error::Api(s) if s.code == 404 => ToolError::NotFound {
                kind: kind.into(),
                name: name.into(),
                namespace: namespace.into(),
            },
            kube::Error::Api(s) if s.code == 403 => ToolError::Forbidden(s.message.clone()),
            _ => ToolError::Kube(e),
        }
    }

    /// Whether retrying later may help (API unavailable, throttled).
    pub fn is_transient(&self) -> bool {
        match self {
            ToolError::Kube(e) => kube_is_transient(e),
            _ => false,
        }
    }
}

/// Whether a Kubernetes API error may go away on retry: server errors,
/// throttling and transport failures, not rejections.
pub fn kube_is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}
