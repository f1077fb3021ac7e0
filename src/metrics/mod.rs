//! Every metric the proxy exports: names and descriptions in one place, and the per-backend and
//! per-route handles that are registered once, when state is built, so the request path records
//! without formatting labels or looking anything up.
//!
//! Each running proxy owns its own registry (no global recorder), so several proxies in one
//! process (tests) keep separate numbers; `registry` holds the values and writes them out.
//!
//! Longer than most files on purpose: the table of every metric is the point of it.

mod registry;

use metrics::{Counter, Gauge, Histogram, Key, Label};
use registry::Series;
use std::sync::{Arc, OnceLock};

/// Declares each metric once: a constant for its name, documented by its help text, and its
/// row in `TABLE`, from which every metric is described to Prometheus.
macro_rules! metric_table {
    ($($ident:ident: $kind:ident, $name:literal, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $ident: &str = $name;
        )*
        /// Every metric: name, kind and help text.
        pub const TABLE: &[(&str, Kind, &str)] = &[$(($name, Kind::$kind, $help),)*];
    };
}

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Samples in buckets (`DURATION_BUCKETS`), in seconds.
    Histogram,
}

metric_table! {
    REQUESTS: Counter, "switchyard_requests_total",
        "Requests answered, by route, pool, backend and status code.";
    REQUESTS_BY_PROTOCOL: Counter, "switchyard_requests_by_protocol_total",
        "Requests answered, by the client's protocol: HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3.";
    REQUEST_DURATION: Histogram, "switchyard_request_duration_seconds",
        "Time from receiving a request to the end of its response body.";
    CONNECT_ERRORS: Counter, "switchyard_upstream_connect_errors_total",
        "Connections to a backend that could not be established.";
    UPSTREAM_CONNECTIONS_OPENED: Counter, "switchyard_upstream_connections_opened_total",
        "Connections opened to a backend; under steady load it rises only as connections age out.";
    UPSTREAM_CONNECTIONS: Gauge, "switchyard_upstream_connections",
        "Connections to the backend open now, idle or in use.";
    TIMEOUTS: Counter, "switchyard_upstream_timeouts_total",
        "Requests whose backend did not connect or answer in time.";
    RETRIES: Counter, "switchyard_retries_total",
        "Retries on another backend after a failure on this one.";
    BUDGET_EXHAUSTED: Counter, "switchyard_retry_budget_exhausted_total",
        "Retries not made because the pool's retry budget was spent.";
    BACKEND_UP: Gauge, "switchyard_backend_up",
        "1 when the backend is eligible for new requests.";
    BACKEND_STATE: Gauge, "switchyard_backend_state",
        "1 for the backend's current state, 0 for the others.";
    BACKEND_IN_FLIGHT: Gauge, "switchyard_backend_in_flight",
        "Requests in flight to the backend.";
    BACKEND_WEIGHT: Gauge, "switchyard_backend_weight",
        "Weight the balancer uses for the backend (lower while slow-starting).";
    HEALTH_CHECKS: Counter, "switchyard_health_checks_total",
        "Active health probes run, by result.";
    EJECTIONS: Counter, "switchyard_ejections_total",
        "Passive ejections of a backend, by reason.";
    WEBHOOK_EVENTS: Counter, "switchyard_webhook_events_total",
        "Events for a webhook, by result: delivered, failed (after its retries) or dropped (queue full).";
    BACKEND_STATE_CHANGES: Counter, "switchyard_backend_state_changes_total",
        "Times the backend entered a state, by state (each change announced once).";
    COMPRESSED_IN: Counter, "switchyard_compression_bytes_in_total",
        "Response bytes compressed, as the backend sent them, by route and encoding.";
    COMPRESSED_OUT: Counter, "switchyard_compression_bytes_out_total",
        "Compressed response bytes sent, by route and encoding.";
    AUTH_FAILURES: Counter, "switchyard_auth_failures_total",
        "Requests a route's basic auth, JWT or forward auth refused, by route, kind and reason.";
    FORWARD_AUTH: Counter, "switchyard_forward_auth_requests_total",
        "Forward-auth decisions by route and result: allowed, remembered (a cached answer), denied, error.";
    RATE_LIMIT_REQUESTS: Counter, "switchyard_rate_limit_requests_total",
        "Requests a rate-limit rule decided on, by route, rule and result: allowed, limited, dry_run (would have been limited).";
    RATE_LIMIT_KEYS: Gauge, "switchyard_rate_limit_keys",
        "Keys active in a rate-limit rule's table (within their burst window), counted each second.";
    RATE_LIMIT_STORE_ERRORS: Counter, "switchyard_rate_limit_store_errors_total",
        "Times a fleet rate limit could not reach Redis and fell back to its on_store_error.";
    JWKS_FETCHES: Counter, "switchyard_jwks_fetches_total",
        "Fetches of a JWT key set, by result; a failed fetch keeps the keys in force.";
    NO_BACKEND: Counter, "switchyard_pool_no_backend_total",
        "Requests answered 503 because no backend of the pool could take them.";
    HASH_ENTRIES: Gauge, "switchyard_hash_table_entries",
        "Entries of a hashing pool's table that name the backend (Maglev: of 65,537; ring: its points).";
    HASH_KEYS_MOVED: Gauge, "switchyard_hash_keys_moved_ratio",
        "Share of a hashing pool's keys whose backend changed at the table's last rebuild.";
    BACKEND_LATENCY: Gauge, "switchyard_backend_latency_estimate_seconds",
        "A least-latency pool's peak-EWMA estimate of the backend's response time, decayed to now (absent before its first response).";
    STICKY_SESSIONS: Counter, "switchyard_sticky_sessions_total",
        "Requests of a sticky pool by result: pinned (its cookie's backend took it), new (a session begun), invalid (a forged, expired or unknown-key cookie, ignored), moved (the bound backend could not take it).";
    ADMISSION_SHED: Counter, "switchyard_admission_shed_total",
        "Requests a pool's admission answered 503, by reason: queue_full (the queue held its size), queue_timeout (no place freed within queue_timeout).";
    ADMISSION_QUEUED: Counter, "switchyard_admission_queued_total",
        "Requests that found every backend of the pool at max_in_flight and queued.";
    ADMISSION_SPILLED: Counter, "switchyard_admission_spilled_total",
        "Hashing or sticky requests whose backend was at max_in_flight and that another backend took (spill = true).";
    ADMISSION_WAIT: Histogram, "switchyard_admission_queue_wait_seconds",
        "How long queued requests waited for a place, admitted or shed.";
    ADMISSION_LENGTH: Gauge, "switchyard_admission_queue_length",
        "Requests waiting in the pool's admission queue now.";
    BACKEND_IN_FLIGHT_LIMIT: Gauge, "switchyard_backend_in_flight_limit",
        "The backend's max_in_flight in force: the configured one, or an adaptive pool's current limit.";
    POOL_PANIC: Gauge, "switchyard_pool_panic",
        "1 while the pool ignores health because too few backends are usable.";
    RELOADS: Counter, "switchyard_config_reloads_total",
        "Config reload attempts, by result.";
    CONFIG_WATCH_SKIPPED: Counter, "switchyard_config_watch_skipped_total",
        "File changes the watcher saw and did not reload: the config holds the text in force or the one last rejected, and no certificate changed.";
    LAST_RELOAD_SUCCESS: Gauge, "switchyard_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful config load.";
    CONFIG_GENERATION: Gauge, "switchyard_config_generation",
        "Config generation in force: 1 at start, +1 per successful reload.";
    DOWNSTREAM_CONNECTIONS: Gauge, "switchyard_downstream_connections",
        "Client connections open now.";
    DOWNSTREAM_CONNECTIONS_TOTAL: Counter, "switchyard_downstream_connections_total",
        "Client connections accepted.";
    DOWNSTREAM_CONNECTIONS_PARKED: Gauge, "switchyard_downstream_connections_parked",
        "Idle HTTP/1.1 client connections parked now: holding no buffers until the client sends again.";
    ACCESS_LOG_DROPPED: Counter, "switchyard_access_log_dropped_total",
        "Access log lines dropped because the log buffer was full.";
    TLS_HANDSHAKES: Counter, "switchyard_tls_handshakes_total",
        "TLS handshakes completed, by listener, version and ALPN protocol.";
    TLS_HANDSHAKE_FAILURES: Counter, "switchyard_tls_handshake_failures_total",
        "TLS handshakes that failed, by listener and reason.";
    TLS_CERTIFICATE_EXPIRY: Gauge, "switchyard_tls_certificate_expiry_timestamp_seconds",
        "Unix time at which a served certificate expires, by listener and name.";
    QUIC_HANDSHAKES: Counter, "switchyard_quic_handshakes_total",
        "QUIC handshakes completed on an HTTP/3 listener.";
    QUIC_HANDSHAKE_FAILURES: Counter, "switchyard_quic_handshake_failures_total",
        "QUIC handshakes that failed, by listener and reason (the TLS handshake's reasons).";
    QUIC_RETRIES: Counter, "switchyard_quic_retries_total",
        "Retry packets sent to validate a client's address while many handshakes were in progress.";
    QUIC_HANDSHAKES_IN_PROGRESS: Gauge, "switchyard_quic_handshakes_in_progress",
        "QUIC handshakes begun and not finished; above 64, new clients are sent a Retry first.";
    QUIC_CONNECTIONS: Gauge, "switchyard_quic_connections",
        "QUIC connections open now.";
    QUIC_STREAMS: Counter, "switchyard_quic_streams_total",
        "HTTP/3 request streams accepted.";
    QUIC_LOST_PACKETS: Counter, "switchyard_quic_lost_packets_total",
        "Packets QUIC connections declared lost (counted when each connection ends).";
    ACME_ORDERS: Counter, "switchyard_acme_orders_total",
        "ACME orders this replica made, by result (obtained, failed).";
    ACME_RENEWAL: Gauge, "switchyard_acme_renewal_timestamp_seconds",
        "Unix time at which an ACME certificate is renewed, by name (its first).";
    OCSP_FETCHES: Counter, "switchyard_ocsp_fetches_total",
        "OCSP responses fetched for stapling, by result (stapled, refused: not a current good answer, failed: no answer).";
    DISCOVERY_ERRORS: Counter, "switchyard_discovery_errors_total",
        "Discovery lookups or registry reads that failed; the pool keeps its last known set.";
    DISCOVERED_BACKENDS: Gauge, "switchyard_discovery_backends",
        "Backends the pool's discovery source names now.";
    FLEET_CONNECTED: Gauge, "switchyard_fleet_connected",
        "Whether the fleet's Redis is reachable (1) or not (0).";
    BUILD_INFO: Gauge, "switchyard_build_info",
        "Always 1, labelled with the version.";
}

/// Histogram buckets from 100 µs to 30 s.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// One proxy's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    series: Arc<Series>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with the build info set.
    pub fn new() -> Self {
        let metrics = Self {
            series: Arc::new(Series::new()),
        };
        metrics
            .gauge(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))])
            .set(1.0);
        metrics
    }

    /// The counter `name` with these labels (registered on first use).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let values = &self.series.values;
        values.get_or_create_counter(&key(name, labels), |c| Counter::from_arc(Arc::clone(c)))
    }

    /// The gauge `name` with these labels.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let values = &self.series.values;
        values.get_or_create_gauge(&key(name, labels), |g| Gauge::from_arc(Arc::clone(g)))
    }

    /// The histogram `name` with these labels.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        let values = &self.series.values;
        values.get_or_create_histogram(&key(name, labels), |h| Histogram::from_arc(Arc::clone(h)))
    }

    /// The Prometheus text exposition of the series `keep` accepts.
    pub fn render(&self, keep: impl Fn(&Key) -> bool) -> String {
        self.series.render(keep)
    }

    /// Folds recorded histogram samples into their buckets; run periodically so samples do not
    /// pile up between scrapes.
    pub fn run_upkeep(&self) {
        self.series.fold_samples();
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

/// A backend's failure counters, registered when the backend is created.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// `switchyard_upstream_connect_errors_total`.
    pub connect_errors: Counter,
    /// `switchyard_upstream_timeouts_total`.
    pub timeouts: Counter,
    /// `switchyard_retries_total`.
    pub retries: Counter,
    /// `switchyard_retry_budget_exhausted_total`.
    pub budget_exhausted: Counter,
    /// `switchyard_upstream_connections_opened_total`.
    pub connections_opened: Counter,
    /// `switchyard_upstream_connections`.
    pub connections_open: Gauge,
}

impl BackendMetrics {
    /// Registers the counters of backend `backend` of pool `pool`.
    pub fn new(metrics: &Metrics, pool: &str, backend: &str) -> Self {
        let labels = [("pool", pool), ("backend", backend)];
        Self {
            connect_errors: metrics.counter(CONNECT_ERRORS, &labels),
            timeouts: metrics.counter(TIMEOUTS, &labels),
            retries: metrics.counter(RETRIES, &labels),
            budget_exhausted: metrics.counter(BUDGET_EXHAUSTED, &labels),
            connections_opened: metrics.counter(UPSTREAM_CONNECTIONS_OPENED, &labels),
            connections_open: metrics.gauge(UPSTREAM_CONNECTIONS, &labels),
        }
    }

    /// Counters registered nowhere, for state built outside a running proxy.
    pub fn noop() -> Self {
        Self {
            connect_errors: Counter::noop(),
            timeouts: Counter::noop(),
            retries: Counter::noop(),
            budget_exhausted: Counter::noop(),
            connections_opened: Counter::noop(),
            connections_open: Gauge::noop(),
        }
    }
}

/// Status codes with a counter slot of their own; others count under their class (`5xx`).
const CODES: [u16; 25] = [
    200, 201, 202, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 413,
    429, 500, 501, 502, 503, 504,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The request metrics of one (route, pool, backend) combination. Counters per status code
/// are registered on first use and then cached, so each costs one registry lookup in the
/// proxy's lifetime.
#[derive(Debug)]
pub struct RequestMetrics {
    metrics: Metrics,
    labels: [(&'static str, Arc<str>); 3],
    codes: [OnceLock<Counter>; CODES.len() + CLASSES.len()],
    /// `switchyard_request_duration_seconds`.
    pub duration: Histogram,
}

impl RequestMetrics {
    /// Registers the histogram for this combination (`backend` empty: no backend was chosen).
    pub fn new(metrics: &Metrics, route: &str, pool: &str, backend: &str) -> Self {
        let labels = [("route", route), ("pool", pool), ("backend", backend)];
        let this = Self {
            duration: metrics.histogram(REQUEST_DURATION, &labels),
            metrics: metrics.clone(),
            labels: labels.map(|(k, v)| (k, Arc::from(v))),
            codes: std::array::from_fn(|_| OnceLock::new()),
        };
        // Series that rates and alerts divide by or watch exist from the start, at zero, so
        // `increase()` sees their first request rather than starting from it.
        for code in ZERO_REGISTERED {
            this.counter(slot_of(code));
        }
        this
    }

    /// Counts one answer with `status`.
    pub fn count(&self, status: http::StatusCode) {
        self.counter(slot_of(status.as_u16())).increment(1);
    }

    fn counter(&self, slot: usize) -> &Counter {
        self.codes[slot].get_or_init(|| {
            let label = match CODES.get(slot) {
                Some(code) => code.to_string(),
                None => CLASSES[slot - CODES.len()].to_owned(),
            };
            let [(k1, v1), (k2, v2), (k3, v3)] = &self.labels;
            self.metrics.counter(
                REQUESTS,
                &[(*k1, &**v1), (*k2, &**v2), (*k3, &**v3), ("code", &label)],
            )
        })
    }
}

/// The counter slot of status `code`: its own, or its class's.
fn slot_of(code: u16) -> usize {
    match CODES.iter().position(|&c| c == code) {
        Some(slot) => slot,
        None => CODES.len() + usize::from(code / 100).clamp(1, 5) - 1,
    }
}

/// Status codes whose request counters are registered at zero: success, and every server error
/// (`599` stands for the `5xx` class of the codes without a slot).
const ZERO_REGISTERED: [u16; 7] = [200, 500, 501, 502, 503, 504, 599];

/// A pool's request metrics: one `RequestMetrics` per (route, backend), plus one per route for
/// requests that found no backend. Rebuilt on reload, shared by the snapshots in between.
#[derive(Debug)]
pub struct PoolTraffic {
    stride: usize,
    cells: Box<[RequestMetrics]>,
    /// `switchyard_pool_no_backend_total`.
    pub no_backend: Counter,
}

impl PoolTraffic {
    /// Registers the metrics of pool `pool` reached through `routes`, over `backends`.
    pub fn new(metrics: &Metrics, pool: &str, routes: &[&str], backends: &[&str]) -> Self {
        let stride = backends.len() + 1;
        let cells = routes
            .iter()
            .flat_map(|route| {
                backends
                    .iter()
                    .copied()
                    .chain([""])
                    .map(move |backend| RequestMetrics::new(metrics, route, pool, backend))
            })
            .collect();
        Self {
            stride,
            cells,
            no_backend: metrics.counter(NO_BACKEND, &[("pool", pool)]),
        }
    }

    /// The metrics of requests through route `slot` answered by backend `backend` (an index
    /// into the pool's backends), or by no backend.
    pub fn cell(&self, slot: usize, backend: Option<usize>) -> Option<&RequestMetrics> {
        let column = backend.unwrap_or(self.stride - 1).min(self.stride - 1);
        self.cells.get(slot * self.stride + column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_and_as_its_kind() {
        let mut names = std::collections::HashSet::new();
        for &(name, kind, help) in TABLE {
            assert!(names.insert(name), "{name} twice");
            assert!(name.starts_with("switchyard_"), "{name}");
            assert!(!help.is_empty(), "{name} has no help");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
    }
}
