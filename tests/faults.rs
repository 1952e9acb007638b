//! Faults against the real peers (moto, the fake GCP Secret Manager, the fake Doppler API,
//! the fake Kubernetes API server), through the real clients, with the test kit's
//! fault-injecting wrappers around the real sources and sinks.
//!
//! Every test asserts the same rule: each target keeps its last good data (byte for byte),
//! nothing is half-written, no other spec is held back, and the next healthy cycle
//! converges with exactly one write per changed target (none lost, none duplicated).
//!
//! (The memory-source versions of "down for a cycle" and "one key failing" are in
//! crates/secrets-core/tests/engine.rs; these are the same promises over the wire.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secretsync::aws::{AwsSecretsManager, AwsSecretsManagerBuilder};
use secretsync::doppler::{DopplerBuilder, DopplerSource};
use secretsync::engine::{CycleOptions, CycleReport, Engine, EngineConfig, Outcome, SyncStatus};
use secretsync::gcp::{GcpSecretManager, GcpSecretManagerBuilder};
use secretsync::k8s::KubeSink;
use secretsync::manifest::{Manifests, StoreId, StoreKind, load_str};
use secretsync::registry::BuiltStore;
use secretsync::sinks::FolderSink;
use secretsync::sources::MemorySource;
use secretsync::testkit::{Fault, FaultySink, FaultySource, unique_prefix};
use secretsync::{SecretSink, SecretSource, SecretValue, SecretWriter, TargetRef, WriteRequest};
use secretsync_fakes::doppler::FakeDoppler;
use secretsync_fakes::gcp::FakeSecretManager;
use secretsync_fakes::kube::FakeKube;

// ---------------------------------------------------------------------------------------
// moto, started once per test binary (as crates/provider-aws/tests/common does).

/// moto's server (`secretsync_fakes::moto`: `SECRETSYNC_MOTO_URL`, else `.venv/bin/moto_server` for this
/// test binary; a test that cannot reach it fails).
fn moto_url() -> String {
    secretsync_fakes::moto::Moto::shared().url().to_string()
}

fn aws_builder(endpoint: &str) -> AwsSecretsManagerBuilder {
    AwsSecretsManagerBuilder::new()
        .with_region("us-east-1")
        .with_endpoint(endpoint)
        .with_credentials("testing", "testing".into())
        .with_listing_reuse(Duration::ZERO)
        .with_retry(2, Duration::from_millis(10))
}

async fn aws() -> AwsSecretsManager {
    aws_builder(&moto_url()).build().await.expect("aws source on moto")
}

fn gcp(fake: &FakeSecretManager) -> GcpSecretManager {
    GcpSecretManagerBuilder::new()
        .with_emulator_host(fake.host())
        .with_project_id(GCP_PROJECT)
        .with_max_attempts(1)
        .build()
        .expect("gcp source on the fake")
}

const GCP_PROJECT: &str = "faults-485000";
const GCP_PARENT: &str = "projects/faults-485000";

fn doppler_builder(fake: &FakeDoppler, token: &str) -> DopplerBuilder {
    DopplerBuilder::new()
        .with_token(token)
        .with_api_host(fake.url())
        .with_freshness(Duration::ZERO)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(40))
}

/// A fake Doppler with one config and a service token for it.
async fn doppler_fake(secrets: &[(&str, &str)]) -> (FakeDoppler, String, String) {
    let fake = FakeDoppler::start().await;
    let project = unique_prefix("proj");
    fake.create_config(&project, "prd");
    fake.set_secrets(&project, "prd", secrets.iter().copied());
    let token = fake.service_token(&project, "prd");
    (fake, project, token)
}

// ---------------------------------------------------------------------------------------
// Manifests and engine.

fn store(name: &str) -> StoreId {
    StoreId {
        kind: StoreKind::ClusterSecretStore,
        namespace: None,
        name: name.into(),
    }
}

/// An ExternalSecret `ns/name` on ClusterSecretStore `store` with `secretKey ← key` pairs.
fn es(ns: &str, name: &str, store: &str, data: &[(&str, &str)]) -> String {
    let entries: String = data
        .iter()
        .map(|(k, r)| format!("    - secretKey: {k}\n      remoteRef: {{key: {r}}}\n"))
        .collect();
    format!(
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  secretStoreRef: {{name: {store}, kind: ClusterSecretStore}}\n  data:\n{entries}"
    )
}

fn load(docs: &[String]) -> Manifests {
    load_str(&docs.concat(), "faults.yaml")
        .into_result()
        .expect("manifests load")
}

fn built(source: Arc<dyn SecretSource>) -> BuiltStore {
    BuiltStore { source, writer: None }
}

fn engine(stores: Vec<(&str, BuiltStore)>, sink: Arc<dyn SecretSink>, fetch_timeout: Duration) -> Engine {
    let stores: BTreeMap<StoreId, BuiltStore> = stores.into_iter().map(|(n, b)| (store(n), b)).collect();
    Engine::new(stores, sink).with_config(EngineConfig {
        fetch_timeout,
        ..EngineConfig::default()
    })
}

async fn cycle(engine: &Engine, m: &Manifests) -> CycleReport {
    engine.run(m, &CycleOptions::default()).await
}

/// Each file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The data of a folder-sink target, as text.
async fn folder_data(sink: &FolderSink, ns: &str, name: &str) -> BTreeMap<String, String> {
    let state = sink
        .read(&TargetRef::secret(ns, name))
        .await
        .expect("target parses")
        .expect("target exists");
    state
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.expose_str().unwrap().to_string()))
        .collect()
}

fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn spec<'a>(r: &'a CycleReport, ns: &str, name: &str) -> &'a secretsync::engine::SpecReport {
    r.spec(ns, name)
        .unwrap_or_else(|| panic!("no report for {ns}/{name}: {}", r.to_text()))
}

fn assert_failed_retryable(r: &CycleReport, ns: &str, name: &str, needle: &str) {
    let s = spec(r, ns, name);
    assert_eq!(s.status, SyncStatus::SecretSyncedError, "{ns}/{name}: {}", r.to_text());
    assert!(!s.changed, "{ns}/{name} changed although it failed");
    assert!(s.retryable, "{ns}/{name} is retryable: {}", s.message);
    assert!(
        s.message.to_lowercase().contains(needle),
        "{ns}/{name}: expected `{needle}` in: {}",
        s.message
    );
}

fn assert_synced(r: &CycleReport, ns: &str, name: &str, outcome: Outcome) {
    let s = spec(r, ns, name);
    assert_eq!(
        (s.status, s.outcome),
        (SyncStatus::SecretSynced, outcome),
        "{ns}/{name}: {}",
        r.to_text()
    );
}

async fn aws_put(admin: &AwsSecretsManager, key: &str, value: &str) {
    admin
        .put(&WriteRequest::new(key, SecretValue::from(value)))
        .await
        .expect("write to moto");
}

// ---------------------------------------------------------------------------------------

/// AWS (moto) down for a whole cycle, and a second AWS store whose endpoint refuses
/// connections: their targets keep their bytes, the Doppler spec in the same cycle is not
/// held back, and the healthy cycle after converges with one write per changed target.
#[tokio::test]
async fn a_provider_down_for_a_whole_cycle() {
    let p = unique_prefix("down");
    let admin = aws().await;
    let (k1, k2) = (format!("{p}-db"), format!("{p}-api"));
    aws_put(&admin, &k1, "db-1").await;
    aws_put(&admin, &k2, "api-1").await;
    let faulty_aws = Arc::new(FaultySource::new(aws().await));
    let (dfake, project, token) = doppler_fake(&[("STRIPE_KEY", "sk-1")]).await;
    let doppler: Arc<DopplerSource> = Arc::new(doppler_builder(&dfake, &token).build().unwrap());
    // A real client against a closed port: connection refused on every attempt.
    // Port 1: nothing listens there (a freed ephemeral port may be taken by a parallel fake).
    let closed = 1;
    let unreachable = aws_builder(&format!("http://127.0.0.1:{closed}"))
        .with_attempt_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FolderSink::new(dir.path()));
    let engine = engine(
        vec![
            ("aws", built(faulty_aws.clone())),
            ("doppler", built(doppler.clone())),
            ("aws-gone", built(Arc::new(unreachable))),
        ],
        sink.clone(),
        Duration::from_secs(30),
    );
    let m = load(&[
        es("prod", "db", "aws", &[("PASSWORD", &k1)]),
        es("prod", "api", "aws", &[("TOKEN", &k2), ("PASSWORD", &k1)]),
        es("prod", "billing", "doppler", &[("STRIPE_KEY", "STRIPE_KEY")]),
        es("prod", "legacy", "aws-gone", &[("X", &k1)]),
    ]);

    let r = cycle(&engine, &m).await;
    assert_eq!(r.writes, 3, "{}", r.to_text());
    assert_failed_retryable(&r, "prod", "legacy", "");
    let before = snapshot(dir.path());
    assert_eq!(before.len(), 3);

    // Everything changes upstream; AWS is down for the whole next cycle.
    aws_put(&admin, &k1, "db-2").await;
    aws_put(&admin, &k2, "api-2").await;
    dfake.set_secret(&project, "prd", "STRIPE_KEY", "sk-2");
    faulty_aws.set(|f| f.all = Some(Fault::Down));
    let started = Instant::now();
    let r = cycle(&engine, &m).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the cycle ended in bounded time"
    );
    assert_failed_retryable(&r, "prod", "db", "connection refused");
    assert_failed_retryable(&r, "prod", "api", "connection refused");
    assert_failed_retryable(&r, "prod", "legacy", "");
    assert_synced(&r, "prod", "billing", Outcome::Updated);
    assert_eq!(r.writes, 1, "only the healthy store's target is written");
    let after = snapshot(dir.path());
    let billing = sink.path_of(&TargetRef::secret("prod", "billing"));
    for (path, bytes) in &before {
        if path != &billing {
            assert_eq!(after.get(path), Some(bytes), "{} kept its bytes", path.display());
        }
    }
    assert_eq!(after.len(), 3, "no other file appeared: {:?}", after.keys());
    assert_eq!(
        folder_data(&sink, "prod", "billing").await,
        kv(&[("STRIPE_KEY", "sk-2")])
    );

    // Healthy again: exactly the two stale targets are written, once.
    faulty_aws.heal();
    let r = cycle(&engine, &m).await;
    assert_synced(&r, "prod", "db", Outcome::Updated);
    assert_synced(&r, "prod", "api", Outcome::Updated);
    assert_synced(&r, "prod", "billing", Outcome::Unchanged);
    assert_eq!(r.writes, 2, "{}", r.to_text());
    assert_eq!(folder_data(&sink, "prod", "db").await, kv(&[("PASSWORD", "db-2")]));
    assert_eq!(
        folder_data(&sink, "prod", "api").await,
        kv(&[("PASSWORD", "db-2"), ("TOKEN", "api-2")])
    );
    let r = cycle(&engine, &m).await;
    assert_eq!(r.writes, 0, "no duplicated write: {}", r.to_text());
    assert_eq!(sink.writes(), 6, "3 creates + 1 + 2 updates, nothing more");
}

/// GCP answers 503 for one remote key in the middle of a cycle, after the other keys of the
/// same spec were read: that spec's target keeps its old data for every key (no mix of new
/// and old values), the specs around it update, and the next cycle finishes the job.
#[tokio::test]
async fn a_provider_failing_halfway_through_a_cycle() {
    let fake = FakeSecretManager::start().await;
    let p = unique_prefix("half");
    let names: Vec<String> = ["alpha", "bravo", "charlie", "delta"]
        .iter()
        .map(|n| format!("{p}-{n}"))
        .collect();
    for n in &names {
        fake.create_secret(GCP_PARENT, n, &[]);
        fake.add_version(GCP_PARENT, n, format!("{n}=1").as_bytes());
    }
    let src = Arc::new(gcp(&fake));
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FolderSink::new(dir.path()));
    let engine = engine(vec![("gcp", built(src))], sink.clone(), Duration::from_secs(30));
    let m = load(&[
        es("ns", "first", "gcp", &[("A", &names[0])]),
        es(
            "ns",
            "torn",
            "gcp",
            &[("A", &names[0]), ("B", &names[1]), ("C", &names[2])],
        ),
        es("ns", "last", "gcp", &[("D", &names[3])]),
    ]);
    assert_eq!(cycle(&engine, &m).await.writes, 3);
    let torn_file = sink.path_of(&TargetRef::secret("ns", "torn"));
    let torn_before = std::fs::read(&torn_file).unwrap();

    for n in &names {
        fake.add_version(GCP_PARENT, n, format!("{n}=2").as_bytes());
    }
    // `bravo`'s read fails once, over the wire; `alpha` and `charlie` read fine.
    fake.fail_next(Some("AccessSecretVersion"), &format!("secrets/{}/", names[1]), 503, 1);
    let r = cycle(&engine, &m).await;
    assert_failed_retryable(&r, "ns", "torn", &format!("`{}`", names[1]));
    assert_eq!(
        std::fs::read(&torn_file).unwrap(),
        torn_before,
        "the spec with one failed key keeps all its old data"
    );
    assert_synced(&r, "ns", "first", Outcome::Updated);
    assert_synced(&r, "ns", "last", Outcome::Updated);
    assert_eq!(r.writes, 2, "{}", r.to_text());
    assert_eq!(
        folder_data(&sink, "ns", "first").await,
        kv(&[("A", format!("{}=2", names[0]).as_str())])
    );

    let r = cycle(&engine, &m).await;
    assert_synced(&r, "ns", "torn", Outcome::Updated);
    assert_eq!(r.writes, 1, "only the torn spec is written: {}", r.to_text());
    let want: Vec<(String, String)> = ["A", "B", "C"]
        .iter()
        .zip(&names)
        .map(|(k, n)| (k.to_string(), format!("{n}=2")))
        .collect();
    assert_eq!(folder_data(&sink, "ns", "torn").await, want.into_iter().collect());
    assert_eq!(cycle(&engine, &m).await.writes, 0, "no duplicated write");
    assert_eq!(sink.writes(), 6);
    assert!(fake.unknown_routes().is_empty(), "{:?}", fake.unknown_routes());
}

/// A store slower than the fetch timeout fails its specs with a timeout while a healthy
/// store's specs in the same cycle sync, and the cycle takes the timeout, not the latency.
#[tokio::test]
async fn a_provider_slow_beyond_the_timeout() {
    let (dfake, project, token) = doppler_fake(&[("A", "a-1")]).await;
    let slow = Arc::new(FaultySource::new(doppler_builder(&dfake, &token).build().unwrap()));
    let p = unique_prefix("slow");
    let admin = aws().await;
    let key = format!("{p}-fast");
    aws_put(&admin, &key, "fast-1").await;
    let fast = Arc::new(aws().await);
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FolderSink::new(dir.path()));
    let engine = engine(
        vec![("doppler", built(slow.clone())), ("aws", built(fast))],
        sink.clone(),
        Duration::from_millis(1500),
    );
    let m = load(&[
        es("ns", "slow", "doppler", &[("A", "A")]),
        es("ns", "fast", "aws", &[("F", &key)]),
    ]);
    assert_eq!(cycle(&engine, &m).await.writes, 2);
    let slow_file = sink.path_of(&TargetRef::secret("ns", "slow"));
    let slow_before = std::fs::read(&slow_file).unwrap();

    dfake.set_secret(&project, "prd", "A", "a-2");
    aws_put(&admin, &key, "fast-2").await;
    slow.set(|f| f.latency = Some(Duration::from_secs(20)));
    let started = Instant::now();
    let r = cycle(&engine, &m).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "the cycle waited for the slow store: {took:?}"
    );
    assert_failed_retryable(&r, "ns", "slow", "timed out");
    assert_synced(&r, "ns", "fast", Outcome::Updated);
    assert_eq!(r.writes, 1);
    assert_eq!(std::fs::read(&slow_file).unwrap(), slow_before);

    slow.heal();
    let r = cycle(&engine, &m).await;
    assert_synced(&r, "ns", "slow", Outcome::Updated);
    assert_synced(&r, "ns", "fast", Outcome::Unchanged);
    assert_eq!(r.writes, 1);
    assert_eq!(folder_data(&sink, "ns", "slow").await, kv(&[("A", "a-2")]));
    assert_eq!(cycle(&engine, &m).await.writes, 0);
}

/// A burst of 429s with Retry-After from Doppler: a burst within the retry budget is
/// absorbed in the cycle (one write); a longer one fails the spec as throttled with its
/// retry-after and leaves the target alone while a GCP spec syncs (and GCP's own 429 on
/// one key fails only that spec); the next cycle converges.
#[tokio::test]
async fn a_burst_of_throttling() {
    let (dfake, project, token) = doppler_fake(&[("A", "a-1")]).await;
    let doppler = Arc::new(
        doppler_builder(&dfake, &token)
            .with_max_retries(2)
            .with_max_retry_after(Duration::from_secs(2))
            .build()
            .unwrap(),
    );
    let gfake = FakeSecretManager::start().await;
    let p = unique_prefix("thr");
    let (g1, g2) = (format!("{p}-one"), format!("{p}-two"));
    for g in [&g1, &g2] {
        gfake.create_secret(GCP_PARENT, g, &[]);
        gfake.add_version(GCP_PARENT, g, b"g-1");
    }
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FolderSink::new(dir.path()));
    let engine = engine(
        vec![("doppler", built(doppler)), ("gcp", built(Arc::new(gcp(&gfake))))],
        sink.clone(),
        Duration::from_secs(30),
    );
    let m = load(&[
        es("ns", "dop", "doppler", &[("A", "A")]),
        es("ns", "g-one", "gcp", &[("G", &g1)]),
        es("ns", "g-two", "gcp", &[("G", &g2)]),
    ]);
    assert_eq!(cycle(&engine, &m).await.writes, 3);
    let dop_file = sink.path_of(&TargetRef::secret("ns", "dop"));

    // Within the budget (2 retries): absorbed, one write.
    dfake.set_secret(&project, "prd", "A", "a-2");
    dfake.fail_next(2, 429, Some(1));
    let mark = dfake.requests().len();
    let r = cycle(&engine, &m).await;
    assert_synced(&r, "ns", "dop", Outcome::Updated);
    assert_eq!(r.writes, 1, "{}", r.to_text());
    let statuses: Vec<u16> = dfake.requests().iter().skip(mark).map(|q| q.status).collect();
    assert_eq!(
        &statuses[..3],
        &[429, 429, 200],
        "two 429s, then the download: {statuses:?}"
    );
    assert!(statuses[3..].iter().all(|s| *s == 304), "then only 304s: {statuses:?}");

    // Beyond the budget: throttled, with its retry-after, target untouched; GCP throttles
    // one key; the other GCP spec syncs.
    let dop_before = std::fs::read(&dop_file).unwrap();
    let g_one_before = std::fs::read(sink.path_of(&TargetRef::secret("ns", "g-one"))).unwrap();
    dfake.set_secret(&project, "prd", "A", "a-3");
    for g in [&g1, &g2] {
        gfake.add_version(GCP_PARENT, g, b"g-2");
    }
    dfake.fail_next(3, 429, Some(1));
    gfake.fail_next(Some("AccessSecretVersion"), &format!("secrets/{g1}/"), 429, 1);
    let r = cycle(&engine, &m).await;
    assert_failed_retryable(&r, "ns", "dop", "throttled");
    assert_eq!(spec(&r, "ns", "dop").retry_after, Some(Duration::from_secs(1)));
    assert_failed_retryable(&r, "ns", "g-one", &format!("`{g1}`"));
    assert_synced(&r, "ns", "g-two", Outcome::Updated);
    assert_eq!(r.writes, 1);
    assert_eq!(std::fs::read(&dop_file).unwrap(), dop_before);
    assert_eq!(
        std::fs::read(sink.path_of(&TargetRef::secret("ns", "g-one"))).unwrap(),
        g_one_before
    );

    // The burst is over.
    let r = cycle(&engine, &m).await;
    assert_synced(&r, "ns", "dop", Outcome::Updated);
    assert_synced(&r, "ns", "g-one", Outcome::Updated);
    assert_eq!(r.writes, 2, "{}", r.to_text());
    assert_eq!(folder_data(&sink, "ns", "dop").await, kv(&[("A", "a-3")]));
    assert_eq!(folder_data(&sink, "ns", "g-one").await, kv(&[("G", "g-2")]));
    assert_eq!(cycle(&engine, &m).await.writes, 0);
}

/// A Secret's data at the API server, read through the real client (a GET, not a write).
async fn kube_data(sink: &FaultySink<KubeSink>, ns: &str, name: &str) -> Option<BTreeMap<String, String>> {
    let state = sink.inner().read(&TargetRef::secret(ns, name)).await.expect("read")?;
    Some(
        state
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_str().unwrap().to_string()))
            .collect(),
    )
}

/// Kubernetes answering 409 Conflict and 5xx, through KubeSink on the fake API server:
/// the failing Secrets keep their data at the server, a third Secret is written in the same
/// cycle, the API server down for a whole cycle gets no write at all, and the healthy
/// cycle after sends exactly one write per stale Secret.
#[tokio::test]
async fn kubernetes_conflicts_and_server_errors() {
    secretsync::k8s::install_crypto_provider();
    let kube = FakeKube::start().await;
    // Objects need their namespace, as on a real cluster.
    kube.create_namespaces(&["apps", "ns", "prod"]);
    let sink = Arc::new(FaultySink::new(KubeSink::new(kube.client())));
    let mem = Arc::new(MemorySource::new("fake"));
    for k in ["a", "b", "c"] {
        mem.set(k, format!("{k}-1"));
    }
    let engine = engine(vec![("mem", built(mem.clone()))], sink.clone(), Duration::from_secs(30));
    let m = load(&[
        es("apps", "sa", "mem", &[("K", "a")]),
        es("apps", "sb", "mem", &[("K", "b")]),
        es("apps", "sc", "mem", &[("K", "c")]),
    ]);
    let r = cycle(&engine, &m).await;
    assert!(r.all_synced(), "{}", r.to_text());
    let writes_after_create = kube.write_count();
    assert_eq!(
        writes_after_create,
        3,
        "one server-side apply per Secret: {:?}",
        kube.writes()
    );

    // All three change; `sb` gets a 503 and the next apply a 409.
    for k in ["a", "b", "c"] {
        mem.set(k, format!("{k}-2"));
    }
    sink.set(|f| {
        f.fail_targets.insert(TargetRef::secret("apps", "sb"));
        f.conflicts = 1;
    });
    let r = cycle(&engine, &m).await;
    assert_failed_retryable(&r, "apps", "sb", "503");
    let conflicted: Vec<&str> = ["sa", "sc"]
        .into_iter()
        .filter(|n| spec(&r, "apps", n).status == SyncStatus::SecretSyncedError)
        .collect();
    assert_eq!(conflicted.len(), 1, "one apply met the 409: {}", r.to_text());
    let (lost, won) = if conflicted[0] == "sa" {
        ("sa", "sc")
    } else {
        ("sc", "sa")
    };
    assert!(spec(&r, "apps", lost).message.contains("409"), "{}", r.to_text());
    assert_synced(&r, "apps", won, Outcome::Updated);
    assert_eq!(r.writes, 1);
    assert_eq!(kube.write_count(), writes_after_create + 1, "{:?}", kube.writes());
    let key_of = |n: &str| if n == "sa" { "a" } else { "c" };
    assert_eq!(
        kube_data(&sink, "apps", lost).await,
        Some(kv(&[("K", format!("{}-1", key_of(lost)).as_str())]))
    );
    assert_eq!(kube_data(&sink, "apps", "sb").await, Some(kv(&[("K", "b-1")])));
    assert_eq!(
        kube_data(&sink, "apps", won).await,
        Some(kv(&[("K", format!("{}-2", key_of(won)).as_str())]))
    );

    // The API server down for a whole cycle: reads fail, nothing is sent.
    mem.set("a", "a-3");
    sink.set(|f| {
        f.fail_targets.clear();
        f.down = true;
    });
    let before = kube.write_count();
    let r = cycle(&engine, &m).await;
    assert_eq!(r.failed().count(), 3, "{}", r.to_text());
    assert!(r.failed().all(|s| s.retryable && s.message.contains("503")));
    assert_eq!((r.writes, kube.write_count()), (0, before));

    // Healthy: sa (a-3) and sb (b-2) are stale, and sc if it lost the conflict.
    sink.set(|f| f.down = false);
    let r = cycle(&engine, &m).await;
    assert!(r.all_synced(), "{}", r.to_text());
    let stale = if lost == "sc" { 3 } else { 2 };
    assert_eq!(r.writes, stale, "{}", r.to_text());
    assert_eq!(kube.write_count(), before + stale as usize, "{:?}", kube.writes());
    assert_eq!(kube_data(&sink, "apps", "sa").await, Some(kv(&[("K", "a-3")])));
    assert_eq!(kube_data(&sink, "apps", "sb").await, Some(kv(&[("K", "b-2")])));
    assert_eq!(kube_data(&sink, "apps", "sc").await, Some(kv(&[("K", "c-2")])));
    let r = cycle(&engine, &m).await;
    assert_eq!(r.writes, 0);
    assert_eq!(kube.write_count(), before + stale as usize, "no duplicated write");
}
