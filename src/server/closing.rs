//! When a client connection closes on its own: shutdown, no first request, or quiet too long.
//! One coarse check per connection, rather than a timer per request: it is what bounds slow and
//! missing HTTP/1 request heads (hyper's header-read timer is left off).

use crate::config::Timeouts;
use crate::proxy::ConnActivity;
use std::net::SocketAddr;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Why a client connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// The proxy is shutting down.
    Shutdown,
    /// No request in progress for `timeouts.idle`, or on HTTP/1 for
    /// `min(idle, request_header)`: waiting for (the rest of) a next request head.
    Idle,
    /// No request began within `timeouts.request_header` of the connection's start: a silent
    /// client, one stuck inside its first request head, or inside the HTTP/2 preface.
    NoRequest,
}

/// Resolves when the connection should close, and why: on shutdown; when no request began
/// within `request_header` of its start; once no request has been in progress for `idle`, or
/// on HTTP/1 (no HTTP/2 request seen) for `min(idle, request_header)`, since an HTTP/1
/// connection between requests is waiting for a request head. Quiet is checked four times per
/// limit, so a connection closes between 1 and 1.25 times its limit after its last request.
pub(super) async fn until_closing(
    activity: &ConnActivity,
    timeouts: &Timeouts,
    shutdown: &CancellationToken,
    peer: SocketAddr,
) -> Closing {
    let http1_limit = timeouts.idle.min(timeouts.request_header);
    let mut tick = tokio::time::interval(http1_limit / 4);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last_seen = (0, 0);
    let mut quiet_since = Instant::now();
    let first_request = tokio::time::sleep(timeouts.request_header);
    tokio::pin!(first_request);
    let mut awaiting_first = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Closing::Shutdown,
            () = first_request.as_mut(), if awaiting_first => {
                if activity.counts().0 == 0 {
                    tracing::debug!(%peer, "no request within the header timeout: closing");
                    return Closing::NoRequest;
                }
                awaiting_first = false;
            }
            now = tick.tick() => {
                let seen = activity.counts();
                let limit = if activity.is_http2() { timeouts.idle } else { http1_limit };
                if seen != last_seen || seen.0 != seen.1 {
                    last_seen = seen;
                    quiet_since = now;
                } else if seen.0 > 0 && now.duration_since(quiet_since) >= limit {
                    tracing::debug!(%peer, "closing idle client connection");
                    return Closing::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Version;
    use std::sync::Arc;
    use std::time::Duration;

    fn timeouts(request_header: u64, idle: u64) -> Timeouts {
        Timeouts {
            request_header: Duration::from_secs(request_header),
            idle: Duration::from_secs(idle),
            ..Timeouts::default()
        }
    }

    /// How long after the start `until_closing` resolves, and why.
    async fn closes_after(activity: &ConnActivity, timeouts: &Timeouts) -> (Duration, Closing) {
        let start = Instant::now();
        let peer = "127.0.0.1:1".parse().unwrap();
        let shutdown = CancellationToken::new();
        let why = until_closing(activity, timeouts, &shutdown, peer).await;
        (start.elapsed(), why)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_closes_at_the_header_timeout() {
        let activity = ConnActivity::default();
        let (after, why) = closes_after(&activity, &timeouts(10, 60)).await;
        assert_eq!((after, why), (Duration::from_secs(10), Closing::NoRequest));
    }

    #[tokio::test(start_paused = true)]
    async fn http1_waits_for_its_next_head_at_most_the_header_timeout() {
        let activity = Arc::new(ConnActivity::default());
        drop(activity.begin(Version::HTTP_11));
        let (after, why) = closes_after(&activity, &timeouts(10, 60)).await;
        assert_eq!(why, Closing::Idle);
        assert!(
            (Duration::from_secs(10)..=Duration::from_millis(12_500)).contains(&after),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_idles_for_the_idle_timeout() {
        let activity = Arc::new(ConnActivity::default());
        drop(activity.begin(Version::HTTP_2));
        let (after, why) = closes_after(&activity, &timeouts(10, 60)).await;
        assert_eq!(why, Closing::Idle);
        assert!(
            (Duration::from_secs(60)..=Duration::from_secs(63)).contains(&after),
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_keeps_its_connection_however_long_it_takes() {
        let activity = Arc::new(ConnActivity::default());
        let _streaming = activity.begin(Version::HTTP_11);
        let peer = "127.0.0.1:1".parse().unwrap();
        let shutdown = CancellationToken::new();
        let timeouts = timeouts(10, 60);
        let closing = until_closing(&activity, &timeouts, &shutdown, peer);
        let waited = tokio::time::timeout(Duration::from_secs(3600), closing).await;
        assert!(waited.is_err(), "closed: {waited:?}");
    }
}
