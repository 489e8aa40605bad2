//! `kubectl kubilitics …`: the kubectl plugin entry (same crate as the operator).

use clap::Parser;

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = kubilitics_ai::plugin::PluginCli::parse();
    if let Err(e) = kubilitics_ai::plugin::run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
