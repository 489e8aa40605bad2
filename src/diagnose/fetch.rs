//! The one place the diagnostician reads the cluster: one list per kind in one namespace, the
//! ConfigMaps by name only (metadata), Secrets never, and the last log lines of crashing
//! containers (redacted before anything sees them).

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, LogParams},
};

use super::Snapshot;
use crate::access::{Permission, redact};
use crate::tools::ToolError;

/// Log lines read per crashing container.
const LOG_LINES: i64 = 20;
/// Crashing containers whose logs are read (a namespace of crashing pods stays cheap).
const MAX_LOGS: usize = 5;

/// What a diagnosis reads, so the requester's RBAC is checked for every one of them.
pub fn permissions(namespace: &str) -> Vec<Permission> {
    let ns = |verb, group, resource| Permission::ns(verb, group, resource, namespace);
    vec![
        ns("list", "", "pods"),
        Permission {
            subresource: Some("log"),
            ..ns("get", "", "pods")
        },
        ns("list", "", "events"),
        ns("list", "", "services"),
        ns("list", "discovery.k8s.io", "endpointslices"),
        ns("list", "", "persistentvolumeclaims"),
        ns("list", "", "configmaps"),
        ns("list", "apps", "deployments"),
        ns("list", "apps", "replicasets"),
        ns("list", "batch", "jobs"),
        ns("list", "autoscaling", "horizontalpodautoscalers"),
    ]
}

async fn list<K>(client: &Client, ns: &str, what: &str) -> Result<Vec<K>, ToolError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| ToolError::from_kube(e, what, ns, "*"))?
        .items)
}

/// Reads one namespace for the analyzers.
pub async fn snapshot(client: &Client, ns: &str) -> Result<Snapshot, ToolError> {
    let (pods, deployments, replicasets, services, slices, pvcs, jobs, hpas, events) = tokio::try_join!(
        list::<Pod>(client, ns, "pods"),
        list::<Deployment>(client, ns, "deployments"),
        list::<ReplicaSet>(client, ns, "replicasets"),
        list::<Service>(client, ns, "services"),
        list::<EndpointSlice>(client, ns, "endpointslices"),
        list::<PersistentVolumeClaim>(client, ns, "persistentvolumeclaims"),
        list::<Job>(client, ns, "jobs"),
        list::<HorizontalPodAutoscaler>(client, ns, "horizontalpodautoscalers"),
        list::<Event>(client, ns, "events"),
    )?;
    // ConfigMaps by name only: a metadata list never carries their data.
    let configmaps = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list_metadata(&ListParams::default())
        .await
        .ok()
        .map(|l| l.items.iter().map(|m| m.name_any()).collect());
    let mut ready_endpoints: BTreeMap<String, usize> = BTreeMap::new();
    for s in &slices {
        let Some(svc) = s.labels().get("kubernetes.io/service-name").cloned() else {
            continue;
        };
        let n = s
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .count();
        *ready_endpoints.entry(svc).or_default() += n;
    }
    let mut snap = Snapshot {
        namespace: ns.to_string(),
        pods,
        deployments,
        replicasets,
        services,
        ready_endpoints,
        pvcs,
        jobs,
        hpas,
        events,
        configmaps,
        logs: BTreeMap::new(),
    };
    snap.logs = crash_logs(client, ns, &snap.pods).await;
    Ok(snap)
}

/// The last lines (previous instance first, else current) of containers that crashed.
async fn crash_logs(client: &Client, ns: &str, pods: &[Pod]) -> BTreeMap<String, String> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    let mut crashing: Vec<(String, String, bool)> = Vec::new();
    for p in pods {
        for c in p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
        {
            let terminated = c.state.as_ref().is_some_and(|s| s.terminated.is_some());
            if c.restart_count > 0 || terminated {
                crashing.push((p.name_any(), c.name.clone(), c.restart_count > 0));
            }
        }
    }
    crashing.truncate(MAX_LOGS);
    for (pod, container, restarted) in crashing {
        let lp = |previous| LogParams {
            container: Some(container.clone()),
            tail_lines: Some(LOG_LINES),
            limit_bytes: Some(crate::tools::LOG_LIMIT_BYTES),
            previous,
            ..Default::default()
        };
        let logs = match api.logs(&pod, &lp(restarted)).await {
            Ok(l) if !l.trim().is_empty() => Some(l),
            _ => api.logs(&pod, &lp(false)).await.ok(),
        };
        if let Some(l) = logs {
            out.insert(format!("{pod}/{container}"), redact(&l));
        }
    }
    out
}
