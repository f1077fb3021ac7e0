//! `[listeners.tls.hsts]`: the `Strict-Transport-Security` header a TLS listener adds to every
//! response (RFC 6797), checked against what browsers' preload list requires.

use super::Checker;
use crate::config::file::HstsFile;
use std::time::Duration;
use toml::Spanned;

/// A year: the default `max_age`, and the least the preload list accepts.
const YEAR: Duration = Duration::from_secs(365 * 86_400);

impl Checker {
    /// The header value, as `max-age=N[; includeSubDomains][; preload]`.
    pub(super) fn hsts(&mut self, hsts: &Spanned<HstsFile>, field: &str) -> Option<String> {
        let span = hsts.span();
        let hsts = hsts.get_ref();
        let max_age = self.duration(&hsts.max_age, &format!("{field}.hsts.max_age"), YEAR);
        let subdomains = hsts.include_subdomains.unwrap_or(false);
        let preload = hsts.preload.unwrap_or(false);
        if preload && (max_age < YEAR || !subdomains) {
            self.report(
                span,
                format!("{field}.hsts.preload: the preload list needs max_age of a year or more and include_subdomains = true"),
            );
            return None;
        }
        let mut value = format!("max-age={}", max_age.as_secs());
        if subdomains {
            value += "; includeSubDomains";
        }
        if preload {
            value += "; preload";
        }
        Some(value)
    }
}
