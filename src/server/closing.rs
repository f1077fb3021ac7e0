//! When a client connection closes on its own (shutdown, no first request, or quiet too long),
//! and when an HTTP/1 one has been quiet long enough to be parked. One coarse check per
//! connection, rather than a timer per request: it is what bounds slow and missing HTTP/1
//! request heads (hyper's header-read timer is left off).

use crate::config::Timeouts;
use crate::proxy::ConnActivity;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Why a client connection is being closed, or parked.
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
    /// HTTP/1 with nothing in progress and nothing begun or finished for a whole check period:
    /// time to let go of its buffers until the client sends again.
    Quiet,
}

/// A connection's closing conditions: what has been seen of its requests, and since when
/// nothing has changed. Quiet is checked four times per limit, so a connection closes between 1
/// and 1.25 times its limit after its last request, and an HTTP/1 one is parked between one and
/// two check periods after it.
pub(super) struct Watch<'a> {
    activity: &'a ConnActivity,
    timeouts: &'a Timeouts,
    shutdown: &'a CancellationToken,
    peer: SocketAddr,
    first_request: Instant,
    last_seen: (u64, u64),
    quiet_since: Instant,
}

impl<'a> Watch<'a> {
    /// The closing conditions of a connection from `peer` starting now.
    pub(super) fn new(
        activity: &'a ConnActivity,
        timeouts: &'a Timeouts,
        shutdown: &'a CancellationToken,
        peer: SocketAddr,
    ) -> Self {
        let now = Instant::now();
        Self {
            activity,
            timeouts,
            shutdown,
            peer,
            first_request: now + timeouts.request_header,
            last_seen: (0, 0),
            quiet_since: now,
        }
    }

    /// How long an HTTP/1 connection waits for its next request head.
    fn http1_limit(&self) -> Duration {
        self.timeouts.idle.min(self.timeouts.request_header)
    }

    /// Resolves, while hyper serves the connection, when it should close, and why: on shutdown;
    /// when no request began within `request_header` of its start; once no request has been
    /// in progress for `idle`, or on HTTP/1 (no HTTP/2 request seen) for
    /// `min(idle, request_header)`. An HTTP/1 connection with a request behind it and nothing
    /// else for a whole period resolves `Quiet`.
    pub(super) async fn serving(&mut self) -> Closing {
        let period = self.http1_limit() / 4;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let first_request = tokio::time::sleep_until(self.first_request);
        tokio::pin!(first_request);
        let mut awaiting_first = self.activity.counts().0 == 0;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Closing::Shutdown,
                () = first_request.as_mut(), if awaiting_first => {
                    if self.activity.counts().0 == 0 {
                        tracing::debug!(peer = %self.peer, "no request within the header timeout: closing");
                        return Closing::NoRequest;
                    }
                    awaiting_first = false;
                }
                now = tick.tick() => {
                    let seen = self.activity.counts();
                    let http2 = self.activity.is_http2();
                    let limit = if http2 { self.timeouts.idle } else { self.http1_limit() };
                    if seen != self.last_seen || seen.0 != seen.1 {
                        self.last_seen = seen;
                        self.quiet_since = now;
                    } else if seen.0 > 0 && now.duration_since(self.quiet_since) >= limit {
                        tracing::debug!(peer = %self.peer, "closing idle client connection");
                        return Closing::Idle;
                    } else if seen.0 > 0 && !http2 {
                        return Closing::Quiet;
                    }
                }
            }
        }
    }

    /// Resolves, while the connection is parked (no request in progress, nothing read), when it
    /// should close: on shutdown, or when its quiet reaches the HTTP/1 limit.
    pub(super) async fn parked(&mut self) -> Closing {
        let deadline = self.quiet_since + self.http1_limit();
        tokio::select! {
            () = self.shutdown.cancelled() => Closing::Shutdown,
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(peer = %self.peer, "closing idle client connection");
                Closing::Idle
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

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    /// How long after the start a connection closes, and why: served, and parked when quiet,
    /// as the serving loop does.
    async fn closes_after(activity: &ConnActivity, timeouts: &Timeouts) -> (Duration, Closing) {
        let start = Instant::now();
        let shutdown = CancellationToken::new();
        let mut watch = Watch::new(activity, timeouts, &shutdown, PEER);
        let why = match watch.serving().await {
            Closing::Quiet => watch.parked().await,
            why => why,
        };
        (start.elapsed(), why)
    }

    /// A connection that has served one HTTP/1.1 request, the shutdown signal, and timeouts of
    /// 8 s for a head and 60 s idle.
    fn after_one_request() -> (Arc<ConnActivity>, CancellationToken, Timeouts) {
        let activity = Arc::new(ConnActivity::default());
        drop(activity.begin(Version::HTTP_11));
        (activity, CancellationToken::new(), timeouts(8, 60))
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
        let shutdown = CancellationToken::new();
        let timeouts = timeouts(10, 60);
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        let closing = watch.serving();
        let waited = tokio::time::timeout(Duration::from_secs(3600), closing).await;
        assert!(waited.is_err(), "closed: {waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_http1_connection_parks_after_one_to_two_periods_then_closes_on_time() {
        let (activity, shutdown, timeouts) = after_one_request();
        let start = Instant::now();
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        // Periods of 2 s: the first tick sees the request, the second sees nothing new.
        assert_eq!(watch.serving().await, Closing::Quiet);
        assert_eq!(start.elapsed(), Duration::from_secs(4));
        // Parked, it closes when its quiet since the first tick reaches the 8 s limit.
        assert_eq!(watch.parked().await, Closing::Idle);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_woken_connection_that_serves_a_request_parks_again_later() {
        let (activity, shutdown, timeouts) = after_one_request();
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        assert_eq!(watch.serving().await, Closing::Quiet);
        // Woken at 6 s by a request that lasts 3 s.
        tokio::time::advance(Duration::from_secs(2)).await;
        let request = activity.begin(Version::HTTP_11);
        let serving = watch.serving();
        tokio::pin!(serving);
        let early = tokio::time::timeout(Duration::from_secs(3), serving.as_mut()).await;
        assert!(
            early.is_err(),
            "a request in progress is never parked: {early:?}"
        );
        drop(request);
        let start = Instant::now();
        assert_eq!(serving.await, Closing::Quiet);
        assert!(
            start.elapsed() <= Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_and_first_requests_are_never_parked() {
        let shutdown = CancellationToken::new();
        let timeouts = timeouts(8, 60);
        let activity = Arc::new(ConnActivity::default());
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        assert_eq!(watch.serving().await, Closing::NoRequest);
        drop(activity.begin(Version::HTTP_2));
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        assert_eq!(watch.serving().await, Closing::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_a_parked_connection() {
        let (activity, shutdown, timeouts) = after_one_request();
        let mut watch = Watch::new(&activity, &timeouts, &shutdown, PEER);
        shutdown.cancel();
        assert_eq!(watch.parked().await, Closing::Shutdown);
    }
}
