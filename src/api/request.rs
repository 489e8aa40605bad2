//! `AIRequest`: a question or change request in natural language.
// kube-derive's repeated `printcolumn(type_ = ...)` arguments trip this lint.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A question or change request to the cluster, in natural language.
///
/// The operator investigates with read-only tools and writes the answer to
/// `status.answer`. When the request needs changes it writes an `AIPlan`
/// that runs only after an approval naming its exact plan id.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ai.kubilitics.io",
    version = "v1alpha1",
    kind = "AIRequest",
    plural = "airequests",
    singular = "airequest",
    shortname = "air",
    category = "kubilitics",
    namespaced,
    status = "AIRequestStatus",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Plan", type_ = "string", json_path = ".status.planRef"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(name = "Answer", type_ = "string", json_path = ".status.summary")
)]
#[serde(rename_all = "camelCase")]
pub struct AIRequestSpec {
    /// What you ask, in natural language, e.g. "Scale my nginx deployment to 5 replicas".
    #[schemars(length(min = 1, max = 8192))]
    pub prompt: String,

    /// Namespace where tools look and act. Defaults to the request's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("targetNamespace must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"))]
    pub target_namespace: Option<String>,

    /// Requests with the same conversation in a namespace form one thread; the
    /// last 20 exchanges are the agent's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub conversation: Option<String>,

    /// `Plan` (the default when unset) may produce a plan of changes;
    /// `ReadOnly` only investigates and answers, and never creates a plan with mutations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,

    /// GitOps approval: the `status.planId` of the plan to execute, committed to git.
    /// Setting or changing it never changes the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{16}$')").message("approvedPlanId must be the 16 lowercase hex characters of an AIPlan's status.planId"))]
    pub approved_plan_id: Option<String>,

    /// Override of the configured LLM model for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub model: Option<String>,

    /// `Never`: no step of the plan is rolled back automatically when a verification
    /// fails (every step's `rollbackAction` says `Never`, which the approver sees and the
    /// plan id covers). Unset or `Auto`: each step's own rollback. Changing it re-plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackPolicy>,

    /// The registered member cluster the request is about (a Secret labelled
    /// `ai.kubilitics.io/cluster: "true"` in the operator's namespace); unset: the cluster
    /// the operator runs in. Targeting one needs verb `use` on
    /// `clusters.ai.kubilitics.io/<name>` here, and the requester's own rights there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 63 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("cluster must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"))]
    pub cluster: Option<String>,
}

/// Whether a request's plan rolls back automatically after a failed verification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RollbackPolicy {
    /// Each step's approved rollback runs when a verification fails.
    #[default]
    Auto,
    /// Nothing is rolled back automatically (undoing would be worse); the plan ends `Failed`.
    Never,
}

/// What a request may do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum Mode {
    /// Investigate, answer, and plan changes that run after approval.
    #[default]
    Plan,
    /// Investigate and answer only.
    ReadOnly,
}

/// Lifecycle of a request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RequestPhase {
    Pending,
    Planning,
    Answered,
    AwaitingApproval,
    Executing,
    Succeeded,
    Failed,
    Rejected,
    Expired,
    /// A step failed its verification and the plan's approved rollbacks ran.
    RolledBack,
}

impl RequestPhase {
    /// A phase the request does not leave unless its spec changes.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Answered
                | Self::Succeeded
                | Self::Failed
                | Self::Rejected
                | Self::Expired
                | Self::RolledBack
        )
    }
}

/// Observed state of an `AIRequest`, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIRequestStatus {
    /// Where the request is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RequestPhase>,
    /// Markdown: what was found, what will happen, what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// First line of the answer, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Name of the current `AIPlan` of this request, when changes were planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_ref: Option<String>,
    /// The current plan's id (what an approval must name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Read-only tool calls made while investigating.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub investigation: Vec<ToolCall>,
    /// LLM usage of this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Who asked, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<Requester>,
    /// Digest of the fields that define the request (prompt, targetNamespace,
    /// mode, model, conversation); a change supersedes the current plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    /// `Ready`, `Reconciling` and `Stalled`, as kstatus expects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The LLM agent's progress while it plans (JSON: input digest, transcript,
    /// usage, proposals), written after every model call so that a restarted
    /// operator resumes instead of paying for the same calls again. Removed
    /// when planning ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Plan ids that approved a plan of this request and were used: an
    /// approval is single-use, so a committed `spec.approvedPlanId` that is
    /// listed here approves nothing more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub used_plan_ids: Vec<String>,
    /// For a request created from an Alertmanager alert: the alert's state as Alertmanager
    /// last reported it (written by the operator's alert receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertStatus>,
}

/// The state of the alert a request was created from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `firing` or `resolved`.
    pub state: String,
    /// Alertmanager's fingerprint of the alert.
    pub fingerprint: String,
    /// When the alert started firing (from Alertmanager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When Alertmanager reported it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// How many times it fired again after a resolution and reused this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refired: Option<i64>,
}

/// One read-only tool call of the investigation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// Tool name, e.g. `list_pods`.
    pub tool: String,
    /// Arguments the tool was called with.
    #[schemars(schema_with = "super::any_object")]
    pub arguments: serde_json::Value,
    /// `Succeeded`, `Failed` or `Denied`.
    pub outcome: String,
    /// Short description of the result or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall time of the call in milliseconds.
    pub duration_ms: i64,
}

/// LLM usage counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub llm_calls: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// Identity of the user who created the request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes of the user from the authenticator (e.g. token scopes), sent with
    /// every SubjectAccessReview for this user.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl AIRequest {
    /// The namespace tools look and act in.
    pub fn target_namespace(&self) -> String {
        self.spec
            .target_namespace
            .clone()
            .or_else(|| self.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into())
    }

    /// The effective mode.
    pub fn mode(&self) -> Mode {
        self.spec.mode.unwrap_or_default()
    }
}
