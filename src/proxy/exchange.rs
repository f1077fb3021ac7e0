//! One request's record as it goes through the proxy: what the access log line and the request
//! metrics need, filled in along the way and finished when the response body ends.

use super::Downstream;
use crate::access_log::{AccessLog, Record};
use crate::metrics::{PoolTraffic, RequestMetrics};
use crate::route::Vars;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

/// The request id header, reused when the client sends one.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Which request metrics a request counts under.
#[derive(Debug)]
enum Target {
    /// A routed request: pool traffic, route slot, backend index (none: no backend chosen).
    Pool(Arc<PoolTraffic>, usize, Option<usize>),
    /// A request counted without a pool: one that matched no route, or one its route
    /// answered itself.
    Direct(Arc<RequestMetrics>),
}

/// One request in progress.
#[derive(Debug)]
pub struct Exchange {
    start: Instant,
    /// The access log record being filled in; boxed, as the exchange moves with the request's
    /// future and its response body, and the record goes to the log's thread as a pointer.
    pub record: Box<Record>,
    target: Target,
    /// A sticky pool's cookie for the response (a session begun or refreshed).
    pub set_cookie: Option<HeaderValue>,
}

impl Exchange {
    /// Starts the record of `req`; gives it an `X-Request-Id` if it has none.
    pub fn begin<B>(
        req: &mut Request<B>,
        downstream: &Downstream,
        unrouted: &Arc<RequestMetrics>,
    ) -> Self {
        // One pass over the few headers a request usually has, rather than a hashed lookup
        // for each of the four the record keeps.
        let (mut host, mut user_agent, mut referer, mut request_id) = (None, None, None, None);
        for (name, value) in req.headers() {
            let slot = if name == http::header::HOST {
                &mut host
            } else if name == http::header::USER_AGENT {
                &mut user_agent
            } else if name == http::header::REFERER {
                &mut referer
            } else if name == X_REQUEST_ID {
                &mut request_id
            } else {
                continue;
            };
            slot.get_or_insert_with(|| value.clone());
        }
        let generated = request_id.is_none();
        let mut request_id = request_id.unwrap_or_else(new_request_id);
        // Unique per request: sent as an HPACK never-indexed field wherever it goes over
        // HTTP/2 (the response, a backend's request), rather than indexed after a search of
        // the table's earlier ids. Copies of this value keep the flag.
        request_id.set_sensitive(true);
        if generated {
            req.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        }
        // Behind trusted proxies, the client they name; the peer otherwise (and for a request
        // that names none).
        let named = downstream
            .trusted_proxies
            .as_deref()
            .and_then(|trusted| crate::route::client::behind_proxies(req.headers(), trusted));
        let client = match named {
            Some(ip) => HeaderValue::from_str(&ip.to_string())
                .expect("an IP address is a valid header value"),
            None => downstream.forwarded_for.clone(),
        };
        Self {
            start: Instant::now(),
            set_cookie: None,
            record: Box::new(Record {
                time: SystemTime::now(),
                client,
                host,
                version: req.version(),
                user_agent,
                referer,
                method: req.method().clone(),
                uri: req.uri().clone(),
                status: StatusCode::OK,
                upstream_status: None,
                upstream_error: None,
                bytes_in: 0,
                bytes_out: 0,
                total: std::time::Duration::ZERO,
                upstream: None,
                route: None,
                pool: None,
                backend: None,
                retries: 0,
                request_id,
                grpc_status: None,
                tls: downstream.tls.clone(),
            }),
            target: Target::Direct(Arc::clone(unrouted)),
        }
    }

    /// When the request began.
    pub fn started(&self) -> std::time::Instant {
        self.start.into_std()
    }

    /// The request matched a route to a pool.
    pub fn routed(
        &mut self,
        route: &Arc<str>,
        slot: usize,
        pool: &Arc<str>,
        traffic: &Arc<PoolTraffic>,
    ) {
        self.record.route = Some(Arc::clone(route));
        self.record.pool = Some(Arc::clone(pool));
        self.target = Target::Pool(Arc::clone(traffic), slot, None);
    }

    /// The request matched route `route`, which answers it itself, counted in `metrics`.
    pub fn answered(&mut self, route: &Arc<str>, metrics: &Arc<RequestMetrics>) {
        self.record.route = Some(Arc::clone(route));
        self.target = Target::Direct(Arc::clone(metrics));
    }

    /// The client's address: the connection's peer, or the client its trusted proxies name.
    /// Read back from the record, where it is kept formatted, as only a route with address
    /// rules asks.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.record.client.to_str().ok()?.parse().ok()
    }

    /// What header templates are filled from.
    pub fn vars(&self) -> Vars<'_> {
        let record = &self.record;
        Vars {
            client_ip: &record.client,
            request_id: &record.request_id,
            host: record.host.as_ref(),
            scheme: if record.tls.is_some() {
                "https"
            } else {
                "http"
            },
            route: record.route.as_deref().unwrap_or(""),
            backend: record.backend.as_deref(),
        }
    }

    /// When the request began, in Unix seconds.
    pub fn unix_seconds(&self) -> u64 {
        self.record
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The request is going to backend `index` of the pool.
    pub fn chose(&mut self, index: usize, name: &Arc<str>) {
        self.record.backend = Some(Arc::clone(name));
        if let Target::Pool(_, _, backend) = &mut self.target {
            *backend = Some(index);
        }
    }

    fn metrics(&self) -> Option<&RequestMetrics> {
        match &self.target {
            Target::Pool(traffic, slot, backend) => traffic.cell(*slot, *backend),
            Target::Direct(metrics) => Some(metrics),
        }
    }

    /// Records the response status (counted now, when the headers go out).
    pub fn respond(&mut self, status: StatusCode) {
        self.record.status = status;
        if let Some(metrics) = self.metrics() {
            metrics.count(status);
        }
    }

    /// The response body has ended (or was dropped): records the duration and logs the line.
    pub fn finish(mut self, bytes_out: u64, log: &AccessLog) {
        self.record.total = self.start.elapsed();
        self.record.bytes_out = bytes_out;
        if let Some(metrics) = self.metrics() {
            metrics.duration.record(self.record.total.as_secs_f64());
        }
        log.log(self.record);
    }
}

fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let mut bits = fastrand::u128(..);
    for byte in &mut id {
        *byte = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}
