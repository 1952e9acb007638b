//! `kube-requests`: what secretsync asks a Kubernetes API server at scale, counted at the
//! fake API server's request log (BENCHMARKS.md, issue 18). Run by hand; prints counts and
//! wall times, asserts nothing.
//!
//! ```text
//! cargo build --bin secretsync --features k8s
//! cargo run --example kube-requests --features k8s -- [--targets 10000] [--namespaces 10]
//!     [--only sync|operator] [--bin target/debug/secretsync]
//! ```
//!
//! - `sync`: the real `secretsync sync --once` (a child process, `KUBECONFIG` pointing at an
//!   in-process fake) over N ExternalSecrets spread over the namespaces: a first run, an
//!   unchanged run, then a run with one new ExternalSecret.
//! - `operator`: the operator library (as `secretsync operator` runs it, with leader
//!   election) over the same N ExternalSecrets in the fake: the first sync, one unchanged
//!   refresh round (every ExternalSecret refreshed at least once), then one new
//!   ExternalSecret.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use secretsync::operator::metrics::ResourceLabels;
use secretsync::operator::{Controller, ControllerConfig, LeaseConfig};
use secretsync_fakes::kube::{FakeKube, RequestRecord};
use serde_json::json;

const KEYS: usize = 100;
/// A fixed fingerprint key, so the `sync` runs agree without a key file.
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct Args {
    targets: usize,
    namespaces: usize,
    only: Option<String>,
    bin: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        targets: 10_000,
        namespaces: 10,
        only: None,
        bin: PathBuf::from("target/debug/secretsync"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--targets" => a.targets = value().parse().expect("--targets N"),
            "--namespaces" => a.namespaces = value().parse().expect("--namespaces N"),
            "--only" => a.only = Some(value()),
            "--bin" => a.bin = PathBuf::from(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Requests by what they are.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    lists: usize,
    pages: usize,
    target_reads: usize,
    target_writes: usize,
    lease: usize,
    watches: usize,
    other: Vec<String>,
}

fn is_target_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    // /api/v1/namespaces/{ns}/secrets/{name}
    parts.len() == 7 && parts[1] == "api" && (parts[5] == "secrets" || parts[5] == "configmaps")
}

/// `PATCH externalsecrets/status`, `POST events`: a request without names.
fn op_of(r: &RequestRecord) -> String {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    // api/v1/... or apis/{group}/{version}/...
    let rest = if parts.first() == Some(&"api") {
        &parts[2..]
    } else {
        &parts[3.min(parts.len())..]
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [plural] | [plural, _] => plural.to_string(),
        [plural, _, sub, ..] => format!("{plural}/{sub}"),
        [] => String::new(),
    };
    format!("{} {resource}", r.method)
}

fn count(log: &[RequestRecord]) -> Counts {
    let mut c = Counts::default();
    for r in log {
        let target_list = r.method == "GET" && (r.path.ends_with("/secrets") || r.path.ends_with("/configmaps"));
        if r.query.contains("watch=true") {
            c.watches += 1;
        } else if r.path.contains("/leases") {
            c.lease += 1;
        } else if target_list && r.query.contains("continue=") {
            c.pages += 1;
        } else if target_list {
            c.lists += 1;
        } else if is_target_path(&r.path) && r.method == "GET" {
            c.target_reads += 1;
        } else if is_target_path(&r.path) {
            c.target_writes += 1;
        } else {
            c.other.push(op_of(r));
        }
    }
    c.total = log.len() - c.watches;
    c
}

fn print_row(scenario: &str, step: &str, c: &Counts, wall: Duration) {
    let mut by: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for o in &c.other {
        *by.entry(o.as_str()).or_default() += 1;
    }
    let other: Vec<String> = by.iter().map(|(op, n)| format!("{n} {op}")).collect();
    println!(
        "| {scenario} | {step} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
        c.total,
        c.lists,
        c.pages,
        c.target_reads,
        c.target_writes,
        c.lease,
        if c.other.is_empty() {
            "0".to_string()
        } else {
            format!("{}: {}", c.other.len(), other.join(", "))
        },
        wall.as_secs_f64()
    );
}

fn es_doc(ns: &str, name: &str, key: usize, interval: &str) -> serde_json::Value {
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "refreshInterval": interval,
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": "bulk"},
            "target": {"name": name, "creationPolicy": "Owner"},
            "data": [{"secretKey": "value", "remoteRef": {"key": format!("key-{key}")}}],
        },
    })
}

fn store_doc() -> serde_json::Value {
    let data: Vec<_> = (0..KEYS)
        .map(|k| json!({"key": format!("key-{k}"), "value": format!("value-{k}")}))
        .collect();
    json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
        "metadata": {"name": "bulk"},
        "spec": {"provider": {"fake": {"data": data}}},
    })
}

fn namespaces(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("ns-{i}")).collect()
}

fn write_manifests(path: &Path, a: &Args, extra: bool) {
    let ns = namespaces(a.namespaces);
    let mut docs = vec![serde_norway::to_string(&store_doc()).unwrap()];
    for i in 0..a.targets {
        docs.push(serde_norway::to_string(&es_doc(&ns[i % ns.len()], &format!("es-{i}"), i % KEYS, "1h")).unwrap());
    }
    if extra {
        docs.push(serde_norway::to_string(&es_doc(&ns[3 % ns.len()], "newcomer", 3, "1h")).unwrap());
    }
    std::fs::write(path, docs.join("---\n")).unwrap();
}

fn sync_once(a: &Args, kubeconfig: &Path, manifests: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(&a.bin)
        .args(["sync", "--once", "--format", "json", "--manifest"])
        .arg(manifests)
        .env("KUBECONFIG", kubeconfig)
        .env("SECRETSYNC_FINGERPRINT_KEY", KEY)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (cargo build --bin secretsync --features k8s): {e}",
                a.bin.display()
            )
        });
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "sync --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

async fn sync_scenario(a: &Args) {
    let fake = FakeKube::start().await;
    let ns = namespaces(a.namespaces);
    fake.create_namespaces(&ns.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, fake.kubeconfig_yaml()).unwrap();
    let manifests = dir.path().join("manifests.yaml");
    write_manifests(&manifests, a, false);

    let wall = sync_once(a, &kubeconfig, &manifests);
    print_row("sync --once", "first (creates all)", &count(&fake.requests()), wall);
    fake.clear_requests();
    let wall = sync_once(a, &kubeconfig, &manifests);
    print_row("sync --once", "unchanged", &count(&fake.requests()), wall);
    write_manifests(&manifests, a, true);
    fake.clear_requests();
    let wall = sync_once(a, &kubeconfig, &manifests);
    print_row("sync --once", "one new ExternalSecret", &count(&fake.requests()), wall);
}

fn eso_api(client: &kube::Client, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("external-secrets.io", "v1", kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn operator_log(fake: &FakeKube) -> Vec<RequestRecord> {
    fake.requests()
        .into_iter()
        .filter(|r| r.client.as_deref() == Some("operator"))
        .collect()
}

async fn operator_scenario(a: &Args) {
    let fake = FakeKube::start().await;
    let ns = namespaces(a.namespaces);
    fake.create_namespaces(&ns.iter().map(String::as_str).collect::<Vec<_>>());
    let client = fake.client();
    let store: DynamicObject = serde_json::from_value(store_doc()).unwrap();
    eso_api(&client, "ClusterSecretStore", "clustersecretstores", None)
        .create(&PostParams::default(), &store)
        .await
        .unwrap();
    futures::stream::iter(0..a.targets)
        .map(|i| {
            let client = client.clone();
            let ns = ns[i % ns.len()].clone();
            async move {
                let obj: DynamicObject =
                    serde_json::from_value(es_doc(&ns, &format!("es-{i}"), i % KEYS, "30s")).unwrap();
                eso_api(&client, "ExternalSecret", "externalsecrets", Some(&ns))
                    .create(&PostParams::default(), &obj)
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    fake.clear_requests();

    let cfg = ControllerConfig {
        identity: "kube-requests".into(),
        restart_consumers: false,
        lease: Some(LeaseConfig::new("secretsync", "default", Duration::from_secs(15))),
        ..ControllerConfig::default()
    };
    let controller = Controller::new(fake.named_client("operator"), secretsync::registry(), cfg).unwrap();
    let handle = controller.handle();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller.run(async move {
        let _ = stop_rx.await;
    }));
    let calls = |i: usize| {
        handle
            .metrics()
            .sync_calls
            .get_or_create(&ResourceLabels {
                namespace: ns[i % ns.len()].clone(),
                name: format!("es-{i}"),
            })
            .get()
    };
    let t = Instant::now();
    while (0..a.targets).any(|i| calls(i) == 0) {
        assert!(t.elapsed() < Duration::from_secs(600), "the first sync did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = t.elapsed();
    // Status writes and the watch events of our own writes settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    print_row("operator", "first sync", &count(&operator_log(&fake)), first);

    let before: Vec<u64> = (0..a.targets).map(calls).collect();
    fake.clear_requests();
    let t = Instant::now();
    while (0..a.targets).any(|i| calls(i) <= before[i]) {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the refresh round did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let round = t.elapsed();
    print_row(
        "operator",
        "one unchanged refresh round (30s interval)",
        &count(&operator_log(&fake)),
        round,
    );

    fake.clear_requests();
    let t = Instant::now();
    let obj: DynamicObject = serde_json::from_value(es_doc(&ns[3 % ns.len()], "newcomer", 3, "30s")).unwrap();
    eso_api(&client, "ExternalSecret", "externalsecrets", Some(&ns[3 % ns.len()]))
        .create(&PostParams::default(), &obj)
        .await
        .unwrap();
    let status_path = format!(
        "/apis/external-secrets.io/v1/namespaces/{}/externalsecrets/newcomer/status",
        ns[3 % ns.len()]
    );
    while !operator_log(&fake).iter().any(|r| r.path == status_path) {
        assert!(t.elapsed() < Duration::from_secs(60), "the newcomer was not synced");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    print_row("operator", "one new ExternalSecret", &count(&operator_log(&fake)), wall);
    let _ = stop_tx.send(());
    let _ = task.await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!(
        "{} ExternalSecrets in {} namespaces; requests counted at the fake's log\n",
        a.targets, a.namespaces
    );
    println!(
        "| scenario | step | requests (no watches) | target lists | further pages | target reads | target writes | Lease | other | wall |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|---:|");
    if a.only.as_deref().is_none_or(|o| o == "sync") {
        sync_scenario(&a).await;
    }
    if a.only.as_deref().is_none_or(|o| o == "operator") {
        operator_scenario(&a).await;
    }
}
