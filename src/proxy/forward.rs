//! Sending a request to a backend through the shared pooled client, under timeouts.

use crate::config::Timeouts;
use crate::error::ProxyError;
use crate::upstream::BackendState;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as _;
use std::time::Duration;

/// The one pooled HTTP client shared by every request to every backend.
pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// Builds the shared client: keep-alive pool with an idle timeout, `TCP_NODELAY`, connect
/// timeout.
pub fn client(timeouts: &Timeouts) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeouts.connect));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(timeouts.upstream_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Points the request at `authority` over HTTP/1.1, keeping path and query.
pub fn set_upstream_target(
    req: &mut Request<Incoming>,
    authority: &Authority,
) -> Result<(), ProxyError> {
    let path_and_query = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path_and_query);
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid request target\n"))?;
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}

/// Sends the request; maps failures to connect (502), protocol (502) or timeout (504).
pub async fn send(
    client: &UpstreamClient,
    req: Request<Incoming>,
    response_timeout: Duration,
    backend: &BackendState,
) -> Result<Response<Incoming>, ProxyError> {
    match tokio::time::timeout(response_timeout, client.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) if is_timeout(&source) => Err(ProxyError::UpstreamTimeout {
            backend: backend.name.clone(),
        }),
        Ok(Err(source)) if source.is_connect() => Err(ProxyError::UpstreamConnect {
            backend: backend.name.clone(),
            source,
        }),
        Ok(Err(source)) => Err(ProxyError::UpstreamProtocol {
            backend: backend.name.clone(),
            source,
        }),
        Err(_elapsed) => Err(ProxyError::UpstreamTimeout {
            backend: backend.name.clone(),
        }),
    }
}

/// Whether the connector gave up on its connect timeout (an `io::ErrorKind::TimedOut` inside).
fn is_timeout(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}
