//! `run`: run a command with the specs' values as environment variables, writing nothing
//! to disk.
//!
//! ```text
//! run --manifest PATH... [--watch] [--redact] -- CMD ARGS
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secretsync::app::Exit;
use secretsync::app::run::{RunOptions, run_run};

/// Like `doppler run`: fetch, then exec with the values in the environment.
#[derive(Debug, Parser)]
#[command(name = "run", version, trailing_var_arg = true)]
struct Args {
    /// Manifests (repeatable).
    #[arg(long = "manifest", short = 'm', required = true)]
    manifests: Vec<PathBuf>,
    /// Restart the command when a value changes.
    #[arg(long)]
    watch: bool,
    /// Mask the values in the command's output.
    #[arg(long)]
    redact: bool,
    /// Seconds between checks with --watch (default: the shortest refreshInterval).
    #[arg(long)]
    interval: Option<u64>,
    /// The command and its arguments, after `--`.
    #[arg(required = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[tokio::main]
async fn main() {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { Exit::BadInput as i32 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or("warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = RunOptions {
        manifests: args.manifests,
        watch: args.watch,
        redact: args.redact,
        interval: args.interval.map(Duration::from_secs),
        command: args.command,
    };
    std::process::exit(run_run(&opts, &mut std::io::stderr()).await);
}
