//! One HTTP/3 request: read from its stream, handed to the proxy's phases, answered on it.

use crate::body::{Http3Body, Inbound};
use crate::error::ProxyError;
use crate::proxy::{Downstream, Proxy, ProxyBody};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::Arc;

/// `Early-Data: 1` on a request forwarded from early data (RFC 8470 §5.1): a backend that
/// cannot risk a replay answers `425`.
const EARLY_DATA: http::HeaderName = http::HeaderName::from_static("early-data");

/// The request's `Content-Length`: none, or one value of digits alone. Anything else (a sign, a
/// separator, two values, a number past `u64`) is malformed, as h2 holds it for HTTP/2.
fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, ()> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let digits = value.as_bytes();
    if values.next().is_some() || digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    let length = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok());
    length.map(Some).ok_or(())
}

/// One request: read, handed to the proxy's phases, answered on its stream.
pub(super) async fn serve(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    early: bool,
    proxy: Arc<Proxy>,
    downstream: Arc<Downstream>,
) {
    let (req, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(err) => {
            tracing::debug!(%err, "HTTP/3 request refused");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    let declared = content_length(req.headers());
    let mut body = Http3Body::new(recv, declared.unwrap_or(None));
    body.look_ahead();
    let mut req = req.map(|()| Inbound::Http3(Box::new(body)));
    let response = if declared.is_err() {
        let refusal = ProxyError::bad_request("invalid Content-Length\n");
        proxy.refuse(req, &downstream, &refusal)
    } else if early && !req.method().is_safe() {
        // A replayable request that is not safe: the client sends it again after the
        // handshake (RFC 8470 §5.2).
        let refusal = ProxyError::Refused(StatusCode::TOO_EARLY, "sent in early data\n");
        proxy.refuse(req, &downstream, &refusal)
    } else {
        if early {
            req.headers_mut()
                .insert(EARLY_DATA, HeaderValue::from_static("1"));
        }
        proxy.handle(req, &downstream).await
    };
    if let Err(err) = respond(&mut send, response).await {
        tracing::debug!(%err, "HTTP/3 response not sent whole");
    }
}

/// Sends `response` on `send`: the head, the body as it streams, any trailers.
async fn respond(
    send: &mut h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    response: Response<ProxyBody>,
) -> Result<(), h3::error::StreamError> {
    let (mut parts, mut body) = response.into_parts();
    // Connection-specific fields are malformed in HTTP/3 (RFC 9114 §4.2).
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ] {
        parts.headers.remove(name);
    }
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The backend broke its body: the client must not take a cut one as whole.
            send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
            return Ok(());
        };
        match frame.into_data() {
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await
}

const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: http::HeaderName = http::HeaderName::from_static("proxy-connection");
