//! Who may use the admin API. With a token: the bearer token may do everything, the read-only
//! token only GET and HEAD. Without one (loopback only), a browser must not be able to drive
//! it: `Host` must name the admin listener (against DNS rebinding), and requests that change
//! something refuse another `Origin`, cross-site fetches and the content types a form or a
//! simple cross-origin request can send. No CORS header is ever sent.

use super::AdminState;
use super::reply::Rejection;
use http::{Method, Request, StatusCode, header};
use std::net::SocketAddr;

/// Admits `req`, or says why not.
pub(super) fn admit<B>(req: &Request<B>, state: &AdminState) -> Result<(), Rejection> {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(token) = &state.token else {
        return same_origin(req, state.addr, changes);
    };
    if token.authorizes(req.headers()) {
        return Ok(());
    }
    let reads = state
        .read_token
        .as_ref()
        .is_some_and(|read| read.authorizes(req.headers()));
    match (reads, changes) {
        (true, false) => Ok(()),
        (true, true) => Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "the read-only token cannot change anything",
        )),
        (false, _) => Err(Rejection {
            www_authenticate: true,
            ..Rejection::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
        }),
    }
}

fn same_origin<B>(req: &Request<B>, addr: SocketAddr, changes: bool) -> Result<(), Rejection> {
    let forbidden = |message: &str| Err(Rejection::new(StatusCode::FORBIDDEN, message));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(|host| names_listener(host, addr)) {
        return forbidden("Host must be the admin listener's address or localhost");
    }
    if !changes {
        return Ok(());
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| names_listener(o, addr));
        if !own {
            return forbidden("cross-origin requests cannot change anything");
        }
    }
    if req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site")
    {
        return forbidden("cross-site requests cannot change anything");
    }
    let simple_content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            )
        });
    if simple_content_type {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/json (or no body): form content types are refused",
        ));
    }
    Ok(())
}

/// Whether `host` (`name[:port]`) is the admin listener: `localhost` or its own IP, and its
/// port when one is given.
fn names_listener(host: &str, addr: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let port_matches = port.is_none_or(|p| p.parse::<u16>() == Ok(addr.port()));
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let ip_matches = name
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == addr.ip() || (ip.is_loopback() && addr.ip().is_loopback()));
    port_matches && (name.eq_ignore_ascii_case("localhost") || ip_matches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listener_or_localhost_is_a_valid_host() {
        let addr: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        for host in [
            "127.0.0.1:9901",
            "localhost:9901",
            "localhost",
            "LOCALHOST:9901",
            "[::1]:9901",
            "127.0.0.1",
        ] {
            assert!(names_listener(host, addr), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9901",
            "127.0.0.1:80",
            "localhost.evil.example:9901",
            "10.0.0.1:9901",
        ] {
            assert!(!names_listener(host, addr), "{host}");
        }
    }
}
