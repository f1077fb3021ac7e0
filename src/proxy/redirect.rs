//! A plain-HTTP listener's redirect to HTTPS: 308, so the method and body are kept, to the same
//! host and path (NGINX's `return 308 https://$host$request_uri`).

use super::ProxyBody;
use crate::error::ProxyError;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

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
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let url = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
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
