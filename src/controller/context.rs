//! What every reconcile shares: the [`Context`] (client, event publisher,
//! planner, settings, and the read-your-writes memo of our own status
//! writes), the operator's [`Config`], and the reconcile [`Error`] with its
//! metric label and retry delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::{Client, runtime::controller::Action};

use crate::agent::{AgentError, Planner};
use crate::api::AIRequest;
use crate::clusters::{ClusterError, Clusters, Member};
use crate::execute::{ExecError, FailPoint};
use crate::k8s::ToolError;
use crate::safety::Guardrails;
use crate::telemetry::{Events, metrics};

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
    /// Namespaces whose requests may read other namespaces (a platform team's). Requests
    /// elsewhere read only their own namespace and `spec.targetNamespace`: their answers are
    /// readable by everyone who can read requests in their namespace.
    pub cross_namespace_from: Vec<String>,
    /// Whose rights dry runs and steps use: the operator's ServiceAccount (after
    /// SubjectAccessReviews for the requester; the default) or the requester's own, by
    /// impersonation (`--execute-as requester`).
    pub execute_as: ExecuteAs,
    /// Namespace of the Secrets that register member clusters (`spec.cluster`); `None`:
    /// requests can only target the operator's own cluster.
    pub clusters_namespace: Option<String>,
}

/// Who the API server sees on dry runs and plan steps.
#[derive(Clone, Debug, Default)]
pub enum ExecuteAs {
    /// The operator's ServiceAccount, after SubjectAccessReviews for the requester.
    #[default]
    ServiceAccount,
    /// The requester, impersonated with the operator's credentials (kept here).
    Requester(Box<kube::Config>),
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
            cross_namespace_from: vec![],
            quota: None,
            execute_as: ExecuteAs::ServiceAccount,
            clusters_namespace: None,
        }
    }
}

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub events: Events,
    pub planner: Arc<dyn Planner>,
    pub config: Config,
    /// Our latest status write per request (shared with planning checkpoints).
    pub written: Arc<WriteMemo>,
    /// The approval policies' watch caches (`None`: their CRDs are not readable).
    pub policies: Option<super::policies::PolicyCache>,
    /// The registered member clusters (`None`: multi-cluster is off).
    pub clusters: Option<Clusters>,
}

/// Where a request's tools, dry runs and steps act: the operator's own cluster, or a member.
#[derive(Clone, Debug, Default)]
pub struct Place {
    pub member: Option<Arc<Member>>,
}

impl Place {
    pub fn cluster(&self) -> Option<&str> {
        self.member.as_ref().map(|m| m.name.as_str())
    }
}

impl Context {
    /// The client for dry runs and steps of `requester`'s plans: the operator's own, or one
    /// impersonating the requester under `--execute-as requester` (which then needs one).
    pub fn acting_client(
        &self,
        place: &Place,
        requester: Option<&crate::api::Requester>,
    ) -> Result<Client, ToolError> {
        match (&self.config.execute_as, requester) {
            (ExecuteAs::ServiceAccount, _) => Ok(self.client_in(place)),
            (ExecuteAs::Requester(own), Some(who)) => {
                let own = place.member.as_ref().map_or(own.as_ref(), |m| &m.config);
                crate::access::impersonating(own, who).map_err(ToolError::Kube)
            }
            (ExecuteAs::Requester(_), None) => Err(ToolError::Forbidden(
                "--execute-as requester: this request has no requester identity to act as".into(),
            )),
        }
    }
}

impl Context {
    /// The operator's own client where `place` is.
    pub fn client_in(&self, place: &Place) -> Client {
        place
            .member
            .as_ref()
            .map_or_else(|| self.client.clone(), |m| m.client.clone())
    }

    /// Where a request with `spec.cluster = cluster` acts.
    pub async fn place(&self, cluster: Option<&str>) -> Result<Place, ClusterError> {
        let Some(name) = cluster else {
            return Ok(Place::default());
        };
        let Some(clusters) = &self.clusters else {
            return Err(ClusterError::Disabled(name.to_string()));
        };
        Ok(Place {
            member: Some(clusters.get(name).await?),
        })
    }

    /// The guardrails where `place` is: a member's own protected namespaces when its
    /// registration names them.
    pub fn guardrails_in(&self, place: &Place) -> crate::safety::Guardrails {
        let mut g = self.config.guardrails.clone();
        if let Some(p) = place
            .member
            .as_ref()
            .and_then(|m| m.protected_namespaces.clone())
        {
            g.protected_namespaces = p;
        }
        g
    }

    /// The event publisher for a plan acting at `place` (events on touched objects land
    /// where they live).
    pub fn events_in(&self, place: &Place) -> Events {
        match &place.member {
            Some(m) => self.events.with_targets_in(m.client.clone()),
            None => self.events.clone(),
        }
    }
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
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Agent(_) => "agent",
            Error::Exec(ExecError::StillVerifying { .. }) => "verifying",
            Error::Exec(_) => "execute",
            Error::Tool(_) => "tool",
            Error::Cluster(_) => "cluster",
        }
    }

    pub(super) fn retry_after(&self) -> Duration {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => Duration::from_millis(200),
            Error::Exec(ExecError::StillVerifying { .. }) => Duration::from_secs(2),
            Error::Kube(_) | Error::Exec(_) => Duration::from_secs(2),
            Error::Agent(e) if e.is_transient() => Duration::from_secs(5),
            Error::Tool(e) if e.is_transient() => Duration::from_secs(5),
            Error::Cluster(e) if e.is_transient() => Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }
}

pub(super) fn error_policy(req: Arc<AIRequest>, err: &Error, _ctx: Arc<Context>) -> Action {
    let name = kube::ResourceExt::name_any(req.as_ref());
    if let Error::Exec(ExecError::StillVerifying { .. }) = err {
        // Not a failure: a rollout in progress, looked at again shortly.
        tracing::debug!(request = %name, what = %err, "verification continues");
        return Action::requeue(err.retry_after());
    }
    metrics()
        .reconcile_errors
        .with_label_values(&[err.label()])
        .inc();
    tracing::warn!(request = %name, error = %err, "reconcile failed");
    Action::requeue(err.retry_after())
}

/// The resourceVersion of our latest status write per request uid, until the
/// watch cache has caught up with it (read-your-writes). One per controller:
/// it lives in the [`Context`], not in a process-wide static.
#[derive(Debug, Default)]
pub struct WriteMemo(Mutex<HashMap<String, String>>);

impl WriteMemo {
    /// Remembers that we wrote `uid` at resourceVersion `rv`.
    pub fn record(&self, uid: String, rv: String) {
        if let Ok(mut w) = self.0.lock() {
            w.insert(uid, rv);
        }
    }

    /// Whether the cached request may predate our own latest status write (then
    /// the reconcile reads it fresh: acting on the stale copy would, e.g., plan
    /// the same input twice). Forgets writes the cache has caught up with.
    pub fn cache_is_behind(&self, req: &AIRequest) -> bool {
        let (Some(uid), Some(rv)) = (&req.metadata.uid, &req.metadata.resource_version) else {
            return false;
        };
        let Ok(mut w) = self.0.lock() else {
            return false;
        };
        let Some(ours) = w.get(uid) else {
            return false;
        };
        match (rv.parse::<u64>(), ours.parse::<u64>()) {
            (Ok(cached), Ok(ours)) if cached >= ours => {
                w.remove(uid);
                false
            }
            _ => rv != ours,
        }
    }
}
