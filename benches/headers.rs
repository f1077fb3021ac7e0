//! Header rewriting of a typical browser request and response.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Version};
use std::hint::black_box;
use switchyard::config::UnderscoreHeaders;
use switchyard::proxy::Downstream;
use switchyard::proxy::headers::{prepare_request, prepare_response};

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("cookie", "session=4f8a9c; theme=dark"),
        ("x-forwarded-for", "203.0.113.9"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "5120"),
        ("cache-control", "private, max-age=0"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("date", "Sat, 21 Nov 2026 22:00:00 GMT"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn bench(c: &mut Criterion) {
    let downstream = Downstream::new("192.0.2.7:51000".parse().unwrap(), None);
    let host = HeaderValue::from_static("shop.example.com");
    c.bench_function("prepare_request", |b| {
        b.iter_batched(
            request_headers,
            |mut h| {
                prepare_request(
                    &mut h,
                    Version::HTTP_11,
                    Some(host.clone()),
                    &downstream,
                    UnderscoreHeaders::Drop,
                    false,
                )
                .expect("no underscore names");
                black_box(h)
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("prepare_response", |b| {
        b.iter_batched(
            response_headers,
            |mut h| {
                prepare_response(&mut h, Version::HTTP_11);
                black_box(h)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
