//! `run`: fetch the specs' values and run a command with them as environment variables,
//! writing nothing to disk (like `doppler run`). `--watch` restarts the command when a value
//! changes; `--redact` masks the values in its output.
//!
//! Signals: SIGINT, SIGTERM and SIGHUP are forwarded to the command, which decides; `run`
//! waits for it and exits with its code (128 + n when a signal ended it). A signal before
//! the command starts exits at once with 128 + n. A command that cannot be found exits
//! 127, one that cannot be executed 126, as shells do.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secretsync_core::engine::{CycleOptions, Engine};
use secretsync_core::manifest::Manifests;
use secretsync_core::redact::Redactor;
use secretsync_core::sinks::MemorySink;
use secretsync_core::{SecretValue, TargetRef};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{Exit, build_engine, load_checked};

/// Options of `run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Manifests.
    pub manifests: Vec<PathBuf>,
    /// Restart the command when a value changes.
    pub watch: bool,
    /// Mask values in the command's output.
    pub redact: bool,
    /// How often `--watch` checks for changes (default: the shortest refreshInterval,
    /// at least 1s).
    pub interval: Option<Duration>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

type Env = Vec<(String, SecretValue)>;

async fn collect(
    engine: &Engine,
    manifests: &Manifests,
    sink: &MemorySink,
    err: &mut dyn Write,
) -> Result<(Env, u64), Exit> {
    let report = engine.run(manifests, &CycleOptions::default()).await;
    if !report.all_synced() {
        for s in report.failed() {
            let _ = writeln!(err, "error: {}/{}: {}", s.namespace, s.name, s.message);
        }
        return Err(Exit::SpecFailed);
    }
    let mut env: Vec<(String, SecretValue)> = vec![];
    let mut targets: Vec<TargetRef> = sink.targets();
    targets.sort();
    for t in targets {
        let Some(state) = sink.get(&t) else { continue };
        for (k, v) in state.data {
            if v.expose().contains(&0) {
                let _ = writeln!(
                    err,
                    "error: {t}: key `{k}` holds a NUL byte and cannot be an environment variable"
                );
                return Err(Exit::SpecFailed);
            }
            if let Some(pos) = env.iter().position(|(e, _)| e == &k) {
                let _ = writeln!(err, "warning: `{k}` is set by more than one target; {t} wins");
                env.remove(pos);
            }
            env.push((k, v));
        }
    }
    Ok((env, report.writes))
}

fn spawn(opts: &RunOptions, env: &Env) -> std::io::Result<Child> {
    let mut cmd = Command::new(&opts.command[0]);
    cmd.args(&opts.command[1..]).stdin(Stdio::inherit()).kill_on_drop(true);
    for (k, v) in env {
        // OsStr from bytes keeps non-UTF-8 values intact.
        use std::os::unix::ffi::OsStrExt;
        cmd.env(k, std::ffi::OsStr::from_bytes(v.expose()));
    }
    if opts.redact {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    }
    cmd.spawn()
}

async fn pump(from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, redactor: Redactor) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let masked = redactor.redact(&line);
                if to.write_all(&masked).await.is_err() {
                    break;
                }
                let _ = to.flush().await;
            }
        }
    }
}

/// A running command and the tasks copying its (masked) output.
struct Running {
    child: Child,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for the output to be fully copied (the child has exited).
    async fn drain(&mut self) {
        for p in self.pumps.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
    }
}

/// The command could not start: 127 when it is not found, 126 otherwise (as `sh`).
const NOT_FOUND: i32 = 127;
const CANNOT_EXECUTE: i32 = 126;

fn start(opts: &RunOptions, env: &Env, err: &mut dyn Write) -> Result<Running, i32> {
    let mut child = spawn(opts, env).map_err(|e| {
        let _ = writeln!(err, "error: cannot start `{}`: {e}", opts.command[0]);
        if e.kind() == std::io::ErrorKind::NotFound {
            NOT_FOUND
        } else {
            CANNOT_EXECUTE
        }
    })?;
    let mut pumps = vec![];
    if opts.redact {
        let redactor = Redactor::new(env.iter().map(|(_, v)| v));
        if let Some(o) = child.stdout.take() {
            pumps.push(tokio::spawn(pump(o, tokio::io::stdout(), redactor.clone())));
        }
        if let Some(e) = child.stderr.take() {
            pumps.push(tokio::spawn(pump(e, tokio::io::stderr(), redactor)));
        }
    }
    Ok(Running { child, pumps })
}

/// The signals `run` forwards to its command.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    async fn recv(&mut self) -> rustix::process::Signal {
        use rustix::process::Signal;
        tokio::select! {
            _ = self.int.recv() => Signal::INT,
            _ = self.term.recv() => Signal::TERM,
            _ = self.hup.recv() => Signal::HUP,
        }
    }
}

fn send(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The exit code of a finished command: its own, or 128 + the signal that ended it.
fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|n| 128 + n)).unwrap_or(1)
}

async fn stop(child: &mut Child) {
    // Ask politely, then insist.
    send(child, rustix::process::Signal::TERM);
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_ok()
    {
        return;
    }
    let _ = child.kill().await;
}

/// Runs `run`; returns the command's exit code (or ours: 1 fetch failed, 2 bad input, 126
/// or 127 the command cannot start, 128 + n a signal arrived before it started).
pub async fn run_run(opts: &RunOptions, err: &mut dyn Write) -> i32 {
    if opts.command.is_empty() {
        let _ = writeln!(err, "error: no command given (run --manifest M -- CMD ARGS)");
        return Exit::BadInput as i32;
    }
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: cannot handle signals: {e}");
            return Exit::BadInput as i32;
        }
    };
    // Until the command runs, a signal ends `run` at once.
    let prepared = tokio::select! {
        p = prepare(opts, err) => p,
        signal = signals.recv() => Err(128 + signal.as_raw()),
    };
    let (engine, manifests, sink, env) = match prepared {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut running = match start(opts, &env, err) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let interval = opts.interval.unwrap_or_else(|| {
        manifests
            .external_secrets
            .iter()
            .filter_map(|es| es.refresh_interval().ok().flatten())
            .min()
            .unwrap_or(Duration::from_secs(60))
            .max(Duration::from_secs(1))
    });
    // After a forwarded signal the command is on its way out: no more restarts.
    let mut stopping = false;
    loop {
        tokio::select! {
            status = running.child.wait() => {
                running.drain().await;
                return match status {
                    Ok(s) => code_of(s),
                    Err(e) => {
                        let _ = writeln!(err, "error: waiting for the command: {e}");
                        1
                    }
                };
            }
            signal = signals.recv() => {
                send(&running.child, signal);
                stopping = true;
            }
            _ = tokio::time::sleep(interval), if opts.watch && !stopping => {
                match collect(&engine, &manifests, &sink, err).await {
                    Ok((new_env, writes)) if writes > 0 => {
                        let _ = writeln!(err, "secretsync: values changed, restarting `{}`", opts.command[0]);
                        stop(&mut running.child).await;
                        running.drain().await;
                        running = match start(opts, &new_env, err) {
                            Ok(c) => c,
                            Err(code) => return code,
                        };
                    }
                    Ok(_) => {}
                    // Keep the command running on its last good values.
                    Err(_) => {}
                }
            }
        }
    }
}

/// Loads, builds and fetches: everything before the command starts.
async fn prepare(opts: &RunOptions, err: &mut dyn Write) -> Result<(Engine, Manifests, Arc<MemorySink>, Env), i32> {
    let manifests = load_checked(&opts.manifests, true, err).map_err(|c| c as i32)?;
    let sink = Arc::new(MemorySink::new());
    let engine = build_engine(&manifests, &super::SinkChoice::Stdout, sink.clone(), err)
        .await
        .map_err(|c| c as i32)?;
    let (env, _) = collect(&engine, &manifests, &sink, err).await.map_err(|c| c as i32)?;
    Ok((engine, manifests, sink, env))
}
