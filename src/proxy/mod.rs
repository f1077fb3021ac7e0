//! The request path: route, pick a backend, rewrite headers, forward, stream the answer back.

pub mod body;
pub mod client_body;
pub mod connector;
pub mod exchange;
pub mod forward;
pub mod headers;
pub mod redirect;
pub mod request_check;

pub use body::{ProxyBody, RequestBody, UpstreamBody};
pub use forward::UpstreamClient;

use crate::access_log::AccessLog;
use crate::error::ProxyError;
use crate::metrics::{Metrics, RequestMetrics};
use crate::snapshot::Snapshot;
use crate::tls::TlsInfo;
use crate::upstream::{BackendState, InFlightGuard, OutlierReport};
use arc_swap::ArcSwap;
use bytes::Bytes;
use exchange::{Exchange, X_REQUEST_ID};
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use metrics::{Counter, Gauge};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// How the client reached us, for `X-Forwarded-*`; built once per connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// What the TLS handshake negotiated, if the client connection is TLS.
    pub tls: Option<Arc<TlsInfo>>,
    /// The client's IP as a header value, formatted once per connection rather than per request.
    pub forwarded_for: HeaderValue,
}

impl Downstream {
    /// The downstream of a connection from `peer`.
    pub fn new(peer: SocketAddr, tls: Option<Arc<TlsInfo>>) -> Self {
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Self {
            peer,
            tls,
            forwarded_for,
        }
    }
}

/// The data plane's entry point: shared by every connection of every listener.
#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    client: UpstreamClient,
    outliers: UnboundedSender<OutlierReport>,
    access_log: AccessLog,
    /// Request metrics of requests that match no route.
    unrouted: Arc<RequestMetrics>,
    /// `switchyard_downstream_connections`.
    pub connections_open: Gauge,
    /// `switchyard_downstream_connections_total`.
    pub connections_total: Counter,
}

impl Proxy {
    /// A proxy reading routes and pools from `snapshot`, sending through `client`, reporting
    /// passive failures past their threshold to `outliers`, logging to `access_log`.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        client: UpstreamClient,
        outliers: UnboundedSender<OutlierReport>,
        access_log: AccessLog,
        metrics: &Metrics,
    ) -> Self {
        Self {
            snapshot,
            client,
            outliers,
            access_log,
            unrouted: Arc::new(RequestMetrics::new(metrics, "", "", "")),
            connections_open: metrics.gauge(crate::metrics::DOWNSTREAM_CONNECTIONS, &[]),
            connections_total: metrics.counter(crate::metrics::DOWNSTREAM_CONNECTIONS_TOTAL, &[]),
        }
    }

    /// The timeouts and request limits of the current snapshot.
    pub fn connection_settings(&self) -> (crate::config::Timeouts, crate::config::Limits) {
        let snapshot = self.snapshot.load();
        (snapshot.timeouts, snapshot.limits)
    }

    /// Answers one request: the upstream's response, or a short error response.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        downstream: &Downstream,
    ) -> Response<ProxyBody> {
        let mut exchange = Exchange::begin(&mut req, downstream, &self.unrouted);
        let version = req.version();
        let mut response = match self.forward(req, downstream, &mut exchange).await {
            Ok((response, in_flight)) => {
                let (mut parts, body) = response.into_parts();
                headers::prepare_response(&mut parts.headers, parts.version);
                Response::from_parts(parts, ProxyBody::upstream(body, in_flight))
            }
            Err(err) => {
                log_failure(&err);
                let mut response = error_response(&err);
                if matches!(err, ProxyError::Refused(..) | ProxyError::ClientBody(_))
                    && version < Version::HTTP_2
                {
                    // After a malformed request the stream cannot be trusted to be in sync.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        };
        response
            .headers_mut()
            .insert(X_REQUEST_ID, exchange.record.request_id.clone());
        exchange.respond(response.status());
        response.map(|body| body.finishing(exchange, &self.access_log))
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        downstream: &Downstream,
        exchange: &mut Exchange,
    ) -> Result<(Response<Incoming>, InFlightGuard), ProxyError> {
        // Only the settings this request uses are kept: everything bound here lives in the
        // request's future, which is moved several times per request.
        let (host, pool, mut backend, settings) = {
            // One snapshot load per request; the guard is dropped before any await.
            let snapshot = self.snapshot.load();
            let host = request_check::check(&req, &snapshot.limits)?;
            let route = snapshot
                .router
                .find(
                    host.as_ref().and_then(|h| h.to_str().ok()),
                    // `OPTIONS *` asks about the server as a whole: it goes where `/` goes.
                    match req.uri().path() {
                        "*" => "/",
                        path => path,
                    },
                )
                .ok_or(ProxyError::NoRoute)?;
            let pool = Arc::clone(&snapshot.pools[route.pool]);
            exchange.routed(&route.name, route.slot, &pool.name, &pool.policy.traffic);
            let Some((index, backend)) = pool.pick() else {
                pool.policy.traffic.no_backend.increment(1);
                return Err(ProxyError::NoBackend {
                    pool: Arc::clone(&pool.name),
                });
            };
            let backend = Arc::clone(backend);
            exchange.chose(index, &backend.name);
            let settings = RequestSettings {
                request: snapshot.timeouts.request,
                response_header: snapshot.timeouts.response_header,
                request_body: snapshot.timeouts.request_body,
                max_body_bytes: route.max_body_bytes,
                underscores: snapshot.limits.underscore_headers,
            };
            (host, pool, backend, settings)
        };
        let policy = &pool.policy;
        policy.retry_budget.record_request();

        let (mut parts, body) = req.into_parts();
        headers::prepare_request(
            &mut parts.headers,
            parts.version,
            host,
            downstream,
            settings.underscores,
        )?;
        let mut body =
            RequestBody::read(body, settings.request_body, settings.max_body_bytes).await?;
        let deadline = settings.request.map(|limit| Instant::now() + limit);
        let mut tried: Vec<Arc<BackendState>> = Vec::new();
        loop {
            let in_flight = backend.begin_request();
            let attempt_body = body
                .next_attempt()
                .expect("a streamed body is never retried, so it is always still there");
            let last_attempt = tried.len() >= policy.retries as usize || !body.is_replayable();
            let request = forward::upstream_request(
                &mut parts,
                attempt_body,
                &backend.authority,
                last_attempt,
            )?;
            let timeout = match deadline {
                Some(deadline) => settings
                    .response_header
                    .min(deadline.saturating_duration_since(Instant::now())),
                None => settings.response_header,
            };
            let sent = Instant::now();
            let result = forward::send(&self.client, request, timeout, &backend)
                .await
                .and_then(|response| forward::checked_response(response, &backend));
            exchange.record.upstream = Some(sent.elapsed());
            exchange.record.bytes_in = body.bytes();
            let outcome = match result {
                Ok(response) => {
                    let status = response.status();
                    self.report(backend.record_response(status, policy.outlier.consecutive_5xx));
                    if !(status.is_server_error()
                        && policy.retry_on.server_error
                        && forward::is_idempotent(&parts.method))
                    {
                        return Ok((response, in_flight));
                    }
                    Attempt::ServerError(response, in_flight)
                }
                Err(err) => {
                    drop(in_flight);
                    if let Some(fault) = body.fault() {
                        // The client broke its own body: nothing the backend did, no retry.
                        return Err(ProxyError::ClientBody(fault));
                    }
                    if let Some(failure) = forward::failure_of(&err) {
                        self.report(
                            backend.record_failure(failure, policy.outlier.consecutive_failures),
                        );
                    }
                    Attempt::Failed(err)
                }
            };
            let retry = tried.len() < policy.retries as usize
                && body.is_replayable()
                && deadline.is_none_or(|deadline| Instant::now() < deadline)
                && match &outcome {
                    Attempt::ServerError(..) => true,
                    Attempt::Failed(err) => {
                        forward::may_retry(err, &parts.method, &policy.retry_on)
                    }
                };
            let next = if retry {
                tried.push(Arc::clone(&backend));
                pool.pick_other(&tried)
            } else {
                None
            };
            // A connection that was never made sent nothing and cost the backend nothing: its
            // retry does not spend the budget, which guards against retry storms on backends
            // that do receive the requests.
            let free = matches!(&outcome, Attempt::Failed(err) if forward::nothing_sent(err));
            let next = next.filter(|_| {
                let spent = free || policy.retry_budget.try_spend();
                if !spent {
                    backend.metrics.budget_exhausted.increment(1);
                    tracing::debug!(pool = %pool.name, "retry budget exhausted; not retrying");
                }
                spent
            });
            let Some((index, next)) = next else {
                return match outcome {
                    Attempt::ServerError(response, in_flight) => Ok((response, in_flight)),
                    Attempt::Failed(err) => Err(err),
                };
            };
            backend.metrics.retries.increment(1);
            tracing::debug!(pool = %pool.name, from = %backend.name, to = %next.name, "retrying on another backend");
            exchange.chose(index, &next.name);
            exchange.record.retries += 1;
            backend = Arc::clone(next);
        }
    }

    fn report(&self, report: Option<OutlierReport>) {
        if let Some(report) = report {
            if self.outliers.send(report).is_err() {
                tracing::debug!("control plane stopped; passive failure report dropped");
            }
        }
    }
}

/// How an attempt that may be retried ended.
enum Attempt {
    /// A 5xx response, kept in case no other backend can take the retry.
    ServerError(Response<Incoming>, InFlightGuard),
    /// No usable response.
    Failed(ProxyError),
}

/// What one request needs of the snapshot's settings, copied out so the guard can go.
struct RequestSettings {
    request: Option<std::time::Duration>,
    response_header: std::time::Duration,
    request_body: std::time::Duration,
    max_body_bytes: Option<u64>,
    underscores: crate::config::UnderscoreHeaders,
}

/// Per-request failures are logged at debug level only: under a failing backend a line per
/// request would flood the log, and the access log, the metrics and the control plane's state
/// changes (logged once) already tell the story.
fn log_failure(err: &ProxyError) {
    match err {
        ProxyError::UpstreamConnect { source, .. }
        | ProxyError::UpstreamProtocol { source, .. } => {
            tracing::debug!(error = %err, cause = %crate::error::chain(source), "upstream request failed");
        }
        ProxyError::UpstreamTimeout { .. } | ProxyError::UpstreamInvalid { .. } => {
            tracing::debug!(error = %err, "upstream request failed")
        }
        ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::ClientBody(_)
        | ProxyError::Refused(..) => tracing::debug!(error = %err, "request failed"),
    }
}

/// The response for a failed request: status, short text, and `Retry-After` on 503.
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let status = err.status();
    let mut response = Response::new(ProxyBody::local(Bytes::from_static(
        err.client_message().as_bytes(),
    )));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

/// Seconds a client is asked to wait when no backend is available: about one probe interval.
const RETRY_AFTER_SECS: &str = "2";
