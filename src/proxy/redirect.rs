//! Answers the proxy gives without a backend: a plain-HTTP listener's redirect to HTTPS (308,
//! so the method and body are kept, to the same host and path: NGINX's
//! `return 308 https://$host$request_uri`), and the redirects and fixed responses of routes
//! that answer themselves.

use super::ProxyBody;
use crate::config::Redirect;
use crate::error::ProxyError;
use crate::live_certs::{HTTP01_PREFIX, LiveCerts};
use crate::route::{Answer, AnswerKind};
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, header};

/// The answer to an ACME http-01 validation of one of the tokens in `live`, before routing and
/// redirects; `None` for every other request (an unknown token too: it may be a backend's own).
pub fn acme_http01<B>(req: &Request<B>, live: &LiveCerts) -> Option<Response<ProxyBody>> {
    let token = req.uri().path().strip_prefix(HTTP01_PREFIX)?;
    let answer = live.http01(token)?;
    let mut response = Response::new(ProxyBody::local(Bytes::from(answer)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(response)
}

/// The 308 that sends `req` to `https://host[:port]/path?query`; 400 without a usable host.
pub fn to_https<B>(req: &Request<B>, port: u16) -> Response<ProxyBody> {
    let Some(location) = location(req, port) else {
        return super::error_response(&ProxyError::bad_request("missing or invalid Host\n"));
    };
    let mut response = Response::new(ProxyBody::local(Bytes::from_static(b"")));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn location<B>(req: &Request<B>, port: u16) -> Option<HeaderValue> {
    let authority = authority(req)?;
    let host = authority.host();
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    HeaderValue::try_from(url).ok()
}

/// The host (and port) the client asked for: the URI's authority (HTTP/2), else `Host`.
fn authority<B>(req: &Request<B>) -> Option<Authority> {
    let authority = match req.uri().authority() {
        Some(authority) => authority.clone(),
        None => req
            .headers()
            .get(header::HOST)?
            .to_str()
            .ok()?
            .parse()
            .ok()?,
    };
    (!authority.host().is_empty()).then_some(authority)
}

/// The proxy's own answer to a CORS preflight: 204 with the route's `headers`.
pub fn preflight(headers: http::HeaderMap) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    *response.headers_mut() = headers;
    response
}

/// The answer of a route that answers itself: its redirect (400 without a usable host, when
/// the redirect keeps the request's) or its fixed response.
pub fn answer<B>(answer: &Answer, req: &Request<B>, tls: bool) -> Response<ProxyBody> {
    match &answer.kind {
        AnswerKind::Respond {
            status,
            content_type,
            body,
        } => {
            let mut response = Response::new(ProxyBody::local(body.clone()));
            *response.status_mut() = *status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.clone());
            response
        }
        AnswerKind::Redirect(redirect) => {
            let Some(location) = route_location(redirect, answer.prefix.as_deref(), req, tls)
            else {
                return super::error_response(&ProxyError::bad_request(
                    "missing or invalid Host\n",
                ));
            };
            let mut response = Response::new(ProxyBody::local(Bytes::new()));
            *response.status_mut() = redirect.status;
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
    }
}

/// Where a route's redirect sends `req`: each part replaced or the request's own. The port
/// is kept only when neither scheme nor host is replaced, and a scheme's default is left out.
fn route_location<B>(
    redirect: &Redirect,
    prefix: Option<&str>,
    req: &Request<B>,
    tls: bool,
) -> Option<HeaderValue> {
    let asked = authority(req);
    let scheme = match &redirect.scheme {
        Some(scheme) => scheme.as_str(),
        None if tls => "https",
        None => "http",
    };
    let host = match &redirect.host {
        Some(host) => host.as_str(),
        None => asked.as_ref()?.host(),
    };
    let port = redirect.port.or_else(|| {
        let same_place = redirect.scheme.is_none() && redirect.host.is_none();
        asked
            .as_ref()
            .and_then(Authority::port_u16)
            .filter(|_| same_place)
    });
    let path = req.uri().path();
    let path = match (&redirect.path, &redirect.prefix, prefix) {
        (Some(path), _, _) => path.clone(),
        (None, Some(new), Some(old)) => {
            let rest = path.strip_prefix(old).unwrap_or(path);
            // `/` for `/old` turns `/old/x` into `/x`, not `//x`.
            let new = match new.strip_suffix('/') {
                Some(trimmed) if rest.starts_with('/') => trimmed,
                _ => new.as_str(),
            };
            format!("{new}{rest}")
        }
        _ => path.to_owned(),
    };
    let query = match &redirect.query {
        Some(query) if query.is_empty() => None,
        Some(query) => Some(query.as_str()),
        None => req.uri().query(),
    };
    let mut url = format!("{scheme}://{host}");
    match (scheme, port) {
        ("http", Some(80)) | ("https", Some(443)) | (_, None) => {}
        (_, Some(port)) => url += &format!(":{port}"),
    }
    url += &path;
    if let Some(query) = query {
        url += "?";
        url += query;
    }
    HeaderValue::try_from(url).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(host: &str, target: &str, port: u16) -> Option<String> {
        let req = Request::builder()
            .uri(target)
            .header(header::HOST, host)
            .body(())
            .unwrap();
        location(&req, port).map(|l| l.to_str().unwrap().to_owned())
    }

    #[test]
    fn keeps_host_and_path_and_replaces_the_port() {
        assert_eq!(
            redirect("a.test:8080", "/x?y=1", 443).as_deref(),
            Some("https://a.test/x?y=1")
        );
        assert_eq!(
            redirect("a.test", "/", 8443).as_deref(),
            Some("https://a.test:8443/")
        );
        assert_eq!(
            redirect("[::1]:80", "/p", 443).as_deref(),
            Some("https://[::1]/p")
        );
        assert_eq!(redirect("bad host", "/", 443), None);
    }
}
