//! The request path: route, pick a backend, rewrite headers, forward, stream the answer back.
//! Longer than most files: `forward` and its retry loop are kept whole so that every way an
//! attempt can end, and what follows from it, reads in one place.

pub mod body;
pub mod downstream;
pub mod exchange;
pub mod failure;
pub mod forward;
pub mod headers;
pub mod redirect;
pub mod request_check;
pub mod upgrade;

pub use body::{ProxyBody, RequestBody};
pub use downstream::{ActiveRequest, ConnActivity, Downstream};
pub use failure::error_response;
use failure::log_failure;
pub use upgrade::Tunnels;

use crate::access_log::AccessLog;
use crate::error::ProxyError;
use crate::metrics::{Metrics, RequestMetrics};
use crate::snapshot::Snapshot;
use crate::upstream::pool::{Dial, Lease};
use crate::upstream::{BackendState, Failure, InFlightGuard, Mark, OutlierReport};
use arc_swap::ArcSwap;
use exchange::{Exchange, X_REQUEST_ID};
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::{Body as _, Incoming};
use metrics::{Counter, Gauge};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// The data plane's entry point: shared by every connection of every listener.
#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    tunnels: Tunnels,
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
    /// A proxy reading routes and pools from `snapshot`, running upgraded connections under
    /// `tunnels`, reporting passive failures past their threshold to `outliers`, logging to
    /// `access_log`.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        tunnels: Tunnels,
        outliers: UnboundedSender<OutlierReport>,
        access_log: AccessLog,
        metrics: &Metrics,
    ) -> Self {
        Self {
            snapshot,
            tunnels,
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
            Ok(Forwarded {
                response,
                in_flight,
                lease,
                upgrade: None,
            }) => {
                exchange.record.upstream_status = Some(response.status().as_u16());
                let (mut parts, body) = response.into_parts();
                if body.is_end_stream() {
                    // A gRPC error answered with headers only ("trailers-only").
                    exchange.record.grpc_status = crate::body::grpc_status(&parts.headers);
                }
                headers::prepare_response(&mut parts.headers, parts.version);
                Response::from_parts(parts, ProxyBody::upstream(body, in_flight, lease))
            }
            Ok(Forwarded {
                response,
                in_flight,
                upgrade: Some((client, limits)),
                ..
            }) => {
                exchange.record.upstream_status = Some(response.status().as_u16());
                upgrade::switch(response, client, in_flight, limits, &self.tunnels)
            }
            Err(err) => {
                log_failure(&err);
                exchange.record.upstream_error = err.upstream_error();
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
    ) -> Result<Forwarded, ProxyError> {
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
            let timeouts = &snapshot.timeouts;
            let settings = RequestSettings {
                request: timeouts.request,
                response_header: timeouts.response_header,
                request_body: timeouts.request_body,
                max_body_bytes: route.max_body_bytes,
                underscores: snapshot.limits.underscore_headers,
                websocket: route.websocket,
                dial: Dial::from(timeouts),
                tunnel: upgrade::TunnelLimits {
                    idle: timeouts.tunnel_idle,
                    drain: timeouts.shutdown,
                },
            };
            (host, pool, backend, settings)
        };
        let policy = &pool.policy;
        let upstream = &policy.upstream;
        policy.retry_budget.record_request();

        let mut req = req;
        // A WebSocket handshake passes only to HTTP/1.1 backends, from HTTP/1.1 clients.
        let upgrade = if settings.websocket && !upstream.config.protocol.is_h2() {
            upgrade::handshake(&mut req)
        } else {
            None
        };
        let (mut parts, body) = req.into_parts();
        // Without a host (an HTTP/1.0 client may send none) each attempt names its backend.
        let hostless = host.is_none();
        headers::prepare_request(
            &mut parts.headers,
            parts.version,
            host,
            downstream,
            settings.underscores,
            upstream.config.protocol.is_h2(),
        )?;
        let mut upgrade = upgrade.inspect(|_| upgrade::restore(&mut parts.headers));
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
                (&backend.authority, hostless),
                upstream,
                last_attempt,
            )?;
            let wait = forward::ResponseWait {
                silence: settings.response_header,
                deadline,
                body: body.progress(),
            };
            let sent = Instant::now();
            let result = forward::send(request, &backend, upstream, &settings.dial, wait)
                .await
                .and_then(|(response, lease)| {
                    forward::checked_response(response, &backend, upgrade.is_some())
                        .map(|response| (response, lease))
                });
            exchange.record.upstream = Some(sent.elapsed());
            exchange.record.bytes_in = body.bytes();
            let outcome = match result {
                Ok((response, lease)) => {
                    let status = response.status();
                    self.report(backend.record_response(status, policy.outlier.consecutive_5xx));
                    if !(status.is_server_error()
                        && policy.retry_on.server_error
                        && forward::is_idempotent(&parts.method))
                    {
                        let upgrade = (status == http::StatusCode::SWITCHING_PROTOCOLS)
                            .then(|| upgrade.take())
                            .flatten()
                            .map(|client| (client, settings.tunnel));
                        return Ok(Forwarded {
                            response,
                            in_flight,
                            lease,
                            upgrade,
                        });
                    }
                    Attempt::ServerError(response, in_flight, lease)
                }
                Err(err) => {
                    drop(in_flight);
                    if let Some(fault) = body.fault() {
                        // The client broke its own body: nothing the backend did, no retry.
                        return Err(ProxyError::ClientBody(fault));
                    }
                    if backend.has(Mark::DrainCut) {
                        // The operator's deadline cut it: the request may have run, so it
                        // is not run again elsewhere, whatever `retry_on` says.
                        return Err(ProxyError::DrainCut {
                            backend: Arc::clone(&backend.name),
                        });
                    }
                    if let Some(failure) = forward::failure_of(&err) {
                        if failure == Failure::Connect {
                            forward::log_connect_failure(&err, &backend);
                        }
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
                    Attempt::ServerError(response, in_flight, lease) => Ok(Forwarded {
                        response,
                        in_flight,
                        lease,
                        upgrade: None,
                    }),
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

/// A response on its way to the client, with what it holds of the backend.
struct Forwarded {
    response: Response<Incoming>,
    in_flight: InFlightGuard,
    /// The connection, returned to the pool when the response ends cleanly.
    lease: Lease,
    /// For a `101`: the client's side of the upgrade and the tunnel's limits.
    upgrade: Option<(hyper::upgrade::OnUpgrade, upgrade::TunnelLimits)>,
}

/// How an attempt that may be retried ended.
enum Attempt {
    /// A 5xx response, kept in case no other backend can take the retry.
    ServerError(Response<Incoming>, InFlightGuard, Lease),
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
    websocket: bool,
    dial: Dial,
    tunnel: upgrade::TunnelLimits,
}
