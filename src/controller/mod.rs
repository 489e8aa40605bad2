//! The reconciler. One kube-runtime `Controller` over `AIRequest`s that owns
//! their `AIPlan`s: a request's planning, its plan's approval and execution
//! all run in the request's reconcile, which kube-runtime never runs twice at
//! once for the same object — so no two tasks ever drive one plan.
//!
//! Watches are cheap: both streams pass only generation changes (spec edits,
//! approvals, rejections), not our own status writes.

mod answer;
mod conditions;
mod context;
mod decide;
pub mod leader;
mod planning;
mod policies;
mod request;
mod status;

pub use context::{Config, Context, Error, ExecuteAs, WriteMemo};

use std::sync::Arc;

use futures::StreamExt;
use kube::{
    Api, Client,
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        predicates, reflector,
        watcher::{self, Config as WatcherConfig},
    },
};

use crate::agent::Planner;
use crate::api::{AIPlan, AIRequest};
use crate::telemetry::{Events, Ready};
use context::error_policy;

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
    let (policies, policy_task) =
        match policies::start(client.clone(), config.namespace.clone()).await {
            Some((cache, task)) => (Some(cache), Some(task)),
            None => (None, None),
        };
    let (clusters, clusters_task) = match &config.clusters_namespace {
        Some(ns) => {
            let (c, t) = crate::clusters::Clusters::start(client.clone(), ns);
            (Some(c), Some(t))
        }
        None => (None, None),
    };
    let ctx = Arc::new(Context {
        client,
        events,
        planner,
        config,
        written: Default::default(),
        policies,
        clusters,
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
    for t in [policy_task, clusters_task].into_iter().flatten() {
        t.abort();
    }
    ready.set(false);
    tracing::info!("controller stopped");
    Ok(())
}
