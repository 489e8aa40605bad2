//! `AIPlan`: the reviewed unit of change. The operator writes the steps into
//! `status`; people write only `spec.approval` or `spec.rejection`.
// kube-derive's repeated `printcolumn(type_ = ...)` arguments trip this lint.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A plan of changes written by the operator for an `AIRequest`. Nothing in it
/// runs until `spec.approval.planId` (or the request's `spec.approvedPlanId`)
/// equals `status.planId`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ai.kubilitics.io",
    version = "v1alpha1",
    kind = "AIPlan",
    plural = "aiplans",
    singular = "aiplan",
    shortname = "aip",
    category = "kubilitics",
    namespaced,
    status = "AIPlanStatus",
    printcolumn(name = "Request", type_ = "string", json_path = ".status.request"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Steps", type_ = "integer", json_path = ".status.stepCount"),
    printcolumn(name = "Risk", type_ = "string", json_path = ".status.risk"),
    printcolumn(name = "Plan ID", type_ = "string", json_path = ".status.planId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.approval) && has(self.rejection))").message("set either spec.approval or spec.rejection, not both"))]
#[serde(rename_all = "camelCase")]
pub struct AIPlanSpec {
    /// Approve the plan by naming its exact `status.planId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Reject the plan; it will never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// Approvals by several people, for approval policies that need a quorum
    /// (N-of-M): each approver appends one entry; admission stamps who wrote it
    /// (`approver`) and when, and refuses changes to anyone else's entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub approvals: Vec<ApprovalEntry>,
}

/// One approver's approval of one exact plan (an entry of `spec.approvals`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalEntry {
    /// Must equal `status.planId`; anything else is not counted.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{16}$')").message("planId must be the 16 lowercase hex characters shown in status.planId"))]
    pub plan_id: String,
    /// Why it was approved (kept in the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
    /// Set by admission to the user who wrote the entry (whatever was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub approver: Option<String>,
    /// Set by admission: when the entry was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
}

/// An approval the operator counted towards a policy's quorum.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CountedApproval {
    /// Who approved (username), or `policy/<name>` for a pre-approval.
    pub user: String,
    /// Where the approval was written.
    pub source: String,
    /// When the operator counted it.
    pub at: Time,
}

/// The approval rules in force for a plan: the stricter of the rules recorded
/// when the plan was first offered and the current policies (a policy change
/// never loosens an offered or approved plan).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySnapshot {
    /// The policies the rules come from, as `Kind/name@generation`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Distinct approvers needed.
    pub quorum: i32,
    /// Allow-lists an approver must satisfy (every one of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowList>,
    /// Change windows, per policy: one window of every entry must be open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::any_object_list")]
    pub windows: Vec<PolicyWindows>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::any_object_list")]
    pub freezes: Vec<super::Freeze>,
    /// The cluster policy that pre-approves this plan, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_approved_by: Option<String>,
}

/// Users and groups one policy admits as approvers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowList {
    pub policy: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The change windows of one policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyWindows {
    pub policy: String,
    pub windows: Vec<super::ChangeWindow>,
}

/// An approval of one exact plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Must equal `status.planId` (16 lowercase hex characters); anything else changes nothing.
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{16}$')").message("planId must be the 16 lowercase hex characters shown in status.planId"))]
    pub plan_id: String,
    /// Why it was approved (kept in the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

/// A rejection of the plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Why it was rejected.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
}

/// Lifecycle of a plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PlanPhase {
    AwaitingApproval,
    Approved,
    Executing,
    Succeeded,
    Failed,
    Rejected,
    Expired,
    Superseded,
    /// A step failed its verification: the approved rollbacks are running.
    RollingBack,
    /// A step failed its verification and the applied steps were rolled back.
    RolledBack,
}

impl PlanPhase {
    /// A phase the plan never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Rejected
                | Self::Expired
                | Self::Superseded
                | Self::RolledBack
        )
    }
}

/// How much a step or plan can hurt.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema, Default,
)]
pub enum Risk {
    #[default]
    Low,
    Medium,
    High,
}

/// State of one step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum StepState {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
    /// Applied; the operator is checking its verification (persisted, so a
    /// restart verifies again instead of applying again).
    Verifying,
    /// Its rollback is being applied (persisted before the call).
    RollingBack,
    /// Its rollback was applied.
    RolledBack,
}

/// The object a step acts on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepTarget {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// UID of the live object the step was planned against (absent for objects the step creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One planned change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    /// Mutating tool, e.g. `scale_deployment`.
    pub tool: String,
    /// Arguments of the tool.
    #[schemars(schema_with = "super::any_object")]
    pub arguments: serde_json::Value,
    /// The object the step changes.
    pub target: StepTarget,
    pub risk: Risk,
    /// Why this step is needed.
    pub reason: String,
    /// The live state the step was planned against; execution stops with
    /// `Drifted` when the object no longer matches it.
    #[schemars(schema_with = "super::any_object")]
    pub before: serde_json::Value,
    /// Server-side dry-run result: what will change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// How to undo the step, in words.
    pub rollback: String,
    /// How the operator checks that the step worked (part of the plan id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// What the operator does to undo the step when its (or a later step's)
    /// verification fails; approved with the plan (part of the plan id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_action: Option<RollbackAction>,
    /// What happened to the step when the plan was rolled back (rolled back, or
    /// why not: `never`, or someone changed the object since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_message: Option<String>,
    /// Warnings the admission chain (ValidatingAdmissionPolicies in `Warn` mode,
    /// webhooks) returned for the server-side dry run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admission_warnings: Vec<String>,
    #[serde(default)]
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a verification checks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum VerificationKind {
    /// The workload reports the new replica count ready/available
    /// (`observedGeneration` caught up).
    #[default]
    ReplicasAvailable,
    /// The rollout completed: `observedGeneration` caught up, every replica
    /// updated and available, no old replicas left. Pods of the new revision
    /// in ImagePullBackOff/CrashLoopBackOff, or `ProgressDeadlineExceeded`, fail it early.
    RolloutComplete,
    /// The live object holds what the step wrote (or, for a deletion, is gone).
    ObjectMatches,
}

/// How the operator checks that a step worked, after applying it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub kind: VerificationKind,
    /// Verification fails when it has not passed this long after the step was applied.
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i64,
}

/// What undoing a step does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RollbackKind {
    /// Write the before-state back with the JSON Patch in `patch`: it first tests that
    /// the fields still hold what the step wrote (a later change by someone else is
    /// never overwritten), then restores the values the plan was made against.
    #[default]
    RestoreBefore,
    /// Delete the object the step created (only while it still holds what the step wrote).
    Delete,
    /// Never undo this step (undoing would be worse, or there is nothing to undo); `reason` says why.
    Never,
}

/// A concrete, executable rollback of one step, approved with the plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollbackAction {
    pub action: RollbackKind,
    /// For `RestoreBefore`: the JSON Patch (RFC 6902) operations, `test` ops first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::any_object_list")]
    pub patch: Vec<serde_json::Value>,
    /// Why (for `Never`), or what the rollback restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Observed state of an `AIPlan`, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIPlanStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PlanPhase>,
    /// First 16 hex characters of the SHA-256 of the canonical JSON of the
    /// target namespace and the steps (with each target's uid and `before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Name of the `AIRequest` this plan belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Namespace the steps act in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// The member cluster the steps act in (unset: the operator's own); part of the plan id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// What the plan does, in one paragraph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Highest risk of its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<PlanStep>,
    /// Who approved (from the admission webhook when installed, otherwise the approval comment's source);
    /// under a quorum every counted approver, or `policy/<name>` for a pre-approved plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// After this time the plan never executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Approvals counted towards an approval policy's quorum (distinct people).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<CountedApproval>,
    /// Distinct approvals the approval policies require (absent: no policy applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<i32>,
    /// The approval rules in force for this plan (see `PolicySnapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySnapshot>,
    /// When the change window next opens (while the plan waits for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_opens_at: Option<Time>,
    /// The last approval id that did not match (an `ApprovalMismatch` event was emitted for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_mismatched_plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
