//! Phase 3, route: the request's host, path, method, headers and query find its route in the
//! snapshot. A route that answers itself ends the request here; otherwise its pool is found and
//! what the request needs of the snapshot's settings is copied out, so that the caller can
//! drop the snapshot's guard before anything waits.

use super::exchange::Exchange;
use super::upgrade::TunnelLimits;
use crate::error::ProxyError;
use crate::route::access::Gate;
use crate::route::{Answer, Asked, Policies, Target};
use crate::snapshot::{Pool, Snapshot};
use crate::upstream::pool::Dial;
use http::{HeaderValue, Request};
use std::sync::Arc;
use std::time::Duration;

/// Where a matched route sends the request.
pub enum Reached {
    /// To a pool.
    Pool(Routed),
    /// Nowhere: the route answers it.
    Answer(Arc<Answer>),
}

/// The route's pool and the settings the request runs under.
pub struct Routed {
    /// Where the request goes.
    pub pool: Arc<Pool>,
    /// What the request needs of the snapshot.
    pub settings: RequestSettings,
}

/// What one request needs of the snapshot's settings, copied out so the guard can go. Only
/// these are kept: everything bound here lives in the request's future, which is moved
/// several times per request.
pub struct RequestSettings {
    /// `timeouts.request`: from the first attempt to response headers, across retries.
    pub request: Option<Duration>,
    /// `timeouts.response_header`: the backend's longest silence before its response.
    pub response_header: Duration,
    /// `timeouts.request_body`: the client's longest silence while sending its body.
    pub request_body: Duration,
    /// The route's `max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// What to do with header names containing underscores.
    pub underscores: crate::config::UnderscoreHeaders,
    /// Whether the route passes WebSocket upgrades.
    pub websocket: bool,
    /// How connections to backends are opened.
    pub dial: Dial,
    /// Limits of an upgraded connection's tunnel.
    pub tunnel: TunnelLimits,
    /// The route's rewrites and header edits, if it has any.
    pub policies: Option<Arc<Policies>>,
}

/// Why a request goes no further than its route: it failed, or its route answers it.
pub enum Early {
    /// An error answers it.
    Failed(ProxyError),
    /// Its route answers it (a redirect, a fixed response).
    Answer(Arc<Answer>),
    /// It is a CORS preflight its route answers: 204 with these headers.
    Preflight(Box<http::HeaderMap>),
    /// The route's access policies answer it (401, 429, the auth service's refusal).
    Reply(Box<http::Response<super::ProxyBody>>),
}

impl From<ProxyError> for Early {
    fn from(err: ProxyError) -> Self {
        Self::Failed(err)
    }
}

/// The route for `req` (to `host`), counted in `exchange`, with its access policies; a 404
/// when none matches.
#[inline]
pub fn route<'s, B>(
    snapshot: &'s Snapshot,
    host: Option<&HeaderValue>,
    req: &Request<B>,
    exchange: &mut Exchange,
) -> Result<(Reached, Option<&'s Arc<Gate>>), Early> {
    let asked = Asked {
        method: req.method(),
        headers: req.headers(),
        query: req.uri().query(),
    };
    let route = snapshot
        .router
        .find(
            host.and_then(|h| h.to_str().ok()),
            // `OPTIONS *` asks about the server as a whole: it goes where `/` goes.
            match req.uri().path() {
                "*" => "/",
                path => path,
            },
            &asked,
        )
        .ok_or(ProxyError::NoRoute)?;
    if let Some(rules) = &route.ip_rules {
        let admitted = exchange
            .client_ip()
            .is_some_and(|ip| crate::route::client::admits(rules, ip));
        if !admitted {
            exchange.record.route = Some(Arc::clone(&route.name));
            return Err(ProxyError::Forbidden.into());
        }
    }
    let (pool, slot) = match &route.target {
        Target::Pool { pool, slot } => (*pool, *slot),
        Target::Answer(answer) => {
            exchange.answered(&route.name, &answer.metrics);
            return Ok((Reached::Answer(Arc::clone(answer)), route.gate.as_ref()));
        }
    };
    let pool = Arc::clone(&snapshot.pools[pool]);
    exchange.routed(&route.name, slot, &pool.name, &pool.policy.traffic);
    let timeouts = &*snapshot.timeouts;
    let settings = RequestSettings {
        request: timeouts.request,
        response_header: timeouts.response_header,
        request_body: timeouts.request_body,
        max_body_bytes: route.max_body_bytes,
        underscores: snapshot.limits.underscore_headers,
        websocket: route.websocket,
        dial: Dial::from(timeouts),
        tunnel: TunnelLimits {
            idle: timeouts.tunnel_idle,
            drain: timeouts.shutdown,
        },
        policies: route.policies.clone(),
    };
    Ok((
        Reached::Pool(Routed { pool, settings }),
        route.gate.as_ref(),
    ))
}
