//! What a look at a certificate ends in: a certificate served (and announced), or a failure
//! counted, announced and retried after a backoff.

use super::certificate::Parsed;
use super::{FIRST_BACKOFF, LOOK_AGAIN, MAX_BACKOFF, Managed, RATE_LIMITED};
use crate::events::{Event, timestamp};
use crate::live_certs::LiveCerts;
use std::time::{Duration, SystemTime};

/// Serves `parsed` for `cert`'s names from now on; `ordered` when this replica just obtained
/// it (a certificate found in storage at start is not news; one replacing another is). The
/// news is pushed to `news`, published once the listing shows it.
pub(super) fn serve(
    cert: &mut Managed,
    parsed: &Parsed,
    live: &LiveCerts,
    news: &mut Vec<Event>,
    ordered: bool,
) {
    live.install(&cert.wanted.names, &parsed.key);
    let before = cert.served.replace((parsed.not_after, parsed.renew_at));
    cert.due = parsed.renew_at.min(SystemTime::now() + LOOK_AGAIN);
    cert.failures = 0;
    cert.failed = None;
    cert.leaf = parsed.key.cert.first().cloned();
    cert.ari_next = SystemTime::now();
    let names = cert.wanted.names.clone();
    let not_after = timestamp(parsed.not_after);
    tracing::info!(certificate = %names[0], %not_after, ordered, "ACME certificate served");
    let time = timestamp(SystemTime::now());
    match (before, ordered) {
        (Some(_), _) => news.push(Event::CertificateRenewed {
            names,
            not_after,
            time,
        }),
        (None, true) => news.push(Event::CertificateObtained {
            names,
            not_after,
            time,
        }),
        (None, false) => {}
    }
}

/// Counts a failure of `cert`, sets its next attempt and pushes the news to `news`.
pub(super) fn fail(
    cert: &mut Managed,
    err: &str,
    rate_limited: bool,
    asked: Option<Duration>,
    news: &mut Vec<Event>,
) {
    cert.failures = cert.failures.saturating_add(1);
    // Never sooner than the CA asked (its `Retry-After`).
    let wait = backoff(cert.failures, rate_limited).max(asked.unwrap_or_default());
    let retry_at = SystemTime::now() + wait;
    cert.due = retry_at;
    cert.failed = Some((err.to_owned(), retry_at));
    tracing::warn!(certificate = %cert.wanted.names[0], %err, retry_in = ?wait, "ACME order failed");
    news.push(Event::CertificateFailed {
        names: cert.wanted.names.clone(),
        error: err.to_owned(),
        retry_at: timestamp(retry_at),
        time: timestamp(SystemTime::now()),
    });
}

/// The wait before attempt `failures + 1`: doubling from `FIRST_BACKOFF` up to `MAX_BACKOFF`,
/// at least `RATE_LIMITED` after a rate limit, less up to a quarter at random so replicas and
/// certificates that failed together do not retry together.
pub(super) fn backoff(failures: u32, rate_limited: bool) -> Duration {
    let doubled = FIRST_BACKOFF
        .checked_mul(1u32 << failures.saturating_sub(1).min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let wait = if rate_limited {
        doubled.max(RATE_LIMITED)
    } else {
        doubled
    };
    wait.mul_f64(1.0 - fastrand::f64() / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_waits_long_after_a_rate_limit() {
        for _ in 0..50 {
            let first = backoff(1, false);
            assert!(first <= FIRST_BACKOFF && first >= FIRST_BACKOFF.mul_f64(0.75));
            let third = backoff(3, false);
            assert!(third <= FIRST_BACKOFF * 4 && third >= FIRST_BACKOFF * 3);
            assert!(backoff(u32::MAX, false) <= MAX_BACKOFF);
            assert!(backoff(1, true) >= RATE_LIMITED.mul_f64(0.75));
        }
    }
}
