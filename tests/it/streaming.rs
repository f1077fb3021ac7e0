//! 64 MiB request and response bodies stream through the proxy while memory stays bounded: the
//! proxy, the fixture upstream and the client all run in this process, so its peak RSS bounds
//! what the proxy buffered. This file holds one test so no other test shares the process.

use crate::support::config::ConfigBuilder;
use crate::support::upstream::{RepeatBody, repeat_body};
use crate::support::*;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpStream;

const BODY: usize = 64 * 1024 * 1024;
/// Far below the body size: a proxy that buffered a whole body would blow through it.
const PEAK_GROWTH_LIMIT: u64 = 24 * 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

async fn send_h1(
    proxy: &TestProxy,
    req: Request<BoxBody<Bytes, Infallible>>,
) -> hyper::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender.send_request(req).await.expect("response")
}

async fn count_body(response: hyper::Response<hyper::body::Incoming>) -> usize {
    let mut body = response.into_body();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        total += frame.expect("body frame").data_ref().map_or(0, Bytes::len);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let upstream = Upstream::start("up").await;
    let proxy =
        TestProxy::start_config(&ConfigBuilder::single_pool(&[("up", upstream.addr, 1)])).await;

    // Warm up allocator arenas and connection pools, then reset the peak-RSS mark ("5" clears
    // VmHWM, see proc(5)), so the peak below is what the transfers themselves cost.
    let warm = Request::post(proxy.url("/sink"))
        .body(repeat_body(1 << 20))
        .unwrap();
    assert_eq!(
        count_body(send_h1(&proxy, warm).await).await,
        "1048576".len()
    );
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let baseline = status_kib(if reset { "VmHWM:" } else { "VmRSS:" }) * 1024;

    let upload = Request::post(proxy.url("/sink"))
        .header("content-type", "application/octet-stream")
        .body(RepeatBody { remaining: BODY }.boxed())
        .unwrap();
    let response = send_h1(&proxy, upload).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, BODY.to_string(), "upstream received every byte");

    let download = Request::get(proxy.url(&format!("/big?bytes={BODY}")))
        .body(repeat_body(0))
        .unwrap();
    let response = send_h1(&proxy, download).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        count_body(response).await,
        BODY,
        "client received every byte"
    );

    let peak = status_kib("VmHWM:") * 1024;
    let growth = peak.saturating_sub(baseline);
    println!(
        "peak RSS growth while streaming 2 x 64 MiB: {} KiB (peak reset: {reset})",
        growth / 1024
    );
    assert!(
        growth < PEAK_GROWTH_LIMIT,
        "peak RSS grew by {growth} bytes while streaming"
    );
}
