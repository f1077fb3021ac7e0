//! What ends the proxy: the signals that stop it, SIGUSR1 (which only reopens the access log),
//! and a control task that ended on its own.

use tokio_util::sync::CancellationToken;

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    StopSignals::listen().next().await;
}

/// SIGINT and SIGTERM, listened for from the moment this is made: one that arrives while no
/// one is waiting (between the first signal's handling and the wait for a second) is kept for
/// the next wait rather than lost.
#[derive(Debug)]
pub struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening (inside the runtime).
    pub fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind, name| match signal(kind) {
            Ok(signals) => Some(signals),
            Err(err) => {
                tracing::error!(%err, "cannot listen for {name}");
                None
            }
        };
        Self {
            term: listen(SignalKind::terminate(), "SIGTERM"),
            int: listen(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// The next SIGINT or SIGTERM (never, if neither can be listened for).
    pub async fn next(&mut self) {
        async fn recv(signals: &mut Option<tokio::signal::unix::Signal>) {
            match signals {
                Some(signals) => {
                    signals.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => {}
            () = recv(&mut self.int) => {}
        }
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
