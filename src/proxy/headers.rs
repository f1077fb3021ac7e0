//! Header rewriting: hop-by-hop headers removed both ways, `X-Forwarded-*` and `Via` added.
//! Framing headers (`Content-Length`, chunking) are left to hyper.
//!
//! Longer than most files on purpose: a quarter of it is the tests of each rewriting rule, kept
//! next to the rules.

use super::Downstream;
use crate::config::UnderscoreHeaders;
use crate::error::ProxyError;
use http::Version;
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

const HOP_BY_HOP_COUNT: usize = 9;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`). A `static`, not a `const`: a `const` array
/// of names would be built and dropped at every use.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Rewrites a client request's headers for the upstream. `host` is what the client asked for
/// (URI authority or `Host`); it becomes the upstream `Host`, so HTTP/2 clients keep theirs.
pub fn prepare_request(
    headers: &mut HeaderMap,
    version: Version,
    host: Option<HeaderValue>,
    downstream: &Downstream,
    underscores: UnderscoreHeaders,
    keep_te_trailers: bool,
) -> Result<(), ProxyError> {
    if strip(headers, true, keep_te_trailers) {
        match underscores {
            UnderscoreHeaders::Reject => {
                return Err(ProxyError::bad_request(
                    "header name with '_' in place of '-'\n",
                ));
            }
            UnderscoreHeaders::Drop => drop_underscore_aliases(headers),
        }
    }
    if version >= Version::HTTP_2 && !keep_te_trailers {
        join_cookies(headers);
    }
    append_forwarded_for(headers, &downstream.forwarded_for);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if downstream.tls.is_some() {
            "https"
        } else {
            "http"
        }),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host.clone());
        if headers.get(header::HOST) != Some(&host) {
            headers.insert(header::HOST, host);
        }
    }
    headers.append(header::VIA, via(version));
    Ok(())
}

/// Joins the `cookie` fields an HTTP/2 client may split a cookie header into, with `; `, for an
/// HTTP/1.1 backend, which expects one (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for field in &headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(field.as_bytes());
    }
    // Valid fields joined by `; ` make a valid field.
    if let Ok(joined) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(header::COOKIE, joined);
    }
}

/// Removes the headers `underscore_alias` finds; allocates, but only for such rare requests.
fn drop_underscore_aliases(headers: &mut HeaderMap) {
    let aliases: Vec<HeaderName> = headers
        .keys()
        .filter(|name| underscore_alias(name))
        .cloned()
        .collect();
    for name in aliases {
        headers.remove(name);
    }
}

/// Whether `name` reads as a framing or hop-by-hop name once `_` is taken for `-`, as some
/// servers (and CGI-style environments) do: `Transfer_Encoding` must not reach them.
fn underscore_alias(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content_length"
            | "transfer_encoding"
            | "keep_alive"
            | "proxy_connection"
            | "proxy_authenticate"
            | "proxy_authorization"
    )
}

/// Rewrites an upstream response's headers for the client.
pub fn prepare_response(headers: &mut HeaderMap, version: Version) {
    strip_hop_by_hop(headers);
    headers.append(header::VIA, via(version));
}

/// Removes the standard hop-by-hop headers and every header named in `Connection`.
#[inline]
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, false, false);
}

/// `strip_hop_by_hop`; with `find_aliases` (requests only) also returns whether a name reads as
/// a framing or hop-by-hop one with `_` for `-` (`underscore_alias`), found in the same pass.
/// With `keep_te_trailers` (requests to HTTP/2 backends), `te: trailers` is kept: it is the one
/// value HTTP/2 allows, and how gRPC clients say they read trailers.
#[inline(always)]
fn strip(headers: &mut HeaderMap, find_aliases: bool, keep_te_trailers: bool) -> bool {
    // One pass over the names (no hashing) finds which hop-by-hop headers are present, so only
    // those are removed.
    let mut present = [false; HOP_BY_HOP_COUNT];
    let mut aliased = false;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
        } else if find_aliases {
            aliased |= underscore_alias(name);
        }
    }
    if !present.contains(&true) {
        return aliased;
    }
    if present == ONLY_CONNECTION && strip_plain_connection(headers) {
        return aliased;
    }
    // Allocates only when `Connection` names a non-standard header, which is rare.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.is_empty()
                || HOP_BY_HOP
                    .iter()
                    .any(|h| token.eq_ignore_ascii_case(h.as_str()))
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    let te_trailers = keep_te_trailers
        && present[TE]
        && headers
            .get(header::TE)
            .is_some_and(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for (name, _) in HOP_BY_HOP
        .iter()
        .zip(&present)
        .filter(|(_, present)| **present)
    {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    aliased
}

/// The position of `TE` in `HOP_BY_HOP`.
const TE: usize = 5;

/// `present` when `Connection` is the only hop-by-hop header.
const ONLY_CONNECTION: [bool; HOP_BY_HOP_COUNT] = {
    let mut only = [false; HOP_BY_HOP_COUNT];
    only[0] = true;
    only
};

/// The usual case, a `Connection` of just `keep-alive` or `close` (it names no other header):
/// removed with one lookup. Returns false, changing nothing, for any other `Connection`.
fn strip_plain_connection(headers: &mut HeaderMap) -> bool {
    let Entry::Occupied(entry) = headers.entry(header::CONNECTION) else {
        return false;
    };
    let plain = entry.iter().all(|value| {
        let value = value.as_bytes().trim_ascii();
        value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close")
    });
    if plain {
        entry.remove();
    }
    plain
}

/// The position of `name` in `HOP_BY_HOP`: a match on the text, which compiles to a switch on
/// the length, is cheaper than comparing with each name in turn.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let index = match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "transfer-encoding" => 7,
        "upgrade" => 8,
        _ => return None,
    };
    debug_assert_eq!(HOP_BY_HOP[index], name);
    Some(index)
}

/// Appends the client address to `X-Forwarded-For`, joining earlier hops into one line.
fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    let mut earlier = match headers.entry(X_FORWARDED_FOR) {
        // The usual case: the connection's preformatted value, shared, no allocation.
        Entry::Vacant(entry) => {
            entry.insert(client.clone());
            return;
        }
        Entry::Occupied(entry) => entry,
    };
    let mut value = Vec::with_capacity(64);
    for hop in earlier.iter() {
        value.extend_from_slice(hop.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(client.as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        earlier.insert(value);
    }
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 switchyard",
        Version::HTTP_10 => "1.0 switchyard",
        Version::HTTP_2 => "2 switchyard",
        Version::HTTP_3 => "3 switchyard",
        _ => "1.1 switchyard",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn downstream() -> Downstream {
        Downstream::new("192.0.2.7:5000".parse().unwrap(), None)
    }

    #[test]
    fn removes_standard_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn a_plain_connection_header_goes_and_a_naming_one_takes_its_names_along() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "Keep-Alive".parse().unwrap());
        h.append(header::CONNECTION, "close".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(!h.contains_key(header::CONNECTION));
        assert_eq!(h.len(), 1);
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "close".parse().unwrap());
        h.append(header::CONNECTION, "x-private".parse().unwrap());
        h.insert("x-private", "secret".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn te_trailers_is_kept_only_when_asked_for() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, "trailers".parse().unwrap());
        strip(&mut h, false, true);
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        strip(&mut h, false, false);
        assert!(h.is_empty());
        h.insert(header::TE, "gzip".parse().unwrap());
        strip(&mut h, false, true);
        assert!(h.is_empty(), "only trailers passes");
    }

    #[test]
    fn every_hop_by_hop_name_has_its_index() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_by_hop_index(&header::HOST), None);
    }

    #[test]
    fn forwarded_for_appends_the_client_to_earlier_hops() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.1".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.2".parse().unwrap());
        prepare_request(
            &mut h,
            Version::HTTP_11,
            None,
            &downstream(),
            UnderscoreHeaders::Drop,
            false,
        )
        .unwrap();
        assert_eq!(h["x-forwarded-for"], "203.0.113.1, 198.51.100.2, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[header::VIA], "1.1 switchyard");
    }

    #[test]
    fn http2_authority_becomes_the_upstream_host() {
        let mut h = HeaderMap::new();
        prepare_request(
            &mut h,
            Version::HTTP_2,
            Some("example.com".parse().unwrap()),
            &downstream(),
            UnderscoreHeaders::Drop,
            false,
        )
        .unwrap();
        assert_eq!(h[header::HOST], "example.com");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h[header::VIA], "2 switchyard");
    }
}
