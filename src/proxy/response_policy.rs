//! Phase 7, response policies: what the proxy does to a backend's response before the client
//! gets it. Today the response headers the proxy owns (hop-by-hop removal, `Via`) and the
//! switch of an upgraded connection to a tunnel; then a route's own response policies (`route`):
//! header edits, CORS, compression.

use super::body::ProxyBody;
use super::exchange::Exchange;
use super::retry::Forwarded;
use super::{headers, upgrade};
use hyper::body::Body as _;

/// The client's response for what a backend answered, noted in `exchange`.
#[inline]
pub fn apply(
    forwarded: Forwarded,
    exchange: &mut Exchange,
    tunnels: &upgrade::Tunnels,
) -> http::Response<ProxyBody> {
    let Forwarded {
        response,
        in_flight,
        lease,
        upgrade,
    } = forwarded;
    exchange.record.upstream_status = Some(response.status().as_u16());
    if let Some((client, limits)) = upgrade {
        return upgrade::switch(response, client, in_flight, limits, tunnels);
    }
    let (mut parts, body) = response.into_parts();
    if body.is_end_stream() {
        // A gRPC error answered with headers only ("trailers-only").
        exchange.record.grpc_status = crate::body::grpc_status(&parts.headers);
    }
    headers::prepare_response(&mut parts.headers, parts.version);
    if let Some(cookie) = exchange.set_cookie.take() {
        parts.headers.append(http::header::SET_COOKIE, cookie);
    }
    http::Response::from_parts(parts, ProxyBody::upstream(body, in_flight, lease))
}

/// A route's own response policies, in order: header edits, CORS for a request from
/// `origin`, then compression with `encoding` (the coding the client takes, if any). In
/// place: a response is large, and moving it in and out costs more than the edits.
pub fn route(
    response: &mut http::Response<ProxyBody>,
    policies: &crate::route::Policies,
    vars: &crate::route::Vars<'_>,
    origin: Option<&http::HeaderValue>,
    encoding: Option<crate::config::Encoding>,
) {
    policies.respond(response.headers_mut(), vars, origin);
    if let (Some(encoding), Some(compression)) = (encoding, &policies.compress) {
        compress(response, encoding, compression);
    }
}

/// Compresses `response` with `encoding`, when the route's rules let it be.
fn compress(
    response: &mut http::Response<ProxyBody>,
    encoding: crate::config::Encoding,
    compression: &crate::route::CompressPolicy,
) {
    let config = &compression.config;
    if !super::compress::applies(config, response.status(), response.headers()) {
        return;
    }
    let length = super::compress::declared_length(response.headers());
    let Ok(encoder) = super::compress::Encoder::new(encoding, config, length) else {
        return;
    };
    super::compress::rewrite_head(response.headers_mut(), encoding);
    let counters = compression.counters[encoding as usize].clone();
    response.body_mut().compress(encoder, counters);
}
