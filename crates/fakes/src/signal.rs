//! How the `fake-kube` and `fake-gcp` binaries know to stop.

/// Waits for Ctrl-C or (on Unix) SIGTERM: how the `fake-kube` and `fake-gcp` binaries
/// know to stop, whether run from a shell or by a test that kills them.
pub async fn shutdown() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
