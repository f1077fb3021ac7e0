//! A pool's `[pools.admission]`: the default `max_in_flight` of its backends, the queue in
//! front of them, and whether their limits adapt.

use super::Checker;
use crate::config::file::PoolFile;
use crate::config::model::{AdmissionConfig, BackendConfig};
use std::time::Duration;

impl Checker {
    /// The pool's admission settings; the pool's `max_in_flight` is given to each of
    /// `backends` that has none of its own.
    pub(super) fn admission(
        &mut self,
        pool: &PoolFile,
        backends: &mut [BackendConfig],
        field: &str,
    ) -> Option<AdmissionConfig> {
        let spanned = pool.admission.as_ref()?;
        let file = spanned.get_ref();
        let field = format!("{field}.admission");
        let max_in_flight =
            self.at_least_one(&file.max_in_flight, &format!("{field}.max_in_flight"));
        for backend in backends.iter_mut() {
            backend.max_in_flight = backend.max_in_flight.or(max_in_flight);
        }
        let adaptive = file.adaptive.unwrap_or(false);
        if !adaptive
            && pool.discovery.is_none()
            && backends.iter().all(|b| b.max_in_flight.is_none())
        {
            self.report(
                spanned.span(),
                format!(
                    "{field}: no backend has max_in_flight, so nothing would ever wait; set {field}.max_in_flight (every backend's) or the backends' own"
                ),
            );
        }
        let queue_timeout = self.duration(
            &file.queue_timeout,
            &format!("{field}.queue_timeout"),
            AdmissionConfig::DEFAULT_QUEUE_TIMEOUT,
        );
        if queue_timeout > Duration::from_secs(600) {
            if let Some(value) = &file.queue_timeout {
                self.report(
                    value.span(),
                    format!("{field}.queue_timeout: {queue_timeout:?} is above 10m"),
                );
            }
        }
        Some(AdmissionConfig {
            max_in_flight,
            queue: self.int(
                &file.queue,
                &format!("{field}.queue"),
                0..=1_000_000,
                AdmissionConfig::DEFAULT_QUEUE,
            ),
            queue_timeout,
            retry_after: self.int(
                &file.retry_after,
                &format!("{field}.retry_after"),
                1..=3600,
                AdmissionConfig::DEFAULT_RETRY_AFTER,
            ),
            spill: file.spill.unwrap_or(false),
            adaptive,
        })
    }
}
