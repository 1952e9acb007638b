//! `sync`: keep targets in sync with ESO manifests.
//!
//! ```text
//! sync --manifest PATH [--manifest PATH]... [--once] [--dry-run] [--check]
//!      [--output DIR | --env-file PATH | --stdout] [--format text|json]
//! ```
//! Exit codes: 0 all synced, 1 some spec failed, 2 bad arguments or manifests.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use secretsync::app::{Exit, Format, SinkChoice, SyncOptions, run_sync};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

/// Keep Kubernetes Secrets, manifest folders or .env files in sync with ESO manifests.
#[derive(Debug, Parser)]
#[command(name = "sync", version)]
struct Args {
    /// A manifest file or a folder of them (repeatable).
    #[arg(long = "manifest", short = 'm', required = true)]
    manifests: Vec<PathBuf>,
    /// Run one cycle and exit (default: run as a daemon on the specs' refresh intervals).
    #[arg(long)]
    once: bool,
    /// Print the plan (keys and fingerprints, never values) and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Validate the manifests offline and exit; missing stores are warnings.
    #[arg(long)]
    check: bool,
    /// Write targets as Secret/ConfigMap manifests under DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["env_file", "stdout"])]
    output: Option<PathBuf>,
    /// Write targets as dotenv files; PATH may use {namespace} and {name}.
    #[arg(long, value_name = "PATH", conflicts_with = "stdout")]
    env_file: Option<String>,
    /// Print targets as manifests on stdout.
    #[arg(long)]
    stdout: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: FormatArg,
    /// Log filter (also RUST_LOG), e.g. `info` or `secretsync=debug`.
    #[arg(long, default_value = "warn")]
    log: String,
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
    let filter = std::env::var("RUST_LOG").unwrap_or(args.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let sink = match (args.output, args.env_file, args.stdout) {
        (Some(dir), _, _) => SinkChoice::Folder(dir),
        (_, Some(t), _) => SinkChoice::Dotenv(t),
        (_, _, true) => SinkChoice::Stdout,
        _ => SinkChoice::Implied,
    };
    let opts = SyncOptions {
        manifests: args.manifests,
        once: args.once,
        dry_run: args.dry_run,
        check: args.check,
        sink,
        format: match args.format {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        },
        ..SyncOptions::default()
    };
    let code = run_sync(&opts, &mut std::io::stdout(), &mut std::io::stderr()).await;
    std::process::exit(code as i32);
}
