//! The `sitg-sandbox` command line: the simulators of GitHub and the SITG backend, on
//! their own or with a fleet of `sitg-bot worker` processes in front of them.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use sitg_sandbox::dev::{self, DevArgs};
use sitg_sandbox::standalone::{self, SandboxArgs};

/// Simulators of GitHub and the SITG backend, for trying and measuring sitg-bot locally.
#[derive(Debug, Parser)]
#[command(name = "sitg-sandbox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run two `sitg-bot worker` processes against the simulators, push GitHub's example
    /// payloads through them and print what happened.
    Dev(DevArgs),
    /// Run the backend and GitHub simulators on their own, print the environment a
    /// worker needs (KEY=VALUE lines) and serve until Ctrl-C: for load harnesses.
    Serve(SandboxArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
        .and_then(|rt| {
            rt.block_on(async move {
                match cli.command {
                    Command::Dev(args) => dev::run(args).await,
                    Command::Serve(args) => Ok(standalone::run(args, stop_signal()).await?),
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sitg-sandbox: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C); never, when the handlers cannot be set up.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("sitg-sandbox: cannot handle signals; stop it with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
