//! `lazyrun`: a daemonless container tool. This binary parses arguments, sets up logging and
//! calls the library; each verb lives in its own module under `commands/`.

mod commands;
mod common;
mod format;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lazyrun",
    version,
    about = "Daemonless, rootless containers from a lazily fetched, deduplicated image store"
)]
struct Cli {
    /// Store directory [default: $LAZYRUN_ROOT, else /var/lib/lazyrun for root, else $XDG_DATA_HOME/lazyrun]
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Reach this registry (host[:port]) over plain HTTP; loopback registries always are
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// Log level (error, warn, info, debug, trace) [default: $LAZYRUN_LOG, else warn]
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry into the store
    Pull(commands::pull::Args),
    /// List stored images
    Images(commands::images::Args),
    /// Show an image's configuration, layers and history
    Inspect(commands::inspect::Args),
    /// Remove images
    Rmi(commands::rmi::Args),
    /// Remove unnamed images, unused layers and unreferenced file contents
    Prune(commands::prune::Args),
    /// Show store usage: logical bytes, stored bytes, dedup ratio
    Df(commands::df::Args),
}

/// Options every command shares.
pub struct Global {
    pub root: PathBuf,
    pub insecure: Vec<String>,
}

impl Global {
    pub fn store(&self) -> anyhow::Result<lazyrun::store::Store> {
        Ok(lazyrun::store::Store::open(&self.root)?)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(125)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    common::init_logging(cli.log_level.clone(), &["lazyrun"]);
    let global = Global {
        root: cli
            .root
            .clone()
            .unwrap_or_else(lazyrun::store::Store::default_root),
        insecure: cli.insecure_registry.clone(),
    };
    let result = match cli.command {
        Command::Pull(a) => commands::pull::run(&global, a),
        Command::Images(a) => commands::images::run(&global, a),
        Command::Inspect(a) => commands::inspect::run(&global, a),
        Command::Rmi(a) => commands::rmi::run(&global, a),
        Command::Prune(a) => commands::prune::run(&global, a),
        Command::Df(a) => commands::df::run(&global, a),
    };
    common::exit("lazyrun", result)
}
