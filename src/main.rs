//! The `sitg-bot` command line: one binary for every role of the fleet.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sitg_bot::shutdown::{Phase, Shutdown};
use tokio::net::TcpListener;

use sitg_bot::worker::WorkerConfig;
use sitg_bot::worker::{self, Listeners};

/// SITG GitHub App bot fleet.
#[derive(Debug, Parser)]
#[command(name = "sitg-bot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one worker replica, configured from the environment (variables below).
    #[command(after_help = sitg_bot::contract::env::worker_help())]
    Worker,
    /// Print the BotFleet CustomResourceDefinition (the content of crds/botfleet.yaml).
    Crd,
    /// Run the BotFleet operator against the cluster of the kubeconfig (or in-cluster).
    Operator(sitg_bot::operator::OperatorOptions),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise: the chart's `helm test` runs
    /// it against the operator's /healthz (the image has no shell or curl).
    Probe(sitg_bot::probe::ProbeArgs),
    /// Ask GitHub once to redeliver the App's failed webhook deliveries (one sweep;
    /// GitHub settings from the environment, as for the worker).
    Redeliver(sitg_bot::redelivery::cli::RedeliverArgs),
    /// Release claimed outbox actions by hand (report them RETRYABLE_FAILURE with the
    /// worker id that claimed them), for a worker whose claim journal was lost.
    Release(sitg_bot::outbox::release::ReleaseArgs),
    /// Check the production verification checklist against running replicas: /healthz,
    /// two /metrics scrapes, counters that must move or stay flat; prints a table per
    /// replica. Exit code 0 when it holds, 1 when a check failed, 2 when it could not run.
    Verify(sitg_bot::verify::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker => run_worker(),
        Command::Crd => sitg_bot::operator::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(Into::into),
        Command::Operator(options) => run_operator(options),
        Command::Probe(args) => return run_probe(&args),
        Command::Redeliver(args) => run_redeliver(args),
        Command::Release(args) => run_release(args),
        Command::Verify(args) => return run_verify(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line per problem (a worker configuration lists them all).
            for line in format!("{err:#}").lines() {
                eprintln!("sitg-bot: {line}");
            }
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}

fn run_worker() -> anyhow::Result<()> {
    // Configuration errors are reported before anything else starts: every problem, one
    // line each naming the variable, exit code 2.
    let config = WorkerConfig::from_env()?;
    let _log_guard = sitg_bot::telemetry::init(
        config.log_format,
        sitg_bot::contract::env::DEFAULT_LOG_LEVEL,
    );
    let rt = runtime()?;
    rt.block_on(async move {
        let state = worker::build_state(&config)?;
        let main = bind(config.bind_address, config.port, "PORT")?;
        let metrics = match config.metrics_port {
            Some(port) if port != config.port => {
                Some(bind(config.bind_address, port, "METRICS_PORT")?)
            }
            _ => None,
        };
        let shutdown = Shutdown::new();
        tokio::spawn(forward_signals(shutdown.clone()));
        worker::run(config, state, Listeners { main, metrics }, shutdown).await?;
        Ok(())
    })
}

fn run_operator(options: sitg_bot::operator::OperatorOptions) -> anyhow::Result<()> {
    let _log_guard = sitg_bot::telemetry::init(sitg_bot::contract::LogFormat::Json, "info");
    let shutdown = Shutdown::new();
    runtime()?.block_on(async move {
        tokio::spawn(forward_signals(shutdown.clone()));
        sitg_bot::operator::run(options, shutdown).await?;
        Ok(())
    })
}

fn run_probe(args: &sitg_bot::probe::ProbeArgs) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(sitg_bot::probe::run(args))
                .map_err(|e| e.to_string())
        });
    match outcome {
        Ok(status) => {
            println!("GET {}: HTTP {status}", args.url);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("sitg-bot probe: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_redeliver(args: sitg_bot::redelivery::cli::RedeliverArgs) -> anyhow::Result<()> {
    let format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("text") => sitg_bot::contract::LogFormat::Text,
        _ => sitg_bot::contract::LogFormat::Json,
    };
    let _log_guard = sitg_bot::telemetry::init(format, "info");
    runtime()?.block_on(async move {
        sitg_bot::redelivery::cli::run(args).await?;
        Ok(())
    })
}

fn run_release(args: sitg_bot::outbox::release::ReleaseArgs) -> anyhow::Result<()> {
    let released = runtime()?.block_on(sitg_bot::outbox::release::run(args))?;
    let mut failed = 0;
    for r in &released {
        match &r.result {
            Ok(status) => println!("{} released ({status})", r.action_id),
            Err(err) => {
                failed += 1;
                println!("{} not released: {err}", r.action_id);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} actions not released", released.len());
    }
    Ok(())
}

fn run_verify(args: &sitg_bot::verify::VerifyArgs) -> ExitCode {
    sitg_bot::tls::install_crypto_provider();
    let report = runtime().and_then(|rt| {
        rt.block_on(sitg_bot::verify::run(args))
            .map_err(anyhow::Error::from)
    });
    match report {
        Ok(report) => {
            print!(
                "{}",
                sitg_bot::verify::table::render(&report, args.interval)
            );
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("sitg-bot: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Listens on `ip:port` with the worker's accept backlog; the error names `var`.
fn bind(ip: std::net::IpAddr, port: u16, var: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(ip, port);
    sitg_bot::worker::serve::bind_listener(addr)
        .with_context(|| format!("{var}: cannot listen on {addr}"))
}

/// SIGTERM (Kubernetes, systemd) or SIGINT (Ctrl-C) starts a graceful shutdown: enters
/// [`Phase::Requested`].
async fn forward_signals(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(
            event = "signal_handler_failed",
            "could not install the SIGTERM and SIGINT handlers"
        );
        return;
    };
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(event = "signal", signal, "{signal} received; shutting down");
    shutdown.enter(Phase::Requested);
}
