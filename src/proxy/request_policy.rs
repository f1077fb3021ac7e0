//! Phase 4, request policies: what the proxy does to a request before it goes upstream. Today
//! the forwarding headers (`Forwarded`, `X-Forwarded-*`, hop-by-hop removal) and the
//! WebSocket handshake; a route's own policies are compiled into its `Route` when the config
//! is applied and run here in a fixed order, so a route without them pays nothing.

use super::downstream::Downstream;
use super::headers;
use super::routing::RequestSettings;
use super::upgrade;
use crate::error::ProxyError;
use crate::snapshot::Pool;
use http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

/// What the request policies leave for the attempts besides the rewritten request.
pub struct Applied {
    /// Whether the client named no host (an HTTP/1.0 client may not): each attempt then
    /// names its backend.
    pub hostless: bool,
    /// The client's side of a WebSocket handshake the route lets through.
    pub upgrade: Option<OnUpgrade>,
}

/// Applies the request policies to `req` (in place: the request is not moved), bound for
/// `pool`.
#[inline]
pub fn apply(
    req: &mut Request<Incoming>,
    host: Option<HeaderValue>,
    pool: &Pool,
    settings: &RequestSettings,
    downstream: &Downstream,
) -> Result<Applied, ProxyError> {
    let to_h2 = pool.policy.upstream.config.protocol.is_h2();
    // A WebSocket handshake passes only to HTTP/1.1 backends, from HTTP/1.1 clients.
    let upgrade = if settings.websocket && !to_h2 {
        upgrade::handshake(req)
    } else {
        None
    };
    let hostless = host.is_none();
    let version = req.version();
    let headers = req.headers_mut();
    headers::prepare_request(
        headers,
        version,
        host,
        downstream,
        settings.underscores,
        to_h2,
    )?;
    if upgrade.is_some() {
        upgrade::restore(headers);
    }
    Ok(Applied { hostless, upgrade })
}
