//! The `diagnose` read tool: the diagnostician's snapshot and analyzers
//! ([`crate::diagnose`]) behind the same RBAC check and record as every read call.

use super::{ReadCall, ReadTools, ToolError};
use crate::api::ToolCall;
use crate::diagnose::{Finding, analyze_for, fetch};

impl ReadTools {
    /// Runs a `diagnose` call and returns its findings (with their proposed fixes) for a planner.
    pub async fn diagnose(
        &self,
        namespace: &str,
        kind: Option<&str>,
        name: Option<&str>,
    ) -> (Result<Vec<Finding>, ToolError>, ToolCall) {
        let call = ReadCall::Diagnose {
            namespace: namespace.into(),
            kind: kind.map(str::to_string),
            name: name.map(str::to_string),
        };
        self.recorded(&call, self.findings(namespace, name)).await
    }

    /// The findings in `namespace`, narrowed to `name` when given.
    pub(super) async fn findings(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<Finding>, ToolError> {
        // Boxed: nine concurrent lists make a large future, kept off the caller's stack.
        let snap = Box::pin(fetch::snapshot(&self.client, namespace)).await?;
        Ok(analyze_for(&snap, name))
    }
}
