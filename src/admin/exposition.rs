//! `GET /metrics`: refreshes the gauges that mirror live state, then renders the Prometheus
//! text exposition without the series of backends, pools and certificates a reload removed
//! (chosen by their labels, from the registry).

use crate::config::Algorithm;
use crate::live_certs::AcmeStatus;
use crate::metrics::{self, Metrics};
use crate::snapshot::Snapshot;
use crate::upstream::{State, nanos_now};
use std::collections::HashSet;

/// The exposition text for the current snapshot.
pub fn render(metrics: &Metrics, snapshot: &Snapshot, acme: &[AcmeStatus]) -> String {
    let mut pools: HashSet<&str> = HashSet::new();
    let mut backends: HashSet<(&str, &str)> = HashSet::new();
    for pool in &snapshot.pools {
        pools.insert(&pool.name);
        metrics
            .gauge(metrics::POOL_PANIC, &[("pool", &pool.name)])
            .set(if pool.panic { 1.0 } else { 0.0 });
        if pool.hash_entries.is_some() {
            metrics
                .gauge(metrics::HASH_KEYS_MOVED, &[("pool", &pool.name)])
                .set(f64::from(pool.hash_moved) / f64::from(crate::snapshot::MOVED_SAMPLES));
        }
        for (i, backend) in pool.backends.iter().enumerate() {
            backends.insert((&pool.name, &backend.name));
            let labels = [("pool", &*pool.name), ("backend", &*backend.name)];
            if let Some(entries) = &pool.hash_entries {
                metrics
                    .gauge(metrics::HASH_ENTRIES, &labels)
                    .set(f64::from(entries[i]));
            }
            if pool.policy.algorithm == Algorithm::LeastLatency {
                let decay = u64::try_from(pool.policy.latency_decay.as_nanos()).unwrap_or(u64::MAX);
                if let Some(estimate) = backend.latency.estimate(nanos_now(), decay) {
                    metrics
                        .gauge(metrics::BACKEND_LATENCY, &labels)
                        .set(estimate / 1e9);
                }
            }
            if let Some(limit) = backend.in_flight_limit() {
                metrics
                    .gauge(metrics::BACKEND_IN_FLIGHT_LIMIT, &labels)
                    .set(f64::from(limit));
            }
            let up = pool.is_eligible(i);
            metrics
                .gauge(metrics::BACKEND_UP, &labels)
                .set(if up { 1.0 } else { 0.0 });
            metrics
                .gauge(metrics::BACKEND_IN_FLIGHT, &labels)
                .set(f64::from(backend.in_flight()));
            metrics.gauge(metrics::BACKEND_WEIGHT, &labels).set(
                f64::from(backend.effective_weight())
                    / f64::from(crate::balance::slow_start::SCALE),
            );
            let current = backend.state();
            for state in State::ALL {
                metrics
                    .gauge(
                        metrics::BACKEND_STATE,
                        &[labels[0], labels[1], ("state", state.as_str())],
                    )
                    .set(if state == current { 1.0 } else { 0.0 });
            }
        }
    }
    for certificate in snapshot.certificates.iter() {
        metrics
            .gauge(
                metrics::TLS_CERTIFICATE_EXPIRY,
                &[
                    ("listener", &certificate.listener),
                    ("name", &certificate.name),
                ],
            )
            .set(certificate.expires);
    }
    // ACME certificates under the same expiry gauge (and its alert) as file ones.
    for certificate in acme {
        if let Some((expires, renews)) = certificate.unix {
            let name = certificate.names[0].as_str();
            metrics
                .gauge(
                    metrics::TLS_CERTIFICATE_EXPIRY,
                    &[("listener", &certificate.listener), ("name", name)],
                )
                .set(expires);
            metrics
                .gauge(metrics::ACME_RENEWAL, &[("name", name)])
                .set(renews);
        }
    }
    metrics.render(|key| {
        let label = |name| key.labels().find(|l| l.key() == name).map(|l| l.value());
        if key.name() == metrics::TLS_CERTIFICATE_EXPIRY {
            let listener = label("listener");
            let name = label("name");
            return snapshot
                .certificates
                .iter()
                .any(|c| listener == Some(&c.listener) && name == Some(&c.name))
                || acme
                    .iter()
                    .any(|c| listener == Some(&c.listener) && name == Some(c.names[0].as_str()));
        }
        is_live(label("pool"), label("backend"), &pools, &backends)
    })
}

/// Whether a series belongs to a pool and backend that still exist (or names none).
fn is_live(
    pool: Option<&str>,
    backend: Option<&str>,
    pools: &HashSet<&str>,
    backends: &HashSet<(&str, &str)>,
) -> bool {
    match (pool, backend) {
        (Some(pool), Some(backend)) if !backend.is_empty() => backends.contains(&(pool, backend)),
        (Some(pool), _) if !pool.is_empty() => pools.contains(pool),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_series_of_live_pools_and_backends() {
        let pools = HashSet::from(["web"]);
        let backends = HashSet::from([("web", "b1")]);
        assert!(is_live(Some("web"), Some("b1"), &pools, &backends));
        assert!(!is_live(Some("web"), Some("gone"), &pools, &backends));
        assert!(!is_live(Some("old"), None, &pools, &backends));
        assert!(is_live(Some(""), Some(""), &pools, &backends));
        assert!(is_live(None, None, &pools, &backends));
    }
}
