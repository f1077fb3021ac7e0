//! Phase 7, response policies: what the proxy does to a backend's response before the client
//! gets it. Today the response headers the proxy owns (hop-by-hop removal, `Via`) and the
//! switch of an upgraded connection to a tunnel; a route's own response policies run here.

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
    http::Response::from_parts(parts, ProxyBody::upstream(body, in_flight, lease))
}
