//! Process signals that end the proxy.

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    r = tokio::signal::ctrl_c() => log_ctrl_c_error(r),
                }
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM; only Ctrl-C will stop the proxy");
                log_ctrl_c_error(tokio::signal::ctrl_c().await);
            }
        }
    }
    #[cfg(not(unix))]
    log_ctrl_c_error(tokio::signal::ctrl_c().await);
}

fn log_ctrl_c_error(result: std::io::Result<()>) {
    if let Err(err) = result {
        tracing::error!(%err, "cannot listen for Ctrl-C");
    }
}
