//! The access policies' background chores, once a second: limiter tables' active keys counted
//! for their gauge, fleet leases swept of idle keys, JWT key sets fetched when due, early when
//! a request met an unknown `kid` (at most once per `KID_REFRESH_SPACING`). Nothing here is
//! ever awaited by a request.

use crate::metrics::{self, Metrics};
use crate::route::access::{Shelf, clock, jwt::KeySet};
use crate::upstream::endpoint::Endpoint;
use http_body_util::BodyExt as _;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Least time between two fetches a request's unknown `kid` asks for.
const KID_REFRESH_SPACING: Duration = Duration::from_secs(5);
/// Time between attempts while a key set cannot be fetched.
const RETRY: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the keeper of `shelf`.
pub fn spawn(
    shelf: Arc<Shelf>,
    metrics: Metrics,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let spawner = tasks.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut fetches: HashMap<String, Fetching> = HashMap::new();
        // Each table's size gauge, registered once rather than looked up every second.
        let mut sizes: HashMap<String, ::metrics::Gauge> = HashMap::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let chores = shelf.chores();
            let now = clock();
            sizes.retain(|id, _| chores.tables.iter().any(|(t, _)| t == id));
            for (id, table) in &chores.tables {
                let held = table.held(now);
                let gauge = sizes.entry(id.clone()).or_insert_with(|| {
                    let mut parts = id.split('#');
                    let (route, rule) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    metrics.gauge(metrics::RATE_LIMIT_KEYS, &[("route", route), ("rule", rule)])
                });
                gauge.set(held as f64);
            }
            for (_, share) in &chores.shares {
                share.sweep(now);
            }
            fetches.retain(|url, _| chores.key_sets.iter().any(|f| f.url.to_string() == *url));
            for fetched in chores.key_sets {
                let state = fetches.entry(fetched.url.to_string()).or_default();
                let at = Instant::now();
                // Relaxed: a hint; a missed one is seen on the next tick.
                let wanted = fetched.keys.wanted.load(Ordering::Relaxed);
                let due = match state.last_success {
                    None => state.last_attempt.is_none_or(|t| at - t >= RETRY),
                    Some(done) => {
                        at - done >= fetched.refresh
                            || (wanted
                                && state.last_attempt.is_none_or(|t| at - t >= KID_REFRESH_SPACING))
                    }
                };
                if !due || state.running.load(Ordering::Acquire) {
                    continue;
                }
                state.last_attempt = Some(at);
                fetched.keys.wanted.store(false, Ordering::Relaxed);
                state.running.store(true, Ordering::Release);
                let running = Arc::clone(&state.running);
                let succeeded = Arc::clone(&state.succeeded);
                let metrics = metrics.clone();
                let stop = shutdown.clone();
                spawner.spawn(async move {
                    let result = tokio::select! {
                        result = fetch(&fetched.url, &fetched.keys) => result,
                        () = stop.cancelled() => return,
                    };
                    let label = match &result {
                        Ok(n) => {
                            tracing::debug!(url = %fetched.url, keys = n, "JWT key set fetched");
                            succeeded.store(true, Ordering::Release);
                            "ok"
                        }
                        Err(err) => {
                            tracing::warn!(url = %fetched.url, %err, "JWT key set not fetched; the keys in force stay");
                            "error"
                        }
                    };
                    metrics.counter(metrics::JWKS_FETCHES, &[("result", label)]).increment(1);
                    running.store(false, Ordering::Release);
                });
            }
            for state in fetches.values_mut() {
                if state.succeeded.swap(false, Ordering::AcqRel) {
                    state.last_success = state.last_attempt;
                }
            }
        }
    });
}

/// One key set's fetching.
#[derive(Debug, Default)]
struct Fetching {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    running: Arc<AtomicBool>,
    succeeded: Arc<AtomicBool>,
}

/// Fetches the JWKS document at `url` into `keys`; how many keys it holds.
async fn fetch(url: &http::Uri, keys: &KeySet) -> Result<usize, String> {
    let endpoint = Endpoint::new(url)?;
    let mut request = endpoint.request(
        http::Method::GET,
        crate::body::UpstreamBody::Bytes(http_body_util::Full::new(bytes::Bytes::new())),
    );
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    let response = endpoint.send(request, FETCH_TIMEOUT).await?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status().as_u16()));
    }
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES).collect(),
    )
    .await
    .map_err(|_| "the body did not arrive in time".to_owned())?
    .map_err(|err| format!("reading the body: {err}"))?
    .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let parsed = crate::config::jwt_keys::parse(text)?;
    let n = parsed.len();
    keys.store(parsed);
    Ok(n)
}
