//! What a failed request becomes: one debug log line and a short error response.

use super::ProxyBody;
use super::exchange::Exchange;
use crate::error::ProxyError;
use bytes::Bytes;
use http::{HeaderValue, Response, Version, header};

/// Logs a failed request. Per-request failures are logged at debug level only: under a failing backend a line per
/// request would flood the log, and the access log, the metrics and the control plane's state
/// changes (logged once) already tell the story.
pub fn log_failure(err: &ProxyError) {
    match err {
        ProxyError::Upstream(upstream) => match upstream.source.as_deref() {
            Some(source) => {
                tracing::debug!(error = %err, cause = %crate::error::chain(source), "upstream request failed")
            }
            None => tracing::debug!(error = %err, "upstream request failed"),
        },
        ProxyError::NoRoute
        | ProxyError::NoBackend { .. }
        | ProxyError::Shed { .. }
        | ProxyError::ClientBody(_)
        | ProxyError::Refused(..)
        | ProxyError::Forbidden => tracing::debug!(error = %err, "request failed"),
    }
}

/// The response for a failed request: status, short text, and `Retry-After` on 503.
/// The response for a request that failed with `err`, noted in `exchange`; after a malformed
/// HTTP/1 request the connection closes, as the stream cannot be trusted to be in sync.
pub fn failed(err: &ProxyError, version: Version, exchange: &mut Exchange) -> Response<ProxyBody> {
    log_failure(err);
    exchange.record.upstream_error = err.upstream_error();
    let mut response = error_response(err);
    if matches!(err, ProxyError::Refused(..) | ProxyError::ClientBody(_))
        && version < Version::HTTP_2
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The short response a client gets for `err`.
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
    if let ProxyError::Shed { retry_after, .. } = err {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
    } else if status == http::StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

/// Seconds a client is asked to wait when no backend is available: about one probe interval.
const RETRY_AFTER_SECS: &str = "2";
