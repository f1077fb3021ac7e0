//! Test fixtures: in-process upstream servers and the real proxy, all on 127.0.0.1 ephemeral
//! ports, plus a keep-alive client and polling helpers.
//!
//! Longer than most files on purpose: the helpers every test file shares (the proxy under test,
//! its client, polling with deadlines, metrics), kept in one place.

pub mod browser;
pub mod config;
pub mod dns;
pub mod events;
pub mod h3;
pub mod pebble;
pub mod peer;
pub mod process;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod upstream;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard::control::{BackendChange, BackendView, Command};
use switchyard::gateway::Gateway;
use switchyard::upstream::State;

#[allow(unused_imports)] // not every test binary starts an upstream
pub use upstream::Upstream;

/// A running proxy built from TOML text.
pub struct TestProxy {
    pub gateway: Gateway,
    pub addr: SocketAddr,
}

impl TestProxy {
    /// Starts the proxy on a typed config.
    pub async fn start_config(config: &config::ConfigBuilder) -> Self {
        Self::start(&config.toml()).await
    }

    /// Starts the proxy; the TOML should bind its listener to `127.0.0.1:0`.
    pub async fn start(toml: &str) -> Self {
        // Logs go to the test's captured output (shown for failing tests, or with --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let config = switchyard::config::parse(toml, "test.toml")
            .unwrap_or_else(|err| panic!("test config is invalid:\n{err}\n---\n{toml}"));
        let gateway = Gateway::start(&config).await.expect("proxy starts");
        let addr = gateway.first_addr();
        Self { gateway, addr }
    }

    /// Starts the proxy from a config file, so it can be reloaded.
    pub async fn start_file(path: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(path).expect("read test config");
        let config = switchyard::config::parse(&text, &path.display().to_string())
            .unwrap_or_else(|err| panic!("test config is invalid:\n{err}"));
        let source = switchyard::gateway::ConfigSource {
            path: path.to_owned(),
            text,
        };
        let gateway = Gateway::start_with(&config, Some(source))
            .await
            .expect("proxy starts");
        let addr = gateway.first_addr();
        Self { gateway, addr }
    }

    /// Sends an admin API request; returns the status and the JSON body (`Null` if not JSON).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let addr = self.gateway.admin_addr().expect("admin API enabled");
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = Full::new(Bytes::from(body.unwrap_or("").to_owned()));
        let answer = send(&client(), req.body(body).expect("valid admin request")).await;
        let json = serde_json::from_str(&answer.body).unwrap_or(serde_json::Value::Null);
        (answer.status, json)
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A keep-alive HTTP/1.1 client.
pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// A new keep-alive client.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A fully read response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `x-upstream` header: which fixture upstream answered.
    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Sends `req` and reads the whole response (tests only use small bodies here).
pub async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Answer {
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("response within 30s")
        .expect("request succeeds at the HTTP level");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body reads").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `n` concurrent GETs of `url` from one keep-alive client (so on as many connections).
pub fn spawn_gets(n: usize, url: String) -> tokio::task::JoinHandle<Vec<Answer>> {
    let client = client();
    tokio::spawn(async move {
        futures_util::future::join_all((0..n).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { get(&client, &url, None).await }
        }))
        .await
    })
}

/// 100 concurrent requests held at `upstream` through `proxy`, then released: all answered,
/// over at most two upstream connections (HTTP/2 multiplexing).
pub async fn multiplex_100_held_requests(proxy: &TestProxy, upstream: &Upstream) {
    let requests = spawn_gets(100, proxy.url("/hold"));
    eventually(DEADLINE, "100 requests held", || upstream.held() == 100).await;
    upstream.release_held();
    let answers = requests.await.expect("requests finish");
    assert!(answers.iter().all(|a| a.status == 200));
    assert!(
        upstream.connections() <= 2,
        "{} connections",
        upstream.connections()
    );
}

/// GET `url` with an optional `Host`.
pub async fn get(client: &TestClient, url: &str, host: Option<&str>) -> Answer {
    let mut req = Request::get(url);
    if let Some(host) = host {
        req = req.header(http::header::HOST, host);
    }
    send(client, req.body(Full::default()).expect("valid request")).await
}

/// `clients` keep-alive clients sending GETs to `url` until `stop`, back to back or one every
/// `pace`; returns (answered 200, failed), printing the first few failures.
pub fn get_load(
    url: String,
    clients: usize,
    pace: Option<Duration>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (url, stop) = (url.clone(), std::sync::Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let client = client();
                let mut tick = pace.map(tokio::time::interval);
                if let Some(tick) = &mut tick {
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                }
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(Ordering::SeqCst) {
                    if let Some(tick) = &mut tick {
                        tick.tick().await;
                    }
                    let answer = get(&client, &url, None).await;
                    if answer.status == StatusCode::OK {
                        ok += 1;
                    } else {
                        failed += 1;
                        if failed <= 3 {
                            println!("failed: {} {:?}", answer.status, answer.body);
                        }
                    }
                }
                (ok, failed)
            }));
        }
        let mut totals = (0, 0);
        for task in tasks {
            let (ok, failed) = task.await.expect("client task");
            totals = (totals.0 + ok, totals.1 + failed);
        }
        totals
    })
}

/// How long a test waits for something to happen: generous, for a noisy 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `attempt` every 10ms until it yields a value, which it returns; fails the test if
/// `deadline` passes first.
pub async fn poll_until<T, F: Future<Output = Option<T>>>(
    deadline: Duration,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `check` every 10ms until it returns true; fails the test if `deadline` passes first.
pub async fn eventually(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    poll_until(deadline, what, || std::future::ready(check().then_some(()))).await;
}

/// Backend `name` of pool `pool` as the admin API shows it (state, reasons, in flight, ...):
/// the one way tests read a backend's state.
pub async fn backend_view(proxy: &TestProxy, pool: &str, name: &str) -> BackendView {
    let (pool, backend) = (pool.to_owned(), name.to_owned());
    proxy
        .gateway
        .control()
        .ask(|reply| Command::Backend {
            pool,
            backend,
            change: BackendChange::Nothing,
            reply,
        })
        .await
        .expect("the control plane runs")
        .expect("the backend exists")
}

/// Pool `pool` as the admin API shows it, every backend included.
pub async fn pool_view(proxy: &TestProxy, pool: &str) -> switchyard::control::PoolView {
    let name = pool.to_owned();
    let mut pools = proxy
        .gateway
        .control()
        .ask(|reply| Command::Describe {
            pool: Some(name),
            reply,
        })
        .await
        .expect("the control plane runs")
        .expect("the pool exists");
    pools.remove(0)
}

/// The names of pool `pool`'s backends, sorted.
pub async fn backend_names(proxy: &TestProxy, pool: &str) -> Vec<String> {
    let mut names: Vec<String> = pool_view(proxy, pool)
        .await
        .backends
        .into_iter()
        .map(|b| b.name)
        .collect();
    names.sort();
    names
}

/// The value of the sample `series` (name and labels exactly as exported) on `/metrics`.
pub async fn metric(proxy: &TestProxy, series: &str) -> Option<f64> {
    let addr = proxy.gateway.admin_addr().expect("admin API enabled");
    let text = get(&client(), &format!("http://{addr}/metrics"), None)
        .await
        .body;
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sample of `name` whose labels include every `key="value"` of `labels`, in any order.
pub async fn sample(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let addr = proxy.gateway.admin_addr().expect("admin API enabled");
    let text = get(&client(), &format!("http://{addr}/metrics"), None)
        .await
        .body;
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Sends requests through the proxy until backend `name` of pool `pool` is in `state` (a
/// failing backend crossing its threshold); fails the test after `DEADLINE`.
pub async fn send_until_state(
    proxy: &TestProxy,
    pool: &str,
    name: &str,
    state: State,
) -> BackendView {
    let client = client();
    let what = format!("{pool}/{name} {} under traffic", state.as_str());
    poll_until(DEADLINE, &what, || async {
        let view = backend_view(proxy, pool, name).await;
        if view.state == state {
            return Some(view);
        }
        get(&client, &proxy.url("/"), None).await;
        None
    })
    .await
}

/// Polls backend `name` of pool `pool` until it is in `state`; fails the test after `DEADLINE`.
pub async fn wait_for_state(
    proxy: &TestProxy,
    pool: &str,
    name: &str,
    state: State,
) -> BackendView {
    poll_until(
        DEADLINE,
        &format!("{pool}/{name} {}", state.as_str()),
        || async {
            let view = backend_view(proxy, pool, name).await;
            (view.state == state).then_some(view)
        },
    )
    .await
}

/// A fresh, empty temporary directory.
pub fn temp_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Under target/tmp, so test files never pile up in the system's /tmp and `cargo clean` removes them.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "switchyard-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes `text` to a new file in a fresh temporary directory and returns its path.
pub fn temp_config(text: &str) -> std::path::PathBuf {
    let path = temp_dir().join("switchyard.toml");
    std::fs::write(&path, text).expect("write temp config");
    path
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port");
    listener.local_addr().expect("local addr")
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`: its sender, the connection
/// driven by a task of its own (returned, to watch it end).
pub async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    (sender, tokio::spawn(conn))
}
