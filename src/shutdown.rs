//! Process signals: those that end the proxy, and SIGUSR1, which reopens the access log.

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

/// Reopens the access log on every SIGUSR1 (logrotate's `postrotate`), until `stop`.
pub async fn reopen_access_log_on_sigusr1(
    log: crate::access_log::AccessLog,
    stop: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut signals = match signal(SignalKind::user_defined1()) {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGUSR1; the access log cannot be reopened");
            return;
        }
    };
    loop {
        tokio::select! {
            Some(()) = signals.recv() => log.reopen(),
            () = stop.cancelled() => return,
        }
    }
}
