//! `GET /metrics`: refreshes the gauges that mirror live state, then renders the Prometheus
//! text exposition without the series of backends and pools a reload removed.

use crate::metrics::{self, Metrics};
use crate::snapshot::Snapshot;
use crate::upstream::State;
use std::collections::HashSet;

/// The exposition text for the current snapshot.
pub fn render(metrics: &Metrics, snapshot: &Snapshot) -> String {
    let mut pools: HashSet<&str> = HashSet::new();
    let mut backends: HashSet<(&str, &str)> = HashSet::new();
    for pool in &snapshot.pools {
        pools.insert(&pool.name);
        metrics
            .gauge(metrics::POOL_PANIC, &[("pool", &pool.name)])
            .set(if pool.panic { 1.0 } else { 0.0 });
        for (i, backend) in pool.backends.iter().enumerate() {
            backends.insert((&pool.name, &backend.name));
            let labels = [("pool", &*pool.name), ("backend", &*backend.name)];
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
    let text = metrics.render();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let stale_certificate = line.starts_with(metrics::TLS_CERTIFICATE_EXPIRY)
            && !snapshot.certificates.iter().any(|c| {
                label(line, "listener") == Some(&c.listener) && label(line, "name") == Some(&c.name)
            });
        if !stale_certificate && (line.starts_with('#') || is_live(line, &pools, &backends)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether a sample line belongs to a pool and backend that still exist (or names none).
fn is_live(line: &str, pools: &HashSet<&str>, backends: &HashSet<(&str, &str)>) -> bool {
    let pool = label(line, "pool");
    let backend = label(line, "backend");
    match (pool, backend) {
        (Some(pool), Some(backend)) if !backend.is_empty() => backends.contains(&(pool, backend)),
        (Some(pool), _) if !pool.is_empty() => pools.contains(pool),
        _ => true,
    }
}

/// The value of label `name` in a sample line. Pool and backend names are restricted to
/// characters that need no escaping, so a plain search is exact.
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let labels = &line[line.find('{')? + 1..line.rfind('}')?];
    labels.split("\",").find_map(|pair| {
        let (key, value) = pair.split_once("=\"")?;
        (key.trim_start_matches(',') == name).then(|| value.trim_end_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_and_keeps_only_live_series() {
        let line = r#"switchyard_requests_total{route="r",pool="web",backend="b1",code="200"} 3"#;
        assert_eq!(label(line, "pool"), Some("web"));
        assert_eq!(label(line, "backend"), Some("b1"));
        assert_eq!(label(line, "code"), Some("200"));
        let pools = HashSet::from(["web"]);
        let backends = HashSet::from([("web", "b1")]);
        assert!(is_live(line, &pools, &backends));
        assert!(!is_live(&line.replace("b1", "gone"), &pools, &backends));
        assert!(!is_live(
            r#"switchyard_pool_panic{pool="old"} 0"#,
            &pools,
            &backends
        ));
        assert!(is_live(
            r#"switchyard_requests_total{route="",pool="",backend="",code="404"} 1"#,
            &pools,
            &backends
        ));
        assert!(is_live(
            "switchyard_downstream_connections 2",
            &pools,
            &backends
        ));
    }
}
