//! What both binaries do around their commands: logging set-up and the one-line error exit.

use std::process::ExitCode;

/// Logs to stderr at `level` (else `$LAZYRUN_LOG`, else warn) for the given crates; returns
/// the level used.
pub fn init_logging(level: Option<String>, crates: &[&str]) -> String {
    let level = level
        .or_else(|| std::env::var("LAZYRUN_LOG").ok())
        .unwrap_or_else(|| "warn".into());
    let spec = |l: &str| {
        crates
            .iter()
            .map(|c| format!("{c}={l}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(spec(&level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(spec("warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    level
}

/// Exit status 0, or the error and its causes on one line and status 1.
pub fn exit(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", crate::format::one_line(&e));
            ExitCode::from(1)
        }
    }
}
