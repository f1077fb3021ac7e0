//! Sending a request to a backend through the shared pooled client, under timeouts, and
//! classifying what went wrong: whether anything was sent, and whose fault it was.

use super::body::UpstreamBody;
use super::connector::Connector;
use crate::config::{RetryOn, Timeouts};
use crate::error::ProxyError;
use crate::upstream::{BackendState, Failure};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as _;
use std::time::Duration;

/// The one pooled HTTP client shared by every request to every backend.
pub type UpstreamClient = Client<Connector, UpstreamBody>;

/// Builds the shared client: keep-alive pool with an idle timeout, `TCP_NODELAY`, connect
/// timeout.
pub fn client(timeouts: &Timeouts) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(timeouts.connect));
    Client::builder(TokioExecutor::new())
        // One flattened write per request, as on client connections (`server::connection_builder`).
        .http1_writev(false)
        .pool_idle_timeout(timeouts.upstream_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(Connector(connector))
}

/// The request for one attempt: the client's method, path and (rewritten) headers, sent over
/// HTTP/1.1 to `authority`. On the last possible attempt the headers are moved out of `parts`
/// rather than copied: only a retry needs them again.
pub fn upstream_request(
    parts: &mut Parts,
    body: UpstreamBody,
    authority: &Authority,
    last_attempt: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(path_and_query);
    let uri =
        Uri::from_parts(uri).map_err(|_| ProxyError::bad_request("invalid request target\n"))?;
    let framing = body.size_hint().exact();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = if last_attempt {
        std::mem::take(&mut parts.headers)
    } else {
        parts.headers.clone()
    };
    canonical_framing(request.headers_mut(), framing);
    Ok(request)
}

/// Frames the upstream request from the body itself: a known length as a canonical
/// `Content-Length` (never the client's spelling, such as `010`), an unknown one as chunked,
/// whatever the method (hyper would send a GET's body without framing, that is, drop it).
fn canonical_framing(headers: &mut http::HeaderMap, length: Option<u64>) {
    use http::header::{CONTENT_LENGTH, HeaderValue, TRANSFER_ENCODING};
    match length {
        // No body: nothing to frame (a declared `Content-Length: 0` passes as written; any
        // spelling of zero means no body to every reader).
        Some(0) => {}
        Some(length) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
    }
}

/// Sends one attempt; maps failures to connect (502), protocol (502) or timeout (504).
pub async fn send(
    client: &UpstreamClient,
    req: Request<UpstreamBody>,
    response_timeout: Duration,
    backend: &BackendState,
) -> Result<Response<Incoming>, ProxyError> {
    let backend = || backend.name.clone();
    match tokio::time::timeout(response_timeout, client.request(req)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(source)) if source.is_connect() && is_timeout(&source) => {
            Err(ProxyError::UpstreamTimeout {
                backend: backend(),
                connecting: true,
            })
        }
        Ok(Err(source)) if source.is_connect() => Err(ProxyError::UpstreamConnect {
            backend: backend(),
            source,
        }),
        Ok(Err(source)) => Err(ProxyError::UpstreamProtocol {
            backend: backend(),
            source,
        }),
        Err(_elapsed) => Err(ProxyError::UpstreamTimeout {
            backend: backend(),
            connecting: false,
        }),
    }
}

/// Refuses a response the client must not get as is, and fixes its framing: a `101` (the
/// proxy forwards no `Upgrade`, so any is unsolicited) or a `Transfer-Encoding` other than one
/// `chunked` is invalid (its body is dropped unread, so hyper does not pool the connection);
/// with `chunked`, the upstream's `Content-Length` is wrong by definition and removed.
pub fn checked_response(
    mut response: Response<Incoming>,
    backend: &BackendState,
) -> Result<Response<Incoming>, ProxyError> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let invalid = |reason| ProxyError::UpstreamInvalid {
        backend: backend.name.clone(),
        reason,
    };
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("unsolicited 101 Switching Protocols"));
    }
    // Only a body of no known length can have come with a Transfer-Encoding: with a valid
    // Content-Length (the usual case) there is nothing to look up.
    let body = response.body();
    if body.is_end_stream() || body.size_hint().exact().is_some() {
        return Ok(response);
    }
    let headers = response.headers_mut();
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(first) = encodings.next() {
        let chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !chunked || encodings.next().is_some() {
            return Err(invalid("Transfer-Encoding other than chunked"));
        }
        headers.remove(CONTENT_LENGTH);
    }
    Ok(response)
}

/// The passive-health failure an upstream error counts as, if it is the backend's fault.
pub fn failure_of(err: &ProxyError) -> Option<Failure> {
    match err {
        ProxyError::UpstreamConnect { .. } => Some(Failure::Connect),
        ProxyError::UpstreamTimeout {
            connecting: true, ..
        } => Some(Failure::Connect),
        ProxyError::UpstreamTimeout {
            connecting: false, ..
        } => Some(Failure::Timeout),
        ProxyError::UpstreamProtocol { .. } | ProxyError::UpstreamInvalid { .. } => {
            Some(Failure::Reset)
        }
        ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::ClientBody(_)
        | ProxyError::Refused(..) => None,
    }
}

/// Whether another backend may be tried after `err`. A connection never established sent
/// nothing, so any request may go elsewhere; a reset before the response, or a response
/// timeout, only for idempotent methods (RFC 9110 §9.2.2) and when the pool's `retry_on` says
/// so (by default resets are retried, timeouts not: the backend may still be working).
pub fn may_retry(err: &ProxyError, method: &Method, retry_on: &RetryOn) -> bool {
    match err {
        ProxyError::UpstreamConnect { .. }
        | ProxyError::UpstreamTimeout {
            connecting: true, ..
        } => true,
        ProxyError::UpstreamProtocol { .. } | ProxyError::UpstreamInvalid { .. } => {
            retry_on.reset && is_idempotent(method)
        }
        ProxyError::UpstreamTimeout {
            connecting: false, ..
        } => retry_on.timeout && is_idempotent(method),
        ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::ClientBody(_)
        | ProxyError::Refused(..) => false,
    }
}

/// Whether the failed attempt never reached the backend (no connection was made).
pub fn nothing_sent(err: &ProxyError) -> bool {
    matches!(
        err,
        ProxyError::UpstreamConnect { .. }
            | ProxyError::UpstreamTimeout {
                connecting: true,
                ..
            }
    )
}

/// Whether `method` may be repeated without changing the outcome (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
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
