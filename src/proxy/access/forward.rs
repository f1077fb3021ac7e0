//! Forward auth: before the request goes on, the same method, URI and headers (no body) go
//! to a backend of the auth pool, with `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto` and
//! `-For`. A 2xx lets the request through, with the chosen headers of the answer copied onto
//! it; any other answer goes back to the client as it is (401, 403, a 302 to a login page);
//! no answer in time, or no auth backend, fails closed with `on_error`.

use super::super::headers::strip_hop_by_hop;
use super::super::routing::Early;
use super::super::{Downstream, Exchange, Proxy, ProxyBody};
use super::short;
use crate::body::ClientRequest;
use crate::body::UpstreamBody;
use crate::route::access::{Failure, ForwardGate, Gate, REMEMBERED_ANSWERS, clock};
use crate::upstream::pool::Dial;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::BodyExt as _;
use std::sync::Arc;

/// Asks the auth service about `req`; copies what it allows onto `req`.
pub(super) async fn ask(
    proxy: &Proxy,
    gate: &Gate,
    forward: &ForwardGate,
    req: &mut ClientRequest,
    downstream: &Downstream,
    exchange: &Exchange,
) -> Result<(), Early> {
    let config = &forward.config;
    // `ForwardGate::results` in its order: allowed, remembered, denied, error.
    let counted = |result: usize| forward.results[result].increment(1);
    let remember = !config.cache.is_zero();
    let digest = remember.then(|| credentials_digest(req.headers()));
    if let Some(digest) = &digest {
        if let Some((expires, copied)) = forward.remembered.pin().get(digest) {
            if *expires > clock() {
                copy(req, &config.copy_headers, copied);
                counted(REMEMBERED);
                return Ok(());
            }
        }
    }
    // Fails closed, counted in both the forward-auth and the auth-failure metrics.
    let error = || {
        counted(ERROR);
        gate.failed(Failure::ForwardError);
        unavailable(config.on_error)
    };
    // One snapshot load for the auth pool and the dial settings; the guard goes before waiting.
    let (pool, dial) = {
        let snapshot = proxy.snapshot.load();
        let pool = snapshot
            .pools
            .get(forward.pool)
            .cloned()
            .ok_or_else(error)?;
        (pool, Dial::from(&*snapshot.timeouts))
    };
    let backend = Arc::clone(pool.pick(None).ok_or_else(error)?.1);
    let protocol = pool.policy.upstream.config.protocol;
    let request = subrequest(
        req,
        config.path.as_ref(),
        downstream,
        exchange,
        protocol,
        &backend.authority,
    )
    .ok_or_else(error)?;
    let in_flight = backend.begin_request();
    let sent = crate::upstream::pool::send(&backend, &pool.policy.upstream, &dial, request);
    let (response, lease) = match tokio::time::timeout(config.timeout, sent).await {
        Ok(Ok(answer)) => answer,
        failed => {
            let why = match failed {
                Ok(Err(err)) => crate::error::chain(&err),
                _ => "timed out".to_owned(),
            };
            tracing::debug!(route = route_of(exchange), why, "forward auth: no answer");
            return Err(error());
        }
    };
    if !response.status().is_success() {
        counted(DENIED);
        gate.failed(Failure::ForwardDenied);
        let (mut head, body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let body = ProxyBody::upstream(body, in_flight, lease);
        return Err(Early::Reply(Box::new(http::Response::from_parts(
            head, body,
        ))));
    }
    let copied: Arc<[(HeaderName, HeaderValue)]> = config
        .copy_headers
        .iter()
        .filter_map(|name| Some((name.clone(), response.headers().get(name)?.clone())))
        .collect();
    // The answer's body is read (and dropped) so its connection can serve the next one.
    let read = tokio::time::timeout(config.timeout, response.into_body().collect()).await;
    if matches!(read, Ok(Ok(_))) {
        lease.release();
    }
    drop(in_flight);
    if let Some(digest) = digest {
        let remembered = forward.remembered.pin();
        if remembered.len() >= REMEMBERED_ANSWERS {
            remembered.clear();
        }
        let expires =
            clock().saturating_add(u64::try_from(config.cache.as_nanos()).unwrap_or(u64::MAX));
        remembered.insert(digest, (expires, Arc::clone(&copied)));
    }
    copy(req, &config.copy_headers, &copied);
    counted(ALLOWED);
    Ok(())
}

/// The subrequest: the client's method, URI (or the configured path) and headers, no body, in
/// the auth pool's protocol (an HTTP/2 pool takes the host as `:authority`).
fn subrequest(
    req: &ClientRequest,
    path: Option<&http::uri::PathAndQuery>,
    downstream: &Downstream,
    exchange: &Exchange,
    protocol: crate::config::Protocol,
    backend: &http::uri::Authority,
) -> Option<Request<UpstreamBody>> {
    let original = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let empty = UpstreamBody::Bytes(http_body_util::Full::new(bytes::Bytes::new()));
    let mut sub = Request::new(empty);
    *sub.method_mut() = req.method().clone();
    let target = match path {
        Some(path) => path.clone(),
        None => req.uri().path_and_query()?.clone(),
    };
    let mut headers = req.headers().clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if protocol.is_h2() {
        let authority = headers
            .remove(header::HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| backend.clone());
        *sub.uri_mut() = http::Uri::builder()
            .scheme(match protocol {
                crate::config::Protocol::H2 => "https",
                _ => "http",
            })
            .authority(authority)
            .path_and_query(target)
            .build()
            .ok()?;
        *sub.version_mut() = http::Version::HTTP_2;
    } else {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, HeaderValue::from_str(backend.as_str()).ok()?);
        }
        *sub.uri_mut() = http::Uri::from(target);
    }
    let set = |headers: &mut http::HeaderMap, name: &'static str, value: Option<HeaderValue>| {
        if let Some(value) = value {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(
        &mut headers,
        "x-forwarded-method",
        HeaderValue::from_str(req.method().as_str()).ok(),
    );
    set(
        &mut headers,
        "x-forwarded-uri",
        HeaderValue::from_str(original).ok(),
    );
    set(
        &mut headers,
        "x-forwarded-host",
        exchange.record.host.clone(),
    );
    let proto = if downstream.tls.is_some() {
        "https"
    } else {
        "http"
    };
    set(
        &mut headers,
        "x-forwarded-proto",
        Some(HeaderValue::from_static(proto)),
    );
    set(
        &mut headers,
        "x-forwarded-for",
        Some(exchange.record.client.clone()),
    );
    *sub.headers_mut() = headers;
    Some(sub)
}

/// Puts the auth service's headers on the request, never the client's own values for them.
fn copy(req: &mut ClientRequest, names: &[HeaderName], copied: &[(HeaderName, HeaderValue)]) {
    let headers = req.headers_mut();
    for name in names {
        headers.remove(name);
    }
    for (name, value) in copied {
        headers.append(name.clone(), value.clone());
    }
}

/// What identifies a client to the auth service: its `Authorization` and `Cookie` headers.
fn credentials_digest(headers: &http::HeaderMap) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            context.update(value.as_bytes());
            context.update(b"\n");
        }
        context.update(b"\0");
    }
    let digest = context.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn unavailable(status: http::StatusCode) -> Early {
    let mut response = short(status, "authentication service unavailable\n");
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    Early::Reply(Box::new(response))
}

const ALLOWED: usize = 0;
const REMEMBERED: usize = 1;
const DENIED: usize = 2;
const ERROR: usize = 3;

fn route_of(exchange: &Exchange) -> &str {
    exchange.record.route.as_deref().unwrap_or("")
}
