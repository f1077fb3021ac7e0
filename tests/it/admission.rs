//! Admission through the real proxy: backends at `max_in_flight` make requests queue, first
//! come first served; a full queue and a wait past `queue_timeout` shed with 503 and
//! `Retry-After`; a queued client that leaves gives up its place; a keyed request waits for its
//! own backend unless the queue spills. A gated backend of the test's own shows what arrives
//! and how many at once.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A backend that holds every request until the test lets one (or all) through.
struct Gate {
    /// `x-n` of each request, in arrival order.
    arrivals: Mutex<Vec<String>>,
    /// One permit answers one request.
    open: Semaphore,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Gate {
    fn arrived(&self) -> usize {
        self.arrivals.lock().unwrap().len()
    }
}

async fn gated() -> (SocketAddr, Arc<Gate>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Arc::new(Gate {
        arrivals: Mutex::default(),
        open: Semaphore::new(0),
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let state = Arc::clone(&gate);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let gate = Arc::clone(&state);
            let service = hyper::service::service_fn(move |req: Request<_>| {
                let gate = Arc::clone(&gate);
                async move {
                    let n = req
                        .headers()
                        .get("x-n")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    gate.arrivals.lock().unwrap().push(n.clone());
                    let now = gate.now.fetch_add(1, Ordering::SeqCst) + 1;
                    gate.most.fetch_max(now, Ordering::SeqCst);
                    gate.open.acquire().await.unwrap().forget();
                    gate.now.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(n))))
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (addr, gate)
}

/// A GET numbered `n`, sent now, answered whenever.
fn numbered(proxy: &TestProxy, n: usize) -> tokio::task::JoinHandle<Answer> {
    let req = Request::get(proxy.url("/"))
        .header("x-n", n.to_string())
        .body(Full::default())
        .unwrap();
    tokio::spawn(async move { send(&client(), req).await })
}

async fn queue_length(proxy: &TestProxy) -> f64 {
    sample(
        proxy,
        "switchyard_admission_queue_length",
        &[("pool", "pool")],
    )
    .await
    .unwrap_or(-1.0)
}

async fn wait_queued(proxy: &TestProxy, n: f64) {
    poll_until(DEADLINE, "the queue's length", || async {
        (queue_length(proxy).await == n).then_some(())
    })
    .await;
}

fn admission_proxy(addr: SocketAddr, admission: &[(&str, toml::Value)]) -> ConfigBuilder {
    ConfigBuilder::single_pool(&[("gated", addr, 1)]).with_pool(|pool| {
        admission.iter().fold(pool, |pool, (key, value)| {
            pool.set(&format!("admission.{key}"), value.clone())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backends_queue_requests_in_arrival_order_and_a_full_queue_sheds() {
    let (addr, gate) = gated().await;
    let config = admission_proxy(
        addr,
        &[
            ("max_in_flight", 2.into()),
            ("queue", 3.into()),
            ("queue_timeout", "60s".into()),
        ],
    );
    let proxy = TestProxy::start_config(&config).await;
    let mut answers = vec![numbered(&proxy, 0), numbered(&proxy, 1)];
    eventually(DEADLINE, "two requests at the backend", || {
        gate.arrived() == 2
    })
    .await;
    // Queued one at a time, so their order is known.
    for n in 2..5 {
        answers.push(numbered(&proxy, n));
        wait_queued(&proxy, (n - 1) as f64).await;
    }
    // The queue holds three: the next ones are shed at once.
    for n in 5..7 {
        let shed = numbered(&proxy, n).await.unwrap();
        assert_eq!(shed.status, 503);
        assert_eq!(shed.headers["retry-after"], "2");
        assert_eq!(shed.body, "server busy, try again shortly\n");
    }
    let full = [("pool", "pool"), ("reason", "queue_full")];
    assert_eq!(
        sample(&proxy, "switchyard_admission_shed_total", &full).await,
        Some(2.0)
    );
    assert_eq!(
        gate.arrived(),
        2,
        "the backend never gets more than its limit"
    );
    // Each answer frees a place for the longest waiter.
    for n in 2..5 {
        gate.open.add_permits(1);
        eventually(DEADLINE, "the next waiter at the backend", || {
            gate.arrived() == n + 1
        })
        .await;
    }
    gate.open.add_permits(100);
    for (n, answer) in answers.into_iter().enumerate() {
        let answer = answer.await.unwrap();
        assert_eq!((answer.status.as_u16(), answer.body), (200, n.to_string()));
    }
    // The first two went straight through, in either order; the waiters in theirs.
    assert_eq!(gate.arrivals.lock().unwrap()[2..], ["2", "3", "4"]);
    assert_eq!(gate.most.load(Ordering::SeqCst), 2);
    assert_eq!(queue_length(&proxy).await, 0.0);
    let queued = sample(
        &proxy,
        "switchyard_admission_queued_total",
        &[("pool", "pool")],
    );
    assert_eq!(queued.await, Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_past_queue_timeout_is_shed_and_a_client_that_leaves_gives_up_its_place() {
    let (addr, gate) = gated().await;
    let config = admission_proxy(
        addr,
        &[
            ("max_in_flight", 1.into()),
            ("queue_timeout", "300ms".into()),
            ("retry_after", 7.into()),
        ],
    );
    let proxy = TestProxy::start_config(&config).await;
    let held = numbered(&proxy, 0);
    eventually(DEADLINE, "one request at the backend", || {
        gate.arrived() == 1
    })
    .await;
    let waited = tokio::time::Instant::now();
    let shed = numbered(&proxy, 1).await.unwrap();
    assert!(waited.elapsed() >= Duration::from_millis(300));
    assert_eq!(shed.status, 503);
    assert_eq!(shed.headers["retry-after"], "7");
    let timeout = [("pool", "pool"), ("reason", "queue_timeout")];
    assert_eq!(
        sample(&proxy, "switchyard_admission_shed_total", &timeout).await,
        Some(1.0)
    );
    // A client that leaves the queue (through a second proxy, whose waits do not time out):
    // its request never reaches the backend.
    let config = admission_proxy(addr, &[("max_in_flight", 1.into())]);
    let patient = TestProxy::start_config(&config).await;
    let second = numbered(&patient, 2);
    eventually(DEADLINE, "its own request at the backend", || {
        gate.arrived() == 2
    })
    .await;
    let leaving = numbered(&patient, 3);
    wait_queued(&patient, 1.0).await;
    leaving.abort();
    wait_queued(&patient, 0.0).await;
    let next = numbered(&patient, 4);
    wait_queued(&patient, 1.0).await;
    gate.open.add_permits(100);
    assert_eq!(held.await.unwrap().status, 200);
    assert_eq!(second.await.unwrap().body, "2");
    assert_eq!(next.await.unwrap().body, "4");
    assert_eq!(*gate.arrivals.lock().unwrap(), ["0", "2", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_request_waits_for_its_own_full_backend_unless_the_queue_spills() {
    for spill in [false, true] {
        // Fresh ones each time: a released `/hold` stays released.
        let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
        let config =
            ConfigBuilder::single_pool(&[("a", a.addr, 1), ("b", b.addr, 1)]).with_pool(|pool| {
                pool.set("algorithm", "hash")
                    .set("hash.key", "header:X-Key")
                    .set("admission.max_in_flight", 1)
                    .set("admission.spill", spill)
            });
        let proxy = TestProxy::start_config(&config).await;
        // A key of backend a.
        let finder = client();
        let mut key = 0;
        let key = loop {
            let req = Request::get(proxy.url("/"))
                .header("x-key", key.to_string())
                .body(Full::default())
                .unwrap();
            if send(&finder, req).await.upstream() == "a" {
                break key.to_string();
            }
            key += 1;
        };
        let hold = |key: String| {
            let req = Request::get(proxy.url("/hold"))
                .header("x-key", key)
                .body(Full::default())
                .unwrap();
            tokio::spawn(async move { send(&client(), req).await })
        };
        let first = hold(key.clone());
        eventually(DEADLINE, "a full", || a.held() == 1).await;
        let second = hold(key.clone());
        let spilled = sample(
            &proxy,
            "switchyard_admission_spilled_total",
            &[("pool", "pool")],
        );
        if spill {
            eventually(DEADLINE, "b takes the spill", || b.held() == 1).await;
            assert_eq!(spilled.await, Some(1.0));
        } else {
            wait_queued(&proxy, 1.0).await;
            assert_eq!(b.held(), 0, "b never takes a's key");
            assert_eq!(spilled.await, Some(0.0));
        }
        a.release_held();
        b.release_held();
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        assert_eq!(first.upstream(), "a");
        assert_eq!(second.upstream(), if spill { "b" } else { "a" });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_limit_follows_responses_and_a_changed_admission_restores_the_configured_one() {
    let upstream = Upstream::start("a").await;
    let version = |adaptive: bool| {
        ConfigBuilder::single_pool(&[("a", upstream.addr, 1)])
            .set("reload.watch", false)
            .with_pool(|pool| {
                pool.set("admission.max_in_flight", 64)
                    .set("admission.adaptive", adaptive)
            })
            .toml()
    };
    let path = temp_config(&version(true));
    let proxy = TestProxy::start_file(&path).await;
    let labels = [("pool", "pool"), ("backend", "a")];
    let limit = || sample(&proxy, "switchyard_backend_in_flight_limit", &labels);
    // Before any response, the configured limit; from the first, Gradient2's start.
    assert_eq!(limit().await, Some(64.0));
    assert_eq!(get(&client(), &proxy.url("/"), None).await.status, 200);
    assert_eq!(limit().await, Some(20.0));
    std::fs::write(&path, version(false)).unwrap();
    assert_eq!(proxy.admin("POST", "/api/reload", None, None).await.0, 200);
    assert_eq!(limit().await, Some(64.0));
}

#[test]
fn a_queue_without_a_limit_to_wait_for_is_a_config_error() {
    let text = "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
                [[routes]]\nname = \"r\"\npool = \"p\"\n\
                [[pools]]\nname = \"p\"\n[pools.admission]\nqueue = 10\n\
                [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:9000\"\n";
    let err = switchyard::config::parse(text, "x.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("9:1")
            && err.contains(
                "pools[0].admission: no backend has max_in_flight, so nothing would ever wait"
            ),
        "{err}"
    );
    // The backend's own limit, or the pool's for every backend, makes it valid.
    let own = text.replace("9000\"", "9000\"\nmax_requests = 4");
    assert!(switchyard::config::parse(&own, "x.toml").is_ok());
    let pool = text.replace("queue = 10", "queue = 10\nmax_in_flight = 4");
    let config = switchyard::config::parse(&pool, "x.toml").unwrap();
    assert_eq!(config.pools[0].backends[0].max_in_flight.unwrap().get(), 4);
}
