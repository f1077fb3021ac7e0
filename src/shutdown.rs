//! What ends the proxy: the signals that stop it, SIGUSR1 (which only reopens the access log),
//! and a control task that ended on its own.

use tokio_util::sync::CancellationToken;

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

/// Waits for the control task; if it ends while the proxy is not stopping (it never returns on
/// its own, so only a panic gets here), says so loudly and fires `failed`.
pub async fn watch_control(
    control: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
    failed: CancellationToken,
) {
    let result = control.await;
    if shutdown.is_cancelled() {
        return;
    }
    match result {
        Err(err) if err.is_panic() => {
            tracing::error!(%err, "the control plane panicked; /healthz answers 503 and the proxy drains and exits");
        }
        _ => tracing::error!(
            "the control plane ended; /healthz answers 503 and the proxy drains and exits"
        ),
    }
    failed.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_control_task_that_panics_is_reported_as_failed() {
        let (shutdown, failed) = (CancellationToken::new(), CancellationToken::new());
        let control = tokio::spawn(async { panic!("a bug in the control plane") });
        watch_control(control, shutdown, failed.clone()).await;
        assert!(failed.is_cancelled());
    }

    #[tokio::test]
    async fn a_control_task_ending_at_shutdown_is_not_a_failure() {
        let (shutdown, failed) = (CancellationToken::new(), CancellationToken::new());
        shutdown.cancel();
        watch_control(tokio::spawn(async {}), shutdown, failed.clone()).await;
        assert!(!failed.is_cancelled());
    }
}
