//! `kubilitics-ai`: the operator binary (thin CLI over the library).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kubilitics_ai::{
    agent::BuiltinPlanner,
    api::crds_yaml,
    controller::{self, Config},
    execute::FailPoint,
    safety::Guardrails,
    telemetry::{self, LogFormat, Ready},
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
    Run(RunArgs),
    /// Print the CRDs as YAML (`kubilitics-ai crd | kubectl apply -f -`).
    Crd,
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
    /// Requests reconciled in parallel.
    #[arg(long, env = "KUBILITICS_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Delete finished requests and their plans this long after they finished (off when unset).
    #[arg(long, env = "KUBILITICS_FINISHED_TTL", value_parser = parse_duration)]
    finished_ttl: Option<Duration>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "KUBILITICS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "KUBILITICS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
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
        Command::Crd => {
            print!("{}", crds_yaml()?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init_tracing(args.log_format);
    let client = kube::Client::try_default().await?;
    let config = Config {
        namespace: args.namespace,
        plan_ttl: args.plan_ttl,
        guardrails: Guardrails {
            protected_namespaces: args.protected_namespaces,
            max_replicas: args.max_replicas,
            max_steps: args.max_steps,
        },
        failpoint: FailPoint::from_env(),
        instance: std::env::var("POD_NAME").ok(),
        concurrency: args.concurrency,
        finished_ttl: args.finished_ttl,
    };
    tracing::info!(namespace = ?config.namespace, plan_ttl = ?config.plan_ttl, "starting kubilitics-ai");
    let ready = Ready::default();
    let server = tokio::spawn(telemetry::serve(args.metrics_addr, ready.clone()));
    let result = controller::run(client, config, Arc::new(BuiltinPlanner), ready).await;
    server.abort();
    result
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
