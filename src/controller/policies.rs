//! Approval policies in the controller: reading the ones that apply to a plan
//! (with the gate's verdict for each approval on it), and a small reconciler
//! that validates every policy and reports it in a `Ready` condition with
//! `observedGeneration` (`kubectl get aiapprovalpolicies` shows it).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{Controller, controller::Action, reflector::Store, watcher::Config as WatcherConfig},
};
use serde_json::json;

use super::context::{Context, Error};
use super::decide::policy::PolicyView;
use super::request::gate;
use crate::api::{
    AIApprovalPolicy, AIClusterApprovalPolicy, AIPlan, AIRequest, ApprovalPolicyStatus,
    ChangeWindow, MANAGER, PolicySnapshot, READY, condition, conditions_eq,
};
use crate::approval::{self, Candidate, approvals_of, effective, stricter};
use crate::safety::authz::{APPROVED_BY_ANNOTATION, REQUESTER_ANNOTATION, identity_from};

/// The approval policies as the policy controllers' watch caches hold them: the plan gate
/// reads them here instead of listing them from the API server on every decision.
#[derive(Clone)]
pub struct PolicyCache {
    namespaced: Store<AIApprovalPolicy>,
    cluster: Store<AIClusterApprovalPolicy>,
    /// Namespaced policies are cached for this namespace only (all when `None`).
    namespace: Option<String>,
}

impl PolicyCache {
    /// Both caches, once each has been filled by its first complete list (never an empty
    /// "no policies" answer from a cache still starting); `None` when a watch has ended.
    async fn ready(&self) -> Option<&Self> {
        // A watch that cannot start (e.g. its rights were taken away) must not hold the gate:
        // after a short wait the caller reads the API server instead.
        let both = async {
            self.namespaced.wait_until_ready().await.is_ok()
                && self.cluster.wait_until_ready().await.is_ok()
        };
        let ok = tokio::time::timeout(Duration::from_secs(5), both)
            .await
            .unwrap_or(false);
        ok.then_some(self)
    }

    /// Whether any approval policy exists: only then does a new plan need a decision right
    /// after it is offered (to record the rules in force, or to be pre-approved). Without
    /// policies a plan costs no extra reconcile and no policy reads.
    pub fn any(&self) -> bool {
        !self.cluster.state().is_empty() || !self.namespaced.state().is_empty()
    }
}

fn cloned<K: Clone>(items: Vec<Arc<K>>) -> Vec<K> {
    items.into_iter().map(|p| (*p).clone()).collect()
}

/// The cluster policies: from the cache when it is ready, else from the API server.
async fn cluster_policies(ctx: &Context) -> Result<Vec<AIClusterApprovalPolicy>, Error> {
    if let Some(c) = &ctx.policies
        && let Some(c) = c.ready().await
    {
        return Ok(cloned(c.cluster.state()));
    }
    list(Api::<AIClusterApprovalPolicy>::all(ctx.client.clone())).await
}

/// The policies of namespace `n`: from the cache when it covers `n` and is ready.
async fn namespace_policies(ctx: &Context, n: &str) -> Result<Vec<AIApprovalPolicy>, Error> {
    if let Some(c) = &ctx.policies
        && c.namespace.as_deref().is_none_or(|w| w == n)
        && let Some(c) = c.ready().await
    {
        return Ok(cloned(
            c.namespaced
                .state_filter(|p| p.namespace().as_deref() == Some(n)),
        ));
    }
    list(Api::<AIApprovalPolicy>::namespaced(ctx.client.clone(), n)).await
}

/// Lists one kind; a missing CRD (not installed yet) is no policy.
async fn list<K>(api: Api<K>) -> Result<Vec<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(vec![]),
        Err(e) => Err(e.into()),
    }
}

/// The rules in force for `plan` (the stricter of its recorded snapshot and the
/// current policies of its namespace and of every namespace its steps act in)
/// and each of its approvals with the gate's verdict for the approver.
pub(super) async fn view(
    ctx: &Context,
    req: &AIRequest,
    plan: &AIPlan,
) -> Result<PolicyView, Error> {
    let ns = plan.namespace().unwrap_or_default();
    let ps = plan.status.clone().unwrap_or_default();
    let cluster = cluster_policies(ctx).await?;
    let mut namespaces: BTreeSet<String> = ps
        .steps
        .iter()
        .map(|s| s.target.namespace.clone())
        .collect();
    namespaces.insert(ns.clone());
    let mut current: Option<PolicySnapshot> = None;
    for n in &namespaces {
        let local = namespace_policies(ctx, n).await?;
        let risk = ps.risk.unwrap_or_default();
        if let Some(e) = effective(&cluster, &local, n, risk, &ps.steps) {
            current = Some(match current {
                Some(c) => stricter(&c, &e),
                None => e,
            });
        }
    }
    let rules = match (ps.policy.as_ref(), current) {
        (Some(a), Some(b)) => Some(stricter(a, &b)),
        (Some(a), None) => Some(a.clone()),
        (None, b) => b,
    };
    let requester = identity_from(req.metadata.annotations.as_ref(), REQUESTER_ANNOTATION);
    if rules.is_none() && plan.spec.approvals.is_empty() {
        return Ok(PolicyView {
            rules,
            candidates: vec![],
            requester,
        });
    }
    let id = ps.plan_id.clone().unwrap_or_default();
    let found = approvals_of(
        plan,
        req,
        identity_from(plan.metadata.annotations.as_ref(), APPROVED_BY_ANNOTATION),
        identity_from(req.metadata.annotations.as_ref(), APPROVED_BY_ANNOTATION),
    );
    let mut verdicts: HashMap<String, Result<(), String>> = HashMap::new();
    let mut candidates = vec![];
    for (who, source, plan_id) in found {
        let gate_verdict = match &who {
            Some(w) if plan_id == id => match verdicts.get(&w.username) {
                Some(v) => v.clone(),
                None => {
                    let v = gate(ctx, req, plan, Some(w)).await?;
                    verdicts.insert(w.username.clone(), v.clone());
                    v
                }
            },
            _ => Err("not checked".into()),
        };
        candidates.push(Candidate {
            who,
            source,
            plan_id,
            gate: gate_verdict,
        });
    }
    Ok(PolicyView {
        rules,
        candidates,
        requester,
    })
}

/// Why a policy's windows are invalid, if they are.
fn invalid(windows: &[ChangeWindow]) -> Option<String> {
    windows
        .iter()
        .find_map(|w| approval::window::Window::parse(w).err())
}

/// The status of a policy with these windows at `generation`.
fn policy_status(
    prev: Option<&ApprovalPolicyStatus>,
    windows: &[ChangeWindow],
    generation: Option<i64>,
) -> ApprovalPolicyStatus {
    let prev_c = prev.map(|p| p.conditions.clone()).unwrap_or_default();
    let (ok, why, msg) = match invalid(windows) {
        None => (true, "Valid", "every change window parses".to_string()),
        Some(e) => (
            false,
            "InvalidWindow",
            format!("{e}; plans under this policy never find its window open"),
        ),
    };
    ApprovalPolicyStatus {
        conditions: vec![condition(
            &prev_c,
            READY,
            ok,
            why,
            &msg,
            generation,
            Timestamp::now(),
        )],
        observed_generation: generation,
    }
}

async fn write_status<K>(
    api: Api<K>,
    name: &str,
    kind: &str,
    prev: Option<&ApprovalPolicyStatus>,
    next: ApprovalPolicyStatus,
) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if let Some(p) = prev
        && p.observed_generation == next.observed_generation
        && conditions_eq(&p.conditions, &next.conditions)
    {
        return Ok(());
    }
    let patch = json!({"apiVersion": "ai.kubilitics.io/v1alpha1", "kind": kind, "status": next});
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

async fn reconcile_ns(
    p: Arc<AIApprovalPolicy>,
    client: Arc<Client>,
) -> Result<Action, kube::Error> {
    let next = policy_status(p.status.as_ref(), &p.spec.windows, p.metadata.generation);
    let api =
        Api::<AIApprovalPolicy>::namespaced((*client).clone(), &p.namespace().unwrap_or_default());
    write_status(
        api,
        &p.name_any(),
        "AIApprovalPolicy",
        p.status.as_ref(),
        next,
    )
    .await?;
    Ok(Action::await_change())
}

async fn reconcile_cluster(
    p: Arc<AIClusterApprovalPolicy>,
    client: Arc<Client>,
) -> Result<Action, kube::Error> {
    let next = policy_status(p.status.as_ref(), &p.spec.windows, p.metadata.generation);
    let api = Api::<AIClusterApprovalPolicy>::all((*client).clone());
    write_status(
        api,
        &p.name_any(),
        "AIClusterApprovalPolicy",
        p.status.as_ref(),
        next,
    )
    .await?;
    Ok(Action::await_change())
}

fn retry<K>(_: Arc<K>, e: &kube::Error, _: Arc<Client>) -> Action {
    tracing::debug!(error = %e, "approval policy status");
    Action::requeue(Duration::from_secs(5))
}

/// Starts the approval policies' status reconcilers (namespaced ones in `namespace` when the
/// operator watches one namespace), and returns their watch caches for the plan gate, with the
/// task running them until shutdown. `None` when the CRDs are not readable.
pub async fn start(
    client: Client,
    namespace: Option<String>,
) -> Option<(PolicyCache, tokio::task::JoinHandle<()>)> {
    let ns_api: Api<AIApprovalPolicy> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster_api = Api::<AIClusterApprovalPolicy>::all(client.clone());
    if ns_api.list(&ListParams::default().limit(1)).await.is_err()
        || cluster_api
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
    {
        tracing::warn!(
            "approval policy CRDs not readable; their statuses are not reported and plans read policies from the API"
        );
        return None;
    }
    let client = Arc::new(client);
    let a = Controller::new(ns_api, WatcherConfig::default());
    let b = Controller::new(cluster_api, WatcherConfig::default());
    let cache = PolicyCache {
        namespaced: a.store(),
        cluster: b.store(),
        namespace,
    };
    let a = a
        .shutdown_on_signal()
        .run(reconcile_ns, retry, client.clone())
        .for_each(|_| async {});
    let b = b
        .shutdown_on_signal()
        .run(reconcile_cluster, retry, client)
        .for_each(|_| async {});
    let task = tokio::spawn(async move {
        futures::join!(a, b);
    });
    Some((cache, task))
}
