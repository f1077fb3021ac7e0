//! The built-in demo: three small upstreams that answer with their own name (one of them slow),
//! served behind the proxy with `conf/demo.toml`, whose probes check each one's `/health`.
//! `POST /fail` makes an upstream answer 503 to everything, probes included, until
//! `POST /recover`: a newcomer sees a backend leave the rotation and come back.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The demo config, compiled in so `switchyard demo` works from any directory.
pub const CONFIG: &str = include_str!("../conf/demo.toml");

/// The development certificates the demo config names, compiled in with it.
const CERTIFICATES: [(&str, &str); 8] = [
    ("localhost.pem", include_str!("../certs/localhost.pem")),
    (
        "localhost-key.pem",
        include_str!("../certs/localhost-key.pem"),
    ),
    ("a.test.pem", include_str!("../certs/a.test.pem")),
    ("a.test-key.pem", include_str!("../certs/a.test-key.pem")),
    ("b.test.pem", include_str!("../certs/b.test.pem")),
    ("b.test-key.pem", include_str!("../certs/b.test-key.pem")),
    (
        "wildcard.example.test.pem",
        include_str!("../certs/wildcard.example.test.pem"),
    ),
    (
        "wildcard.example.test-key.pem",
        include_str!("../certs/wildcard.example.test-key.pem"),
    ),
];

/// Writes the compiled-in demo config and its certificates under `dir` (as `conf/demo.toml`
/// and `certs/`, the layout the config's relative paths expect); returns the config's path.
pub fn write_built_in(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir.join("conf"))?;
    std::fs::create_dir_all(dir.join("certs"))?;
    for (name, pem) in CERTIFICATES {
        std::fs::write(dir.join("certs").join(name), pem)?;
    }
    let config = dir.join("conf/demo.toml");
    std::fs::write(&config, CONFIG)?;
    Ok(config)
}

/// One demo upstream: its name, address, and how long it takes to answer.
#[derive(Debug, Clone, Copy)]
pub struct DemoUpstream {
    /// Returned in every response body.
    pub name: &'static str,
    /// Must match a backend address in `conf/demo.toml`.
    pub addr: &'static str,
    /// Added before each answer.
    pub delay: Duration,
}

/// The three demo upstreams named in `conf/demo.toml`.
pub const UPSTREAMS: [DemoUpstream; 3] = [
    DemoUpstream {
        name: "alpha",
        addr: "127.0.0.1:9101",
        delay: Duration::ZERO,
    },
    DemoUpstream {
        name: "beta",
        addr: "127.0.0.1:9102",
        delay: Duration::ZERO,
    },
    DemoUpstream {
        name: "gamma",
        addr: "127.0.0.1:9103",
        delay: Duration::from_millis(300),
    },
];

/// Binds and serves the demo upstreams until `shutdown` is cancelled.
pub async fn start_upstreams(shutdown: CancellationToken) -> std::io::Result<()> {
    for upstream in UPSTREAMS {
        let addr: SocketAddr = upstream
            .addr
            .parse()
            .expect("demo upstream addresses are valid socket addresses");
        let listener = TcpListener::bind(addr).await.map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("demo upstream {}: cannot bind {addr}: {err}", upstream.name),
            )
        })?;
        tokio::spawn(serve(listener, upstream, shutdown.clone()));
    }
    Ok(())
}

/// Serves one demo upstream on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, upstream: DemoUpstream, shutdown: CancellationToken) {
    let failing = Arc::new(AtomicBool::new(false));
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, upstream = upstream.name, "demo upstream accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let failing = Arc::clone(&failing);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, upstream, Arc::clone(&failing)));
            if let Err(err) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, upstream = upstream.name, "demo upstream connection error");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    upstream: DemoUpstream,
    failing: Arc<AtomicBool>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let switch = match (req.method(), path) {
        (&Method::POST, "/fail") => Some(true),
        (&Method::POST, "/recover") => Some(false),
        _ => None,
    };
    // Relaxed: one flag, read by the next request; nothing else is published through it.
    let body = if let Some(fail) = switch {
        failing.store(fail, Ordering::Relaxed);
        let now = if fail {
            "fails every request"
        } else {
            "answers again"
        };
        format!("{} now {now}\n", upstream.name)
    } else if failing.load(Ordering::Relaxed) {
        let mut response = Response::new(Full::new(Bytes::from(format!(
            "{} is failing (POST /recover to end it)\n",
            upstream.name
        ))));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return Ok(response);
    } else {
        // Probes are answered at once: the slow one is slow only for requests.
        if !upstream.delay.is_zero() && path != "/health" {
            tokio::time::sleep(upstream.delay).await;
        }
        format!("{} answered {} {path}\n", upstream.name, req.method())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        "x-upstream",
        header::HeaderValue::from_static(upstream.name),
    );
    Ok(response)
}
