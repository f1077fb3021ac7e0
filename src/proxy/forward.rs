//! Sending a request to a backend over its connection pool, under timeouts, and classifying
//! what went wrong: whether anything was sent, and whose fault it was.

use crate::body::{Progress, UpstreamBody};
use crate::config::Protocol;
use crate::error::{ProxyError, UpstreamError, UpstreamFault};
use crate::upstream::BackendState;
use crate::upstream::pool::proxy_header::ClientAddresses;
use crate::upstream::pool::{self, Dial, Lease, SendError, Upstream};
use futures_util::FutureExt as _;
use futures_util::future::Either;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use std::time::Duration;
use tokio::time::Instant;

/// The request for one attempt: the client's method, path and (rewritten) headers, in the
/// pool's protocol, to `backend`, which is also the host when the request named none
/// (`hostless`). On the last possible attempt the headers are moved out of `parts` rather than
/// copied: only a retry needs them again.
pub fn upstream_request(
    parts: &mut Parts,
    body: UpstreamBody,
    (backend, hostless): (&Authority, bool),
    upstream: &Upstream,
    last_attempt: bool,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let framing = body.size_hint().exact();
    let mut request = Request::new(body);
    if upstream.config.send_proxy_protocol.is_some() {
        if let Some(client) = parts.extensions.get::<ClientAddresses>() {
            request.extensions_mut().insert(*client);
        }
    }
    *request.method_mut() = parts.method.clone();
    // The client's map goes to the backend and a copy stays for a retry, not the other way:
    // hyper reuses a sent map for the next message on its connection, and a copy has no room
    // to spare, so every later insert into it would grow it again.
    *request.headers_mut() = if last_attempt {
        std::mem::take(&mut parts.headers)
    } else {
        let copy = parts.headers.clone();
        std::mem::replace(&mut parts.headers, copy)
    };
    let headers = request.headers_mut();
    if upstream.config.protocol.is_h2() {
        // HTTP/2 carries the host as `:authority`, taken from the URI; `Host` would repeat it.
        let authority = headers
            .remove(header::HOST)
            .and_then(|host| Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| backend.clone());
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(match upstream.config.protocol {
            Protocol::H2 => Scheme::HTTPS,
            Protocol::H2c | Protocol::Http1 => Scheme::HTTP,
        });
        uri.authority = Some(authority);
        uri.path_and_query = Some(path_and_query);
        *request.uri_mut() = Uri::from_parts(uri)
            .map_err(|_| ProxyError::bad_request("invalid request target\n"))?;
        *request.version_mut() = Version::HTTP_2;
        if framing.is_none() {
            request.headers_mut().remove(header::CONTENT_LENGTH);
        }
    } else {
        if hostless {
            headers.insert(
                header::HOST,
                HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(
                    backend.as_str().as_bytes(),
                ))
                .map_err(|_| ProxyError::bad_request("invalid host\n"))?,
            );
        }
        canonical_framing(headers, framing);
        // Origin form: the connection is to the backend already.
        *request.uri_mut() = Uri::from(path_and_query);
        *request.version_mut() = Version::HTTP_11;
    }
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

/// How long an attempt waits for its response: until the backend has been silent for
/// `silence` (`timeouts.response_header`), within the request's `deadline`. While the proxy
/// waits on the client's streamed `body` the backend is not silent, it is waiting too.
pub struct ResponseWait<'a> {
    /// The backend's longest silence.
    pub silence: Duration,
    /// The whole request's deadline (`timeouts.request`), if any.
    pub deadline: Option<Instant>,
    /// A streamed client body, whose reads tell the client's waits from the backend's.
    pub body: Option<&'a Progress>,
}

impl ResponseWait<'_> {
    /// When the wait ends if the backend stays silent from `from` on.
    fn limit(&self, from: Instant) -> Instant {
        let at = from + self.silence; // settings are at most a year: no overflow
        self.deadline.map_or(at, |deadline| deadline.min(at))
    }

    /// Runs `exchange`, which sends the streamed `body`, to its end, or `None` when the
    /// backend was silent too long or the deadline passed. A deadline that strikes while the
    /// client's body is due is the client's fault, recorded on the body.
    async fn watch<F: Future>(self, body: &Progress, exchange: F) -> Option<F::Output> {
        let start = Instant::now();
        tokio::pin!(exchange);
        let timer = tokio::time::sleep_until(self.limit(start));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                out = &mut exchange => return Some(out),
                () = &mut timer => {
                    let now = Instant::now();
                    if self.deadline.is_some_and(|deadline| deadline <= now) {
                        if body.waiting_on_client() {
                            body.blame_client_for_timeout();
                        }
                        return None;
                    }
                    match body.backend_silent_since(start) {
                        Some(since) if self.limit(since) <= now => return None,
                        Some(since) => timer.as_mut().reset(self.limit(since)),
                        None => timer.as_mut().reset(self.limit(now)),
                    }
                }
            }
        }
    }
}

/// Sends one attempt on `backend`'s pool; maps failures to connect (502), saturation (503),
/// protocol (502) or timeout (504).
///
/// Not an `async fn`, so the request is held once, in the pool's future, not here as well.
pub fn send<'a>(
    request: Request<UpstreamBody>,
    backend: &'a BackendState,
    upstream: &'a Upstream,
    dial: &'a Dial,
    wait: ResponseWait<'a>,
) -> impl Future<Output = Result<(Response<Incoming>, Lease), UpstreamError>> + Send + 'a {
    let exchange = pool::send(backend, upstream, dial, request);
    let limited = match wait.body {
        // A buffered body: one timer, nothing to tell apart.
        None => Either::Left(
            tokio::time::timeout_at(wait.limit(Instant::now()), exchange).map(Result::ok),
        ),
        // Boxed: streamed uploads are the rare case; the common one's future stays small.
        Some(body) => Either::Right(Box::pin(wait.watch(body, exchange))),
    };
    // A combinator, not an `async` block, which would hold the future twice.
    limited.map(move |outcome| classify(outcome, backend))
}

/// The attempt's result for what became of its exchange with `backend`; `None`: it timed out.
fn classify(
    outcome: Option<Result<(Response<Incoming>, Lease), SendError>>,
    backend: &BackendState,
) -> Result<(Response<Incoming>, Lease), UpstreamError> {
    // Named only on failure: a successful send takes no reference to the name.
    let name = || backend.name.clone();
    match outcome {
        Some(Ok(sent)) => Ok(sent),
        Some(Err(SendError::Connect(source))) => Err(UpstreamError::caused(
            name(),
            UpstreamFault::Connect,
            source,
        )),
        Some(Err(SendError::ConnectTimeout)) => {
            Err(UpstreamError::new(name(), UpstreamFault::ConnectTimeout))
        }
        Some(Err(SendError::Saturated)) => {
            Err(UpstreamError::new(name(), UpstreamFault::Saturated))
        }
        Some(Err(SendError::Protocol(source))) => {
            Err(UpstreamError::caused(name(), UpstreamFault::Reset, source))
        }
        None => Err(UpstreamError::new(name(), UpstreamFault::ResponseTimeout)),
    }
}

/// Refuses a response the client must not get as is, and fixes its framing: a `101` to a
/// request that did not ask to upgrade or a `Transfer-Encoding` other than one
/// `chunked` is invalid (its body is dropped unread, so hyper does not pool the connection);
/// with `chunked`, the upstream's `Content-Length` is wrong by definition and removed.
pub fn checked_response(
    mut response: Response<Incoming>,
    backend: &BackendState,
    upgrading: bool,
) -> Result<Response<Incoming>, UpstreamError> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let invalid = |reason| UpstreamError::new(backend.name.clone(), UpstreamFault::Invalid(reason));
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return if !upgrading {
            Err(invalid("unsolicited 101 Switching Protocols"))
        } else if !super::upgrade::switches_to_websocket(response.headers()) {
            // Dropped unswitched: hyper closes the connection rather than pool it.
            Err(invalid(
                "101 Switching Protocols to another protocol than websocket",
            ))
        } else {
            Ok(response)
        };
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

/// Logs `err`, a failure to connect to `backend`, at warn with its cause (a TLS verification
/// error says which): the first, then at most one line every 10 s per backend, with the count
/// left out, so an operator sees why without a flood.
pub fn log_connect_failure(err: &UpstreamError, backend: &BackendState) {
    if let Some(not_logged) = backend.connect_log.to_log() {
        tracing::warn!(
            pool = %backend.pool,
            backend = %backend.name,
            error = %crate::error::chain(err),
            not_logged,
            "cannot connect to a backend (at most one line per backend every 10 s; not_logged counts the failures since the last)"
        );
    }
}
