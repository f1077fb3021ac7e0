//! Webhook notifications against a real HTTP receiver: events arrive as the event stream's
//! JSON with the bearer token, filtered by type, retried after failures; a receiver that never
//! answers delays nothing and its overflow is counted.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use switchyard::upstream::State;

/// What the receiver kept of each POST: its `Authorization` header and its JSON body.
type Delivery = (Option<String>, Value);

/// An HTTP server recording every POST (authorization header, JSON body); it answers 500 to the
/// first `failures` requests, then 204, or never answers when `hang`.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Delivery>>>,
    attempts: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(failures: usize, hang: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (log, count) = (Arc::clone(&received), Arc::clone(&attempts));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, count) = (Arc::clone(&log), Arc::clone(&count));
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (log, count) = (Arc::clone(&log), Arc::clone(&count));
                    async move {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_owned());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = if n < failures { 500 } else { 204 };
                        if status == 204 {
                            let json = serde_json::from_slice(&body).expect("a JSON event");
                            log.lock().unwrap().push((auth, json));
                        }
                        let mut answer = http::Response::new(Full::<Bytes>::default());
                        *answer.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self {
            addr,
            received,
            attempts,
        }
    }

    fn events(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }
}

/// A proxy over one backend with one webhook to `receiver`, set up by `webhook`.
async fn proxy_notifying(
    receiver: &Receiver,
    webhook: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (TestProxy, Upstream) {
    let up = Upstream::start("up").await;
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .push_webhook("hooks", &format!("http://{}/events", receiver.addr));
    (TestProxy::start(&webhook(config).toml()).await, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_arrive_as_the_event_json_with_the_token_and_only_the_wanted_types() {
    let receiver = Receiver::start(0, false).await;
    let token = temp_dir().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (proxy, _up) = proxy_notifying(&receiver, |config| {
        config
            .set_webhook("token_file", token.display().to_string())
            .set_webhook("events", vec!["backend"])
    })
    .await;
    proxy
        .admin("POST", "/api/pools/pool/backends/up/drain", None, None)
        .await;
    proxy
        .admin(
            "PUT",
            "/api/pools/pool/backends/up/weight",
            Some(r#"{"weight": 3}"#),
            None,
        )
        .await;
    proxy
        .admin("POST", "/api/pools/pool/backends/up/undrain", None, None)
        .await;
    eventually(DEADLINE, "two backend events", || {
        receiver.events().len() == 2
    })
    .await;
    let events = receiver.events();
    for (auth, _) in &events {
        assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    }
    let summary: Vec<_> = events
        .iter()
        .map(|(_, e)| (e["type"].clone(), e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("backend".into(), "healthy".into(), "drained".into()),
            ("backend".into(), "drained".into(), "healthy".into())
        ],
        "weight events are filtered out"
    );
    assert!(
        events[0].1["id"].as_u64().is_some(),
        "the stream's id comes along"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_again_after_a_backoff() {
    let receiver = Receiver::start(2, false).await;
    let (proxy, _up) = proxy_notifying(&receiver, |config| {
        config
            .set_webhook("backoff", "50ms")
            .set_webhook("retries", 3)
    })
    .await;
    proxy
        .admin("POST", "/api/pools/pool/backends/up/drain", None, None)
        .await;
    eventually(DEADLINE, "delivered on the third attempt", || {
        receiver.events().len() == 1
    })
    .await;
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(receiver.events()[0].1["to"], "drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_delays_nothing_and_its_overflow_is_counted() {
    let receiver = Receiver::start(0, true).await;
    let (proxy, _up) = proxy_notifying(&receiver, |config| {
        config.set_webhook("queue", 2).set_webhook("timeout", "30s")
    })
    .await;
    // Twenty changes while the receiver holds the first delivery forever: each admin call
    // still answers at once, and the state is right.
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        for action in ["drain", "undrain"] {
            let (status, _) = proxy
                .admin(
                    "POST",
                    &format!("/api/pools/pool/backends/up/{action}"),
                    None,
                    None,
                )
                .await;
            assert_eq!(status, 200);
        }
    }
    println!("20 admin changes in {:?}", started.elapsed());
    assert_eq!(
        backend_view(&proxy, "pool", "up").await.state,
        State::Healthy
    );
    let admin = proxy.gateway.admin_addr().unwrap();
    let dropped = poll_until(DEADLINE, "drops counted", || async {
        let metrics = get(&client(), &format!("http://{admin}/metrics"), None).await;
        metrics
            .body
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "switchyard_webhook_events_total{webhook=\"hooks\",result=\"dropped\"} ",
                )
            })
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|&n| n > 0.0)
    })
    .await;
    // One event in the receiver's hands (taken from the queue at once, or just after the next
    // arrived) and two queued: the other seventeen, or eighteen, were dropped.
    assert!((17.0..=18.0).contains(&dropped), "{dropped} dropped");
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 1);
}
