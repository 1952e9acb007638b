//! The example programs as a library, so the binaries only parse arguments: `sync` (load
//! and check manifests, build stores and a sink, run cycles once or as a daemon on the specs'
//! refresh intervals, report), [`rotate`] and [`run`].

pub mod rotate;
pub mod run;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secretsync_core::engine::{CycleOptions, CycleReport, Engine, Scheduler};
use secretsync_core::manifest::{Manifests, StoreId, ValidateOptions, load_paths, validate};
use secretsync_core::registry::BuiltStore;
use secretsync_core::sinks::{DotenvSink, FolderSink, StdoutSink};
use secretsync_core::{Error, FingerprintKey, SecretSink};

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per cycle.
    Json,
}

/// Where targets go.
#[derive(Clone, Default)]
pub enum SinkChoice {
    /// The sink the manifests imply: Kubernetes (feature `k8s`, from KUBECONFIG or
    /// in-cluster).
    #[default]
    Implied,
    /// A folder of Secret manifests.
    Folder(PathBuf),
    /// Dotenv files from a path template over `{namespace}` and `{name}`.
    Dotenv(String),
    /// Standard output.
    Stdout,
    /// Any sink (and restarter) built by the caller: a Kubernetes client of its own, a
    /// wrapped sink.
    Custom {
        /// The sink.
        sink: Arc<dyn SecretSink>,
        /// Restarts consumers of changed targets.
        restarter: Option<Arc<dyn secretsync_core::Restarter>>,
    },
}

impl std::fmt::Debug for SinkChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkChoice::Implied => f.write_str("Implied"),
            SinkChoice::Folder(d) => f.debug_tuple("Folder").field(d).finish(),
            SinkChoice::Dotenv(t) => f.debug_tuple("Dotenv").field(t).finish(),
            SinkChoice::Stdout => f.write_str("Stdout"),
            SinkChoice::Custom { sink, restarter } => f
                .debug_struct("Custom")
                .field("sink", &sink.name())
                .field("restarter", &restarter.is_some())
                .finish(),
        }
    }
}

/// Options of `sync`.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Files or folders of manifests.
    pub manifests: Vec<PathBuf>,
    /// One cycle, then exit.
    pub once: bool,
    /// Write nothing; print the plan.
    pub dry_run: bool,
    /// Validate offline and exit.
    pub check: bool,
    /// Where targets go.
    pub sink: SinkChoice,
    /// Report format.
    pub format: Format,
    /// Daemon: how often manifests are re-read for changes and force-sync (default 5s).
    pub reload_every: Option<Duration>,
    /// Daemon: stop after this many cycles (tests); `None` runs until Ctrl-C.
    pub max_cycles: Option<usize>,
}

/// Exit codes of `sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every spec synced.
    Synced = 0,
    /// Some spec failed.
    SpecFailed = 1,
    /// Bad arguments or manifests.
    BadInput = 2,
}

fn print_errors(err: &mut dyn Write, errors: &[Error]) {
    for e in errors {
        let _ = writeln!(err, "error: {e}");
    }
}

/// Loads and validates manifests; returns them or prints every problem.
pub fn load_checked(paths: &[PathBuf], strict_stores: bool, err: &mut dyn Write) -> Result<Manifests, Exit> {
    if paths.is_empty() {
        let _ = writeln!(err, "error: no manifests given (--manifest PATH)");
        return Err(Exit::BadInput);
    }
    let loaded = load_paths(paths);
    let (mut errors, mut warnings) = (loaded.errors, loaded.warnings);
    let (verrs, vwarns) = validate(
        &loaded.manifests,
        ValidateOptions {
            missing_store_is_error: strict_stores,
        },
    );
    errors.extend(verrs);
    warnings.extend(vwarns);
    let registry = crate::registry();
    for store in &loaded.manifests.stores {
        if let Err(e) = registry.check(store) {
            errors.push(e);
        }
    }
    for w in &warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    if !errors.is_empty() {
        print_errors(err, &errors);
        let _ = writeln!(err, "{} problem(s) found", errors.len());
        return Err(Exit::BadInput);
    }
    Ok(loaded.manifests)
}

/// The sink a choice names.
pub async fn build_sink(choice: &SinkChoice) -> Result<Arc<dyn SecretSink>, Error> {
    Ok(match choice {
        SinkChoice::Folder(dir) => Arc::new(FolderSink::new(dir)),
        SinkChoice::Dotenv(t) => Arc::new(DotenvSink::new(t.clone())),
        SinkChoice::Stdout => Arc::new(StdoutSink),
        SinkChoice::Custom { sink, .. } => sink.clone(),
        SinkChoice::Implied => return implied_sink().await,
    })
}

#[cfg(not(feature = "k8s"))]
async fn implied_sink() -> Result<Arc<dyn SecretSink>, Error> {
    Err(Error::invalid(
        "no sink: these manifests target Kubernetes, which needs feature `k8s`; or pass --output DIR (folder of manifests), --env-file PATH or --stdout",
    ))
}

#[cfg(feature = "k8s")]
async fn implied_sink() -> Result<Arc<dyn SecretSink>, Error> {
    Ok(Arc::new(secretsync_k8s::KubeSink::infer().await?))
}

#[cfg(feature = "k8s")]
/// The restarter that goes with the sink (Kubernetes only).
pub async fn implied_restarter(choice: &SinkChoice) -> Option<Arc<dyn secretsync_core::Restarter>> {
    match choice {
        SinkChoice::Custom { restarter, .. } => restarter.clone(),
        SinkChoice::Implied => secretsync_k8s::KubeRestarter::infer()
            .await
            .ok()
            .map(|r| Arc::new(r) as Arc<dyn secretsync_core::Restarter>),
        _ => None,
    }
}

#[cfg(not(feature = "k8s"))]
/// The restarter that goes with the sink (Kubernetes only).
pub async fn implied_restarter(choice: &SinkChoice) -> Option<Arc<dyn secretsync_core::Restarter>> {
    match choice {
        SinkChoice::Custom { restarter, .. } => restarter.clone(),
        _ => None,
    }
}

/// Builds every store of the manifests. A store whose settings are wrong (a manifest
/// error) fails the whole run; one that cannot be built for another reason (missing
/// credentials) is returned so its specs fail alone.
pub async fn build_stores(
    manifests: &Manifests,
    sink: &SinkChoice,
    err: &mut dyn Write,
) -> Result<(std::collections::BTreeMap<StoreId, BuiltStore>, Vec<(StoreId, Error)>), Exit> {
    let registry = registry_for(sink).await;
    let mut stores = std::collections::BTreeMap::new();
    let mut failed = vec![];
    for store in &manifests.stores {
        match registry.build(store).await {
            Ok(b) => {
                stores.insert(store.id.clone(), b);
            }
            Err(e @ Error::Manifest { .. }) => {
                print_errors(err, &[e]);
                return Err(Exit::BadInput);
            }
            Err(e) => failed.push((store.id.clone(), e)),
        }
    }
    Ok((stores, failed))
}

/// The provider registry for a run: stores' `secretRef`s come from the environment or
/// files, and — when targets go to Kubernetes — from the cluster's Secrets, as ESO reads them.
pub async fn registry_for(sink: &SinkChoice) -> secretsync_core::registry::Registry {
    let registry = crate::registry();
    #[cfg(feature = "k8s")]
    if let SinkChoice::Implied = sink
        && let Ok(client) = secretsync_k8s::infer_client().await
    {
        use secretsync_core::registry::{ChainCredentials, EnvFileCredentials};
        return registry.with_credentials(Arc::new(ChainCredentials(vec![
            Arc::new(EnvFileCredentials::default()),
            Arc::new(secretsync_k8s::KubeCredentials::new(client)),
        ])));
    }
    let _ = sink;
    registry
}

/// Builds an engine over built stores (sharing them with other users, such as rotation's
/// writers, so both see the same store).
pub fn engine_over(
    stores: std::collections::BTreeMap<StoreId, BuiltStore>,
    failed: Vec<(StoreId, Error)>,
    sink: Arc<dyn SecretSink>,
    err: &mut dyn Write,
) -> Result<Engine, Exit> {
    let key = FingerprintKey::from_env_or_random().map_err(|e| {
        let _ = writeln!(err, "error: {e}");
        Exit::BadInput
    })?;
    let mut engine = Engine::new(stores, sink).with_fingerprint_key(key);
    for (id, e) in failed {
        let _ = writeln!(err, "warning: {e}");
        engine = engine.with_store_error(id, &e);
    }
    Ok(engine)
}

/// Builds the engine for a set of manifests.
pub async fn build_engine(
    manifests: &Manifests,
    choice: &SinkChoice,
    sink: Arc<dyn SecretSink>,
    err: &mut dyn Write,
) -> Result<Engine, Exit> {
    let (stores, failed) = build_stores(manifests, choice, err).await?;
    engine_over(stores, failed, sink, err)
}

/// Prints a report.
pub fn print_report(out: &mut dyn Write, report: &CycleReport, format: Format) {
    match format {
        Format::Text => {
            let _ = out.write_all(report.to_text().as_bytes());
        }
        Format::Json => {
            let _ = writeln!(out, "{}", serde_json::to_string(report).expect("reports serialize"));
        }
    }
    let _ = out.flush();
}

/// Runs `sync`; `out` gets reports, `err` problems.
pub async fn run_sync(opts: &SyncOptions, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let manifests = match load_checked(&opts.manifests, !opts.check, err) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if opts.check {
        let _ = writeln!(
            out,
            "ok: {} store(s), {} ExternalSecret(s), {} static target(s)",
            manifests.stores.len(),
            manifests.external_secrets.len(),
            manifests.static_targets.len()
        );
        return Exit::Synced;
    }
    let sink = match build_sink(&opts.sink).await {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return Exit::BadInput;
        }
    };
    let mut engine = match build_engine(&manifests, &opts.sink, sink, err).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    if let Some(r) = implied_restarter(&opts.sink).await {
        engine = engine.with_restarter(r);
    }
    if opts.once || opts.dry_run {
        let report = engine
            .run(
                &manifests,
                &CycleOptions {
                    dry_run: opts.dry_run,
                    only: None,
                },
            )
            .await;
        print_report(out, &report, opts.format);
        return if report.all_synced() {
            Exit::Synced
        } else {
            Exit::SpecFailed
        };
    }
    daemon(engine, manifests, opts, out, err).await
}

async fn daemon(
    mut engine: Engine,
    mut manifests: Manifests,
    opts: &SyncOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let reload_every = opts.reload_every.unwrap_or(Duration::from_secs(5));
    let mut scheduler = Scheduler::new();
    let mut cycles = 0usize;
    let mut last_failed = false;
    let mut first = true;
    loop {
        let now = Instant::now();
        scheduler.observe(&manifests.external_secrets, now);
        let due = scheduler.due(now);
        // Static targets are re-checked with every cycle that runs; the first runs them all.
        if first || !due.is_empty() {
            let only = if first { None } else { Some(due) };
            first = false;
            let report = engine.run(&manifests, &CycleOptions { dry_run: false, only }).await;
            let done = Instant::now();
            for s in &report.specs {
                scheduler.record(s, done);
            }
            last_failed = !report.all_synced();
            print_report(out, &report, opts.format);
            cycles += 1;
            if opts.max_cycles.is_some_and(|m| cycles >= m) {
                return if last_failed { Exit::SpecFailed } else { Exit::Synced };
            }
        }
        let wake = scheduler
            .next_wake()
            .map(|w| w.min(Instant::now() + reload_every))
            .unwrap_or(Instant::now() + reload_every);
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = tokio::signal::ctrl_c() => {
                let _ = writeln!(err, "stopping");
                return if last_failed { Exit::SpecFailed } else { Exit::Synced };
            }
        }
        // Pick up edited manifests (new specs, changed specs, force-sync annotations).
        let mut sink_err = Vec::new();
        match load_checked(&opts.manifests, true, &mut sink_err) {
            Ok(m) => {
                let stores_changed = m.stores.len() != manifests.stores.len()
                    || m.stores
                        .iter()
                        .zip(&manifests.stores)
                        .any(|(a, b)| a.id != b.id || a.spec != b.spec);
                if stores_changed {
                    match build_sink(&opts.sink).await {
                        Ok(sink) => match build_engine(&m, &opts.sink, sink, err).await {
                            Ok(e) => engine = e,
                            Err(_) => continue,
                        },
                        Err(e) => {
                            let _ = writeln!(err, "error: {e}");
                            continue;
                        }
                    }
                }
                manifests = m;
            }
            Err(_) => {
                // Keep syncing the last good manifests; say what is wrong.
                let _ = err.write_all(&sink_err);
            }
        }
    }
}
