//! The agent: turns a prompt into an answer, a read-only investigation and
//! (maybe) mutations to plan. Planners sit behind [`Planner`] so the offline
//! builtin planner and an LLM planner are interchangeable.

pub mod budget;
pub mod builtin;
pub mod intent;
pub mod openai;
pub mod prompt;
pub mod provider;
pub mod schema;

pub use builtin::BuiltinPlanner;
pub use openai::{Flavor, LlmConfig, OpenAiPlanner, plan_complete, same_step};

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::api::{Mode, ToolCall, Usage};
use crate::tools::{Mutation, ReadTools};

/// What a planner gets.
#[derive(Clone, Debug)]
pub struct PlanInput {
    pub prompt: String,
    /// Namespace from `spec.targetNamespace`, or the request's own.
    pub namespace: String,
    /// Whether `spec.targetNamespace` was set explicitly (then the prompt cannot move it).
    pub namespace_explicit: bool,
    pub mode: Mode,
    pub model: Option<String>,
    /// Earlier exchanges of the same conversation, oldest first (prompt, answer).
    pub history: Vec<(String, String)>,
    /// Progress of an earlier attempt at this same input (after a restart).
    pub resume: Option<AgentState>,
    /// Where to record progress as the agent goes.
    pub checkpoint: Option<Arc<dyn Checkpoint>>,
}

/// The agent loop's progress: everything needed to go on without repeating
/// a completed model call.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The conversation so far (OpenAI chat messages).
    pub messages: Vec<serde_json::Value>,
    pub usage: Usage,
    pub investigation: Vec<ToolCall>,
    pub mutations: Vec<Mutation>,
    /// Problems met on the way (unknown tools, invalid arguments, the iteration cap).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The final answer, once the model gave one.
    #[serde(default)]
    pub answer: Option<String>,
}

/// Records agent progress (the controller keeps it in the request's status).
#[async_trait]
pub trait Checkpoint: Send + Sync + std::fmt::Debug {
    async fn save(&self, state: &AgentState);
}

/// What a planner returns. Mutations are only proposals: the controller
/// checks them against the guardrails and turns them into plan steps.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Markdown answer (what was found; what would change).
    pub answer: String,
    pub investigation: Vec<ToolCall>,
    pub mutations: Vec<Mutation>,
    pub usage: Option<Usage>,
    /// Short label for metrics (`list_pods`, `scale`, `help`…).
    pub operation: String,
    /// Problems worth a Warning event (the model called an unknown tool, the
    /// iteration cap was hit…), each once.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("planner unavailable: {0}")]
    Unavailable(String),
    #[error("planner failed: {0}")]
    Failed(String),
}

impl AgentError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AgentError::Unavailable(_))
    }
}

#[async_trait]
pub trait Planner: Send + Sync {
    /// Name for logs and status (`builtin`, `openai`).
    fn name(&self) -> &'static str;
    async fn plan(&self, input: &PlanInput, tools: &ReadTools) -> Result<Outcome, AgentError>;
}
