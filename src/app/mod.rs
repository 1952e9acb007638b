//! The `secretsync` program as a library, so the binary and the examples only parse
//! arguments: `sync` (load and check manifests, build stores and a sink, run cycles once or
//! as a daemon on the specs' refresh intervals, report), [`rotate`], [`run`], and with the
//! `cli` feature the command line itself ([`cli`]).

#[cfg(feature = "cli")]
pub mod cli;
pub mod events;
pub mod reload;
pub mod rotate;
pub mod run;
pub mod signals;

pub use signals::{Stop, StopHandle};

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

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
    /// Daemon: how often the manifests are polled for changes where they cannot be watched
    /// or `SECRETSYNC_WATCH=poll` (default 5s); while watching, a poll runs every 30 s or
    /// this, if longer ([`reload`]).
    pub reload_every: Option<Duration>,
    /// Daemon: stop after this many cycles (tests); `None` runs until stopped.
    pub max_cycles: Option<usize>,
    /// Print a report only for cycles that wrote, restarted or failed something.
    pub quiet: bool,
    /// Also print notes (documents of other kinds that were left alone).
    pub verbose: bool,
    /// When to stop (default: on Ctrl-C); races every long wait, cycles included.
    pub stop: Stop,
    /// Daemon: serve `/refresh`, Doppler webhooks and `/metrics` here ([`events`]).
    pub listen: Option<events::ListenOn>,
    /// Daemon: the bearer token `POST /refresh` requires (without one, it refuses all).
    pub refresh_token: Option<secretsync_core::SecretValue>,
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
    /// Stopped by a signal before a cycle completed (128 + SIGINT).
    Interrupted = 130,
}

fn print_errors(err: &mut dyn Write, errors: &[Error]) {
    for e in errors {
        let _ = writeln!(err, "error: {e}");
    }
}

/// Loads and validates manifests; returns them or prints every problem. With
/// `strict_stores`, a reference to a store that is not in the manifests is an error;
/// without, it is left to the run, where that spec fails alone.
pub fn load_checked(paths: &[PathBuf], strict_stores: bool, err: &mut dyn Write) -> Result<Manifests, Exit> {
    load_checked_noting(paths, strict_stores, None, err)
}

/// [`load_checked`], printing the notes on documents left alone to `notes` when given.
pub fn load_checked_noting(
    paths: &[PathBuf],
    strict_stores: bool,
    notes: Option<&mut dyn Write>,
    err: &mut dyn Write,
) -> Result<Manifests, Exit> {
    if paths.is_empty() {
        let _ = writeln!(err, "error: no manifests given (--manifest PATH)");
        return Err(Exit::BadInput);
    }
    check_loaded(load_paths(paths), strict_stores, notes, err)
}

/// Checks what was loaded (see [`load_checked`]): prints notes, warnings and every problem.
pub fn check_loaded(
    loaded: secretsync_core::manifest::Loaded,
    strict_stores: bool,
    notes: Option<&mut dyn Write>,
    err: &mut dyn Write,
) -> Result<Manifests, Exit> {
    let (mut errors, mut warnings) = (loaded.errors, loaded.warnings);
    let (verrs, vwarns) = check_manifests(&loaded.manifests, strict_stores);
    errors.extend(verrs);
    warnings.extend(vwarns);
    if let Some(n) = notes {
        for note in &loaded.notes {
            let _ = writeln!(n, "note: {note}");
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

/// Every offline check of loaded manifests: the core's validation, each provider's own, and
/// the change-event annotations. Errors and warnings.
fn check_manifests(manifests: &Manifests, strict_stores: bool) -> (Vec<Error>, Vec<String>) {
    let (mut errors, warnings) = validate(
        manifests,
        ValidateOptions {
            missing_store_is_error: strict_stores,
        },
    );
    let registry = crate::registry();
    for store in &manifests.stores {
        // Each provider's own offline validation: unknown fields, endpoints without a
        // scheme or with plain http to another host, missing regions... every problem.
        errors.extend(registry.validate(store));
        // And its change-event annotations: a scheme this build has, a well-formed address.
        errors.extend(registry.validate_events(store, &[events::DOPPLER_WEBHOOK]));
    }
    (errors, warnings)
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
    let key = stable_key(err)?;
    let mut engine = Engine::new(stores, sink).with_fingerprint_key(key);
    for (id, e) in failed {
        let _ = writeln!(err, "warning: {e}");
        engine = engine.with_store_error(id, &e);
    }
    Ok(engine)
}

/// The fingerprint key of this user: `SECRETSYNC_FINGERPRINT_KEY` (a malformed one is bad
/// input), else the key file under the state folder, created on first use. When that file
/// cannot be used (a read-only home), a random key with a warning: fingerprints then differ
/// between runs, which costs nothing but stable reports.
pub fn stable_key(err: &mut dyn Write) -> Result<FingerprintKey, Exit> {
    match FingerprintKey::from_env() {
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            Err(Exit::BadInput)
        }
        Ok(Some(k)) => Ok(k),
        Ok(None) => Ok(FingerprintKey::stable().unwrap_or_else(|e| {
            let _ = writeln!(err, "warning: {e}; fingerprints will differ between runs");
            FingerprintKey::random()
        })),
    }
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

/// Prints a report; a JSON report carries the time it was made (`time`, RFC 3339, UTC).
pub fn print_report(out: &mut dyn Write, report: &CycleReport, format: Format) {
    match format {
        Format::Text => {
            let _ = out.write_all(report.to_text().as_bytes());
        }
        Format::Json => {
            let mut v = serde_json::to_value(report).expect("reports serialize");
            if let serde_json::Value::Object(o) = &mut v {
                o.insert("time".into(), rfc3339(std::time::SystemTime::now()).into());
            }
            let _ = writeln!(out, "{v}");
        }
    }
    let _ = out.flush();
}

/// `2024-05-01T12:34:56.789Z`. Hand-written (days to civil date, H. Hinnant's algorithm)
/// rather than a date crate, which the default build would compile for this one line.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (d.as_secs() as i64, d.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A writer shared by two handles (reports and problems both to stderr with `--stdout`).
struct Shared<'a, 'b>(&'a RefCell<&'b mut dyn Write>);

impl Write for Shared<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// No cycle completed yet (see [`run_sync`]'s exit on a stop).
const NO_CYCLE: u8 = Exit::Interrupted as u8;

/// Runs `sync`; `out` gets reports, `err` problems. With `--stdout` the targets go to
/// standard output, so reports go to `err` and the output pipes into `kubectl apply -f -`.
/// A stop ([`SyncOptions::stop`]) ends it at once, even mid-cycle: the exit is the last
/// completed cycle's, or [`Exit::Interrupted`] when none completed.
pub async fn run_sync(opts: &SyncOptions, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    if matches!(opts.sink, SinkChoice::Stdout) {
        let cell = RefCell::new(err);
        return run_sync_stoppable(opts, &mut Shared(&cell), &mut Shared(&cell)).await;
    }
    run_sync_stoppable(opts, out, err).await
}

async fn run_sync_stoppable(opts: &SyncOptions, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let last = AtomicU8::new(NO_CYCLE);
    let finished = tokio::select! {
        code = sync_until_done(opts, &last, out, err) => Some(code),
        _ = opts.stop.requested() => None,
    };
    match finished {
        Some(code) => code,
        None => {
            let _ = writeln!(err, "stopping");
            match last.load(Ordering::SeqCst) {
                0 => Exit::Synced,
                1 => Exit::SpecFailed,
                _ => Exit::Interrupted,
            }
        }
    }
}

/// Distinct targets that a `--env-file` path template would write to one file.
fn shared_env_files(manifests: &Manifests, template: &str) -> Vec<String> {
    let sink = DotenvSink::new(template);
    let mut by_path: std::collections::BTreeMap<PathBuf, std::collections::BTreeSet<secretsync_core::TargetRef>> =
        Default::default();
    let targets = manifests
        .external_secrets
        .iter()
        .map(|es| es.target_ref())
        .chain(manifests.static_targets.iter().map(|s| s.target.clone()));
    for t in targets {
        by_path.entry(sink.path_of(&t)).or_default().insert(t);
    }
    by_path
        .into_iter()
        .filter(|(_, ts)| ts.len() > 1)
        .map(|(path, ts)| {
            let names: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
            format!(
                "--env-file {template}: {} targets would overwrite each other in {} ({}); put {{namespace}} and {{name}} in the path, e.g. 'out/{{namespace}}/{{name}}.env'",
                names.len(),
                path.display(),
                names.join(", ")
            )
        })
        .collect()
}

/// Environment variable naming the folder of PushSecret records (`deletionPolicy: Delete`);
/// default `.secretsync/push-state`.
pub const PUSH_STATE_DIR_ENV: &str = "SECRETSYNC_PUSH_STATE_DIR";

fn push_options() -> secretsync_core::push::PushOptions {
    secretsync_core::push::PushOptions {
        state_dir: Some(
            std::env::var_os(PUSH_STATE_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".secretsync/push-state")),
        ),
    }
}

fn should_print(opts: &SyncOptions, report: &CycleReport) -> bool {
    !opts.quiet
        || report.writes > 0
        || report.push.as_ref().is_some_and(|p| p.writes > 0)
        || !report.all_synced()
        || !report.restarts.is_empty()
}

async fn sync_until_done(opts: &SyncOptions, last: &AtomicU8, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    // A missing store fails its specs alone in a run; `--check` fails on it, as the run would.
    let manifests = {
        let notes: Option<&mut dyn Write> = if opts.check || opts.verbose {
            Some(&mut *out)
        } else {
            None
        };
        if opts.manifests.is_empty() {
            let _ = writeln!(err, "error: no manifests given (--manifest PATH)");
            return Exit::BadInput;
        }
        // Kept file by file, so the daemon re-parses only the files that change.
        // A folder sink's output under a manifest folder is never read back as manifests.
        let excluded: Vec<PathBuf> = match &opts.sink {
            SinkChoice::Folder(d) => vec![d.clone()],
            _ => vec![],
        };
        let (files, loaded) = reload::ManifestFiles::load_excluding(&opts.manifests, &excluded);
        match check_loaded(loaded, opts.check, notes, err) {
            Ok(m) => (files, m),
            Err(code) => return code,
        }
    };
    let (files, manifests) = manifests;
    if let SinkChoice::Dotenv(template) = &opts.sink {
        let shared = shared_env_files(&manifests, template);
        if !shared.is_empty() {
            for e in &shared {
                let _ = writeln!(err, "error: {e}");
            }
            return Exit::BadInput;
        }
    }
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
        let mut report = engine
            .run(
                &manifests,
                &CycleOptions {
                    dry_run: opts.dry_run,
                    only: None,
                    ..Default::default()
                },
            )
            .await;
        // PushSecrets after the ExternalSecrets that feed them, so one run carries an edit
        // of their source all the way to the provider.
        if !opts.dry_run && !manifests.push_secrets.is_empty() {
            report.push = Some(secretsync_core::push::push_all_with(&manifests, &engine, &push_options()).await);
        }
        if should_print(opts, &report) {
            print_report(out, &report, opts.format);
        }
        return if report.all_synced() {
            Exit::Synced
        } else {
            Exit::SpecFailed
        };
    }
    daemon(engine, manifests, files, opts, last, out, err).await
}

async fn daemon(
    mut engine: Engine,
    mut manifests: Manifests,
    mut files: reload::ManifestFiles,
    opts: &SyncOptions,
    last: &AtomicU8,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let reload_every = opts.reload_every.unwrap_or(Duration::from_secs(5));
    let registry = registry_for(&opts.sink).await;
    let mut hub = events::EventHub::new(opts.refresh_token.clone());
    for p in hub.configure(&manifests, &registry).await {
        let _ = writeln!(err, "warning: change events: {p}");
    }
    if let Some(listen) = &opts.listen {
        match hub.serve(listen).await {
            Ok(addr) => {
                let _ = writeln!(err, "listening on http://{addr} (/refresh, /events/doppler, /metrics)");
            }
            Err(e) => {
                let _ = writeln!(err, "error: cannot listen on {}: {e}", listen.addr());
                return Exit::BadInput;
            }
        }
    }
    let mut scheduler = Scheduler::new();
    let mut pushes = secretsync_core::push::PushSchedule::new();
    let mut cycles = 0usize;
    let mut first = true;
    let mut watch = reload::Watch::start_excluding(&opts.manifests, files.excluded(), reload_every);
    if opts.verbose {
        let _ = writeln!(err, "{}", watch.how);
    } else if !watch.is_watching() {
        let _ = writeln!(err, "warning: {}", watch.how);
    }
    let mut unlisted = String::new();
    let mut observed = true;
    loop {
        let now = Instant::now();
        if observed {
            scheduler.observe(&manifests.external_secrets, now);
            observed = false;
        }
        // Specs due within the window run now, with those already due: one cycle, one
        // fetch per key, instead of a cycle for every few specs that jitter spread out.
        let window = scheduler.window();
        let due = scheduler.due_within(now, window);
        // Static targets are re-checked with every cycle that runs; the first runs them all.
        if first || !due.is_empty() {
            let only = if first { None } else { Some(due) };
            first = false;
            let mut report = engine
                .run(
                    &manifests,
                    &CycleOptions {
                        dry_run: false,
                        only,
                        ..Default::default()
                    },
                )
                .await;
            report.events_down = hub.down();
            // PushSecrets that are due (refreshInterval, a changed source or spec, a failed
            // push) are re-checked: compare first, so an unchanged source costs no write.
            if !manifests.push_secrets.is_empty() {
                report.push = Some(pushes.push_due(&manifests, &engine, &report, &push_options()).await);
            }
            cycles += 1;
            if let Some(code) = finish_cycle(&report, cycles, &mut scheduler, opts, last, out) {
                return code;
            }
        }
        let wake = scheduler
            .next_wake()
            .map(|w| w.min(watch.next_poll()))
            .unwrap_or(watch.next_poll());
        // The stop is raced by the caller, around this whole loop. A change event wakes
        // the daemon early: the specs reading the changed keys sync now; so does an edit
        // of a manifest file.
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = watch.changed() => {}
            Some(first) = hub.recv() => {
                let mut pending = secretsync_core::events::Pending::default();
                pending.add(&first.store, first.delivery);
                hub.collect_burst(&mut pending).await;
                if let Some(mut report) = sync_changes(&engine, &manifests, &hub, pending).await {
                    // PushSecrets fed by the targets this sync wrote push now, in the same
                    // burst, as they do after a periodic cycle.
                    if !manifests.push_secrets.is_empty() {
                        report.push = Some(pushes.push_due(&manifests, &engine, &report, &push_options()).await);
                    }
                    cycles += 1;
                    if let Some(code) = finish_cycle(&report, cycles, &mut scheduler, opts, last, out) {
                        return code;
                    }
                }
            }
        }
        // Pick up edited manifests (new specs, changed specs, force-sync annotations): only
        // the files that changed are parsed again; nothing is read while nothing changed.
        let Some(hinted) = watch.take(Instant::now()) else {
            continue;
        };
        let hinted = reload::hinted_as_given(&files, &hinted);
        let rescan = files.rescan(&hinted);
        let now_unlisted: String = rescan.unlisted.iter().map(|e| format!("warning: {e}\n")).collect();
        if now_unlisted != unlisted {
            let _ = err.write_all(now_unlisted.as_bytes());
            unlisted = now_unlisted;
        }
        if !rescan.changed() {
            continue;
        }
        if let Some(m) = reloaded(&mut files, &rescan, err) {
            let stores_changed = m.stores.len() != manifests.stores.len()
                || m.stores
                    .iter()
                    .zip(&manifests.stores)
                    .any(|(a, b)| a.id != b.id || a.spec != b.spec);
            if stores_changed {
                match build_sink(&opts.sink).await {
                    Ok(sink) => match build_engine(&m, &opts.sink, sink, err).await {
                        Ok(e) => {
                            engine = e;
                            if let Some(r) = implied_restarter(&opts.sink).await {
                                engine = engine.with_restarter(r);
                            }
                            for p in hub.configure(&m, &registry).await {
                                let _ = writeln!(err, "warning: change events: {p}");
                            }
                        }
                        Err(_) => continue,
                    },
                    Err(e) => {
                        let _ = writeln!(err, "error: {e}");
                        continue;
                    }
                }
            }
            manifests = m;
            observed = true;
        }
    }
}

/// The manifests after a rescan that changed files, checked as at start-up; `None` when
/// nothing the daemon syncs changed (a bad edit kept its file's last good version) or the
/// result does not check (the daemon keeps syncing the last good manifests). Says once, for
/// this change, which files were read and what is wrong in them (file, document, field).
fn reloaded(files: &mut reload::ManifestFiles, rescan: &reload::Rescan, err: &mut dyn Write) -> Option<Manifests> {
    let shown = |ps: &[PathBuf]| {
        ps.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!("manifests: read {}", shown(&rescan.read));
    if !rescan.removed.is_empty() {
        line.push_str(&format!("; removed {}", shown(&rescan.removed)));
    }
    let _ = writeln!(err, "{line}");
    for w in &rescan.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    print_errors(err, &rescan.errors);
    for f in &rescan.kept {
        let _ = writeln!(err, "keeping the last good version of {}", f.display());
    }
    if rescan.removed.is_empty() && rescan.read.iter().all(|f| rescan.kept.contains(f)) {
        return None;
    }
    // A file that parses but does not check with the rest (a duplicate target, a store
    // setting a provider refuses) keeps its last good version too.
    for attempt in 0..2 {
        let m = files.merged();
        let (errors, _) = check_manifests(&m, false);
        if errors.is_empty() {
            return Some(m);
        }
        let in_read: Vec<&PathBuf> = rescan
            .read
            .iter()
            .filter(|f| {
                errors
                    .iter()
                    .any(|e| matches!(e, Error::Manifest { location, .. } if &location.file == *f))
            })
            .collect();
        if attempt == 0 && !in_read.is_empty() {
            print_errors(err, &errors);
            for f in in_read {
                let _ = writeln!(err, "keeping the last good version of {}", f.display());
                files.restore(f, rescan);
            }
            continue;
        }
        print_errors(err, &errors);
        let _ = writeln!(err, "keeping the last good manifests");
        return None;
    }
    None
}

/// After a daemon cycle (periodic or event-driven): schedules its specs' next refresh,
/// records its outcome for the exit code, prints its report; the exit code when the
/// daemon's cycle budget (`max_cycles`) is spent.
fn finish_cycle(
    report: &CycleReport,
    cycle: usize,
    scheduler: &mut Scheduler,
    opts: &SyncOptions,
    last: &AtomicU8,
    out: &mut dyn Write,
) -> Option<Exit> {
    let done = Instant::now();
    for s in &report.specs {
        scheduler.record(s, done);
    }
    let failed = !report.all_synced();
    last.store(u8::from(failed), Ordering::SeqCst);
    if should_print(opts, report) {
        match opts.format {
            Format::Text => {
                let _ = out.write_all(daemon_text(cycle, report).as_bytes());
                let _ = out.flush();
            }
            Format::Json => print_report(out, report, opts.format),
        }
    }
    opts.max_cycles
        .is_some_and(|m| cycle >= m)
        .then_some(if failed { Exit::SpecFailed } else { Exit::Synced })
}

/// Syncs the readers of the changed keys, reading only those keys, then acknowledges every
/// delivery (also those about keys nobody reads). `None` when no spec reads a changed key.
async fn sync_changes(
    engine: &Engine,
    manifests: &Manifests,
    hub: &events::EventHub,
    mut pending: secretsync_core::events::Pending,
) -> Option<CycleReport> {
    let changes = pending.take();
    let mut only = std::collections::BTreeSet::new();
    let mut changed = std::collections::BTreeMap::new();
    let mut events = 0;
    let mut readers_of = Vec::with_capacity(changes.len());
    for c in &changes {
        let readers = secretsync_core::events::readers_of(manifests, &c.store, c.keys.as_ref());
        if !readers.is_empty() {
            changed.insert(c.store.clone(), c.keys.clone());
            events += c.events;
        }
        readers_of.push(!readers.is_empty());
        only.extend(readers);
    }
    let report = if only.is_empty() {
        None
    } else {
        let mut report = engine
            .run(
                manifests,
                &CycleOptions {
                    dry_run: false,
                    only: Some(only),
                    changed: Some(changed),
                },
            )
            .await;
        report.events = events;
        report.events_down = hub.down();
        Some(report)
    };
    // Acknowledged once the sync finished: a crash before this means redelivery. A spec
    // that failed is retried by the scheduler's backoff, not by redelivery.
    for (c, synced) in changes.iter().zip(readers_of) {
        hub.ack(&c.store, &c.acks).await;
        hub.handled(&c.store, synced, c.events, c.oldest);
    }
    report
}

/// A daemon cycle for people: a line per spec that changed or failed, failures with the
/// same message (a broken store, an expired token) folded into one line with their count,
/// restarts, and a one-line summary.
pub fn daemon_text(cycle: usize, report: &CycleReport) -> String {
    use secretsync_core::engine::{Outcome, SyncStatus};
    let mut out = String::new();
    let mut changed = 0usize;
    for s in &report.specs {
        if s.status != SyncStatus::SecretSynced {
            continue;
        }
        let what = match s.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Deleted => "deleted",
            Outcome::Unchanged | Outcome::Skipped => continue,
        };
        changed += 1;
        let fp = s
            .fingerprint
            .as_deref()
            .map(|f| format!(" fingerprint={f}"))
            .unwrap_or_default();
        out.push_str(&format!("{what} {}/{} -> {}{fp}\n", s.namespace, s.name, s.target));
    }
    let mut by_message: std::collections::BTreeMap<&str, Vec<&secretsync_core::engine::SpecReport>> =
        Default::default();
    for s in report.failed() {
        by_message.entry(s.message.as_str()).or_default().push(s);
    }
    for (message, specs) in &by_message {
        match specs.as_slice() {
            [s] => out.push_str(&format!(
                "failed {}/{} -> {}: {message}\n",
                s.namespace, s.name, s.target
            )),
            many => {
                let names: Vec<String> = many
                    .iter()
                    .take(3)
                    .map(|s| format!("{}/{}", s.namespace, s.name))
                    .collect();
                let more = if many.len() > 3 {
                    format!(", and {} more", many.len() - 3)
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "failed {} specs ({}{more}): {message}\n",
                    many.len(),
                    names.join(", ")
                ));
            }
        }
    }
    for r in &report.restarts {
        out.push_str(&format!("restarted {r}\n"));
    }
    for e in &report.restart_errors {
        out.push_str(&format!("restart failed: {e}\n"));
    }
    for d in &report.events_down {
        out.push_str(&format!(
            "events of {} ({}) not flowing, polling continues: {}\n",
            d.store, d.source, d.problem
        ));
    }
    let by_events = if report.events > 0 {
        format!(" ({} change events)", report.events)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "cycle {cycle}{by_events}: {} specs, {changed} changed, {} failed, {} writes, {} provider calls, {} ms\n",
        report.specs.len(),
        report.failed().count(),
        report.writes,
        report.provider_calls,
        report.duration_ms,
    ));
    out
}

#[cfg(test)]
mod tests {
    use secretsync_core::engine::{CycleReport, Outcome, SpecReport, SyncStatus};

    #[test]
    fn daemon_text_folds_a_broken_store_and_skips_unchanged_specs() {
        let spec = |name: &str, status, outcome, message: &str| SpecReport {
            status,
            outcome,
            message: message.to_string(),
            ..SpecReport::pending("ExternalSecret", "dev", name, format!("Secret dev/{name}"))
        };
        let broken = "store dev/vault: Unauthenticated: token expired";
        let mut specs = vec![spec("new", SyncStatus::SecretSynced, Outcome::Created, "")];
        for i in 0..5 {
            specs.push(spec(
                &format!("b{i}"),
                SyncStatus::SecretSyncedError,
                Outcome::Skipped,
                broken,
            ));
        }
        for i in 0..100 {
            specs.push(spec(&format!("u{i}"), SyncStatus::SecretSynced, Outcome::Unchanged, ""));
        }
        specs.push(spec(
            "alone",
            SyncStatus::SecretSyncedError,
            Outcome::Skipped,
            "key db: not found",
        ));
        let report = CycleReport {
            specs,
            writes: 1,
            ..CycleReport::default()
        };
        let text = super::daemon_text(7, &report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0], "created dev/new -> Secret dev/new");
        assert_eq!(lines[1], "failed dev/alone -> Secret dev/alone: key db: not found");
        assert_eq!(
            lines[2],
            format!("failed 5 specs (dev/b0, dev/b1, dev/b2, and 2 more): {broken}")
        );
        assert!(
            lines[3].starts_with("cycle 7: 107 specs, 1 changed, 6 failed, 1 writes"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        let at = |s: u64| super::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_719_792_000_123), "2024-07-01T00:00:00.123Z");
        assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
