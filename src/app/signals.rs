//! Stopping on signals. A [`Stop`] is handed to the long-running commands; every long wait
//! (a cycle and its fetches and backoffs, the wait between cycles, a child process) races
//! it, so a Ctrl-C is never lost while a cycle runs.

use std::sync::Arc;

use tokio::sync::watch;

/// When a command should stop.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Option<Arc<watch::Receiver<bool>>>,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("installed", &self.inner.is_some())
            .finish()
    }
}

/// Requests a stop of the [`Stop`] it was made with.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<watch::Sender<bool>>);

impl StopHandle {
    /// Asks the command to stop.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Stop {
    /// A stop requested through the returned handle only (embedding, tests).
    pub fn manual() -> (Stop, StopHandle) {
        let (tx, rx) = watch::channel(false);
        (
            Stop {
                inner: Some(Arc::new(rx)),
            },
            StopHandle(Arc::new(tx)),
        )
    }

    /// Stops on SIGINT (Ctrl-C) or SIGTERM (docker stop, systemd). A second signal exits
    /// the process at once with 130 (SIGINT) or 143 (SIGTERM). Needs a Tokio runtime.
    pub fn on_signals() -> Stop {
        let (stop, handle) = Stop::manual();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            let mut seen = 0;
            loop {
                let code = tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                };
                seen += 1;
                if seen > 1 {
                    eprintln!("secretsync: second signal, exiting now");
                    std::process::exit(code);
                }
                handle.stop();
            }
        });
        stop
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.as_ref().is_some_and(|r| *r.borrow())
    }

    /// Resolves when a stop is requested. Without [`Stop::on_signals`] or
    /// [`Stop::manual`], that is on Ctrl-C.
    pub async fn requested(&self) {
        match &self.inner {
            Some(rx) => {
                let mut rx = (**rx).clone();
                if rx.wait_for(|v| *v).await.is_err() {
                    // The handle is gone: nobody can ask any more.
                    std::future::pending::<()>().await;
                }
            }
            None => {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
