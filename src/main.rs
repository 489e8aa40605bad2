//! `kubilitics-ai`: the operator binary (thin CLI over the library).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kubilitics_ai::{
    agent::{BuiltinPlanner, Flavor, LlmConfig, OpenAiPlanner, Planner},
    api::crds_yaml,
    controller::{
        self, Config, ExecuteAs,
        leader::{LeaderConfig, LeaderElector},
    },
    execute::FailPoint,
    mcp,
    safety::{Guardrails, quota::QuotaConfig},
    telemetry::{self, LogFormat, Ready},
    webhook::{self, Endpoint, WebhookConfig},
};

#[derive(Parser)]
#[command(
    name = "kubilitics-ai",
    version,
    about = "Talk to your Kubernetes cluster in natural language, with approval-gated plans"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (kubeconfig from KUBECONFIG/~/.kube/config, or in-cluster).
    Run(Box<RunArgs>),
    /// Print the CRDs and the identity policy as YAML (`kubilitics-ai crd | kubectl apply -f -`).
    Crd {
        /// Only the CustomResourceDefinitions (what `make crds` commits).
        #[arg(long)]
        crds_only: bool,
    },
    /// The kubectl plugin (also installed as `kubectl-kubilitics`).
    Plugin(kubilitics_ai::plugin::PluginCli),
    /// Serve MCP (stdio by default, acting with your kubeconfig; or streamable HTTP with bearer tokens).
    Mcp(McpArgs),
}

#[derive(clap::Args)]
struct McpArgs {
    /// Serve streamable HTTP on this address instead of stdio (each request's
    /// `Authorization: Bearer <Kubernetes token>` is the identity it acts as).
    #[arg(long, env = "KUBILITICS_MCP_HTTP")]
    http: Option<SocketAddr>,
    /// Target this registered member cluster (AIRequest spec.cluster): every tool, reads
    /// included, goes through the operator, which checks the caller's rights there.
    #[arg(long, env = "KUBILITICS_MCP_CLUSTER")]
    cluster: Option<String>,
    /// Host names accepted in the HTTP Host header (default: loopback only).
    #[arg(
        long = "allowed-host",
        env = "KUBILITICS_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
    /// Browser origins accepted in the HTTP Origin header (DNS-rebinding protection; requests
    /// without an Origin header, i.e. not from a browser, are accepted).
    #[arg(
        long = "allowed-origin",
        env = "KUBILITICS_MCP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Audience callers' tokens must be minted for (`kubectl create token SA --audience ...`);
    /// checked by TokenReview. Tokens for any other audience are refused.
    #[arg(
        long,
        env = "KUBILITICS_MCP_TOKEN_AUDIENCE",
        default_value = "kubilitics-ai"
    )]
    token_audience: String,
    /// Most HTTP requests one caller may send per minute (0: unlimited).
    #[arg(long, env = "KUBILITICS_MCP_RATE_LIMIT", default_value_t = 120)]
    rate_limit_per_minute: u32,
    /// Serve HTTPS with this PEM certificate (with --tls-key).
    #[arg(long, env = "KUBILITICS_MCP_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, env = "KUBILITICS_MCP_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "KUBILITICS_NAMESPACE")]
    namespace: Option<String>,
    /// How long a plan waits for approval before it expires (e.g. 1h, 30m, 90s).
    #[arg(long, env = "KUBILITICS_PLAN_TTL", default_value = "1h", value_parser = parse_duration)]
    plan_ttl: Duration,
    /// Namespaces no plan may change (comma separated).
    #[arg(
        long,
        env = "KUBILITICS_PROTECTED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    protected_namespaces: Vec<String>,
    /// Highest replica count a scale step may set.
    #[arg(long, env = "KUBILITICS_MAX_REPLICAS", default_value_t = 1000)]
    max_replicas: i32,
    /// Most steps one plan may have.
    #[arg(long, env = "KUBILITICS_MAX_STEPS", default_value_t = 10)]
    max_steps: usize,
    /// Refuse apply_manifest/patch_resource steps with risky content (privileged or
    /// host-namespace pods, hostPath, added capabilities, another ServiceAccount, LoadBalancer/
    /// NodePort/ExternalName Services, externalIPs) instead of planning them as High risk.
    #[arg(long, env = "KUBILITICS_BLOCK_RISKY_CONTENT", default_value_t = false)]
    block_risky_content: bool,
    /// Requests reconciled in parallel.
    #[arg(long, env = "KUBILITICS_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Delete finished requests and their plans this long after they finished (off when unset).
    #[arg(long, env = "KUBILITICS_FINISHED_TTL", value_parser = parse_duration)]
    finished_ttl: Option<Duration>,
    /// Planner: `builtin` (offline, deterministic) or `openai` (any OpenAI-compatible endpoint).
    #[arg(long, env = "KUBILITICS_PROVIDER", value_enum, default_value_t = Provider::Builtin)]
    provider: Provider,
    /// API flavour of the LLM endpoint.
    #[arg(long, env = "KUBILITICS_LLM_FLAVOR", value_enum, default_value_t = Flavor::Openai)]
    llm_flavor: Flavor,
    /// Base URL of the OpenAI-compatible API (e.g. http://ollama:11434/v1).
    #[arg(
        long,
        env = "KUBILITICS_LLM_BASE_URL",
        default_value = "https://api.openai.com/v1"
    )]
    llm_base_url: String,
    /// Model (Azure: the deployment name); `spec.model` overrides it per request.
    #[arg(long, env = "KUBILITICS_LLM_MODEL", default_value = "gpt-4o-mini")]
    llm_model: String,
    /// API key; set it from a Secret (env), never on the command line.
    #[arg(long, env = "KUBILITICS_LLM_API_KEY", hide_env_values = true)]
    llm_api_key: Option<String>,
    /// Azure OpenAI api-version.
    #[arg(
        long,
        env = "KUBILITICS_LLM_AZURE_API_VERSION",
        default_value = "2024-10-21"
    )]
    llm_azure_api_version: String,
    /// Sampling temperature.
    #[arg(long, env = "KUBILITICS_LLM_TEMPERATURE", default_value_t = 0.1)]
    llm_temperature: f32,
    /// Most model calls per request.
    #[arg(long, env = "KUBILITICS_LLM_MAX_ITERATIONS", default_value_t = 10)]
    llm_max_iterations: usize,
    /// Timeout of one model call.
    #[arg(long, env = "KUBILITICS_LLM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    llm_timeout: Duration,
    /// Most tokens one model call may generate.
    #[arg(long, env = "KUBILITICS_LLM_MAX_TOKENS", default_value_t = 1024)]
    llm_max_tokens: u32,
    /// The model's context window in tokens (prompt + answer). History and tool
    /// results are fitted into it; unset: asked from the server (llama.cpp's
    /// /props), else not limited by the agent.
    #[arg(long, env = "KUBILITICS_LLM_CONTEXT_TOKENS")]
    llm_context_tokens: Option<u32>,
    /// Most tokens of one tool result sent to the model (its compact form).
    #[arg(long, env = "KUBILITICS_LLM_TOOL_OUTPUT_TOKENS", default_value_t = 600)]
    llm_tool_output_tokens: usize,
    /// Resolve the workloads a prompt names before the first model call and
    /// send their state with it (saves a round per request).
    #[arg(long, env = "KUBILITICS_LLM_PREFETCH", default_value_t = true, action = clap::ArgAction::Set)]
    llm_prefetch: bool,
    /// End a request's model loop once the model proposed every change the
    /// prompt asks for, instead of one more call to restate the plan.
    #[arg(long, env = "KUBILITICS_LLM_FINISH_AFTER_PLAN", default_value_t = true, action = clap::ArgAction::Set)]
    llm_finish_after_plan: bool,
    /// Serve the admission webhook on this address (e.g. 0.0.0.0:9443); off when unset.
    #[arg(long, env = "KUBILITICS_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// In-cluster: the Service in front of the webhook, as namespace/name[:port].
    #[arg(long, env = "KUBILITICS_WEBHOOK_SERVICE")]
    webhook_service: Option<String>,
    /// Out of cluster: the URL the API server calls (e.g. https://127.0.0.1:9443).
    #[arg(long, env = "KUBILITICS_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Name of the MutatingWebhookConfiguration the operator keeps current.
    #[arg(
        long,
        env = "KUBILITICS_WEBHOOK_CONFIGURATION",
        default_value = "kubilitics-ai"
    )]
    webhook_configuration: String,
    /// Development only: plan and execute requests without a trustworthy identity (no admission
    /// webhook, no identity policy); tools then run with the operator's own rights. Never in production.
    #[arg(long, env = "KUBILITICS_INSECURE_DEV_MODE", default_value_t = false)]
    insecure_dev_mode: bool,
    /// Usernames of GitOps sync accounts whose approvals stand for a reviewed commit
    /// (e.g. system:serviceaccount:flux-system:kustomize-controller): exempt from separation
    /// of duties (git's branch protection is the second pair of eyes), from nothing else.
    #[arg(
        long = "gitops-identity",
        env = "KUBILITICS_GITOPS_IDENTITIES",
        value_delimiter = ','
    )]
    gitops_identities: Vec<String>,
    /// Secret (in the state namespace) holding the webhook serving certificate all replicas share.
    #[arg(
        long,
        env = "KUBILITICS_WEBHOOK_CERT_SECRET",
        default_value = "kubilitics-ai-webhook-tls"
    )]
    webhook_cert_secret: String,
    /// Namespaces whose requests may read other namespaces (e.g. the platform team's);
    /// elsewhere a request reads only its own namespace and spec.targetNamespace.
    #[arg(
        long = "cross-namespace-from",
        env = "KUBILITICS_CROSS_NAMESPACE_FROM",
        value_delimiter = ','
    )]
    cross_namespace_from: Vec<String>,
    /// Whose rights dry runs and plan steps use: `service-account` (the operator's, after
    /// SubjectAccessReviews for the requester) or `requester` (impersonation: the API server's
    /// RBAC, admission policies and audit log see the person; needs `impersonate` rights).
    #[arg(long, env = "KUBILITICS_EXECUTE_AS", value_enum, default_value_t = ExecuteAsArg::ServiceAccount)]
    execute_as: ExecuteAsArg,
    /// Let requesters approve their own plans (off by default).
    #[arg(long, env = "KUBILITICS_ALLOW_SELF_APPROVAL", default_value_t = false)]
    allow_self_approval: bool,
    /// Most requests one requester may make per quota window (off when unset).
    #[arg(long, env = "KUBILITICS_RATE_LIMIT_REQUESTS")]
    rate_limit_requests: Option<u32>,
    /// Most LLM tokens one requester may use per quota window (off when unset).
    #[arg(long, env = "KUBILITICS_LLM_TOKEN_BUDGET")]
    llm_token_budget: Option<u64>,
    /// The rate-limit and token-budget window.
    #[arg(long, env = "KUBILITICS_QUOTA_WINDOW", default_value = "1h", value_parser = parse_duration)]
    quota_window: Duration,
    /// Namespace of the operator's own state (the quota ConfigMap).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kubilitics-system")]
    state_namespace: String,
    /// Member clusters (`spec.cluster`): registered by Secrets labelled
    /// ai.kubilitics.io/cluster=true in the state namespace. Off: requests only target this cluster.
    #[arg(long, env = "KUBILITICS_MEMBER_CLUSTERS", default_value_t = true, action = clap::ArgAction::Set)]
    member_clusters: bool,
    /// Elect a leader among replicas with a Lease in the state namespace; only the leader reconciles.
    #[arg(long, env = "KUBILITICS_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "KUBILITICS_LEADER_LEASE",
        default_value = "kubilitics-ai-leader"
    )]
    leader_lease: String,
    /// A standby takes over after the leader has not renewed for this long.
    #[arg(long, env = "KUBILITICS_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    leader_lease_duration: Duration,
    /// How often the leader renews (and standbys retry).
    #[arg(long, env = "KUBILITICS_LEADER_RETRY", default_value = "2s", value_parser = parse_duration)]
    leader_retry: Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "KUBILITICS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "KUBILITICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the Alertmanager webhook receiver here (path /alertmanager): firing alerts become
    /// AIRequests (ReadOnly unless the alert sets kubilitics.io/mode: Plan).
    #[arg(
        long,
        env = "KUBILITICS_ALERTMANAGER_ADDR",
        requires = "alertmanager_token_file"
    )]
    alertmanager_addr: Option<std::net::SocketAddr>,
    /// File holding the bearer token Alertmanager sends (a mounted Secret key).
    #[arg(long, env = "KUBILITICS_ALERTMANAGER_TOKEN_FILE")]
    alertmanager_token_file: Option<std::path::PathBuf>,
    /// Namespace of requests for alerts without a namespace label, and of storm summaries.
    #[arg(
        long,
        env = "KUBILITICS_ALERTMANAGER_NAMESPACE",
        default_value = "default"
    )]
    alertmanager_namespace: String,
    /// The requester identity of requests from alerts (impersonated; default: the
    /// kubilitics-ai-alerts ServiceAccount in --state-namespace).
    #[arg(long, env = "KUBILITICS_ALERTMANAGER_IDENTITY")]
    alertmanager_identity: Option<String>,
    /// New requests per minute from alerts; the rest go into a summary request.
    #[arg(long, env = "KUBILITICS_ALERTMANAGER_RATE_LIMIT", default_value_t = 20)]
    alertmanager_rate_limit: u32,
    /// A re-fire this soon after a resolution reuses the alert's request.
    #[arg(long, env = "KUBILITICS_ALERTMANAGER_COOLDOWN", default_value = "1h", value_parser = parse_duration)]
    alertmanager_cooldown: Duration,
    #[arg(
        long,
        env = "KUBILITICS_ALERTMANAGER_TLS_CERT",
        requires = "alertmanager_tls_key"
    )]
    alertmanager_tls_cert: Option<std::path::PathBuf>,
    #[arg(
        long,
        env = "KUBILITICS_ALERTMANAGER_TLS_KEY",
        requires = "alertmanager_tls_cert"
    )]
    alertmanager_tls_key: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Provider {
    Builtin,
    Openai,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration '{s}' (use e.g. 90s, 30m, 1h)"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("invalid duration unit in '{s}' (use s, m or h)")),
    };
    if secs == 0 {
        return Err("duration must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { crds_only } => {
            print!("{}", crds_yaml()?);
            if !crds_only {
                print!("---\n{}", kubilitics_ai::api::IDENTITY_POLICY_YAML);
            }
            Ok(())
        }
        Command::Run(args) => run(*args).await,
        Command::Plugin(cli) => kubilitics_ai::plugin::run(cli).await,
        Command::Mcp(args) => {
            // stdout is the protocol channel over stdio: logs go to stderr.
            telemetry::init_tracing(LogFormat::Text);
            match args.http {
                Some(addr) => {
                    let opts = mcp::HttpOptions {
                        allowed_hosts: args.allowed_hosts,
                        allowed_origins: args.allowed_origins,
                        token_audience: args.token_audience,
                        rate_limit_per_minute: args.rate_limit_per_minute,
                        tls: args.tls_cert.zip(args.tls_key),
                        cluster: args.cluster.clone(),
                    };
                    mcp::serve_http(addr, kube::Config::infer().await?, opts).await
                }
                None => mcp::serve_stdio(kube::Client::try_default().await?, args.cluster).await,
            }
        }
    }
}

/// `--execute-as`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ExecuteAsArg {
    ServiceAccount,
    Requester,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    let own = kube::Config::infer().await?;
    let client = telemetry::counted_client(own.clone())?;
    let execute_as = match args.execute_as {
        ExecuteAsArg::ServiceAccount => ExecuteAs::ServiceAccount,
        ExecuteAsArg::Requester => ExecuteAs::Requester(Box::new(own)),
    };
    let config = Config {
        namespace: args.namespace,
        plan_ttl: args.plan_ttl,
        guardrails: Guardrails {
            protected_namespaces: args.protected_namespaces,
            max_replicas: args.max_replicas,
            max_steps: args.max_steps,
            block_risky_content: args.block_risky_content,
        },
        failpoint: FailPoint::from_env(),
        instance: std::env::var("POD_NAME").ok(),
        concurrency: args.concurrency,
        finished_ttl: args.finished_ttl,
        require_identity: !args.insecure_dev_mode,
        separation_of_duties: !args.allow_self_approval,
        gitops_identities: args.gitops_identities.clone(),
        cross_namespace_from: args.cross_namespace_from.clone(),
        execute_as,
        clusters_namespace: args.member_clusters.then(|| args.state_namespace.clone()),
        quota: (args.rate_limit_requests.is_some() || args.llm_token_budget.is_some()).then(|| {
            QuotaConfig {
                max_requests: args.rate_limit_requests,
                max_tokens: args.llm_token_budget,
                window: args.quota_window,
                namespace: args.state_namespace.clone(),
                configmap: "kubilitics-ai-quota".into(),
            }
        }),
    };
    tracing::info!(namespace = ?config.namespace, plan_ttl = ?config.plan_ttl, "starting kubilitics-ai");
    if args.insecure_dev_mode {
        tracing::warn!(
            "INSECURE DEV MODE: requests without a trustworthy identity are planned and executed with the operator's own rights, and approvals need no recorded approver. Never use this in a shared cluster."
        );
    } else {
        if args.webhook_addr.is_none() {
            tracing::warn!(
                "no --webhook-addr: this process does not serve the admission webhook; requests are planned only when another replica's webhook stamped their identity"
            );
        }
        require_identity_policy(&client).await?;
    }
    let ready = Ready::default();
    let server = tokio::spawn(telemetry::serve(args.metrics_addr, ready.clone()));
    let planner: Arc<dyn Planner> = match args.provider {
        Provider::Builtin => Arc::new(BuiltinPlanner),
        Provider::Openai => {
            let llm = LlmConfig {
                flavor: args.llm_flavor,
                base_url: args.llm_base_url,
                model: args.llm_model,
                api_key: args.llm_api_key,
                azure_api_version: args.llm_azure_api_version,
                temperature: args.llm_temperature,
                max_iterations: args.llm_max_iterations,
                timeout: args.llm_timeout,
                max_tokens: args.llm_max_tokens,
                context_tokens: args.llm_context_tokens,
                tool_output_tokens: args.llm_tool_output_tokens,
                prefetch: args.llm_prefetch,
                finish_after_plan: args.llm_finish_after_plan,
                ..Default::default()
            };
            tracing::info!(?llm, "using the openai provider");
            Arc::new(OpenAiPlanner::new(llm)?)
        }
    };
    let webhook = match args.webhook_addr {
        Some(addr) => {
            let endpoint = match (&args.webhook_service, &args.webhook_url) {
                (Some(svc), _) => {
                    let (ns, rest) = svc.split_once('/').ok_or_else(|| {
                        anyhow::anyhow!("--webhook-service is namespace/name[:port]")
                    })?;
                    let (name, port) = match rest.split_once(':') {
                        Some((n, p)) => (n.to_string(), p.parse()?),
                        None => (rest.to_string(), 443),
                    };
                    Endpoint::Service {
                        namespace: ns.into(),
                        name,
                        port,
                    }
                }
                (None, Some(url)) => Endpoint::Url(url.clone()),
                (None, None) => {
                    anyhow::bail!("--webhook-addr needs --webhook-service or --webhook-url")
                }
            };
            let hosts = match &endpoint {
                Endpoint::Service {
                    namespace, name, ..
                } => vec![
                    format!("{name}.{namespace}.svc"),
                    format!("{name}.{namespace}.svc.cluster.local"),
                ],
                Endpoint::Url(u) => vec![
                    u.trim_start_matches("https://")
                        .split([':', '/'])
                        .next()
                        .unwrap_or("localhost")
                        .to_string(),
                ],
            };
            let cfg = WebhookConfig {
                addr,
                configuration_name: args.webhook_configuration.clone(),
                endpoint,
                hosts,
                namespace: config.namespace.clone(),
                separation_of_duties: config.separation_of_duties,
                gitops_identities: config.gitops_identities.clone(),
                clusters_namespace: config.clusters_namespace.clone(),
                cert_secret: Some((
                    args.state_namespace.clone(),
                    args.webhook_cert_secret.clone(),
                )),
            };
            Some(tokio::spawn(webhook::run(client.clone(), cfg)))
        }
        None => None,
    };
    let alerts = match (args.alertmanager_addr, &args.alertmanager_token_file) {
        (Some(addr), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot read --alertmanager-token-file {}: {e}",
                        file.display()
                    )
                })?
                .trim()
                .to_string();
            if token.len() < 16 {
                anyhow::bail!("the Alertmanager bearer token must be at least 16 characters");
            }
            let identity = args.alertmanager_identity.clone().unwrap_or_else(|| {
                format!(
                    "system:serviceaccount:{}:kubilitics-ai-alerts",
                    args.state_namespace
                )
            });
            let mut refused = config.guardrails.protected_namespaces.clone();
            refused.push(args.state_namespace.clone());
            let cfg = kubilitics_ai::incidents::ReceiverConfig {
                addr,
                token,
                default_namespace: args.alertmanager_namespace.clone(),
                refused_namespaces: refused,
                max_requests_per_minute: args.alertmanager_rate_limit,
                cooldown: args.alertmanager_cooldown,
                tls: args
                    .alertmanager_tls_cert
                    .clone()
                    .zip(args.alertmanager_tls_key.clone()),
                ..Default::default()
            };
            let requester =
                kubilitics_ai::incidents::impersonating(kube::Config::infer().await?, &identity)?;
            tracing::info!(%identity, "alerts create requests as this identity");
            let receiver = kubilitics_ai::incidents::Receiver::new(cfg, requester, client.clone());
            Some(tokio::spawn(kubilitics_ai::incidents::serve(receiver)))
        }
        _ => None,
    };
    let result = if args.leader_elect {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "kubilitics-ai".into()),
                std::process::id()
            )
        });
        let elector = LeaderElector::new(
            client.clone(),
            LeaderConfig {
                namespace: args.state_namespace.clone(),
                lease_name: args.leader_lease.clone(),
                identity,
                lease_duration: args.leader_lease_duration,
                retry: args.leader_retry,
            },
        );
        // A standby is healthy (it serves the webhook); it reconciles once it leads.
        ready.set(true);
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown_signal() => return Ok(()),
        }
        let result = tokio::select! {
            r = controller::run(client, config, planner, ready) => r,
            _ = elector.hold() => {
                // Never risk two executors: stop now, the Deployment restarts us as a standby.
                tracing::error!("lost leadership; exiting");
                std::process::exit(1);
            }
        };
        elector.release().await;
        result
    } else {
        controller::run(client, config, planner, ready).await
    };
    if let Some(w) = webhook {
        w.abort();
    }
    if let Some(a) = alerts {
        a.abort();
    }
    server.abort();
    result
}

/// SIGINT or SIGTERM. As PID 1 in a container the kernel ignores SIGTERM unless the
/// process handles it, so a standby waiting for leadership must listen too.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Identities are trustworthy only with the shipped identity policy in force
/// (it refuses forged identity annotations even when the webhook is down).
async fn require_identity_policy(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    const NAME: &str = "kubilitics-ai-identity";
    let hint = "install it with the CRDs (`kubectl apply -f crds/` or the Helm chart), or run with --insecure-dev-mode for local development only";
    let policy = kube::Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .get_opt(NAME)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read ValidatingAdmissionPolicy {NAME}: {e}; {hint}")
        })?;
    let binding = kube::Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .get_opt(NAME)
        .await
        .map_err(|e| {
            anyhow::anyhow!("cannot read ValidatingAdmissionPolicyBinding {NAME}: {e}; {hint}")
        })?;
    if policy.is_none() || binding.is_none() {
        anyhow::bail!(
            "the identity policy {NAME} (ValidatingAdmissionPolicy and its binding) is not installed, so requester and approver identities could be forged; {hint}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("x").is_err());
    }
}
