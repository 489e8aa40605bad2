//! The MCP server (rmcp): the seed's tools, resources and prompts for AI
//! assistants. Read-only tools answer directly under the caller's own
//! Kubernetes identity (their kubeconfig over stdio; their bearer token over
//! streamable HTTP). Mutating tools never act: they create an AIRequest as the
//! caller and return the resulting plan — the same approval gate as
//! everything else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::{
    Api, Client, Config,
    api::{ObjectMeta, PostParams},
};
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    handler::server::{
        router::{prompt::PromptRouter, tool::ToolRouter},
        wrapper::Parameters,
    },
    model::{
        CallToolResult, ContentBlock, ListResourceTemplatesResult, PaginatedRequestParams,
        PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
        ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig,
    },
    prompt, prompt_handler, prompt_router,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::api::{AIPlan, AIRequest, AIRequestSpec, RequestPhase};
use crate::tools::{ReadCall, ReadTools};

#[derive(Deserialize, JsonSchema)]
pub struct ListPodsArgs {
    /// Namespace to list pods from.
    pub namespace: String,
    /// Label selector, e.g. `app=web`.
    pub label_selector: Option<String>,
    /// Only pods in this phase, e.g. `Running`.
    pub status_filter: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct LogsArgs {
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Lines from the end (default 100, at most 1000).
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Container (default: the only one).
    pub container: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct DescribeArgs {
    pub namespace: String,
    /// pod, deployment, statefulset, daemonset, service, configmap, node or namespace.
    pub kind: String,
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ScaleArgs {
    pub namespace: String,
    /// Deployment name.
    pub name: String,
    /// Target replicas, 0–1000.
    pub replicas: i32,
}

#[derive(Deserialize, JsonSchema)]
pub struct RestartArgs {
    pub namespace: String,
    /// Deployment name.
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct TroubleshootArgs {
    pub namespace: String,
    pub pod: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ScaleSafelyArgs {
    pub namespace: String,
    pub deployment: String,
    pub replicas: i32,
}

/// How the server reaches the API server as the caller.
#[derive(Clone)]
enum Identity {
    /// stdio: the local user's kubeconfig.
    Fixed(Client),
    /// HTTP: the server's own credentials impersonating the caller that a TokenReview (with
    /// this server's audience) established. The caller's token is never replayed.
    Reviewed(Box<Config>),
}

/// Who a TokenReview said the caller is (put in the HTTP request's extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    /// Extra attributes from the TokenReview (e.g. token scopes), impersonated too.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Settings of the streamable-HTTP transport.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Host names accepted in the Host header (empty: loopback only).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted in the Origin header (requests without one are accepted).
    pub allowed_origins: Vec<String>,
    /// The audience tokens must be minted for (`kubectl create token SA --audience ...`).
    pub token_audience: String,
    /// Most requests one caller may send per minute (0: unlimited).
    pub rate_limit_per_minute: u32,
    /// PEM certificate and key: serve HTTPS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The registered member cluster every tool targets (`None`: this server's cluster).
    pub cluster: Option<String>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_hosts: vec![],
            allowed_origins: vec![],
            token_audience: "kubilitics-ai".into(),
            rate_limit_per_minute: 120,
            tls: None,
            cluster: None,
        }
    }
}

#[derive(Clone)]
pub struct McpServer {
    identity: Identity,
    /// How long a mutating tool waits for the operator's plan.
    plan_wait: Duration,
    /// The registered member cluster every tool targets (`--cluster`); `None`: the cluster
    /// this server is connected to.
    cluster: Option<String>,
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

fn text(s: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s.into())])
}

fn fail(s: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(s.into())])
}

impl McpServer {
    /// A server acting with a fixed client (stdio: the caller's kubeconfig).
    pub fn with_client(client: Client) -> Self {
        Self::new(Identity::Fixed(client))
    }

    /// A server acting, with its own credentials in `own`, as each HTTP request's reviewed caller.
    pub fn impersonating_callers(own: Config) -> Self {
        Self::new(Identity::Reviewed(Box::new(own)))
    }

    fn new(identity: Identity) -> Self {
        Self {
            identity,
            plan_wait: Duration::from_secs(30),
            cluster: None,
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    /// Every tool targets the member cluster `cluster` (through the operator, which holds
    /// its credentials and checks the caller's rights there).
    pub fn for_cluster(mut self, cluster: Option<String>) -> Self {
        self.cluster = cluster;
        self
    }

    fn client(&self, ctx: &RequestContext<RoleServer>) -> Result<Client, McpError> {
        match &self.identity {
            Identity::Fixed(c) => Ok(c.clone()),
            Identity::Reviewed(own) => {
                let caller = ctx
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|p| p.extensions.get::<Caller>())
                    .ok_or_else(|| {
                        McpError::invalid_request("the caller was not authenticated", None)
                    })?;
                let who = crate::api::Requester {
                    username: caller.username.clone(),
                    uid: caller.uid.clone(),
                    groups: caller.groups.clone(),
                    extra: caller.extra.clone(),
                };
                crate::access::impersonating(own, &who)
                    .map_err(|e| McpError::internal_error(e.to_string(), None))
            }
        }
    }

    async fn read(
        &self,
        ctx: &RequestContext<RoleServer>,
        call: ReadCall,
    ) -> Result<CallToolResult, McpError> {
        if self.cluster.is_some() {
            // A member cluster is read by the operator (its credentials there, the caller's
            // rights there checked by SubjectAccessReview): a read-only request.
            let (ns, prompt) = read_prompt(&call);
            return self.ask(ctx, &ns, "read", prompt, true).await;
        }
        let tools = ReadTools::new(self.client(ctx)?);
        let (result, _) = tools.run(&call).await;
        Ok(match result {
            Ok(s) => text(s),
            Err(e) => fail(e.to_string()),
        })
    }

    /// Creates an AIRequest as the caller and reports the plan it produced.
    async fn plan(
        &self,
        ctx: &RequestContext<RoleServer>,
        namespace: &str,
        slug: &str,
        prompt: String,
    ) -> Result<CallToolResult, McpError> {
        self.ask(ctx, namespace, slug, prompt, false).await
    }

    /// Creates an AIRequest as the caller (read-only or not) and reports its answer or plan.
    async fn ask(
        &self,
        ctx: &RequestContext<RoleServer>,
        namespace: &str,
        slug: &str,
        prompt: String,
        read_only: bool,
    ) -> Result<CallToolResult, McpError> {
        let client = self.client(ctx)?;
        let requests: Api<AIRequest> = Api::namespaced(client.clone(), namespace);
        let req = AIRequest {
            metadata: ObjectMeta {
                generate_name: Some(format!("mcp-{slug}-")),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: AIRequestSpec {
                prompt,
                cluster: self.cluster.clone(),
                mode: read_only.then_some(crate::api::Mode::ReadOnly),
                ..Default::default()
            },
            status: None,
        };
        let created = match requests.create(&PostParams::default(), &req).await {
            Ok(r) => r,
            Err(e) => return Ok(fail(format!("could not create the AIRequest: {e}"))),
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let start = Instant::now();
        loop {
            let r = requests
                .get(&name)
                .await
                .map_err(|e| McpError::internal_error(e.to_string(), None))?;
            let status = r.status.clone().unwrap_or_default();
            match status.phase {
                Some(RequestPhase::AwaitingApproval) => {
                    let plan_name = status.plan_ref.clone().unwrap_or_default();
                    let id = status.plan_id.clone().unwrap_or_default();
                    let plan = Api::<AIPlan>::namespaced(client, namespace)
                        .get(&plan_name)
                        .await
                        .ok();
                    let ps = plan.and_then(|p| p.status).unwrap_or_default();
                    let steps: Vec<String> = ps
                        .steps
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            format!(
                                "{}. {} (risk {:?}); preview: {}; rollback: {}",
                                i + 1,
                                s.reason,
                                s.risk,
                                s.preview.clone().unwrap_or_default().replace('\n', "; "),
                                s.rollback
                            )
                        })
                        .collect();
                    return Ok(text(format!(
                        "Nothing has changed. AIRequest {namespace}/{name} produced plan {plan_name} (plan id {id}, risk {:?}):\n{}\n\nA person must approve this exact plan id:\n  kubectl patch aiplan {plan_name} -n {namespace} --type merge -p '{{\"spec\":{{\"approval\":{{\"planId\":\"{id}\"}}}}}}'\n  (or: kubectl kubilitics approve {plan_name} -n {namespace})",
                        ps.risk.unwrap_or_default(),
                        steps.join("\n")
                    )));
                }
                Some(p) if p.is_final() => {
                    let answer = status.answer.unwrap_or_default();
                    return Ok(if p == RequestPhase::Failed {
                        fail(answer)
                    } else {
                        text(answer)
                    });
                }
                _ => {}
            }
            if start.elapsed() > self.plan_wait {
                return Ok(fail(format!(
                    "AIRequest {namespace}/{name} has no plan after {:?}; is the kubilitics-ai operator running? `kubectl get airequest {name} -n {namespace}` shows its progress",
                    self.plan_wait
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tool_router]
impl McpServer {
    #[tool(description = "List pods in a namespace with status, restarts, node and age.")]
    async fn k8s_list_pods(
        &self,
        Parameters(a): Parameters<ListPodsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let call = ReadCall::ListPods {
            namespace: a.namespace,
            label_selector: a.label_selector,
            status_filter: a.status_filter,
        };
        self.read(&ctx, call).await
    }

    #[tool(description = "Recent log lines of a pod (secrets redacted).")]
    async fn k8s_get_logs(
        &self,
        Parameters(a): Parameters<LogsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let call = ReadCall::GetPodLogs {
            namespace: a.namespace,
            name: a.name,
            container: a.container,
            tail_lines: a.tail_lines,
            since_seconds: a.since_seconds,
        };
        self.read(&ctx, call).await
    }

    #[tool(description = "A Kubernetes object as YAML (never Secret data).")]
    async fn k8s_describe_resource(
        &self,
        Parameters(a): Parameters<DescribeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let call = ReadCall::DescribeResource {
            namespace: a.namespace,
            kind: a.kind,
            name: a.name,
        };
        self.read(&ctx, call).await
    }

    #[tool(description = "Cluster health: nodes, unhealthy pods, degraded deployments.")]
    async fn k8s_cluster_health(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.read(&ctx, ReadCall::GetClusterHealth {}).await
    }

    #[tool(
        description = "Plan scaling a deployment (0-1000 replicas). Does NOT change anything: creates an AIRequest and returns the plan id a person must approve."
    )]
    async fn k8s_scale_deployment(
        &self,
        Parameters(a): Parameters<ScaleArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let prompt = format!("scale deployment {} to {} replicas", a.name, a.replicas);
        self.plan(&ctx, &a.namespace, "scale", prompt).await
    }

    #[tool(
        description = "Plan a rolling restart of a deployment. Does NOT change anything: creates an AIRequest and returns the plan id a person must approve."
    )]
    async fn k8s_rollout_restart(
        &self,
        Parameters(a): Parameters<RestartArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let prompt = format!("restart deployment {}", a.name);
        self.plan(&ctx, &a.namespace, "restart", prompt).await
    }
}

#[prompt_router]
impl McpServer {
    /// Steps to find out why a pod misbehaves.
    #[prompt(
        name = "troubleshoot_pod",
        description = "Investigate a failing pod step by step with read-only tools."
    )]
    async fn troubleshoot_pod(
        &self,
        Parameters(a): Parameters<TroubleshootArgs>,
    ) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Troubleshoot pod `{pod}` in namespace `{ns}` with read-only tools only:\n\
                 1. k8s_describe_resource(namespace=\"{ns}\", kind=\"pod\", name=\"{pod}\"): state, restarts, conditions.\n\
                 2. k8s_get_logs(namespace=\"{ns}\", name=\"{pod}\", tail_lines=100): recent errors.\n\
                 3. k8s_list_pods(namespace=\"{ns}\"): is it the only unhealthy one?\n\
                 Then explain the likely cause and what change would fix it; do not change anything.",
                pod = a.pod,
                ns = a.namespace
            ),
        )]
    }

    /// How to scale without surprises.
    #[prompt(
        name = "scale_safely",
        description = "Check a deployment, then plan a scale that a person approves."
    )]
    async fn scale_safely(&self, Parameters(a): Parameters<ScaleSafelyArgs>) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Scale deployment `{d}` in namespace `{ns}` to {r} replicas safely:\n\
                 1. k8s_list_pods(namespace=\"{ns}\") and k8s_cluster_health(): is there capacity and is it healthy now?\n\
                 2. {warn}\n\
                 3. k8s_scale_deployment(namespace=\"{ns}\", name=\"{d}\", replicas={r}) creates a plan; report its plan id and \
                 the approval command. The change happens only after a person approves that exact plan id.",
                d = a.deployment,
                ns = a.namespace,
                r = a.replicas,
                warn = if a.replicas == 0 {
                    "Scaling to 0 stops every instance: warn about the outage."
                } else {
                    "Mention the current replica count and the difference."
                }
            ),
        )]
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_prompts().enable_resources().build())
            .with_instructions(
                "Kubilitics AI: read-only Kubernetes tools run as you; k8s_scale_deployment and k8s_rollout_restart only create plans that a person must approve by plan id.",
            )
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("k8s://namespace/{ns}", "namespace")
                .with_title("Namespace summary")
                .with_description(
                    "Pods, deployments and services of a namespace, with what is unhealthy",
                )
                .with_mime_type("text/markdown"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let ns = uri
            .strip_prefix("k8s://namespace/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| McpError::resource_not_found(format!("unknown resource {uri}"), None))?
            .to_string();
        let tools = ReadTools::new(self.client(&ctx)?);
        let mut out = format!("# Namespace `{ns}`\n\n");
        for call in [
            ReadCall::ListPods {
                namespace: ns.clone(),
                label_selector: None,
                status_filter: None,
            },
            ReadCall::ListDeployments {
                namespace: ns.clone(),
            },
            ReadCall::ListServices {
                namespace: ns.clone(),
            },
        ] {
            let (r, _) = tools.run(&call).await;
            out.push_str(&r.unwrap_or_else(|e| format!("❌ {e}")));
            out.push_str("\n\n");
        }
        Ok(ReadResourceResult::new(vec![ResourceContents::text(out, uri)]).into())
    }
}

/// A read tool's call as the question a read-only request asks (namespace, prompt).
fn read_prompt(call: &ReadCall) -> (String, String) {
    match call {
        ReadCall::ListPods { namespace, .. } => (
            namespace.clone(),
            format!("list pods in namespace {namespace}"),
        ),
        ReadCall::GetPodLogs {
            namespace, name, ..
        } => (
            namespace.clone(),
            format!("show the logs of pod {name} in namespace {namespace}"),
        ),
        ReadCall::DescribeResource {
            namespace,
            kind,
            name,
        } => (
            namespace.clone(),
            format!("describe {kind} {name} in namespace {namespace}"),
        ),
        _ => ("default".into(), "is the cluster healthy?".into()),
    }
}

/// Serves MCP over stdio until the client disconnects; every tool targets `cluster` when set.
pub async fn serve_stdio(client: Client, cluster: Option<String>) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let service = McpServer::with_client(client)
        .for_cluster(cluster)
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}

/// Serves MCP over streamable HTTP at `/mcp`. Every request needs `Authorization: Bearer
/// <token>` with a token minted for `opts.token_audience`; a TokenReview establishes the caller,
/// and the server then acts as that caller by impersonation with its own credentials (`own`)
/// — never by replaying the token (the MCP authorization spec forbids token passthrough: a token
/// minted for another service would otherwise work here too).
pub async fn serve_http(addr: SocketAddr, own: Config, opts: HttpOptions) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let reviewer = Client::try_from(own.clone())?;
    let server = McpServer::impersonating_callers(own).for_cluster(opts.cluster.clone());
    let mut config = StreamableHttpServerConfig::default();
    if !opts.allowed_hosts.is_empty() {
        config.allowed_hosts = opts.allowed_hosts.clone();
    }
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Arc::new(Gate {
        reviewer,
        opts: opts.clone(),
        reviews: Default::default(),
        spent: Default::default(),
    });
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(gate, authenticate));
    match &opts.tls {
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            tracing::info!(%addr, "serving MCP over streamable HTTPS at /mcp");
            axum_server::bind_rustls(addr, tls)
                .serve(app.into_make_service())
                .await?;
        }
        None => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, "serving MCP over streamable HTTP at /mcp");
            axum::serve(listener, app).await?;
        }
    }
    Ok(())
}

/// How long a successful TokenReview is reused for the same token.
const REVIEW_TTL: Duration = Duration::from_secs(30);

/// The HTTP transport's gate: Origin allowlist, TokenReview, per-caller rate limit.
struct Gate {
    reviewer: Client,
    opts: HttpOptions,
    /// sha256(token) -> (caller, reviewed at).
    reviews: std::sync::Mutex<std::collections::HashMap<String, (Caller, Instant)>>,
    /// username -> (window start, requests in it).
    spent: std::sync::Mutex<std::collections::HashMap<String, (Instant, u32)>>,
}

impl Gate {
    async fn review(&self, token: &str) -> Result<Caller, String> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        use sha2::Digest;
        let key = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        if let Some((c, at)) = self.reviews.lock().expect("reviews").get(&key)
            && at.elapsed() < REVIEW_TTL
        {
            return Ok(c.clone());
        }
        let review = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.opts.token_audience.clone()]),
            },
            status: None,
        };
        let status = Api::<TokenReview>::all(self.reviewer.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| format!("the token could not be reviewed: {e}"))?
            .status
            .unwrap_or_default();
        let for_us = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.opts.token_audience));
        let user = status
            .user
            .filter(|_| status.authenticated == Some(true) && for_us);
        let Some(user) = user.filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
        else {
            return Err(format!(
                "the bearer token is not valid for audience {aud:?}: create one with `kubectl create token <serviceaccount> --audience {aud}`",
                aud = self.opts.token_audience
            ));
        };
        let caller = Caller {
            username: user.username.unwrap_or_default(),
            uid: user.uid.filter(|u| !u.is_empty()),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default().into_iter().collect(),
        };
        let mut reviews = self.reviews.lock().expect("reviews");
        reviews.retain(|_, (_, at)| at.elapsed() < REVIEW_TTL);
        reviews.insert(key, (caller.clone(), Instant::now()));
        Ok(caller)
    }

    /// Whether `caller` may send one more request this minute.
    fn admit(&self, caller: &str) -> bool {
        let limit = self.opts.rate_limit_per_minute;
        if limit == 0 {
            return true;
        }
        let mut spent = self.spent.lock().expect("spent");
        let (start, n) = spent
            .entry(caller.to_string())
            .or_insert((Instant::now(), 0));
        if start.elapsed() >= Duration::from_secs(60) {
            (*start, *n) = (Instant::now(), 0);
        }
        *n += 1;
        *n <= limit
    }
}

async fn authenticate(
    axum::extract::State(gate): axum::extract::State<Arc<Gate>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // DNS-rebinding protection: a browser page from another origin is refused.
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !gate.opts.allowed_origins.iter().any(|o| o == origin) {
            return (
                http::StatusCode::FORBIDDEN,
                format!("origin {origin:?} is not allowed (--allowed-origin)"),
            )
                .into_response();
        }
    }
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    let unauthorized = |msg: String| {
        (
            http::StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Bearer")],
            msg,
        )
            .into_response()
    };
    let Some(token) = token else {
        return unauthorized(format!(
            "a bearer token for audience {:?} is required",
            gate.opts.token_audience
        ));
    };
    let caller = match gate.review(&token).await {
        Ok(c) => c,
        Err(msg) => return unauthorized(msg),
    };
    if !gate.admit(&caller.username) {
        return (
            http::StatusCode::TOO_MANY_REQUESTS,
            [(http::header::RETRY_AFTER, "60")],
            format!(
                "{} sent more than {} requests this minute",
                caller.username, gate.opts.rate_limit_per_minute
            ),
        )
            .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
