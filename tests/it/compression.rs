//! Response compression through the real proxy: each codec's output decodes byte-identical
//! with an independent decoder (Python's gzip, brotli and zstandard), the coding follows the
//! client's q-values, what must not be compressed is not, and a server-sent event stream's
//! first event comes through while the backend still holds the rest.

use crate::support::config::{ConfigBuilder, PoolBuilder};
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// 50 KB of JSON, varied enough that each codec has work to do.
fn json() -> Bytes {
    let items: Vec<String> = (0..1050)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"item {i}","tags":["a{}","b{}"]}}"#,
                i % 7,
                i % 13
            )
        })
        .collect();
    Bytes::from(format!("[{}]", items.join(",")))
}

/// A backend with a response per path: `/json`, `/gzipped` (already encoded), `/no-transform`,
/// `/small`, `/etag` and `/events` (one event, then the rest once `more` is notified).
async fn backend(more: Arc<Notify>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let more = Arc::clone(&more);
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let more = Arc::clone(&more);
                    async move {
                        let respond = |body: Bytes| {
                            http::Response::builder()
                                .header("content-type", "application/json; charset=utf-8")
                                .header("content-length", body.len())
                                .body(Full::new(body).map_err(|e| match e {}).boxed())
                        };
                        let answer = match req.uri().path() {
                            "/json" => respond(json()),
                            "/small" => respond(Bytes::from_static(b"{\"small\":true}")),
                            "/etag" => respond(json()).map(|mut r| {
                                r.headers_mut().insert("etag", "\"v1\"".parse().unwrap());
                                r
                            }),
                            "/no-transform" => respond(json()).map(|mut r| {
                                r.headers_mut()
                                    .insert("cache-control", "no-transform".parse().unwrap());
                                r
                            }),
                            "/gzipped" => {
                                let mut encoder = flate2::write::GzEncoder::new(
                                    Vec::new(),
                                    flate2::Compression::default(),
                                );
                                std::io::Write::write_all(&mut encoder, &json()).unwrap();
                                let body = Bytes::from(encoder.finish().unwrap());
                                respond(body).map(|mut r| {
                                    r.headers_mut()
                                        .insert("content-encoding", "gzip".parse().unwrap());
                                    r
                                })
                            }
                            _ => {
                                let (tx, rx) = tokio::sync::mpsc::channel::<
                                    Result<Frame<Bytes>, Infallible>,
                                >(4);
                                tokio::spawn(async move {
                                    let _ = tx
                                        .send(Ok(Frame::data(Bytes::from_static(
                                            b"data: first\n\n",
                                        ))))
                                        .await;
                                    more.notified().await;
                                    let _ = tx
                                        .send(Ok(Frame::data(Bytes::from_static(
                                            b"data: second\n\n",
                                        ))))
                                        .await;
                                });
                                let stream = tokio_stream_of(rx);
                                http::Response::builder()
                                    .header("content-type", "text/event-stream")
                                    .body(StreamBody::new(stream).boxed())
                            }
                        };
                        Ok::<_, Infallible>(answer.unwrap())
                    }
                });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    addr
}

/// The frames of `rx` as a stream.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A proxy compressing with `zstd`, `br` and `gzip` (its preference in that order) in front
/// of the backend.
async fn compressing_proxy() -> (TestProxy, Arc<Notify>) {
    let more = Arc::new(Notify::new());
    let addr = backend(Arc::clone(&more)).await;
    let config = ConfigBuilder::new()
        .pool(PoolBuilder::new("p").backend("b", addr, 1))
        .push_route("r", |r| {
            r.set("pool", "p")
                .set("compress", vec!["zstd", "br", "gzip"])
        });
    (TestProxy::start(&config.toml()).await, more)
}

/// GET `path` with `Accept-Encoding: accept` (if any): the response head and its raw body.
async fn fetch(
    proxy: &TestProxy,
    path: &str,
    accept: Option<&str>,
) -> (http::response::Parts, Bytes) {
    let mut req = http::Request::get(proxy.url(path));
    if let Some(accept) = accept {
        req = req.header("accept-encoding", accept);
    }
    let response = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

/// `data` decoded by Python's own decoder for `coding`.
fn python_decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let decompress = match coding {
        "gzip" => "import gzip; out = gzip.decompress(data)",
        "br" => "import brotli; out = brotli.decompress(data)",
        // A streamed frame has no content size: decode it as a stream.
        _ => {
            "import zstandard; out = zstandard.ZstdDecompressor().decompressobj().decompress(data)"
        }
    };
    let script = format!(
        "import sys; data = sys.stdin.buffer.read(); {decompress}; sys.stdout.buffer.write(out)"
    );
    // Debian's interpreter, which tests/run.sh gives the decoders.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not decode {coding}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_codec_decodes_byte_identical_with_an_independent_decoder() {
    let (proxy, _) = compressing_proxy().await;
    let original = json();
    for coding in ["gzip", "br", "zstd"] {
        let (head, body) = fetch(&proxy, "/json", Some(coding)).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.headers["content-encoding"], coding);
        assert!(head.headers.get("content-length").is_none());
        assert!(
            head.headers
                .get_all("vary")
                .iter()
                .any(|v| v == "Accept-Encoding"),
            "{:?}",
            head.headers
        );
        assert!(
            body.len() < original.len() / 3,
            "{coding}: {} bytes of {}",
            body.len(),
            original.len()
        );
        assert_eq!(python_decode(coding, &body), original.to_vec(), "{coding}");
        println!("{coding}: {} -> {} bytes", original.len(), body.len());
    }
    let scrape = metric(
        &proxy,
        "switchyard_compression_bytes_in_total{route=\"r\",encoding=\"br\"}",
    )
    .await;
    assert_eq!(scrape, Some(original.len() as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coding_follows_q_values_then_the_routes_order() {
    let (proxy, _) = compressing_proxy().await;
    let cases = [
        ("gzip;q=0.5, br;q=0.9", Some("br")),
        ("gzip, br, zstd", Some("zstd")),
        ("zstd;q=0, gzip", Some("gzip")),
        ("*", Some("zstd")),
        ("*;q=0.1, gzip;q=0.2", Some("gzip")),
        ("identity", None),
        ("deflate", None),
    ];
    for (accept, expected) in cases {
        let (head, _) = fetch(&proxy, "/json", Some(accept)).await;
        let coding = head
            .headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap());
        assert_eq!(coding, expected, "{accept}");
    }
    let (head, body) = fetch(&proxy, "/json", None).await;
    assert!(head.headers.get("content-encoding").is_none());
    assert_eq!(body, json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_compressed_passes_untouched() {
    let (proxy, _) = compressing_proxy().await;
    // Already encoded: the backend's bytes, as they were.
    let (head, body) = fetch(&proxy, "/gzipped", Some("br, gzip")).await;
    assert_eq!(head.headers["content-encoding"], "gzip");
    assert_eq!(python_decode("gzip", &body), json().to_vec());
    for path in ["/no-transform", "/small"] {
        let (head, _) = fetch(&proxy, path, Some("gzip")).await;
        assert!(head.headers.get("content-encoding").is_none(), "{path}");
        assert!(head.headers.get("content-length").is_some(), "{path}");
    }
    let head_request = http::Request::head(proxy.url("/json"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client().request(head_request).await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    // A strong validator becomes weak: the bytes are not the backend's.
    let (head, _) = fetch(&proxy, "/etag", Some("gzip")).await;
    assert_eq!(head.headers["etag"], "W/\"v1\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_streams_first_event_comes_through_while_the_backend_holds_the_rest() {
    let (proxy, more) = compressing_proxy().await;
    let req = http::Request::get(proxy.url("/events"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let sent = std::time::Instant::now();
    let response = client().request(req).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let mut body = response.into_body();
    // The backend sends the second event only once the first is in hand: were the proxy to
    // buffer, this would wait for ever (and the test time out).
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    while !String::from_utf8_lossy(decoder.get_ref()).contains("data: first\n\n") {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("the first event, flushed")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            std::io::Write::write_all(&mut decoder, &data).unwrap();
            std::io::Write::flush(&mut decoder).unwrap();
        }
    }
    println!("first event after {:?}", sent.elapsed());
    more.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    std::io::Write::write_all(&mut decoder, &rest).unwrap();
    let all = decoder.finish().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&all),
        "data: first\n\ndata: second\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_too_the_response_is_compressed_and_decodes() {
    let (proxy, _) = compressing_proxy().await;
    let (mut h2, _connection) = h2c(proxy.addr).await;
    let req = http::Request::get(format!("http://{}/json", proxy.addr))
        .header("accept-encoding", "br;q=1, gzip;q=0.5")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = h2.send_request(req).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.headers()["content-encoding"], "br");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(python_decode("br", &body), json().to_vec());
}
