//! What several benches build alike.

use std::sync::Arc;
use switchyard::config::BackendConfig;
use switchyard::metrics::BackendMetrics;
use switchyard::upstream::BackendState;

/// A pool of `n` healthy backends, weighted 1 to 5 in turn, without limits or metrics.
pub fn pool(n: usize) -> Vec<Arc<BackendState>> {
    (0..n)
        .map(|i| {
            let config = BackendConfig {
                name: format!("b{i}"),
                address: format!("10.0.{}.{}:8080", i / 250, i % 250)
                    .parse()
                    .unwrap(),
                weight: std::num::NonZeroU32::new(1 + (i % 5) as u32).unwrap(),
                max_in_flight: None,
                max_connections: None,
            };
            Arc::new(BackendState::new(
                "pool".into(),
                &config,
                true,
                BackendMetrics::noop(),
            ))
        })
        .collect()
}
