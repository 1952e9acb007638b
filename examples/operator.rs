//! `operator`: an External Secrets Operator-compatible controller (feature `k8s`).
//!
//! ```text
//! operator [--group G] [--api-version v1|v1beta1] [--namespace NS]
//!          [--leader-elect] [--lease-name N] [--lease-namespace NS] [--lease-duration 15s]
//!          [--shards N --shard-index I] [--metrics-addr 0.0.0.0:8080]
//!          [--no-restart] [--no-watch-targets]
//!          [--log-format text|json] [--log info]
//! ```
//!
//! Watches ExternalSecret, SecretStore, ClusterSecretStore and ClusterExternalSecret in
//! the API group `G` (ESO's `external-secrets.io` by default) and keeps their targets in
//! sync; serves `/metrics`, `/healthz` and `/readyz`. See `deploy/README.md`.
//! Build: `cargo build --example operator --features k8s` (add `aws`, `gcp`, `doppler`
//! or use `full` for the providers).

#[cfg(not(feature = "k8s"))]
fn main() {
    eprintln!("operator needs feature `k8s`: cargo run --example operator --features k8s (or --features full)");
    std::process::exit(2);
}

#[cfg(feature = "k8s")]
fn main() {
    let code = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(k8s::main());
    std::process::exit(code);
}

#[cfg(feature = "k8s")]
mod k8s {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use clap::{Parser, ValueEnum};
    use secretsync::k8s::controller::{Controller, ControllerConfig, LeaseConfig, default_identity, serve};
    use secretsync::k8s::{KubeCredentials, infer_client};

    #[derive(Debug, Clone, Copy, ValueEnum)]
    enum LogFormat {
        Text,
        Json,
    }

    /// Keep Kubernetes Secrets in sync with ExternalSecrets, as ESO does.
    #[derive(Debug, Parser)]
    #[command(name = "operator", version)]
    struct Args {
        /// API group of the ESO kinds (another group runs beside ESO).
        #[arg(long, default_value = "external-secrets.io", env = "SECRETSYNC_GROUP")]
        group: String,
        /// API version of the ESO kinds.
        #[arg(long = "api-version", default_value = "v1")]
        api_version: String,
        /// Watch only this namespace (default: all).
        #[arg(long, env = "SECRETSYNC_NAMESPACE")]
        namespace: Option<String>,
        /// Elect one writing replica through a coordination.k8s.io Lease.
        #[arg(long)]
        leader_elect: bool,
        /// Lease name (suffixed `-shard-<i>` when sharded).
        #[arg(long, default_value = "secretsync-operator")]
        lease_name: String,
        /// Lease namespace (default: $POD_NAMESPACE, else `default`).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// Lease duration in seconds; the holder renews every third of it.
        #[arg(long, default_value_t = 15)]
        lease_duration: u64,
        /// Spread resources over N shards by a hash of namespace/name.
        #[arg(long, default_value_t = 1)]
        shards: u32,
        /// The shard this replica serves (0..N); each shard has its own Lease.
        #[arg(long, default_value_t = 0)]
        shard_index: u32,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Do not restart the workloads that read a changed Secret.
        #[arg(long)]
        no_restart: bool,
        /// Do not watch managed Secrets/ConfigMaps (no list/watch on Secrets needed; targets
        /// edited or deleted by someone are then repaired at the next refresh only).
        #[arg(long)]
        no_watch_targets: bool,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Log filter (also RUST_LOG).
        #[arg(long, default_value = "info")]
        log: String,
    }

    pub async fn main() -> i32 {
        let args = match Args::try_parse() {
            Ok(a) => a,
            Err(e) => {
                let code = if e.use_stderr() { 2 } else { 0 };
                let _ = e.print();
                return code;
            }
        };
        let filter = std::env::var("RUST_LOG").unwrap_or(args.log.clone());
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match args.log_format {
            LogFormat::Json => logs.json().init(),
            LogFormat::Text => logs.init(),
        }
        let client = match infer_client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no Kubernetes client");
                return 1;
            }
        };
        let config = ControllerConfig {
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
        let registry = secretsync::registry().with_credentials(Arc::new(KubeCredentials::new(client.clone())));
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
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        match controller.run(shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, "operator stopped");
                1
            }
        }
    }
}
