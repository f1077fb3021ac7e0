//! The request path, as phases each in a file of its own: check (`request_check`), route
//! (`routing`), request policies (`request_policy`), pick (`pick`), the attempt loop
//! (`retry`, sending with `forward`), response policies (`response_policy`), log and count
//! (`exchange`, finished by the response body).

pub mod access;
pub mod body;
pub mod compress;
pub mod downstream;
pub mod exchange;
pub mod failure;
pub mod forward;
pub mod headers;
pub mod pick;
pub mod redirect;
pub mod request_check;
pub mod request_policy;
pub mod response_policy;
pub mod retry;
pub mod routing;
mod tunnel;
pub mod upgrade;

pub use body::{ProxyBody, RequestBody};
pub use downstream::{ActiveRequest, ConnActivity, Downstream};
pub use failure::error_response;
use failure::failed;
pub use upgrade::{ClientUpgrade, Tunnels};

use crate::access_log::AccessLog;
use crate::body::ClientRequest;
use crate::metrics::{Metrics, RequestMetrics};
use crate::snapshot::Snapshot;
use crate::upstream::OutlierReport;
use arc_swap::ArcSwap;
use exchange::{Exchange, X_REQUEST_ID};
use http::{Request, Response, header};
use metrics::{Counter, Gauge};
use retry::Prepared;
use routing::{Early, Reached, Routed};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

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
    /// `switchyard_downstream_connections_parked`.
    pub connections_parked: Gauge,
    /// `switchyard_requests_by_protocol_total`, indexed by `protocol_index`.
    by_protocol: [Counter; 4],
}

/// The place of a client's protocol in `Proxy::by_protocol`.
fn protocol_index(version: http::Version) -> usize {
    match version {
        http::Version::HTTP_2 => 2,
        http::Version::HTTP_3 => 3,
        http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
        _ => 1,
    }
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
            connections_parked: metrics.gauge(crate::metrics::DOWNSTREAM_CONNECTIONS_PARKED, &[]),
            by_protocol: ["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"].map(|protocol| {
                metrics.counter(
                    crate::metrics::REQUESTS_BY_PROTOCOL,
                    &[("protocol", protocol)],
                )
            }),
        }
    }

    /// The timeouts and request limits of the current snapshot.
    pub fn connection_settings(&self) -> (Arc<crate::config::Timeouts>, crate::config::Limits) {
        let snapshot = self.snapshot.load();
        (Arc::clone(&snapshot.timeouts), snapshot.limits)
    }

    /// Answers one request: the upstream's response, or a short error response. The request
    /// goes through the phases in order (DESIGN.md, "One request: the phases").
    pub async fn handle(
        &self,
        mut req: ClientRequest,
        downstream: &Downstream,
    ) -> Response<ProxyBody> {
        let mut exchange = Exchange::begin(&mut req, downstream, &self.unrouted);
        let version = req.version();
        let response = match self.prepare(&mut req, downstream, &mut exchange).await {
            Ok(mut prepared) => {
                // The route's policies, taken for the response (an attempt is lent the request
                // header rules): no reference count touched.
                let policies = prepared.settings.policies.take();
                let (origin, encoding) = match &policies {
                    Some(policies) => response_inputs(policies, &req),
                    None => (None, None),
                };
                let header_rules = policies.as_deref().and_then(|p| p.request_headers.as_ref());
                match retry::forward(self, prepared, req, header_rules, &mut exchange).await {
                    Ok(forwarded) => {
                        let mut response =
                            response_policy::apply(forwarded, &mut exchange, &self.tunnels);
                        if let Some(policies) = &policies {
                            let vars = exchange.vars();
                            response_policy::route(
                                &mut response,
                                policies,
                                &vars,
                                origin.as_ref(),
                                encoding,
                            );
                        }
                        response
                    }
                    Err(err) => failed(&err, version, &mut exchange),
                }
            }
            Err(Early::Failed(err)) => failed(&err, version, &mut exchange),
            Err(Early::Answer(answer)) => redirect::answer(&answer, &req, downstream.tls.is_some()),
            Err(Early::Preflight(headers)) => redirect::preflight(*headers),
            Err(Early::Reply(response)) => *response,
        };
        self.answer(response, exchange, downstream)
    }

    /// Answers `req` with `refusal` without routing it, logged and counted as any request
    /// refused at its check.
    pub fn refuse(
        &self,
        mut req: ClientRequest,
        downstream: &Downstream,
        refusal: &crate::error::ProxyError,
    ) -> Response<ProxyBody> {
        let mut exchange = Exchange::begin(&mut req, downstream, &self.unrouted);
        let response = failed(refusal, req.version(), &mut exchange);
        self.answer(response, exchange, downstream)
    }

    /// The headers every response gets, then the record finished when its body ends.
    #[inline(always)]
    fn answer(
        &self,
        mut response: Response<ProxyBody>,
        mut exchange: Exchange,
        downstream: &Downstream,
    ) -> Response<ProxyBody> {
        response
            .headers_mut()
            .insert(X_REQUEST_ID, exchange.record.request_id.clone());
        if let Some(hsts) = &downstream.hsts {
            response
                .headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if let Some(alt_svc) = &downstream.alt_svc {
            response
                .headers_mut()
                .insert(http::header::ALT_SVC, alt_svc.clone());
        }
        self.by_protocol[protocol_index(exchange.record.version)].increment(1);
        // Log and count: the record is finished when the response body ends.
        exchange.respond(response.status());
        response.map(|body| body.finishing(exchange, &self.access_log))
    }

    /// Check, route, request policies and pick: everything before the first attempt. Only a
    /// route with access policies may wait here (basic auth's hash, forward auth).
    async fn prepare(
        &self,
        req: &mut ClientRequest,
        downstream: &Downstream,
        exchange: &mut Exchange,
    ) -> Result<Prepared, Early> {
        let (host, reached, waiting) = {
            // One snapshot load per request; the guard is dropped before any await.
            let snapshot = self.snapshot.load();
            let host = request_check::check(req, &snapshot.limits)?;
            if let Some(normal) = crate::route::normalize::without_dot_segments(req.uri()) {
                *req.uri_mut() = normal;
            }
            let (reached, gate) = routing::route(&snapshot, host.as_ref(), req, exchange)?;
            // A CORS preflight carries no credentials: it is answered before the access
            // policies.
            if let Reached::Pool(Routed { settings, .. }) = &reached {
                if let Some(cors) = settings.policies.as_ref().and_then(|p| p.cors.as_ref()) {
                    if let Some(answer) = cors.preflight(req.method(), req.headers()) {
                        return Err(Early::Preflight(Box::new(answer)));
                    }
                }
            }
            // A gate that never waits is passed here, under the snapshot; one that may wait
            // is kept for after it.
            let waiting = match gate {
                Some(gate) if gate.waits() => Some(Arc::clone(gate)),
                Some(gate) => {
                    access::admit_now(gate, req, downstream, exchange)?;
                    None
                }
                None => None,
            };
            (host, reached, waiting)
        };
        if let Some(gate) = waiting {
            // Boxed: only these routes carry the waiting policies' state in their future.
            Box::pin(access::admit(self, &gate, req, downstream, exchange)).await?;
        }
        let Routed { pool, settings } = match reached {
            Reached::Pool(routed) => routed,
            Reached::Answer(answer) => return Err(Early::Answer(answer)),
        };
        let applied = request_policy::apply(req, host, &pool, &settings, downstream)?;
        let backend = match &pool.policy.admission {
            None => pick::pick(&pool, req, exchange)?,
            // Boxed: only pools with a queue carry its wait in the request's future.
            Some(admission) => Box::pin(pick::admit(&pool, admission, req, exchange)).await?,
        };
        Ok(Prepared {
            pool,
            settings,
            applied,
            backend,
        })
    }

    /// Sends a passive-failure report past its threshold to the control plane.
    fn report(&self, report: Option<OutlierReport>) {
        if let Some(report) = report {
            if self.outliers.send(report).is_err() {
                tracing::debug!("control plane stopped; passive failure report dropped");
            }
        }
    }
}

/// What a route's response policies need of the request: the `Origin` of a CORS request, and
/// the coding the client takes if the route compresses (never for HEAD).
fn response_inputs<B>(
    policies: &crate::route::Policies,
    req: &Request<B>,
) -> (Option<http::HeaderValue>, Option<crate::config::Encoding>) {
    let origin = policies
        .cors
        .as_ref()
        .and_then(|_| req.headers().get(header::ORIGIN).cloned());
    let encoding = policies
        .compress
        .as_ref()
        .filter(|_| req.method() != http::Method::HEAD)
        .and_then(|c| compress::negotiate(&c.config, req.headers().get(header::ACCEPT_ENCODING)));
    (origin, encoding)
}
