//! What runs in the child process: one scenario's sync side, so its peak RSS is the
//! sync's alone (the fakes live in the parent). The parent drives it over stdin/stdout:
//! the child prints `@@ready`, then for each cycle waits for a `go` line, runs the cycle
//! and prints `@@cycle {json}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use secretsync::aws::AwsSecretsManagerBuilder;
use secretsync::engine::{CycleOptions, Engine};
use secretsync::k8s::KubeSink;
use secretsync::manifest::{ExternalSecret, load_paths};
use secretsync::{CallStats, SecretSource};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::http::HttpPool;

/// Environment variable holding the child's [`ChildConfig`] as JSON.
pub const CHILD_ENV: &str = "SECRETSYNC_BENCH_CHILD";

/// Requests of a naive cycle in flight at once (ESO's default is one reconcile at a time;
/// 8 favours the naive loop).
pub const NAIVE_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildConfig {
    /// `secretsync` or `naive`.
    pub mode: String,
    /// The manifests file.
    pub manifests: String,
    /// Cycles to run.
    pub cycles: usize,
    /// moto's URL (naive mode).
    pub moto_url: String,
    /// The fake Kubernetes API's URL (naive mode; secretsync reads `KUBECONFIG`).
    pub kube_url: String,
}

/// One cycle, as the child saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CycleOut {
    pub wall_ms: f64,
    pub provider_calls: u64,
    pub values_read: u64,
    pub writes: u64,
    pub specs: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    /// Provider calls by operation, counted by the client (every attempt).
    pub ops: BTreeMap<String, u64>,
    /// VmHWM after the cycle, KiB.
    pub hwm_kib: u64,
    /// Manifest load and store build, before the first cycle (ms).
    pub setup_ms: f64,
    /// VmHWM after manifest load and store build, before the first cycle, KiB.
    pub setup_hwm_kib: u64,
}

/// Peak resident set size of this process so far (VmHWM), KiB.
pub fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ops_of(stats: &[&CallStats]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for s in stats {
        for ((op, _), n) in s.snapshot() {
            *out.entry(op).or_insert(0) += n;
        }
    }
    out
}

fn diff(now: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    now.iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub fn main(config_json: &str) {
    let config: ChildConfig = serde_json::from_str(config_json).expect("child config is JSON");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        match config.mode.as_str() {
            "secretsync" => secretsync_mode(&config).await,
            "naive" => naive_mode(&config).await,
            other => panic!("unknown child mode {other}"),
        }
    });
}

async fn wait_go(lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>) {
    match lines.next_line().await {
        Ok(Some(l)) if l.trim() == "go" => {}
        other => panic!("expected `go` from the parent, got {other:?}"),
    }
}

fn emit(tag: &str, out: &CycleOut) {
    println!("@@{tag} {}", serde_json::to_string(out).expect("serializes"));
}

async fn secretsync_mode(config: &ChildConfig) {
    secretsync::k8s::install_crypto_provider();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let t = Instant::now();
    let manifests = load_paths(&[&config.manifests]).into_result().expect("manifests load");
    let (stores, failed) = secretsync::registry().build_all(&manifests).await;
    assert!(failed.is_empty(), "stores failed to build: {failed:?}");
    let sink = KubeSink::infer().await.expect("KubeSink from KUBECONFIG");
    let ids: Vec<_> = stores.keys().cloned().collect();
    let engine = Engine::new(stores, Arc::new(sink));
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let setup_hwm_kib = vm_hwm_kib();
    let stats = |e: &Engine| {
        let s: Vec<&CallStats> = ids
            .iter()
            .filter_map(|id| e.store(id).and_then(|s| s.source.call_stats()))
            .collect();
        ops_of(&s)
    };
    println!("@@ready");
    for _ in 0..config.cycles {
        wait_go(&mut lines).await;
        let before = stats(&engine);
        let t = Instant::now();
        let r = engine.run(&manifests, &CycleOptions::default()).await;
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        let out = CycleOut {
            wall_ms,
            provider_calls: r.provider_calls,
            values_read: r.values_read,
            writes: r.writes,
            specs: r.specs.len(),
            failed: r.failed().count(),
            first_error: r
                .failed()
                .next()
                .map(|s| format!("{}/{}: {}", s.namespace, s.name, s.message)),
            ops: diff(&stats(&engine), &before),
            hwm_kib: vm_hwm_kib(),
            setup_ms,
            setup_hwm_kib,
        };
        emit("cycle", &out);
    }
}

/// What ESO does per refresh, written with the AWS SDK directly: for every ExternalSecret,
/// one `GetSecretValue` per data entry, then one write of the target, whether or not
/// anything changed.
async fn naive_mode(config: &ChildConfig) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let t = Instant::now();
    let manifests = load_paths(&[&config.manifests]).into_result().expect("manifests load");
    let aws = AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(config.moto_url.clone())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .expect("AWS client");
    let kube = HttpPool::new(&config.kube_url);
    let setup_ms = t.elapsed().as_secs_f64() * 1e3;
    let setup_hwm_kib = vm_hwm_kib();
    let stats = || ops_of(&[aws.call_stats().expect("the AWS source counts calls")]);
    println!("@@ready");
    for _ in 0..config.cycles {
        wait_go(&mut lines).await;
        let before = stats();
        let t = Instant::now();
        let results: Vec<Result<u64, String>> = futures::stream::iter(manifests.external_secrets.iter())
            .map(|es| reconcile(&aws, &kube, es))
            .buffer_unordered(NAIVE_CONCURRENCY)
            .collect()
            .await;
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        let ops = diff(&stats(), &before);
        let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        let out = CycleOut {
            wall_ms,
            provider_calls: ops.values().sum(),
            values_read: results.iter().filter_map(|r| r.as_ref().ok()).sum(),
            writes: (results.len() - errors.len()) as u64,
            specs: results.len(),
            failed: errors.len(),
            first_error: errors.first().map(|e| e.to_string()),
            ops,
            hwm_kib: vm_hwm_kib(),
            setup_ms,
            setup_hwm_kib,
        };
        emit("cycle", &out);
    }
}

/// One naive reconcile: read every entry, then apply the whole Secret. Returns the
/// values read.
async fn reconcile(
    aws: &secretsync::aws::AwsSecretsManager,
    kube: &HttpPool,
    es: &ExternalSecret,
) -> Result<u64, String> {
    let client = aws.sdk_client();
    let mut data = serde_json::Map::new();
    for d in &es.spec.data {
        let out = client
            .get_secret_value()
            .secret_id(&d.remote_ref.key)
            .send()
            .await
            .map_err(|e| format!("GetSecretValue {}: {e}", d.remote_ref.key))?;
        let value = out.secret_string().unwrap_or_default().to_string();
        data.insert(d.secret_key.clone(), serde_json::Value::String(value));
    }
    let target = es.target_ref();
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": target.name, "namespace": target.namespace},
        "stringData": data,
    });
    let path = format!(
        "/api/v1/namespaces/{}/secrets/{}?fieldManager=naive-sync&force=true",
        target.namespace, target.name
    );
    let status = kube
        .send(
            "PATCH",
            &path,
            "application/apply-patch+yaml",
            &serde_json::to_vec(&body).expect("serializes"),
        )
        .await
        .map_err(|e| format!("apply {target}: {e}"))?;
    if !(200..300).contains(&status) {
        return Err(format!("apply {target}: HTTP {status}"));
    }
    Ok(es.spec.data.len() as u64)
}
