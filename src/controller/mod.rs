//! The reconciler. One kube-runtime `Controller` over `AIRequest`s that owns
//! their `AIPlan`s: a request's planning, its plan's approval and execution
//! all run in the request's reconcile, which kube-runtime never runs twice at
//! once for the same object — so no two tasks ever drive one plan.
//!
//! Watches are cheap: both streams pass only generation changes (spec edits,
//! approvals, rejections), not our own status writes.

pub mod leader;
mod request;
mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerConfig},
        predicates, reflector,
        watcher::{self, Config as WatcherConfig},
    },
};

use crate::agent::{AgentError, Planner};
use crate::api::{AIPlan, AIRequest};
use crate::execute::{ExecError, FailPoint};
use crate::safety::Guardrails;
use crate::telemetry::{Events, Ready, metrics};
use crate::tools::ToolError;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    /// How long a plan waits for approval before it expires.
    pub plan_ttl: Duration,
    pub guardrails: Guardrails,
    pub failpoint: FailPoint,
    /// Reporting instance for events (pod name).
    pub instance: Option<String>,
    /// Requests reconciled in parallel.
    pub concurrency: u16,
    /// Delete finished requests (and, through owner references, their plans)
    /// this long after they finished. `None` keeps them (the default: GitOps
    /// tools would re-create deleted requests from git).
    pub finished_ttl: Option<Duration>,
    /// Refuse to plan or execute without a requester and an approver identity
    /// stamped at admission (the default). Off only in `--insecure-dev-mode`:
    /// then requests without an identity run with the operator's own RBAC.
    pub require_identity: bool,
    /// The requester may not approve their own plan.
    pub separation_of_duties: bool,
    /// Usernames whose approvals stand for a reviewed commit (GitOps sync
    /// accounts): exempt from separation of duties, not from any other check.
    pub gitops_identities: Vec<String>,
    /// Per-requester rate limit and LLM token budget (off when `None`).
    pub quota: Option<crate::safety::quota::QuotaConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            namespace: None,
            plan_ttl: Duration::from_secs(3600),
            guardrails: Guardrails::default(),
            failpoint: FailPoint::None,
            instance: None,
            concurrency: 16,
            finished_ttl: None,
            require_identity: true,
            separation_of_duties: true,
            gitops_identities: vec![],
            quota: None,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub events: Events,
    pub planner: Arc<dyn Planner>,
    pub config: Config,
}

/// Reconcile errors, each with a metric label and a retry delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Tool(#[from] ToolError),
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Agent(_) => "agent",
            Error::Exec(_) => "execute",
            Error::Tool(_) => "tool",
        }
    }

    fn retry_after(&self) -> Duration {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
            Error::Kube(_) | Error::Exec(_) => Duration::from_secs(2),
            Error::Agent(e) if e.is_transient() => Duration::from_secs(5),
            Error::Tool(e) if e.is_transient() => Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }
}

fn error_policy(req: Arc<AIRequest>, err: &Error, _ctx: Arc<Context>) -> Action {
    metrics()
        .reconcile_errors
        .with_label_values(&[err.label()])
        .inc();
    tracing::warn!(request = %kube::ResourceExt::name_any(req.as_ref()), error = %err, "reconcile failed");
    Action::requeue(err.retry_after())
}

/// Runs the controller until a shutdown signal.
pub async fn run(
    client: Client,
    config: Config,
    planner: Arc<dyn Planner>,
    ready: Ready,
) -> anyhow::Result<()> {
    let (requests, plans): (Api<AIRequest>, Api<AIPlan>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    if let Err(e) = requests
        .list(&kube::api::ListParams::default().limit(1))
        .await
    {
        anyhow::bail!(
            "cannot list AIRequests ({e}); are the CRDs installed? Run `kubilitics-ai crd | kubectl apply -f -`"
        );
    }
    let events = Events::new(client.clone(), config.instance.clone());
    let concurrency = config.concurrency;
    let ctx = Arc::new(Context {
        client,
        events,
        planner,
        config,
    });
    let (reader, writer) = reflector::store();
    let request_stream = watcher::watcher(requests, WatcherConfig::default())
        .default_backoff()
        // The cache keeps what reconciles read: not managedFields or a
        // last-applied copy of the object (a third of a request's size).
        .modify(|r: &mut AIRequest| {
            r.metadata.managed_fields = None;
            if let Some(a) = r.metadata.annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer)
        // Ready once the request cache holds every existing request.
        .inspect({
            let ready = ready.clone();
            move |ev| {
                if let Ok(watcher::Event::InitDone) = ev {
                    ready.set(true);
                    tracing::info!("request cache synced; ready");
                }
            }
        })
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());
    // Plans are created by the reconcile itself with an empty spec (generation
    // 1): only a spec change by a person (approval, rejection) needs a reconcile.
    let plan_stream = watcher::watcher(plans, WatcherConfig::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default())
        .filter(|p| {
            futures::future::ready(
                p.as_ref()
                    .map_or(true, |p| p.metadata.generation.unwrap_or(0) > 1),
            )
        });
    tracing::info!("controller started");
    Controller::for_stream(request_stream, reader)
        .owns_stream(plan_stream)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(request::reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
    ready.set(false);
    tracing::info!("controller stopped");
    Ok(())
}
