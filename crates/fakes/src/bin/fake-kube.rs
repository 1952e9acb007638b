//! `fake-kube`: the fake Kubernetes API server on its own, to try `sync` and `operator`
//! without a cluster.
//!
//! ```text
//! fake-kube [--port N] [--kubeconfig PATH] [--request-log FILE]
//! ```
//! Prints a kubeconfig pointing at the fake (or writes it to PATH), then serves until
//! Ctrl-C or SIGTERM, printing a summary of the requests it answered. With
//! `--request-log FILE`, every request is appended to FILE as one JSON line (method, path,
//! query, status, userAgent, contentType, client). Then, in another shell:
//! `KUBECONFIG=PATH cargo run --example sync --features k8s -- -m examples/manifests --once`,
//! or plain `kubectl`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secretsync_fakes::kube::FakeKube;

/// Run the fake Kubernetes API server until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "fake-kube")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write the kubeconfig to this file instead of printing it.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Append one JSON line per request to this file.
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
    let fake = match FakeKube::start_on(SocketAddr::from(([127, 0, 0, 1], args.port))).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake-kube: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &args.request_log
        && let Err(e) = fake.log_requests_to(path)
    {
        eprintln!("fake-kube: cannot open the request log {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let kubeconfig = fake.kubeconfig_yaml();
    match &args.kubeconfig {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &kubeconfig) {
                eprintln!("fake-kube: cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
            eprintln!(
                "fake-kube: serving {}; kubeconfig written to {}",
                fake.url(),
                path.display()
            );
            eprintln!("fake-kube: export KUBECONFIG={}", path.display());
        }
        None => {
            eprintln!("fake-kube: serving {}; kubeconfig follows", fake.url());
            print!("{kubeconfig}");
        }
    }
    if let Err(e) = secretsync_fakes::signal::shutdown().await {
        eprintln!("fake-kube: cannot wait for a signal: {e}");
        return ExitCode::from(1);
    }
    let requests = fake.requests();
    eprintln!(
        "fake-kube: {} requests answered, {} writes; stopping",
        requests.len(),
        fake.write_count()
    );
    ExitCode::SUCCESS
}
