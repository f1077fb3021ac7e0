//! The request path: route, pick a backend, rewrite headers, forward, stream the answer back.

pub mod body;
pub mod forward;
pub mod headers;

pub use body::ProxyBody;
pub use forward::UpstreamClient;

use crate::error::ProxyError;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, header};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;

/// How the client reached us, for `X-Forwarded-*`.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// The data plane's entry point: shared by every connection of every listener.
#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    client: UpstreamClient,
}

impl Proxy {
    /// A proxy reading routes and pools from `snapshot` and sending through `client`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, client: UpstreamClient) -> Self {
        Self { snapshot, client }
    }

    /// Answers one request: the upstream's response, or a short error response.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        downstream: Downstream,
    ) -> Response<ProxyBody> {
        let version = req.version();
        match self.forward(req, downstream).await {
            Ok(response) => response,
            Err(err) => {
                match &err {
                    ProxyError::UpstreamConnect { source, .. }
                    | ProxyError::UpstreamProtocol { source, .. } => {
                        tracing::warn!(error = %err, cause = %source, "upstream request failed");
                    }
                    _ => tracing::debug!(error = %err, "request failed"),
                }
                let mut response = error_response(&err);
                if matches!(err, ProxyError::BadRequest(_)) && version < Version::HTTP_2 {
                    // After a malformed request the stream cannot be trusted to be in sync.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                response
            }
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        downstream: Downstream,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let host = request_host(&req)?;
        let (backend, timeout) = {
            // One snapshot load per request; the guard is dropped before any await.
            let snapshot = self.snapshot.load();
            let route = snapshot
                .router
                .find(
                    host.as_ref().and_then(|h| h.to_str().ok()),
                    req.uri().path(),
                )
                .ok_or(ProxyError::NoRoute)?;
            let pool = &snapshot.pools[route.pool];
            let backend = pool.pick().ok_or_else(|| ProxyError::NoBackend {
                pool: Arc::clone(&pool.name),
            })?;
            (Arc::clone(backend), snapshot.timeouts.response_header)
        };
        let in_flight = backend.begin_request();

        let version = req.version();
        headers::prepare_request(req.headers_mut(), version, host, downstream);
        forward::set_upstream_target(&mut req, &backend.authority)?;
        let response = forward::send(&self.client, req, timeout, &backend).await?;
        let (mut parts, body) = response.into_parts();
        headers::prepare_response(&mut parts.headers, parts.version);
        Ok(Response::from_parts(
            parts,
            ProxyBody::upstream(body, in_flight),
        ))
    }
}

/// The host the client asked for: the URI authority (HTTP/2, absolute-form) or `Host`.
/// HTTP/1.1 requires one (RFC 9112 §3.2); HTTP/1.0 may omit it.
fn request_host(req: &Request<Incoming>) -> Result<Option<HeaderValue>, ProxyError> {
    if let Some(authority) = req.uri().authority() {
        return HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| ProxyError::BadRequest("invalid authority\n"));
    }
    match req.headers().get(header::HOST) {
        Some(host) => Ok(Some(host.clone())),
        None if req.version() == Version::HTTP_11 => {
            Err(ProxyError::BadRequest("missing Host header\n"))
        }
        None => Ok(None),
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
