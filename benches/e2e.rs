//! End to end: provider calls, Kubernetes writes, wall time and peak RSS of sync cycles as
//! the work grows, per provider, and the naive per-key loop (what ESO does) beside it.
//!
//! For N secrets and N ExternalSecrets (one data entry each, `creationPolicy: Owner`), each
//! scenario seeds its provider's peer, then runs the sync in a child process of this
//! binary (so the child's VmHWM is the sync's peak RSS, not the fakes'): a first cycle,
//! then, after a pause longer than Doppler's download freshness, an unchanged cycle.
//! Peers: moto's server for AWS, `secretsync_fakes::gcp` for GCP, `secretsync_fakes::doppler` for Doppler, and
//! `secretsync_fakes::kube` as the sink, all over loopback through the real clients.
//!
//! `cargo bench --bench e2e --features full -- [--n 100,1000,10000] [--providers aws,gcp,doppler]
//! [--naive-n 100,1000]`. Without `--bench` (as `cargo test --all-targets` runs it) or with
//! `SECRETSYNC_BENCH_SMOKE=1` it runs a smoke pass at a tiny N and fails when a count check
//! fails; timing and memory are only reported by full runs.

#[path = "e2e/child.rs"]
mod child;
#[path = "e2e/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use child::{CHILD_ENV, ChildConfig, CycleOut, NAIVE_CONCURRENCY};
use futures::StreamExt;
use secretsync::aws::{AwsSecretsManagerBuilder, BATCH_LIMIT, LIST_PAGE_SIZE};
use secretsync_fakes::doppler::FakeDoppler;
use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_fakes::kube::FakeKube;
use secretsync_fakes::moto::Moto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The smoke pass's N.
const SMOKE_N: usize = 20;
/// Secrets created in moto at once while seeding.
const SEED_CONCURRENCY: usize = 8;
const GCP_PARENT: &str = "projects/bench";
const NAMESPACE: &str = "bench";
/// Target thresholds (issue 9).
const FIRST_CYCLE_SLACK: f64 = 1.1;
const RSS_LIMIT_MIB: f64 = 64.0;
const NAIVE_N: usize = 1000;
const NAIVE_CALLS_RATIO: f64 = 10.0;
const NAIVE_WALL_RATIO: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Provider {
    Aws,
    Gcp,
    Doppler,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Doppler => "doppler",
        }
    }

    fn parse(s: &str) -> Provider {
        match s {
            "aws" => Provider::Aws,
            "gcp" => Provider::Gcp,
            "doppler" => Provider::Doppler,
            other => panic!("unknown provider `{other}` (aws, gcp, doppler)"),
        }
    }

    /// The fewest calls the provider's API allows for a first cycle of `n` secrets
    /// (nothing known yet) and for an unchanged cycle, with what that minimum is.
    fn minimum(self, n: usize) -> (u64, u64, &'static str) {
        let n = n as u64;
        match self {
            // Change detection lists versions (100 a page); reads batch 20 ids a call.
            Provider::Aws => {
                let list = n.div_ceil(LIST_PAGE_SIZE as u64);
                (
                    n.div_ceil(BATCH_LIMIT as u64) + list,
                    list,
                    "⌈N/20⌉ BatchGetSecretValue + ⌈N/100⌉ ListSecrets; unchanged: the ListSecrets pages",
                )
            }
            // No batch read: one access per secret; the unchanged cycle reads no value.
            Provider::Gcp => (
                n,
                0,
                "N AccessSecretVersion; unchanged: 0 value reads (metadata calls reported beside)",
            ),
            // One download per config, answered 304 when unchanged.
            Provider::Doppler => (1, 1, "1 download per config (304 when unchanged)"),
        }
    }
}

#[derive(Debug, Clone)]
struct Opts {
    smoke: bool,
    ns: Vec<usize>,
    providers: Vec<Provider>,
    naive_ns: Vec<usize>,
}

fn parse_list(v: Option<String>, what: &str) -> Vec<String> {
    v.unwrap_or_else(|| panic!("{what} needs a value"))
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Opts {
    fn from_args() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke =
            std::env::var("SECRETSYNC_BENCH_SMOKE").is_ok_and(|v| v != "0") || !args.iter().any(|a| a == "--bench");
        let mut o = Opts {
            smoke,
            ns: if smoke { vec![SMOKE_N] } else { vec![100, 1_000, 10_000] },
            providers: vec![Provider::Aws, Provider::Gcp, Provider::Doppler],
            naive_ns: if smoke { vec![SMOKE_N] } else { vec![100, 1_000] },
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--n" => {
                    o.ns = parse_list(it.next(), "--n")
                        .iter()
                        .map(|s| s.parse().expect("--n: numbers"))
                        .collect()
                }
                "--providers" => {
                    o.providers = parse_list(it.next(), "--providers")
                        .iter()
                        .map(|s| Provider::parse(s))
                        .collect()
                }
                "--naive-n" => {
                    o.naive_ns = parse_list(it.next(), "--naive-n")
                        .iter()
                        .map(|s| s.parse().expect("--naive-n: numbers"))
                        .collect()
                }
                // Flags cargo passes to a bench or test binary.
                _ => {}
            }
        }
        o
    }
}

/// One cycle as measured: the child's view plus what the peers saw.
#[derive(Debug, Clone, Default)]
struct Cycle {
    out: CycleOut,
    kube_requests: usize,
    kube_writes: usize,
    /// Kubernetes requests by method, resource and status.
    kube_detail: String,
    /// Calls the provider's peer answered (fakes only; moto is counted by the client).
    server_calls: Option<usize>,
    /// Value reads the peer answered (GCP AccessSecretVersion; Doppler 200 downloads).
    server_value_reads: Option<usize>,
    server_detail: String,
}

impl Cycle {
    fn calls(&self) -> u64 {
        self.server_calls.map(|c| c as u64).unwrap_or(self.out.provider_calls)
    }
}

#[derive(Debug, Clone)]
struct Run {
    provider: Provider,
    n: usize,
    mode: &'static str,
    cycles: Vec<Cycle>,
}

impl Run {
    fn peak_mib(&self) -> f64 {
        self.cycles.iter().map(|c| c.out.hwm_kib).max().unwrap_or(0) as f64 / 1024.0
    }
}

/// The provider side of a scenario, as the parent holds it.
enum Peer<'a> {
    Aws,
    Gcp(&'a FakeSecretManager),
    Doppler(&'a FakeDoppler),
}

impl Peer<'_> {
    fn clear(&self) {
        match self {
            Peer::Aws => {}
            Peer::Gcp(f) => f.clear_log(),
            Peer::Doppler(f) => f.clear_log(),
        }
    }

    fn counts(&self, c: &mut Cycle) {
        match self {
            Peer::Aws => {}
            Peer::Gcp(f) => {
                let reqs = f.requests();
                let mut by_op: BTreeMap<&str, usize> = BTreeMap::new();
                for r in &reqs {
                    *by_op.entry(r.operation).or_default() += 1;
                }
                c.server_calls = Some(reqs.len());
                c.server_value_reads = Some(by_op.get("AccessSecretVersion").copied().unwrap_or(0));
                c.server_detail = fmt_ops(by_op.iter().map(|(k, v)| (k.to_string(), *v as u64)));
            }
            Peer::Doppler(f) => {
                let reqs = f.requests();
                c.server_calls = Some(reqs.len());
                c.server_value_reads = Some(reqs.iter().filter(|r| r.status == 200).count());
                let mut by: BTreeMap<String, u64> = BTreeMap::new();
                for r in &reqs {
                    *by.entry(format!("{} {}", r.path.rsplit('/').next().unwrap_or(""), r.status))
                        .or_default() += 1;
                }
                c.server_detail = fmt_ops(by.into_iter());
            }
        }
    }
}

fn fmt_ops(it: impl Iterator<Item = (String, u64)>) -> String {
    it.map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

fn key_of(provider: Provider, prefix: &str, i: usize) -> String {
    match provider {
        Provider::Aws => format!("{prefix}s-{i:05}"),
        Provider::Gcp => format!("s-{i:05}"),
        Provider::Doppler => format!("S_{i:05}"),
    }
}

fn value_of(i: usize) -> String {
    format!(
        "value-{i:05}-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// The store and N ExternalSecrets, one data entry each, as a user would write them.
fn manifests(provider: Provider, n: usize, prefix: &str, endpoint: &str) -> String {
    let store = format!("bench-{}", provider.name());
    let mut y = String::with_capacity(400 * (n + 1));
    let _ = write!(
        y,
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata:\n  name: {store}\nspec:\n  provider:\n"
    );
    match provider {
        Provider::Aws => {
            let _ = write!(
                y,
                "    aws:\n      service: SecretsManager\n      region: us-east-1\n      endpoint: {endpoint}\n"
            );
        }
        Provider::Gcp => {
            let _ = write!(y, "    gcpsm:\n      projectID: bench\n      endpoint: {endpoint}\n");
        }
        Provider::Doppler => {
            let _ = write!(
                y,
                "    doppler:\n      endpoint: {endpoint}\n      auth:\n        secretRef:\n          dopplerToken:\n            name: doppler-token\n            key: dopplerToken\n            namespace: {NAMESPACE}\n"
            );
        }
    }
    for i in 0..n {
        let _ = write!(
            y,
            "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: es-{i:05}\n  namespace: {NAMESPACE}\nspec:\n  refreshInterval: 1h\n  secretStoreRef:\n    kind: ClusterSecretStore\n    name: {store}\n  target:\n    name: es-{i:05}\n    creationPolicy: Owner\n  data:\n    - secretKey: value\n      remoteRef:\n        key: {}\n",
            key_of(provider, prefix, i)
        );
    }
    y
}

/// Creates `n` secrets under `prefix` in moto, a few at a time.
async fn seed_aws(moto: &Moto, prefix: &str, n: usize) {
    let aws = AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(moto.url())
        .with_credentials("testing", "testing".into())
        .build()
        .await
        .expect("AWS client for seeding");
    let client = aws.sdk_client();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| async move {
            client
                .create_secret()
                .name(key_of(Provider::Aws, prefix, i))
                .secret_string(value_of(i))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("CreateSecret: {e:?}"))
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        panic!("seeding moto failed: {e}");
    }
}

/// Runs one child over `manifests`, two cycles, counting what the peers saw per cycle.
async fn run_child(
    mode: &'static str,
    manifests_path: &Path,
    moto_url: &str,
    peer: &Peer<'_>,
    env: &[(String, String)],
) -> Vec<Cycle> {
    let kube = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&[NAMESPACE]);
    let dir = manifests_path.parent().expect("a temp dir");
    let kubeconfig = dir.join(format!("kubeconfig-{mode}"));
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml()).expect("write kubeconfig");
    let config = ChildConfig {
        mode: mode.to_string(),
        manifests: manifests_path.display().to_string(),
        cycles: 2,
        moto_url: moto_url.to_string(),
        kube_url: kube.url(),
    };
    let exe = std::env::current_exe().expect("current exe");
    // A profiler to run the child under, e.g. `heaptrack -o /tmp/child`.
    let wrapper: Vec<String> = std::env::var("SECRETSYNC_BENCH_CHILD_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    cmd.env(CHILD_ENV, serde_json::to_string(&config).expect("serializes"))
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the bench child");
    let mut stdin = child.stdin.take().expect("piped");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut cycles = vec![];
    // Longer than Doppler's download freshness, so its unchanged cycle asks the server
    // (refresh intervals are minutes); the other sources keep nothing time-bound.
    let pause = match peer {
        Peer::Doppler(_) => secretsync::doppler::DEFAULT_FRESHNESS + Duration::from_millis(300),
        _ => Duration::ZERO,
    };
    while let Some(line) = lines.next_line().await.expect("child stdout") {
        if let Some(json) = line.strip_prefix("@@cycle ") {
            let out: CycleOut = serde_json::from_str(json).expect("cycle JSON");
            let reqs = kube.requests();
            let mut by: BTreeMap<String, u64> = BTreeMap::new();
            for r in &reqs {
                // `/api/v1/namespaces/bench/secrets/es-00001` → `GET secrets`
                let plural = r.path.split('/').rev().nth(1).unwrap_or("");
                *by.entry(format!("{} {plural} {}", r.method, r.status)).or_default() += 1;
            }
            let mut c = Cycle {
                out,
                kube_requests: reqs.len(),
                kube_writes: reqs.iter().filter(|r| r.is_write()).count(),
                kube_detail: fmt_ops(by.into_iter()),
                ..Default::default()
            };
            peer.counts(&mut c);
            cycles.push(c);
            if cycles.len() == config.cycles {
                continue;
            }
            tokio::time::sleep(pause).await;
        } else if line != "@@ready" {
            println!("child: {line}");
            continue;
        }
        kube.clear_requests();
        peer.clear();
        stdin.write_all(b"go\n").await.expect("write to child");
        stdin.flush().await.expect("flush");
    }
    let status = child.wait().await.expect("child exit");
    assert!(status.success(), "the {mode} child failed: {status}");
    assert_eq!(cycles.len(), config.cycles, "the {mode} child stopped early");
    cycles
}

/// Seeds one provider with N secrets and runs secretsync (and, on AWS, the naive loop).
async fn scenario(provider: Provider, n: usize, moto: Option<&'static Moto>, naive: bool) -> Vec<Run> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("manifests.yaml");
    let prefix = format!("bench-{:08x}/n{n}/", rand::random::<u32>());
    let t = Instant::now();
    let moto_url = moto.map(|m| m.url().to_string()).unwrap_or_default();
    let mut env = vec![];
    let gcp;
    let doppler;
    let (peer, endpoint) = match provider {
        Provider::Aws => {
            seed_aws(moto.expect("moto runs for aws"), &prefix, n).await;
            (Peer::Aws, moto_url.clone())
        }
        Provider::Gcp => {
            gcp = FakeSecretManager::start().await;
            for i in 0..n {
                gcp.add_version(GCP_PARENT, &key_of(provider, &prefix, i), value_of(i).as_bytes());
            }
            (Peer::Gcp(&gcp), gcp.url())
        }
        Provider::Doppler => {
            doppler = FakeDoppler::start().await;
            doppler.create_config("bench", "prd");
            let pairs: Vec<(String, String)> = (0..n).map(|i| (key_of(provider, &prefix, i), value_of(i))).collect();
            doppler.set_secrets("bench", "prd", pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            env.push((
                "SECRETSYNC_SECRET_BENCH_DOPPLER_TOKEN_DOPPLERTOKEN".to_string(),
                doppler.service_token("bench", "prd"),
            ));
            (Peer::Doppler(&doppler), doppler.url())
        }
    };
    std::fs::write(&path, manifests(provider, n, &prefix, &endpoint)).expect("write manifests");
    eprintln!(
        "[{} N={n}] seeded in {:.1} s",
        provider.name(),
        t.elapsed().as_secs_f64()
    );
    let mut runs = vec![Run {
        provider,
        n,
        mode: "secretsync",
        cycles: run_child("secretsync", &path, &moto_url, &peer, &env).await,
    }];
    print_run(&runs[0]);
    if naive {
        runs.push(Run {
            provider,
            n,
            mode: "naive",
            cycles: run_child("naive", &path, &moto_url, &peer, &env).await,
        });
        print_run(&runs[1]);
    }
    runs
}

fn print_run(r: &Run) {
    let (min_first, min_unchanged, _) = r.provider.minimum(r.n);
    for (i, c) in r.cycles.iter().enumerate() {
        let (label, min) = if i == 0 {
            ("first", min_first)
        } else {
            ("unchanged", min_unchanged)
        };
        let ratio = if r.mode == "secretsync" && min > 0 {
            format!("{:.2}x", c.calls() as f64 / min as f64)
        } else {
            "-".into()
        };
        let detail = if c.server_detail.is_empty() {
            fmt_ops(c.out.ops.clone().into_iter())
        } else {
            c.server_detail.clone()
        };
        println!(
            "{:<8} {:>6} {:<10} {:<9} calls {:>6} (min {:>5}, {:>6}) values read {:>6}  kube writes {:>6} / requests {:>6}  wall {:>9.1} ms  peak RSS {:>6.1} MiB (after load {:>5.1})  failed {}  [{}]",
            r.provider.name(),
            r.n,
            r.mode,
            label,
            c.calls(),
            if r.mode == "secretsync" {
                min.to_string()
            } else {
                "-".into()
            },
            ratio,
            c.out.values_read,
            c.kube_writes,
            c.kube_requests,
            c.out.wall_ms,
            c.out.hwm_kib as f64 / 1024.0,
            c.out.setup_hwm_kib as f64 / 1024.0,
            c.out.failed,
            detail,
        );
        println!("         kube: {}", c.kube_detail);
        if let Some(e) = &c.out.first_error {
            println!("         first error: {e}");
        }
    }
}

/// A target's verdict at one point.
struct Verdict {
    target: String,
    met: bool,
    detail: String,
}

/// Checks every run against the targets; `smoke` checks counts only.
fn verdicts(runs: &[Run], smoke: bool) -> Vec<Verdict> {
    let mut v = vec![];
    let mut push = |target: String, met: bool, detail: String| v.push(Verdict { target, met, detail });
    for r in runs {
        let (first, unchanged) = (&r.cycles[0], &r.cycles[1]);
        let at = format!("{} N={}", r.provider.name(), r.n);
        // Correctness of what is measured: every spec synced, every target written once.
        push(
            format!("{} {at}: every spec synced, N targets written, then none", r.mode),
            first.out.failed == 0
                && unchanged.out.failed == 0
                && first.kube_writes == r.n
                && (r.mode == "naive" || unchanged.kube_writes == 0),
            format!(
                "failed {} / {}, kube writes {} then {}",
                first.out.failed, unchanged.out.failed, first.kube_writes, unchanged.kube_writes
            ),
        );
        if r.mode == "naive" {
            continue;
        }
        let (min_first, _, _) = r.provider.minimum(r.n);
        let value_reads = unchanged.server_value_reads.map(|x| x as u64).unwrap_or(0) + unchanged.out.values_read;
        push(
            format!("unchanged cycle: 0 value reads, 0 sink writes ({at})"),
            value_reads == 0 && unchanged.kube_writes == 0,
            format!(
                "values read {} (server value reads {:?}), kube writes {}",
                unchanged.out.values_read, unchanged.server_value_reads, unchanged.kube_writes
            ),
        );
        let limit = (min_first as f64 * FIRST_CYCLE_SLACK).floor() as u64;
        push(
            format!("first cycle: provider calls <= 1.1 x minimum ({at})"),
            first.calls() <= limit.max(min_first),
            format!("{} calls, minimum {min_first}", first.calls()),
        );
        if !smoke && r.n >= 10_000 {
            push(
                format!("peak RSS < 64 MiB syncing 10,000 secrets ({at})"),
                r.peak_mib() < RSS_LIMIT_MIB,
                format!("{:.1} MiB", r.peak_mib()),
            );
        }
    }
    if !smoke {
        for s in runs.iter().filter(|r| r.mode == "secretsync" && r.n == NAIVE_N) {
            let Some(nv) = runs
                .iter()
                .find(|r| r.mode == "naive" && r.n == s.n && r.provider == s.provider)
            else {
                continue;
            };
            for (i, label) in [(0, "first"), (1, "unchanged")] {
                let calls = nv.cycles[i].calls() as f64 / s.cycles[i].calls().max(1) as f64;
                let wall = nv.cycles[i].out.wall_ms / s.cycles[i].out.wall_ms.max(1e-3);
                push(
                    format!("vs naive on moto at N={NAIVE_N}, {label} cycle: >= 10x fewer calls, >= 5x less wall time"),
                    calls >= NAIVE_CALLS_RATIO && wall >= NAIVE_WALL_RATIO,
                    format!(
                        "calls {} vs {} ({calls:.1}x), wall {:.0} ms vs {:.0} ms ({wall:.1}x)",
                        nv.cycles[i].calls(),
                        s.cycles[i].calls(),
                        nv.cycles[i].out.wall_ms,
                        s.cycles[i].out.wall_ms
                    ),
                );
            }
        }
    }
    v
}

fn print_naive_ratios(runs: &[Run]) {
    let mut header = false;
    for nv in runs.iter().filter(|r| r.mode == "naive") {
        let Some(s) = runs
            .iter()
            .find(|r| r.mode == "secretsync" && r.n == nv.n && r.provider == nv.provider)
        else {
            continue;
        };
        if !header {
            println!(
                "\nnaive (1 GetSecretValue per data entry + 1 apply per target per cycle, {NAIVE_CONCURRENCY} in flight) vs secretsync, same moto:"
            );
            header = true;
        }
        for (i, label) in [(0, "first"), (1, "unchanged")] {
            let (a, b) = (&nv.cycles[i], &s.cycles[i]);
            println!(
                "  N={:>6} {:<9} calls {:>6} vs {:>5} = {:>6.1}x   wall {:>9.1} ms vs {:>8.1} ms = {:>5.1}x   kube writes {:>6} vs {:>6}",
                nv.n,
                label,
                a.calls(),
                b.calls(),
                a.calls() as f64 / b.calls().max(1) as f64,
                a.out.wall_ms,
                b.out.wall_ms,
                a.out.wall_ms / b.out.wall_ms.max(1e-3),
                a.kube_writes,
                b.kube_writes,
            );
        }
    }
}

/// Targets not met today, reported but not failing the smoke pass (each has a cause in
/// BENCHMARKS.md). Remove an entry once its cause is fixed, so the smoke pass guards it.
const KNOWN_GAPS: &[&str] = &[];

fn main() {
    if let Ok(config) = std::env::var(CHILD_ENV) {
        child::main(&config);
        return;
    }
    let opts = Opts::from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let runs = rt.block_on(async {
        let need_moto = opts.providers.contains(&Provider::Aws);
        let moto = need_moto.then(Moto::shared);
        println!(
            "secretsync e2e bench ({}): N = {:?}, providers {:?}, naive at N = {:?}",
            if opts.smoke { "smoke" } else { "full" },
            opts.ns,
            opts.providers.iter().map(|p| p.name()).collect::<Vec<_>>(),
            opts.naive_ns
        );
        let mut runs = vec![];
        for &n in &opts.ns {
            for &p in &opts.providers {
                let naive = p == Provider::Aws && opts.naive_ns.contains(&n);
                runs.extend(scenario(p, n, moto, naive).await);
            }
        }
        runs
    });
    print_naive_ratios(&runs);
    println!("\nminimum provider calls:");
    for p in &opts.providers {
        println!("  {:<8} {}", p.name(), p.minimum(0).2);
    }
    println!("\ntargets:");
    let mut failed = vec![];
    for v in verdicts(&runs, opts.smoke) {
        let known = KNOWN_GAPS.iter().any(|k| v.target.starts_with(k));
        let mark = match (v.met, known) {
            (true, _) => "met    ",
            (false, true) => "NOT MET (known gap)",
            (false, false) => "NOT MET",
        };
        println!("  [{mark}] {}: {}", v.target, v.detail);
        if !v.met && !known {
            failed.push(v.target);
        }
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    if opts.smoke {
        assert!(failed.is_empty(), "smoke checks failed: {failed:?}");
    }
}
