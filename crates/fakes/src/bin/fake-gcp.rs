//! `fake-gcp`: the fake GCP Secret Manager REST API on its own, for `gcloud` and Google's
//! client libraries.
//!
//! ```text
//! fake-gcp [--port N] [--request-log FILE]
//! ```
//! Prints `http://127.0.0.1:PORT/` on stdout, then serves until Ctrl-C or SIGTERM. Point
//! gcloud at it with an isolated config:
//! `CLOUDSDK_CONFIG=$(mktemp -d) gcloud config set api_endpoint_overrides/secretmanager http://127.0.0.1:PORT/`
//! plus `gcloud config set auth/disable_credentials true` and a project; or Google's Python
//! client with `transport="rest"`, anonymous credentials and
//! `client_options={"api_endpoint": "http://127.0.0.1:PORT"}`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secretsync_fakes::gcp::FakeSecretManager;

/// Run the fake GCP Secret Manager until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "fake-gcp")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// On exit, write one JSON line per request answered (operation, method, path, query,
    /// status) to this file.
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let fake = match FakeSecretManager::start_on(SocketAddr::from(([127, 0, 0, 1], args.port))).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-gcp: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(2);
        }
    };
    println!("{}/", fake.url());
    let _ = std::io::stdout().flush();
    eprintln!("fake-gcp: serving the Secret Manager API on {}", fake.url());
    if let Err(e) = secretsync_fakes::signal::shutdown().await {
        eprintln!("fake-gcp: cannot wait for a signal: {e}");
        return ExitCode::from(1);
    }
    let requests = fake.requests();
    if let Some(path) = &args.request_log {
        let lines: String = requests
            .iter()
            .map(|r| {
                let line = serde_json::json!({"operation": r.operation, "method": r.method, "path": r.path, "query": r.query, "status": r.status});
                format!("{line}\n")
            })
            .collect();
        if let Err(e) = std::fs::write(path, lines) {
            eprintln!("fake-gcp: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let unknown = fake.unknown_routes();
    eprintln!(
        "fake-gcp: {} requests answered, {} to unknown routes; stopping",
        requests.len(),
        unknown.len()
    );
    ExitCode::SUCCESS
}
