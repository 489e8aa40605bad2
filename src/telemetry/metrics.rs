//! Prometheus metrics with the seed's names and buckets.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub llm_tokens: IntCounterVec,
    pub llm_latency: HistogramVec,
    /// Model calls per planned request (the LLM planner's rounds).
    pub llm_calls_per_request: HistogramVec,
    pub tool_executions: IntCounterVec,
    pub plans: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub kube_api_requests: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("kubilitics_ai_requests_total", "Total AI requests"),
            &["operation_type", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "kubilitics_ai_request_duration_seconds",
                "AI request duration (planning)",
            )
            .buckets(vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            &["operation_type"],
        )
        .expect("valid metric");
        let llm_tokens = IntCounterVec::new(
            Opts::new("kubilitics_llm_tokens_total", "Total LLM tokens used"),
            &["model", "direction"],
        )
        .expect("valid metric");
        let llm_latency = HistogramVec::new(
            HistogramOpts::new("kubilitics_llm_latency_seconds", "LLM API latency"),
            &["model"],
        )
        .expect("valid metric");
        let llm_calls_per_request = HistogramVec::new(
            HistogramOpts::new(
                "kubilitics_llm_calls_per_request",
                "Model calls the LLM planner made for one request",
            )
            .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 10.0]),
            &["model"],
        )
        .expect("valid metric");
        let tool_executions = IntCounterVec::new(
            Opts::new("kubilitics_tool_executions_total", "Total tool executions"),
            &["tool_name", "status"],
        )
        .expect("valid metric");
        let plans = IntCounterVec::new(
            Opts::new("kubilitics_ai_plans_total", "Plans that reached a phase"),
            &["phase"],
        )
        .expect("valid metric");
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "kubilitics_ai_reconcile_errors_total",
                "Reconcile errors by category",
            ),
            &["error"],
        )
        .expect("valid metric");
        let kube_api_requests = IntCounterVec::new(
            Opts::new(
                "kubilitics_kube_api_requests_total",
                "Kubernetes API calls made by the operator",
            ),
            &["verb", "resource", "dry_run"],
        )
        .expect("valid metric");
        for c in [
            &kube_api_requests,
            &requests,
            &llm_tokens,
            &tool_executions,
            &plans,
            &reconcile_errors,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        for h in [&request_duration, &llm_latency, &llm_calls_per_request] {
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
        }
        Self {
            registry,
            requests,
            request_duration,
            llm_tokens,
            llm_latency,
            llm_calls_per_request,
            tool_executions,
            plans,
            reconcile_errors,
            kube_api_requests,
        }
    }

    pub fn tool_executions(&self, tool: &str, status: &str) {
        self.tool_executions
            .with_label_values(&[tool, status])
            .inc();
    }

    pub fn plan_phase(&self, phase: &str) {
        self.plans.with_label_values(&[phase]).inc();
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
