//! Kubilitics AI: a Kubernetes operator that lets people talk to their
//! cluster in natural language through the Kubernetes API.
//!
//! - [`api`]: the `AIRequest` and `AIPlan` custom resources, and the approval
//!   policies (`AIApprovalPolicy`, `AIClusterApprovalPolicy`).
//! - [`agent`]: planners (the offline builtin planner) behind one trait.
//! - [`tools`]: read-only tools, and mutating tools that can only be planned.
//! - [`safety`]: guardrails and redaction.
//! - [`approval`]: the approval decision (quorums, change windows, pre-approval)
//!   and the only place its token is minted.
//! - [`execute`]: the executor of approved plans.
//! - [`controller`]: the reconciler.
//! - [`diagnose`]: the builtin diagnostician (analyzers behind the `diagnose` tool).
//! - [`incidents`]: the Alertmanager webhook receiver (alerts become AIRequests).
//! - [`k8s`]: Kubernetes API errors shared by every module that calls the API.
//! - [`telemetry`]: metrics, events, tracing, health endpoints.
//! - [`plugin`]: the `kubectl kubilitics` plugin.
//! - [`mcp`]: the MCP server (rmcp) for AI assistants.
//! - [`webhook`]: admission webhook stamping requester and approver identity.

pub mod access;
pub mod agent;
pub mod api;
pub mod approval;
pub mod clusters;
pub mod controller;
pub mod diagnose;
pub mod execute;
pub mod incidents;
pub mod k8s;
pub mod mcp;
pub mod plugin;
pub mod safety;
pub mod telemetry;
pub mod tools;
pub mod webhook;
