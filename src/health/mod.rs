//! Active health checking: a pure rise/fall tracker, probes as IO under a timeout, and one
//! task per backend that reports verdicts to the control plane in a type of its own (this
//! module never depends on the control plane).

mod probe;
mod tracker;

pub use probe::{ProbeTarget, run_probe};
pub use tracker::{Tracker, Verdict};

use crate::config::HealthCheckConfig;
use crate::upstream::{BackendKey, BackendState, Exclusion, timestamp};
use arc_swap::ArcSwapOption;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// The outcome of one active probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    /// Whether it passed.
    pub ok: bool,
    /// The failure, or `ok`.
    pub detail: String,
    /// When it finished (RFC 3339).
    pub time: String,
}

/// What a prober tells the control plane about its backend.
#[derive(Debug)]
pub struct Report {
    /// The backend probed.
    pub backend: BackendKey,
    /// What happened.
    pub kind: ReportKind,
}

/// What a prober saw.
#[derive(Debug)]
pub enum ReportKind {
    /// Probes flipped the backend's health.
    Verdict {
        /// Its new health.
        verdict: Verdict,
        /// Probe detail for logs and the API.
        detail: String,
    },
    /// A probe passed while the backend is ejected: it may return early.
    PassedWhileEjected,
}

/// `switchyard_health_checks_total` for one backend.
#[derive(Debug)]
pub struct ProbeCounters {
    /// `result="pass"`.
    pub passed: metrics::Counter,
    /// `result="fail"`.
    pub failed: metrics::Counter,
}

/// What one backend's probe task works with.
#[derive(Debug)]
pub struct Prober {
    /// The backend probed.
    pub backend: Arc<BackendState>,
    /// How.
    pub check: HealthCheckConfig,
    /// In the pool's protocol and TLS settings.
    pub target: ProbeTarget,
    /// Where the latest result goes, for the admin API.
    pub last_probe: Arc<ArcSwapOption<ProbeRecord>>,
    /// Pass and fail counters.
    pub counters: ProbeCounters,
    /// Whether the backend has a history to continue (see `Tracker::resume`), rather than
    /// starting from its configured initial state.
    pub resume: bool,
}

/// Probes one backend until `stop` is cancelled, sending transitions to the control plane.
pub async fn probe_loop(prober: Prober, reports: UnboundedSender<Report>, stop: CancellationToken) {
    let Prober {
        backend,
        check,
        target,
        last_probe,
        counters,
        resume,
    } = prober;
    // A restarted prober continues from the backend's current health: rise and fall
    // thresholds hold across reloads that change probe settings.
    let healthy = !backend.is(Exclusion::Unhealthy);
    let mut tracker = if resume {
        Tracker::resume(&check, healthy)
    } else {
        Tracker::new(&check, healthy)
    };
    // The first probe comes after a short random delay so a pool's probes do not align.
    let mut wait = jittered(check.interval / 10, 1.0);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        wait = jittered(check.interval, 0.1);
        let result = run_probe(&target, &backend.authority, &check).await;
        match &result {
            Ok(()) => counters.passed.increment(1),
            Err(_) => counters.failed.increment(1),
        }
        last_probe.store(Some(Arc::new(ProbeRecord {
            ok: result.is_ok(),
            detail: result
                .as_ref()
                .err()
                .map_or_else(|| "ok".to_owned(), Clone::clone),
            time: timestamp(std::time::SystemTime::now()),
        })));
        let kind = match tracker.observe(result.is_ok()) {
            Some(verdict) => Some(ReportKind::Verdict {
                verdict,
                detail: match &result {
                    Ok(()) => format!("{} consecutive probes passed", tracker.streak()),
                    Err(err) => format!("probe failed: {err}"),
                },
            }),
            None if result.is_ok() && backend.is(Exclusion::Ejected) => {
                Some(ReportKind::PassedWhileEjected)
            }
            None => None,
        };
        if let Some(kind) = kind {
            let report = Report {
                backend: backend.key(),
                kind,
            };
            if reports.send(report).is_err() {
                return; // the control plane has stopped: so do we
            }
        }
    }
}

/// `base` plus or minus up to `spread` of itself (`spread = 1.0`: anywhere in `0..2*base`).
fn jittered(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 + spread * (fastrand::f64() * 2.0 - 1.0);
    base.mul_f64(factor.max(0.0))
}
