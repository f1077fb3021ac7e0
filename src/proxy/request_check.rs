//! What the proxy refuses to forward, checked on the request head before anything is sent:
//! requests a backend could read differently from the proxy (RFC 9112 §3.2–3.3, §6.1), and
//! requests beyond the configured limits. Each refusal has the status NGINX gives it.

use crate::config::Limits;
use crate::error::ProxyError;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};

/// Checks the request target, `Host` and `Transfer-Encoding` of `req`, and the limits that hyper
/// does not enforce itself; returns the host the client asked for (URI authority or `Host`).
pub fn check<B: hyper::body::Body>(
    req: &Request<B>,
    limits: &Limits,
) -> Result<Option<HeaderValue>, ProxyError> {
    let uri = req.uri();
    if req.method() == Method::CONNECT {
        return Err(ProxyError::Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported\n",
        ));
    }
    // The path and query as received (the authority of an absolute-form target adds little).
    if uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > limits.max_uri_bytes {
        return Err(ProxyError::Refused(
            StatusCode::URI_TOO_LONG,
            "request target too long\n",
        ));
    }
    if req.version() >= Version::HTTP_2 {
        // HTTP/1 heads are bounded by hyper (buffer size and field count); HTTP/2 and HTTP/3
        // field counts are not.
        if req.headers().len() > limits.max_headers {
            return Err(ProxyError::Refused(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields\n",
            ));
        }
    } else if !req.body().is_end_stream() && req.body().size_hint().exact().is_none() {
        // Only a chunked body has no known length: hyper refuses any other Transfer-Encoding
        // alone, so requests with no body or a Content-Length need no look at it.
        transfer_encoding(req.headers())?;
    }
    // authority-form is for CONNECT only.
    if uri.scheme().is_none() && uri.authority().is_some() {
        return Err(ProxyError::bad_request("invalid request target\n"));
    }
    // asterisk-form is for OPTIONS only: an HTTP/1.1 target or an HTTP/2 `:path` alike (the
    // whole path-and-query compared: no scan for a query on every request).
    if uri.path_and_query().map(PathAndQuery::as_str) == Some("*")
        && req.method() != Method::OPTIONS
    {
        return Err(ProxyError::bad_request("invalid request target\n"));
    }
    host(req)
}

/// The host the client asked for: the absolute-form or HTTP/2 authority, else `Host`. One
/// `Host` at most, holding a plain `host[:port]`, and agreeing with the authority if both are
/// there; HTTP/1.1 requires one (RFC 9112 §3.2); HTTP/1.0 may omit it.
fn host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::bad_request("more than one Host header\n"));
    }
    if let Some(host) = host {
        if !is_plain_authority(host.as_bytes()) {
            return Err(ProxyError::bad_request("invalid Host header\n"));
        }
    }
    if let Some(authority) = req.uri().authority() {
        if host.is_some_and(|h| {
            !h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        }) {
            return Err(ProxyError::bad_request(
                "Host does not match the request target\n",
            ));
        }
        if authority.as_str().contains('@') {
            return Err(ProxyError::bad_request("invalid request target\n"));
        }
        return HeaderValue::from_str(authority.as_str())
            .map(Some)
            .map_err(|_| ProxyError::bad_request("invalid authority\n"));
    }
    match host {
        Some(host) => Ok(Some(host.clone())),
        None if req.version() == Version::HTTP_11 => {
            Err(ProxyError::bad_request("missing Host header\n"))
        }
        None => Ok(None),
    }
}

/// `host[:port]` with nothing else: no list, user info, path, query or white space.
fn is_plain_authority(value: &[u8]) -> bool {
    !value.is_empty()
        && value.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~' | b'%')
        })
}

/// Only `Transfer-Encoding: chunked`, once, is forwarded: another coding is not implemented
/// here (501, as NGINX answers), and a repeated or malformed list is refused (400), since a
/// backend might frame it differently.
fn transfer_encoding(headers: &HeaderMap) -> Result<(), ProxyError> {
    let mut lines = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Ok(());
    };
    let repeated = lines.next().is_some();
    if !repeated
        && first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Ok(());
    }
    let unknown_coding = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"chunked"));
    Err(if unknown_coding {
        ProxyError::Refused(
            StatusCode::NOT_IMPLEMENTED,
            "transfer coding not implemented\n",
        )
    } else {
        ProxyError::bad_request("invalid Transfer-Encoding\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of unknown length, as hyper gives for a chunked request.
    struct Chunked;

    impl hyper::body::Body for Chunked {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>>
        {
            std::task::Poll::Ready(None)
        }
    }

    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<Chunked> {
        let mut req = Request::builder().method(method).uri(target);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Chunked).unwrap()
    }

    fn status(req: &Request<Chunked>) -> u16 {
        match check(req, &Limits::default()) {
            Ok(_) => 200,
            Err(err) => err.status().as_u16(),
        }
    }

    #[test]
    fn refuses_what_a_backend_could_read_differently() {
        for (method, target, headers, expected) in [
            ("GET", "/", &[("host", "a.test")][..], 200),
            (
                "GET",
                "/",
                &[("host", "a.test"), ("host", "b.test")][..],
                400,
            ),
            ("GET", "/", &[("host", "a.test, b.test")][..], 400),
            ("GET", "/", &[("host", "user@a.test")][..], 400),
            ("GET", "/", &[("host", "a.test/x")][..], 400),
            ("GET", "/", &[("host", "a .test")][..], 400),
            ("GET", "http://a.test/x", &[("host", "a.test")][..], 200),
            ("GET", "http://a.test/x", &[("host", "b.test")][..], 400),
            ("CONNECT", "a.test:443", &[("host", "a.test:443")][..], 405),
            ("CONNECT", "/path", &[("host", "a.test")][..], 405),
            ("GET", "a.test:443", &[("host", "a.test:443")][..], 400),
            ("OPTIONS", "*", &[("host", "a.test")][..], 200),
            ("GET", "*", &[("host", "a.test")][..], 400),
            (
                "POST",
                "/",
                &[("host", "a"), ("transfer-encoding", "chunked")][..],
                200,
            ),
            (
                "POST",
                "/",
                &[("host", "a"), ("transfer-encoding", "chunked, chunked")][..],
                400,
            ),
            (
                "POST",
                "/",
                &[("host", "a"), ("transfer-encoding", ",chunked")][..],
                400,
            ),
            (
                "POST",
                "/",
                &[("host", "a"), ("transfer-encoding", "gzip, chunked")][..],
                501,
            ),
            (
                "POST",
                "/",
                &[
                    ("host", "a"),
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ][..],
                400,
            ),
        ] {
            let req = request(method, target, headers);
            assert_eq!(status(&req), expected, "{method} {target} {headers:?}");
        }
    }

    #[test]
    fn asterisk_form_is_for_options_only_over_http2_too() {
        let over_h2 = |method: &str| {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(http::uri::Scheme::HTTP);
            uri.authority = Some(http::uri::Authority::from_static("a.test"));
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("*"));
            Request::builder()
                .method(method)
                .version(Version::HTTP_2)
                .uri(http::Uri::from_parts(uri).unwrap())
                .body(Chunked)
                .unwrap()
        };
        assert_eq!(status(&over_h2("GET")), 400);
        assert_eq!(status(&over_h2("OPTIONS")), 200);
    }

    #[test]
    fn a_long_target_is_refused_414() {
        let target = format!("/{}", "a".repeat(8 * 1024));
        assert_eq!(status(&request("GET", &target, &[("host", "a")])), 414);
        let fits = format!("/{}", "a".repeat(8 * 1024 - 1));
        assert_eq!(status(&request("GET", &fits, &[("host", "a")])), 200);
    }
}
