//! The `sitg-bot` command line: one binary for every role of the fleet.

use clap::{Parser, Subcommand};

/// SITG GitHub App bot fleet.
#[derive(Debug, Parser)]
#[command(name = "sitg-bot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the BotFleet CustomResourceDefinition (the content of crds/botfleet.yaml).
    Crd,
    /// Run the BotFleet operator against the cluster of the kubeconfig (or in-cluster).
    Operator(sitg_bot::operator::OperatorOptions),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", sitg_bot::operator::crd_yaml()?);
            Ok(())
        }
        Command::Operator(options) => {
            init_json_logs();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(sitg_bot::operator::run(options, shutdown_signal()))?;
            Ok(())
        }
    }
}

/// JSON log lines on stderr, filtered by `RUST_LOG` (default `info`).
fn init_json_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
