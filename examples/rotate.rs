//! `rotate`: ensure and rotate the secrets of a plan, then sync and verify their targets.
//!
//! ```text
//! rotate --plan PLAN [--manifest PATH]... [--rotate] [--dry-run] [--yes]
//!        [--output DIR | --env-file PATH] [--format text|json]
//! ```

use std::path::PathBuf;

use clap::Parser;
use secretsync::app::rotate::{RotateOptions, run_rotate};
use secretsync::app::{Exit, Format, SinkChoice};

/// Seed 000's setup-gcp-secrets.sh, for any provider.
#[derive(Debug, Parser)]
#[command(name = "rotate", version)]
struct Args {
    /// The rotation plan (YAML).
    #[arg(long)]
    plan: PathBuf,
    /// Manifests with the stores and the ExternalSecrets reading the keys (repeatable).
    #[arg(long = "manifest", short = 'm')]
    manifests: Vec<PathBuf>,
    /// Regenerate generated secrets even when they have a value.
    #[arg(long)]
    rotate: bool,
    /// Print what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Targets are manifests under DIR (default: Kubernetes).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Targets are dotenv files ({namespace} and {name} allowed).
    #[arg(long, value_name = "PATH", conflicts_with = "output")]
    env_file: Option<String>,
    /// `json` for a machine-readable report.
    #[arg(long, default_value = "text")]
    format: String,
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
    let opts = RotateOptions {
        plan: args.plan,
        manifests: args.manifests,
        rotate: args.rotate,
        dry_run: args.dry_run,
        yes: args.yes,
        sink: match (args.output, args.env_file) {
            (Some(d), _) => SinkChoice::Folder(d),
            (_, Some(t)) => SinkChoice::Dotenv(t),
            _ => SinkChoice::Implied,
        },
        format: if args.format == "json" {
            Format::Json
        } else {
            Format::Text
        },
    };
    let env = |k: &str| std::env::var(k).ok();
    let code = run_rotate(
        &opts,
        &env,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await;
    std::process::exit(code as i32);
}
