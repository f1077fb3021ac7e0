//! Response compression, a route policy: the encoding chosen from the client's
//! `Accept-Encoding` (q-values, then the route's order), only for listed content types above a
//! minimum size, never for what is already encoded, `no-transform`, ranges, `HEAD`, 204 or
//! 304. The body is compressed as it streams (`stream.rs`), flushed whenever the backend pauses,
//! so a `text/event-stream`'s first event reaches the client at once; nothing is buffered whole.

use crate::config::{Compression, Encoding};
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, StatusCode};

mod stream;
#[cfg(test)]
mod tests;

pub use stream::{Compressing, Encoder};

/// The encoding to use for a response to a request with `accept` (its `Accept-Encoding`),
/// among the route's; `None`: the client takes none of them.
pub fn negotiate(compression: &Compression, accept: Option<&HeaderValue>) -> Option<Encoding> {
    let accept = accept?.to_str().ok()?;
    let mut best: Option<(Encoding, u16, usize)> = None;
    for (rank, &encoding) in compression.encodings.iter().enumerate() {
        let q = quality(accept, encoding.as_str());
        if q == 0 {
            continue;
        }
        if best.is_none_or(|(_, best_q, _)| q > best_q) {
            best = Some((encoding, q, rank));
        }
    }
    best.map(|(encoding, _, _)| encoding)
}

/// The q-value (in thousandths) `accept` gives `coding`: its own, else `*`'s, else 0.
fn quality(accept: &str, coding: &str) -> u16 {
    let mut star = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .map_or(1000, parse_q);
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

/// `0.8` as 800 (RFC 9110 §12.4.2: up to three decimals); anything malformed as 0.
fn parse_q(text: &str) -> u16 {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect();
    match (whole, digits.parse::<u16>()) {
        ("1", Ok(0)) => 1000,
        ("0", Ok(thousandths)) if fraction.len() <= 3 => thousandths,
        _ => 0,
    }
}

/// Whether a response with `status` and `headers` may be compressed under `compression` (a
/// `HEAD` request's is never asked about: it has no body).
pub fn applies(compression: &Compression, status: StatusCode, headers: &HeaderMap) -> bool {
    if matches!(
        status,
        StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
    ) || status.is_informational()
        || headers.contains_key(CONTENT_ENCODING)
        || headers.contains_key(CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    if no_transform {
        return false;
    }
    let long_enough = declared_length(headers).is_none_or(|length| length >= compression.min_bytes);
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let listed = media.is_some_and(|media| {
        compression
            .types
            .iter()
            .any(|t| match t.strip_suffix("/*") {
                Some(kind) => media.split('/').next() == Some(kind),
                None => *t == media,
            })
    });
    long_enough && listed
}

/// The body length a response head declares.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Turns the response head into that of the compressed response.
pub fn rewrite_head(headers: &mut HeaderMap, encoding: Encoding) {
    headers.insert(
        CONTENT_ENCODING,
        HeaderValue::from_static(encoding.as_str()),
    );
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    // The bytes differ from the backend's: a strong validator would promise otherwise.
    if let Some(etag) = headers.get(ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
    }
}
