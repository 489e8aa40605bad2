//! Approval policies: who may approve which risk, how many distinct people
//! must approve (N-of-M), when plans may run (change windows, freezes), and —
//! cluster-wide only — which declared-safe steps need no person at all.
//!
//! `AIClusterApprovalPolicy` (cluster-scoped, written by cluster admins) and
//! `AIApprovalPolicy` (namespaced) combine: **the stricter rule always wins**
//! (largest quorum, every allow-list must admit the approver, every policy's
//! windows must be open, any freeze blocks). A namespaced policy can only make
//! approval stricter: it has no pre-approval field, and a rule it declares for
//! a risk level turns a cluster pre-approval of that level off.
// kube-derive's repeated `printcolumn(type_ = ...)` arguments trip this lint.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Risk;

/// Approval rules for the `AIPlan`s of this namespace. They add to the cluster's
/// `AIClusterApprovalPolicy` rules and can only make approval stricter.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ai.kubilitics.io",
    version = "v1alpha1",
    kind = "AIApprovalPolicy",
    plural = "aiapprovalpolicies",
    singular = "aiapprovalpolicy",
    shortname = "aiapol",
    category = "kubilitics",
    namespaced,
    status = "ApprovalPolicyStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AIApprovalPolicySpec {
    /// Who may approve plans of a risk level, and how many distinct people must.
    /// At most one rule per risk level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.risk == r.risk))").message("at most one rule per risk level"))]
    #[schemars(length(max = 3))]
    pub rules: Vec<RiskRule>,
    /// Change windows: when set, approved plans run only while one of them is
    /// open (otherwise they wait, condition `WaitingForWindow`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub windows: Vec<ChangeWindow>,
    /// Freezes: nothing runs between `start` and `end`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub freezes: Vec<Freeze>,
}

/// Cluster-wide approval rules, written by cluster admins; the default for every
/// namespace it selects. Only this kind can pre-approve declared-safe steps.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ai.kubilitics.io",
    version = "v1alpha1",
    kind = "AIClusterApprovalPolicy",
    plural = "aiclusterapprovalpolicies",
    singular = "aiclusterapprovalpolicy",
    shortname = "aicapol",
    category = "kubilitics",
    status = "ApprovalPolicyStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AIClusterApprovalPolicySpec {
    /// Namespaces (of the `AIPlan`s) this policy applies to; empty: all namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,
    /// Who may approve plans of a risk level, and how many distinct people must.
    /// At most one rule per risk level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(r, self.exists_one(s, s.risk == r.risk))").message("at most one rule per risk level"))]
    #[schemars(length(max = 3))]
    pub rules: Vec<RiskRule>,
    /// Change windows: when set, approved plans run only while one of them is open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub windows: Vec<ChangeWindow>,
    /// Freezes: nothing runs between `start` and `end`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub freezes: Vec<Freeze>,
    /// Steps declared safe enough to run without a person (off when empty).
    /// A plan is pre-approved only when every step matches an entry; never
    /// for `High` risk. Recorded as `approvedBy: policy/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub pre_approve: Vec<PreApproval>,
}

/// Approval rule for one risk level.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RiskRule {
    /// `Low`, `Medium` or `High`: the plan's risk (its riskiest step).
    pub risk: Risk,
    /// How many distinct approvers must approve the exact plan id (the requester never counts).
    #[schemars(range(min = 1, max = 10))]
    pub quorum: i32,
    /// Only these users may approve (besides holding verb `approve` on aiplans and
    /// the rights of every step). Empty `users` and `groups`: anyone who holds them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub users: Vec<String>,
    /// Members of these groups may approve (see `users`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub groups: Vec<String>,
}

/// A recurring change window: it opens at each time `schedule` names and stays
/// open for `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ChangeWindow {
    /// Cron expression of the openings: `minute hour day-of-month month day-of-week`
    /// (or six fields with seconds first). Numbers, `*`, ranges `a-b`, steps `/n` and
    /// lists `a,b`; day-of-week 0-7 (0 and 7 are Sunday). E.g. `0 9 * * 1-4`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9*/,-]+( +[0-9*/,-]+){4,5}$')").message("schedule must be a cron expression of 5 (or 6, seconds first) fields of numbers, '*', '-', '/' and ','"))]
    #[schemars(length(max = 256))]
    pub schedule: String,
    /// How long the window stays open after each opening, e.g. `8h`, `30m`, `90s`
    /// (at most 168h).
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') && self != '' && duration(self) > duration('0s') && duration(self) <= duration('168h')").message("duration must look like 8h, 30m, 1h30m or 90s, and be more than 0s and at most 168h"))]
    #[schemars(length(max = 32))]
    pub duration: String,
    /// IANA time zone of the schedule, e.g. `Europe/Berlin`; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$')").message("timeZone must be an IANA time zone name such as Europe/Berlin"))]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
}

/// A period in which no plan runs (approved plans wait; they still expire).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.end > self.start").message("a freeze must end after it starts"))]
pub struct Freeze {
    /// When the freeze begins (RFC 3339).
    pub start: Time,
    /// When it ends (RFC 3339).
    pub end: Time,
    /// Why (shown in the plan's `WaitingForWindow` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

/// Steps that run without a person: one mutating tool, in named namespaces, up to a risk level.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PreApproval {
    /// The mutating tool, e.g. `scale_deployment`.
    #[x_kube(validation = Rule::new("self in ['scale_deployment', 'rollout_restart', 'create_configmap', 'delete_pod', 'patch_resource', 'apply_manifest']").message("tool must be one of the mutating tools: scale_deployment, rollout_restart, create_configmap, delete_pod, patch_resource, apply_manifest"))]
    pub tool: String,
    /// Namespaces the steps act in (required: pre-approval is never cluster-wide by accident).
    #[schemars(length(min = 1, max = 64))]
    pub namespaces: Vec<String>,
    /// Highest risk pre-approved: `Low` or `Medium` (`High` is never pre-approved).
    #[x_kube(validation = Rule::new("self != 'High'").message("High risk is never pre-approved"))]
    pub max_risk: Risk,
    /// For `scale_deployment`: the largest replica count pre-approved (default: none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_replicas: Option<i32>,
}

/// Observed state of an approval policy, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicyStatus {
    /// `Ready` is `True` when every schedule and time zone parses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition type and reason of a plan that is approved but waits for a change
/// window to open (or a freeze to end).
pub const WAITING_FOR_WINDOW: &str = "WaitingForWindow";
/// Event reason: an approval was counted towards a policy's quorum.
pub const APPROVAL_COUNTED: &str = "ApprovalCounted";
