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
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
