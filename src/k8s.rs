//! Kubernetes API errors as the rest of the crate sees them: [`ToolError`]
//! (what a tool call tells the user) and [`kube_is_transient`] (whether a
//! retry may help). At the bottom of the module graph: it imports nothing of
//! this crate, so `tools`, `safety`, `telemetry` and `execute` all use it
//! without importing each other.

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
    /// The admission chain (a ValidatingAdmissionPolicy, a webhook such as
    /// Kyverno or Gatekeeper) denied the request; the message names the policy.
    #[error("denied by the cluster's admission policy: {0}")]
    DeniedByPolicy(String),
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
            kube::Error::Api(s) if admission_denial(&s.message).is_some() => {
                ToolError::DeniedByPolicy(s.message.clone())
            }
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

/// Whether an API error message is an admission policy's denial (as opposed
/// to RBAC): "ValidatingAdmissionPolicy '<p>' with binding '<b>' denied
/// request: …" or "admission webhook \"<w>\" denied the request: …".
/// Returns the message when it is.
pub fn admission_denial(message: &str) -> Option<&str> {
    let vap = message.contains("ValidatingAdmissionPolicy '") && message.contains("denied request");
    let webhook = message.contains("admission webhook") && message.contains("denied the request");
    (vap || webhook).then_some(message)
}

/// The texts of HTTP `Warning` headers (`299 - "text"`, RFC 7234), as the
/// API server sends admission warnings.
pub fn warning_texts<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<String> {
    headers
        .map(|h| {
            let rest = h.trim();
            // Code and agent ("299 -"), then the quoted text.
            let text = rest.splitn(3, ' ').nth(2).unwrap_or(rest).trim();
            let text = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(text);
            text.replace("\\\"", "\"")
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Sends a request (a server-side dry run) and returns the response object
/// with the admission warnings the API server attached; errors as kube
/// reports them. kube's typed `Api` drops the `Warning` headers.
pub async fn send_with_warnings(
    client: &kube::Client,
    req: http::Request<Vec<u8>>,
) -> Result<(serde_json::Value, Vec<String>), kube::Error> {
    let res = client.send(req.map(kube::client::Body::from)).await?;
    let status = res.status();
    let warnings = warning_texts(
        res.headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let bytes = res.into_body().collect_bytes().await?;
    let text = String::from_utf8_lossy(&bytes);
    if status.is_client_error() || status.is_server_error() {
        let st = serde_json::from_str::<kube::core::Status>(&text).unwrap_or_else(|_| {
            kube::core::Status::failure(text.trim(), "Failed to parse error data")
                .with_code(status.as_u16())
        });
        return Err(kube::Error::Api(st.boxed()));
    }
    let v = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
    Ok((v, warnings))
}

#[cfg(test)]
mod admission_tests {
    use super::*;

    #[test]
    fn denials_are_told_apart_from_rbac() {
        let vap = "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'registry' with binding 'registry-b' denied request: images must come from registry.example.com";
        assert!(admission_denial(vap).is_some());
        let hook = "admission webhook \"validate.kyverno.svc\" denied the request: no latest tag";
        assert!(admission_denial(hook).is_some());
        let rbac = "deployments.apps \"web\" is forbidden: User \"alice\" cannot patch resource";
        assert!(admission_denial(rbac).is_none());
        let e = kube::Error::Api(
            kube::core::Status::failure(vap, "Forbidden")
                .with_code(403)
                .boxed(),
        );
        assert!(matches!(
            ToolError::from_kube(e, "Deployment", "a", "web"),
            ToolError::DeniedByPolicy(_)
        ));
    }

    #[test]
    fn warning_headers_become_texts() {
        let h = [
            "299 - \"images should be pinned\"",
            "299 - \"say \\\"hi\\\"\"",
        ];
        assert_eq!(
            warning_texts(h.into_iter()),
            ["images should be pinned", "say \"hi\""]
        );
    }
}
