//! HTTP/3 test fixtures: a proxy serving HTTP/3 beside HTTP/1.1 and HTTP/2, and runs of
//! Debian's `gtlsclient` (ngtcp2 with GnuTLS), a real HTTP/3 client.

use super::config::ConfigBuilder;
use super::tls::{Pki, tls_config_over};
use super::{TestProxy, Upstream, temp_dir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A proxy serving HTTP/1.1, HTTP/2 and HTTP/3 on one TLS listener for `localhost`, in front
/// of `upstreams`, `change` applied; and its CA's certificate file.
pub async fn h3_proxy(
    upstreams: &[&Upstream],
    change: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (TestProxy, PathBuf) {
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let backends: Vec<(&str, SocketAddr, u32)> =
        upstreams.iter().map(|u| (u.name, u.addr, 1)).collect();
    let config = tls_config_over(&backends, &[&leaf]).set_listener("http3", true);
    let proxy = TestProxy::start(&change(config).toml()).await;
    (proxy, pki.ca_file("ca.pem"))
}

/// The proxy's metrics as scraped.
pub async fn metrics(proxy: &TestProxy) -> String {
    let addr = proxy.gateway.admin_addr().expect("admin API");
    let url = format!("http://{addr}/metrics");
    super::get(&super::client(), &url, None).await.body
}

/// What one `gtlsclient` run printed, and where it saved bodies.
pub struct H3Run {
    pub output: String,
    downloads: PathBuf,
}

impl H3Run {
    /// The `:status` of every response, in the order they came.
    pub fn statuses(&self) -> Vec<u16> {
        self.output
            .lines()
            .filter_map(|line| line.split("[:status: ").nth(1))
            .filter_map(|rest| rest.trim_end_matches(']').parse().ok())
            .collect()
    }

    /// A body saved under its path's last segment.
    pub fn body(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.downloads.join(name)).unwrap_or_default()
    }
}

/// Runs `gtlsclient` (an HTTP/3 client on ngtcp2 and GnuTLS) against the proxy's UDP port with
/// `args` and `paths`, on a thread of its own; bodies are saved in a fresh directory.
pub async fn gtlsclient(addr: SocketAddr, args: &[&str], paths: &[&str]) -> H3Run {
    let downloads = temp_dir();
    let mut command = Command::new("gtlsclient");
    command
        .args([
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
        ])
        .arg("--timeout=10s")
        .arg(format!("--download={}", downloads.display()))
        .args(args)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(
            paths
                .iter()
                .map(|p| format!("https://localhost:{}{p}", addr.port())),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("gtlsclient thread")
        .expect("gtlsclient (Debian's ngtcp2-client) is installed");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text += &String::from_utf8_lossy(&output.stderr);
    H3Run {
        output: text,
        downloads,
    }
}

/// A connection by quinn and h3's own client (TLS 1.3, certificates not checked): its request
/// sender, and its driver's task, which ends with the connection's closing error.
pub async fn h3_client(
    addr: SocketAddr,
) -> (
    h3::client::SendRequest<h3_quinn::OpenStreams, bytes::Bytes>,
    tokio::task::JoinHandle<h3::error::ConnectionError>,
) {
    let conn = quic_connect(addr, "h3").await.expect("handshake");
    let (mut driver, sender) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .expect("HTTP/3 connection");
    let driving =
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    (sender, driving)
}

/// A QUIC connection to `addr` offering ALPN `alpn` (TLS 1.3, certificates not checked).
pub async fn quic_connect(
    addr: SocketAddr,
    alpn: &str,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    quinn_client(alpn)
        .connect(addr, "localhost")
        .expect("connect")
        .await
}

/// A quinn client endpoint offering ALPN `alpn` (TLS 1.3, certificates not checked).
pub fn quinn_client(alpn: &str) -> quinn::Endpoint {
    let tls = super::tls::client_config(&[&rustls::version::TLS13], &[alpn]);
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("UDP");
    endpoint.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(quic)));
    endpoint
}
