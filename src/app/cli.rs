//! The `secretsync` command line (feature `cli`): one binary with the subcommands `sync`,
//! `check`, `rotate`, `run`, `operator` and `completions`. The examples `sync`, `run` and
//! `rotate` are this same code under one subcommand ([`main_with_subcommand`]).
//!
//! Exit codes: 0 done, 1 some spec failed, 2 bad arguments or manifests; `run` exits with
//! its command's code; 130 / 143 when stopped by SIGINT / SIGTERM before a cycle completed.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use super::rotate::{RotateOptions, run_rotate};
use super::run::{RunOptions, run_run};
use super::{Exit, Format, SinkChoice, Stop, SyncOptions, run_sync};

/// Move secrets from where they are kept to where they are used, keep them in sync, rotate
/// them. Reads External Secrets Operator manifests unchanged.
#[derive(Debug, Parser)]
#[command(name = "secretsync", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep Kubernetes Secrets, manifest folders or .env files in sync with ESO manifests.
    Sync(SyncArgs),
    /// Validate manifests offline: fails (exit 2) on whatever the run would refuse.
    Check(CheckArgs),
    /// Ensure and rotate the secrets of a plan, then sync and verify their targets.
    Rotate(RotateArgs),
    /// Run a command with the specs' values as environment variables, writing nothing.
    Run(RunArgs),
    /// The ESO-compatible Kubernetes controller (feature `k8s`).
    Operator(OperatorArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Lines for people.
    Text,
    /// One JSON object per report, with a `time`.
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
        }
    }
}

/// Log options every subcommand has.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter (RUST_LOG wins when set), e.g. `info` or `secretsync=debug`. Logs go to
    /// stderr, coloured only on a terminal and never with NO_COLOR set.
    #[arg(long, value_name = "FILTER", default_value = "warn", global = true)]
    pub log: String,
}

/// `secretsync sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// A manifest file or a folder of them, read recursively (repeatable).
    #[arg(long = "manifest", short = 'm', value_name = "PATH", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Run one cycle and exit (default: run as a daemon on the specs' refresh intervals).
    #[arg(long)]
    pub once: bool,
    /// Print the plan (keys and fingerprints, never values) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Validate offline and exit, as `secretsync check`.
    #[arg(long)]
    pub check: bool,
    /// Write targets as Secret/ConfigMap manifests under DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["env_file", "stdout"])]
    pub output: Option<PathBuf>,
    /// Write targets as dotenv files; PATH uses {namespace} and {name} when there is more
    /// than one target.
    #[arg(long, value_name = "PATH", conflicts_with = "stdout")]
    pub env_file: Option<String>,
    /// Print targets as manifests on stdout (reports go to stderr), for `kubectl apply -f -`.
    #[arg(long)]
    pub stdout: bool,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Print reports only for cycles that wrote, restarted or failed something.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Also print notes: documents of other kinds that were left alone.
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Daemon: serve change events here — `POST /refresh`, Doppler webhooks
    /// (`/events/doppler/...`) and `/metrics` (e.g. 127.0.0.1:8089). See docs/events.md.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Daemon: a file holding the bearer token `POST /refresh` requires (or set
    /// SECRETSYNC_REFRESH_TOKEN). Without one, `/refresh` refuses every call.
    #[arg(long, value_name = "PATH")]
    pub refresh_token_file: Option<PathBuf>,
    /// Log options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// The `/refresh` token from a file (trailing newline dropped) or SECRETSYNC_REFRESH_TOKEN.
fn refresh_token(file: Option<&std::path::Path>) -> Result<Option<secretsync_core::SecretValue>, String> {
    if let Some(f) = file {
        let text = std::fs::read(f).map_err(|e| format!("--refresh-token-file {}: {e}", f.display()))?;
        let text = text.strip_suffix(b"\n").unwrap_or(&text);
        if text.is_empty() {
            return Err(format!("--refresh-token-file {}: the file is empty", f.display()));
        }
        return Ok(Some(secretsync_core::SecretValue::from(text.to_vec())));
    }
    Ok(std::env::var("SECRETSYNC_REFRESH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(secretsync_core::SecretValue::from))
}

/// `secretsync check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A manifest file or a folder of them, read recursively (repeatable).
    #[arg(long = "manifest", short = 'm', value_name = "PATH", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Log options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `secretsync rotate`.
#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    /// The rotation plan (YAML).
    #[arg(long, value_name = "PLAN")]
    pub plan: PathBuf,
    /// Manifests with the stores and the ExternalSecrets reading the keys (repeatable).
    #[arg(long = "manifest", short = 'm', value_name = "PATH")]
    pub manifests: Vec<PathBuf>,
    /// Regenerate generated secrets even when they have a value.
    #[arg(long)]
    pub rotate: bool,
    /// Print what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Targets are manifests under DIR (default: Kubernetes).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Targets are dotenv files ({namespace} and {name} allowed).
    #[arg(long, value_name = "PATH", conflicts_with = "output")]
    pub env_file: Option<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Log options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// `secretsync run`.
#[derive(Debug, Clone, Args)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Manifests (repeatable).
    #[arg(long = "manifest", short = 'm', value_name = "PATH", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Restart the command when a value changes.
    #[arg(long)]
    pub watch: bool,
    /// Mask the values in the command's output.
    #[arg(long)]
    pub redact: bool,
    /// Seconds between checks with --watch (default: the shortest refreshInterval).
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u64>,
    /// The command and its arguments, after `--`.
    #[arg(required = true, allow_hyphen_values = true, value_name = "CMD")]
    pub command: Vec<String>,
    /// Log options.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Operator log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `secretsync operator`.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// API group of the ESO kinds (another group runs beside ESO).
    #[arg(long, default_value = "external-secrets.io", env = "SECRETSYNC_GROUP")]
    pub group: String,
    /// API version of the ESO kinds.
    #[arg(long = "api-version", default_value = "v1")]
    pub api_version: String,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "SECRETSYNC_NAMESPACE")]
    pub namespace: Option<String>,
    /// Elect one writing replica through a coordination.k8s.io Lease.
    #[arg(long)]
    pub leader_elect: bool,
    /// Lease name (suffixed `-shard-<i>` when sharded).
    #[arg(long, default_value = "secretsync-operator")]
    pub lease_name: String,
    /// Lease namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Lease duration in seconds; the holder renews every third of it.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Spread resources over N shards by a hash of namespace/name.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// The shard this replica serves (0..N); each shard has its own Lease.
    #[arg(long, default_value_t = 0)]
    pub shard_index: u32,
    /// Address of /metrics, /healthz, /readyz and the change-event routes (`POST /refresh`,
    /// `/events/doppler/...`; see docs/events.md).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// A file holding the bearer token `POST /refresh` requires (or set
    /// SECRETSYNC_REFRESH_TOKEN). Without one, `/refresh` refuses every call.
    #[arg(long, value_name = "PATH")]
    pub refresh_token_file: Option<PathBuf>,
    /// Do not restart the workloads that read a changed Secret.
    #[arg(long)]
    pub no_restart: bool,
    /// Do not watch managed Secrets/ConfigMaps (targets edited or deleted by someone are
    /// then repaired at the next refresh only).
    #[arg(long)]
    pub no_watch_targets: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (RUST_LOG wins when set).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log: String,
}

/// Whether logs may be coloured: stderr is a terminal and `NO_COLOR` is unset or empty.
pub fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_logs(filter: &str, json: bool) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour() && !json);
    let _ = if json { logs.json().try_init() } else { logs.try_init() };
}

fn sink_of(output: Option<PathBuf>, env_file: Option<String>, stdout: bool) -> SinkChoice {
    match (output, env_file, stdout) {
        (Some(dir), _, _) => SinkChoice::Folder(dir),
        (_, Some(t), _) => SinkChoice::Dotenv(t),
        (_, _, true) => SinkChoice::Stdout,
        _ => SinkChoice::Implied,
    }
}

/// Runs a parsed command line; returns the exit code.
pub async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Sync(a) => {
            init_logs(&a.log.log, false);
            let refresh_token = match refresh_token(a.refresh_token_file.as_deref()) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::BadInput as i32;
                }
            };
            let opts = SyncOptions {
                listen: a.listen.map(crate::app::events::ListenOn::new),
                refresh_token,
                manifests: a.manifests,
                once: a.once,
                dry_run: a.dry_run,
                check: a.check,
                sink: sink_of(a.output, a.env_file, a.stdout),
                format: a.format.into(),
                quiet: a.quiet,
                verbose: a.verbose,
                stop: Stop::on_signals(),
                ..SyncOptions::default()
            };
            run_sync(&opts, &mut std::io::stdout(), &mut std::io::stderr()).await as i32
        }
        Command::Check(a) => {
            init_logs(&a.log.log, false);
            let opts = SyncOptions {
                manifests: a.manifests,
                check: true,
                stop: Stop::on_signals(),
                ..SyncOptions::default()
            };
            run_sync(&opts, &mut std::io::stdout(), &mut std::io::stderr()).await as i32
        }
        Command::Rotate(a) => {
            init_logs(&a.log.log, false);
            let opts = RotateOptions {
                plan: a.plan,
                manifests: a.manifests,
                rotate: a.rotate,
                dry_run: a.dry_run,
                yes: a.yes,
                sink: sink_of(a.output, a.env_file, false),
                format: a.format.into(),
            };
            let env = |k: &str| std::env::var(k).ok();
            let stop = Stop::on_signals();
            let (mut input, mut out, mut err) = (std::io::stdin().lock(), std::io::stdout(), std::io::stderr());
            let rotated = run_rotate(&opts, &env, &mut input, &mut out, &mut err);
            tokio::select! {
                code = rotated => code as i32,
                _ = stop.requested() => {
                    eprintln!("stopping");
                    Exit::Interrupted as i32
                }
            }
        }
        Command::Run(a) => {
            init_logs(&a.log.log, false);
            let opts = RunOptions {
                manifests: a.manifests,
                watch: a.watch,
                redact: a.redact,
                interval: a.interval.map(Duration::from_secs),
                command: a.command,
            };
            run_run(&opts, &mut std::io::stderr()).await
        }
        Command::Operator(a) => operator(a).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "secretsync", &mut std::io::stdout());
            0
        }
    }
}

/// Parses `args` (the program name first) and runs; returns the exit code. Help and
/// `--version` exit 0, bad arguments 2.
pub async fn run_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => run(cli).await,
        Err(e) => {
            let code = if e.use_stderr() { Exit::BadInput as i32 } else { 0 };
            let _ = e.print();
            code
        }
    }
}

/// The binary's `main`: parses the process's arguments, runs on a multi-threaded Tokio
/// runtime, and exits with the code.
pub fn main() -> ! {
    main_from(std::env::args_os().collect())
}

/// The examples' `main`: the process's arguments as those of one subcommand
/// (`sync --manifest M` is `secretsync sync --manifest M`).
pub fn main_with_subcommand(subcommand: &str) -> ! {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    args.insert(1.min(args.len()), subcommand.into());
    main_from(args)
}

fn main_from(args: Vec<OsString>) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let code = runtime.block_on(run_from(args));
    // Exit without waiting for blocked readers (a FIFO, a hung mount) to finish.
    std::process::exit(code)
}

#[cfg(not(feature = "k8s"))]
async fn operator(_: OperatorArgs) -> i32 {
    eprintln!("error: the operator needs feature `k8s`: cargo install --path . --features full (or --features k8s)");
    Exit::BadInput as i32
}

#[cfg(feature = "k8s")]
async fn operator(args: OperatorArgs) -> i32 {
    use std::sync::Arc;

    use secretsync_k8s::{KubeCredentials, infer_client};
    use secretsync_operator::{Controller, ControllerConfig, LeaseConfig, default_identity, serve};

    init_logs(&args.log, args.log_format == LogFormat::Json);
    let client = match infer_client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no Kubernetes client");
            return 1;
        }
    };
    let refresh_token = match refresh_token(args.refresh_token_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            return 2;
        }
    };
    let config = ControllerConfig {
        refresh_token,
        group: args.group,
        version: args.api_version,
        namespace: args.namespace,
        identity: default_identity(),
        lease: args.leader_elect.then(|| {
            LeaseConfig::new(
                args.lease_name,
                args.lease_namespace,
                Duration::from_secs(args.lease_duration.max(3)),
            )
        }),
        shards: args.shards,
        shard_index: args.shard_index,
        restart_consumers: !args.no_restart,
        watch_targets: !args.no_watch_targets,
        ..ControllerConfig::default()
    };
    let registry = crate::registry().with_credentials(Arc::new(KubeCredentials::new(client.clone())));
    let controller = match Controller::new(client, registry, config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            return 2;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %args.metrics_addr, error = %e, "cannot serve metrics");
            return 1;
        }
    };
    tokio::spawn(serve(listener, controller.handle()));
    let stop = Stop::on_signals();
    match controller.run(async move { stop.requested().await }).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            1
        }
    }
}
