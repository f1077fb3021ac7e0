//! Phase 4, request policies: what the proxy does to a request before it goes upstream. Today
//! the forwarding headers (`Forwarded`, `X-Forwarded-*`, hop-by-hop removal) and the
//! WebSocket handshake; a route's own path and host rewrites are compiled into its `Route`
//! when the config is applied and run here, so a route without them pays nothing. Its request
//! header rules run on each attempt's copy instead (`retry`), where the backend is known.

use super::downstream::Downstream;
use super::headers;
use super::routing::RequestSettings;
use super::upgrade;
use super::upgrade::ClientUpgrade;
use crate::body::ClientRequest;
use crate::error::ProxyError;
use crate::route::{HostRewriteTo, Policies};
use crate::snapshot::Pool;
use crate::upstream::pool::proxy_header::ClientAddresses;
use http::{HeaderValue, StatusCode, Uri, header};

/// What the request policies leave for the attempts besides the rewritten request.
pub struct Applied {
    /// Whether the client named no host (an HTTP/1.0 client may not): each attempt then
    /// names its backend.
    pub hostless: bool,
    /// The client's side of a WebSocket handshake the route lets through.
    pub upgrade: Option<ClientUpgrade>,
}

/// Applies the request policies to `req` (in place: the request is not moved), bound for
/// `pool`.
#[inline]
pub fn apply(
    req: &mut ClientRequest,
    host: Option<HeaderValue>,
    pool: &Pool,
    settings: &RequestSettings,
    downstream: &Downstream,
) -> Result<Applied, ProxyError> {
    let to_h2 = pool.policy.upstream.config.protocol.is_h2();
    if pool.policy.upstream.config.send_proxy_protocol.is_some() {
        if let Some(destination) = downstream.local {
            req.extensions_mut().insert(ClientAddresses {
                source: downstream.peer,
                destination,
            });
        }
    }
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
    let mut hostless = hostless;
    if let Some(policies) = &settings.policies {
        hostless |= route_policies(req, policies)?;
    }
    Ok(Applied { hostless, upgrade })
}

/// A route's own request policies: the path rewritten, then the host. Returns whether each
/// attempt names its backend as the host. The header rules are each attempt's (`retry`).
fn route_policies(req: &mut ClientRequest, policies: &Policies) -> Result<bool, ProxyError> {
    if let Some(rewrite) = &policies.rewrite {
        let rewritten = rewrite.apply(req.uri()).ok_or(ProxyError::Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the route's rewrite made an invalid request target\n",
        ))?;
        let uri = req.uri_mut();
        if uri.scheme().is_none() && uri.authority().is_none() {
            // Origin form, HTTP/1.1's: the target is the whole URI.
            *uri = Uri::from(rewritten.target);
        } else {
            let mut parts = std::mem::take(uri).into_parts();
            parts.path_and_query = Some(rewritten.target);
            *uri = Uri::from_parts(parts)
                .map_err(|_| ProxyError::bad_request("invalid request target\n"))?;
        }
        if let Some(prefix) = rewritten.stripped {
            req.headers_mut().insert(X_FORWARDED_PREFIX, prefix);
        }
    }
    Ok(match &policies.host {
        HostRewriteTo::Keep => false,
        HostRewriteTo::To(host) => {
            req.headers_mut().insert(header::HOST, host.clone());
            false
        }
        HostRewriteTo::Backend => {
            req.headers_mut().remove(header::HOST);
            true
        }
    })
}

/// The prefix a route stripped from the path (Traefik's and Caddy's header for it).
const X_FORWARDED_PREFIX: http::HeaderName = http::HeaderName::from_static("x-forwarded-prefix");
