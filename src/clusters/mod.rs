//! Member clusters: registered as Secrets in the operator's namespace, labelled
//! `ai.kubilitics.io/cluster: "true"`, each holding a kubeconfig, the way Cluster API
//! already stores them (`<name>-kubeconfig`, key `value`; key `kubeconfig` works too).
//!
//! The registry watches those Secrets (one cache, metadata and data) and builds one
//! client per member lazily, on the first request that targets it; a changed Secret
//! builds a new client, a deleted one drops it. A kubeconfig may only carry inline
//! credentials: file paths, `exec` and auth providers are refused, so that whoever can
//! write a Secret there can neither run a command in the operator's pod nor make it send
//! its own ServiceAccount token to another server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};

/// The label that registers a Secret as a member cluster (value `"true"`).
pub const CLUSTER_LABEL: &str = "ai.kubilitics.io/cluster";
/// Optional: the cluster's name when it is not the Secret's name (minus `-kubeconfig`).
pub const CLUSTER_NAME_ANNOTATION: &str = "ai.kubilitics.io/cluster-name";
/// Optional: the member's protected namespaces (comma-separated), instead of the operator's.
pub const PROTECTED_ANNOTATION: &str = "ai.kubilitics.io/protected-namespaces";
/// The RBAC resource a requester needs verb `use` on (resourceName = cluster name).
pub const CLUSTERS_RESOURCE: &str = "clusters";

/// A member cluster, ready to use.
pub struct Member {
    pub name: String,
    /// The operator's client in the member (its credentials from the Secret).
    pub client: Client,
    /// Those credentials, for impersonation under `--execute-as requester`.
    pub config: kube::Config,
    /// The member's protected namespaces when its Secret names them.
    pub protected_namespaces: Option<Vec<String>>,
    /// `namespace/name` of the Secret it was built from.
    pub secret: String,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// Why a member cluster cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error(
        "no cluster named \"{0}\" is registered (a Secret labelled ai.kubilitics.io/cluster=true in the operator's namespace)"
    )]
    Unknown(String),
    #[error("cluster \"{0}\": its Secret {1} holds no usable kubeconfig: {2}")]
    Invalid(String, String, String),
    #[error(
        "cluster \"{0}\": this operator runs without member clusters (no --clusters-namespace)"
    )]
    Disabled(String),
    #[error("the registry of member clusters is not available yet: {0}")]
    NotReady(String),
}

impl ClusterError {
    /// Worth retrying (the registry is still starting); the others need a person.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::NotReady(_))
    }
}

/// Built members by cluster name, with the resourceVersion of the Secret each came from.
type Built = Arc<Mutex<HashMap<String, (String, Arc<Member>)>>>;

/// The member clusters registered in one namespace.
#[derive(Clone)]
pub struct Clusters {
    store: Store<Secret>,
    built: Built,
    namespace: String,
}

impl Clusters {
    /// Starts watching the registration Secrets in `namespace`.
    pub fn start(client: Client, namespace: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let api: Api<Secret> = Api::namespaced(client, namespace);
        let (store, writer) = reflector::store();
        let cfg = watcher::Config::default().labels(&format!("{CLUSTER_LABEL}=true"));
        let task = tokio::spawn(async move {
            watcher::watcher(api, cfg)
                .default_backoff()
                .modify(|s: &mut Secret| s.metadata.managed_fields = None)
                .reflect(writer)
                .for_each(|ev| async move {
                    if let Err(e) = ev {
                        tracing::warn!(error = %e, "watching member cluster Secrets");
                    }
                })
                .await;
        });
        (
            Self {
                store,
                built: Default::default(),
                namespace: namespace.to_string(),
            },
            task,
        )
    }

    async fn ready(&self) -> Result<(), ClusterError> {
        match tokio::time::timeout(Duration::from_secs(5), self.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(ClusterError::NotReady(format!(
                "cannot read Secrets labelled {CLUSTER_LABEL}=true in namespace {}",
                self.namespace
            ))),
        }
    }

    /// The member `name`, its client built on first use (again when its Secret changed).
    pub async fn get(&self, name: &str) -> Result<Arc<Member>, ClusterError> {
        self.ready().await?;
        let secrets: Vec<Arc<Secret>> = self
            .store
            .state()
            .into_iter()
            .filter(|s| cluster_name(s) == name)
            .collect();
        let secret = match secrets.as_slice() {
            [one] => one.clone(),
            [] => {
                self.forget(name);
                return Err(ClusterError::Unknown(name.to_string()));
            }
            many => {
                let names: Vec<String> = many.iter().map(|s| s.name_any()).collect();
                return Err(ClusterError::Invalid(
                    name.to_string(),
                    names.join(", "),
                    "more than one Secret registers this cluster name".into(),
                ));
            }
        };
        let version = secret.resource_version().unwrap_or_default();
        if let Ok(b) = self.built.lock()
            && let Some((v, m)) = b.get(name)
            && *v == version
        {
            return Ok(m.clone());
        }
        let member = Arc::new(build(name, &self.namespace, &secret).await?);
        if let Ok(mut b) = self.built.lock() {
            b.insert(name.to_string(), (version, member.clone()));
        }
        tracing::info!(cluster = name, secret = %member.secret, "member cluster client built");
        Ok(member)
    }

    fn forget(&self, name: &str) {
        if let Ok(mut b) = self.built.lock()
            && b.remove(name).is_some()
        {
            tracing::info!(
                cluster = name,
                "member cluster Secret gone: its client is dropped"
            );
        }
    }
}

/// One registered cluster and whether it answers, as `kubectl kubilitics clusters` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    pub name: String,
    pub secret: String,
    pub server: String,
    /// `Reachable (v1.x)`, or why not.
    pub health: String,
}

/// Every registration in `namespace`, each probed (`/version`, 5 s) with its own kubeconfig.
pub async fn health(client: Client, namespace: &str) -> Result<Vec<Health>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let list = api
        .list(&kube::api::ListParams::default().labels(&format!("{CLUSTER_LABEL}=true")))
        .await?;
    let mut out = vec![];
    for s in &list.items {
        let name = cluster_name(s);
        let server = kubeconfig_text(s)
            .and_then(|t| Kubeconfig::from_yaml(&t).ok())
            .and_then(|k| server_of(&k))
            .unwrap_or_default();
        let health = match build(&name, namespace, s).await {
            Err(e) => format!("Invalid: {e}"),
            Ok(m) => {
                match tokio::time::timeout(Duration::from_secs(5), m.client.apiserver_version())
                    .await
                {
                    Ok(Ok(v)) => format!("Reachable ({})", v.git_version),
                    Ok(Err(e)) => format!("Unreachable: {e}"),
                    Err(_) => "Unreachable: no answer within 5s".into(),
                }
            }
        };
        out.push(Health {
            name,
            secret: format!("{namespace}/{}", s.name_any()),
            server,
            health,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A cluster's name: the annotation, else the Secret's name without `-kubeconfig`.
pub fn cluster_name(s: &Secret) -> String {
    if let Some(n) = s.annotations().get(CLUSTER_NAME_ANNOTATION) {
        return n.clone();
    }
    let name = s.name_any();
    name.strip_suffix("-kubeconfig")
        .unwrap_or(&name)
        .to_string()
}

fn kubeconfig_text(s: &Secret) -> Option<String> {
    let data = s.data.as_ref()?;
    let bytes = data.get("value").or_else(|| data.get("kubeconfig"))?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn server_of(k: &Kubeconfig) -> Option<String> {
    let ctx = k.current_context.as_ref()?;
    let c = k
        .contexts
        .iter()
        .find(|c| &c.name == ctx)?
        .context
        .as_ref()?;
    k.clusters
        .iter()
        .find(|n| n.name == c.cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()
}

async fn build(name: &str, ns: &str, secret: &Secret) -> Result<Member, ClusterError> {
    let where_ = format!("{ns}/{}", secret.name_any());
    let invalid = |why: String| ClusterError::Invalid(name.to_string(), where_.clone(), why);
    let text = kubeconfig_text(secret)
        .ok_or_else(|| invalid("no key `value` (Cluster API) or `kubeconfig`".into()))?;
    let kc = Kubeconfig::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    inline_only(&kc).map_err(invalid)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(e.to_string()))?;
    let client = Client::try_from(config.clone()).map_err(|e| invalid(e.to_string()))?;
    Ok(Member {
        name: name.to_string(),
        client,
        config,
        protected_namespaces: protected_namespaces(secret.annotations()),
        secret: where_,
    })
}

/// The member's protected namespaces from its Secret's annotation (`None`: not set).
pub fn protected_namespaces(a: &BTreeMap<String, String>) -> Option<Vec<String>> {
    a.get(PROTECTED_ANNOTATION).map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
}

/// Refuses what would make the operator run a program or read its own files.
pub fn inline_only(k: &Kubeconfig) -> Result<(), String> {
    for c in &k.clusters {
        if let Some(cl) = &c.cluster
            && cl.certificate_authority.is_some()
        {
            return Err(format!(
                "cluster {}: certificate-authority is a file path; use certificate-authority-data",
                c.name
            ));
        }
    }
    for a in &k.auth_infos {
        let Some(u) = &a.auth_info else { continue };
        let refused = [
            (u.exec.is_some(), "exec (runs a command)"),
            (u.auth_provider.is_some(), "auth-provider"),
            (u.token_file.is_some(), "tokenFile (a file path)"),
            (
                u.client_certificate.is_some(),
                "client-certificate (a file path)",
            ),
            (u.client_key.is_some(), "client-key (a file path)"),
        ];
        if let Some((_, what)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(format!(
                "user {}: {what} is not accepted; only inline credentials (token, client-certificate-data/client-key-data)",
                a.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    const GOOD: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: m
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: "Zm9v"}
users:
- name: u
  user: {token: abc}
contexts:
- name: c
  context: {cluster: m, user: u}
current-context: c
"#;

    fn kc(s: &str) -> Kubeconfig {
        Kubeconfig::from_yaml(s).unwrap()
    }

    #[test]
    fn only_inline_credentials_are_accepted() {
        assert_eq!(inline_only(&kc(GOOD)), Ok(()));
        for (bad, what) in [
            (
                "user: {token: abc}",
                "user: {exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}}",
            ),
            (
                "user: {token: abc}",
                "user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}",
            ),
            (
                "user: {token: abc}",
                "user: {client-certificate: /etc/x.crt, client-key-data: Zm9v}",
            ),
            (
                "user: {token: abc}",
                "user: {client-certificate-data: Zm9v, client-key: /etc/x.key}",
            ),
            (
                "user: {token: abc}",
                "user: {auth-provider: {name: gcp, config: {}}}",
            ),
            (
                "certificate-authority-data: \"Zm9v\"",
                "certificate-authority: /etc/ca.crt",
            ),
        ] {
            let text = GOOD.replace(bad, what);
            assert_ne!(text, GOOD);
            assert!(inline_only(&kc(&text)).is_err(), "{what}");
        }
    }

    #[test]
    fn names_come_from_the_annotation_or_the_cluster_api_secret_name() {
        let mut s = Secret::default();
        s.metadata.name = Some("prod-eu-kubeconfig".into());
        assert_eq!(cluster_name(&s), "prod-eu");
        s.metadata.name = Some("prod-us".into());
        assert_eq!(cluster_name(&s), "prod-us");
        s.metadata.annotations = Some(BTreeMap::from([(
            CLUSTER_NAME_ANNOTATION.to_string(),
            "edge".to_string(),
        )]));
        assert_eq!(cluster_name(&s), "edge");
    }

    #[test]
    fn the_kubeconfig_is_read_from_value_or_kubeconfig() {
        let mut s = Secret::default();
        assert_eq!(kubeconfig_text(&s), None);
        s.data = Some(BTreeMap::from([(
            "kubeconfig".to_string(),
            ByteString(GOOD.as_bytes().to_vec()),
        )]));
        assert_eq!(kubeconfig_text(&s).as_deref(), Some(GOOD));
        s.data = Some(BTreeMap::from([(
            "value".to_string(),
            ByteString(b"x".to_vec()),
        )]));
        assert_eq!(kubeconfig_text(&s).as_deref(), Some("x"));
        assert_eq!(
            server_of(&kc(GOOD)).as_deref(),
            Some("https://127.0.0.1:6443")
        );
    }

    #[test]
    fn protected_namespaces_are_a_comma_list() {
        let a = BTreeMap::from([(
            PROTECTED_ANNOTATION.to_string(),
            " kube-system, payments ,,".to_string(),
        )]);
        assert_eq!(
            protected_namespaces(&a),
            Some(vec!["kube-system".into(), "payments".into()])
        );
        assert_eq!(protected_namespaces(&BTreeMap::new()), None);
    }
}
