//! `lazyfs`: serve a stored image as a writable copy-on-write FUSE filesystem. This binary parses
//! arguments, sets up logging and calls the libraries; each verb lives in its own module.

#[path = "../lazyrun/common.rs"]
mod common;
#[path = "../lazyrun/format.rs"]
#[allow(dead_code)]
mod format;
mod mount;
#[path = "../lazyrun/progress.rs"]
mod progress;
mod umount;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lazyfs",
    version,
    about = "Mount an image as a writable copy-on-write root filesystem, without root or overlayfs"
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
    /// Mount an image (pulling it first if it is not stored)
    Mount(mount::Args),
    /// Unmount a lazyfs mount and end its server
    #[command(alias = "unmount")]
    Umount(umount::Args),
}

/// Options every command shares.
pub struct Global {
    pub root: PathBuf,
    pub insecure: Vec<String>,
    pub log_level: String,
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
    let level = common::init_logging(cli.log_level.clone(), &["lazyrun", "fusefs"]);
    let global = Global {
        root: cli
            .root
            .clone()
            .unwrap_or_else(lazyrun::store::Store::default_root),
        insecure: cli.insecure_registry.clone(),
        log_level: level,
    };
    let result = match cli.command {
        Command::Mount(a) => mount::run(&global, a),
        Command::Umount(a) => umount::run(&global, a),
    };
    common::exit("lazyfs", result)
}
