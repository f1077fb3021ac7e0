//! The floor under `benches/instructions.sh`'s `switchyard-policies` row: what http itself
//! charges for the work that route adds to a request, with no code of ours around it. The
//! rewritten target parsed (`/api/items` stripped to `/items`), `X-Forwarded-Prefix` and the
//! route's two request header rules inserted into the request's map, its response header rule
//! into the response's, and every field written as hyper's HTTP/1.1 encoder writes them.
//!
//! `policy_floor N with|without` runs N requests' worth with or without that work; the
//! difference in instructions under callgrind, over N, is the floor (`benches/policy-floor.sh`).
//! Maps are made with room to spare, and values are static or already shared, so no allocation
//! is counted: only hashing, inserting, parsing and writing.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use std::hint::black_box;

/// The headers of a benchmark request once the forwarding headers are set, with room as hyper
/// leaves it (no growth either way).
fn request_headers(request_id: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(16);
    headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:18392"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert(
        "x-forwarded-host",
        HeaderValue::from_static("127.0.0.1:18392"),
    );
    headers.insert("x-request-id", request_id.clone());
    headers
}

/// Every field, as hyper's HTTP/1.1 encoder writes them.
fn write(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: policy_floor N with|without";
    let n: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let with = match args.next().as_deref() {
        Some("with") => true,
        Some("without") => false,
        _ => panic!("{usage}"),
    };
    let prefix = HeaderName::from_static("x-forwarded-prefix");
    let env = HeaderName::from_static("x-env");
    let request = HeaderName::from_static("x-request");
    let proxy = HeaderName::from_static("x-proxy");
    let (prefix_value, env_value, proxy_value) = (
        HeaderValue::from_static("/api"),
        HeaderValue::from_static("bench"),
        HeaderValue::from_static("switchyard"),
    );
    // Shared, as the proxy's request id is (a cut of a larger buffer).
    let request_id = {
        let id = Bytes::from(b"b848803054093e68646a5cf5464852bd".to_vec());
        let _shared = id.clone();
        HeaderValue::from_maybe_shared(id).expect("a valid value")
    };
    let mut out = Vec::with_capacity(4096);
    for _ in 0..n {
        let mut req = black_box(request_headers(&request_id));
        let mut resp = black_box(HeaderMap::with_capacity(8));
        resp.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        out.clear();
        if with {
            let target = PathAndQuery::from_maybe_shared(Bytes::from_static(black_box(b"/items")));
            black_box(&target);
            req.insert(&prefix, prefix_value.clone());
            req.insert(&env, env_value.clone());
            req.append(&request, request_id.clone());
            resp.insert(&proxy, proxy_value.clone());
        }
        write(&mut out, &req);
        write(&mut out, &resp);
        black_box(&out);
        drop(black_box(req));
        drop(black_box(resp));
    }
}
