//! HTTP/3 through the real proxy, with real HTTP/3 clients: ngtcp2's `gtlsclient` (Debian's
//! ngtcp2-client), Python's niquests (following `Alt-Svc`) and Chromium. Downloads and uploads
//! hash-checked, 0-RTT, retries when a backend dies, reloads and shutdown during a download.

use crate::support::browser::{Browser, Page};
use crate::support::config::ConfigBuilder;
use crate::support::tls::{Pki, tls_config_over};
use crate::support::upstream::{pattern, sha256_hex};
use crate::support::{
    DEADLINE, TestProxy, Upstream, eventually, poll_until, temp_config, temp_dir,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// A proxy serving HTTP/1.1, HTTP/2 and HTTP/3 on one TLS listener for `localhost`, in front
/// of `upstreams`, `change` applied; and its CA's certificate file.
async fn h3_proxy(
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
async fn metrics(proxy: &TestProxy) -> String {
    let addr = proxy.gateway.admin_addr().expect("admin API");
    let url = format!("http://{addr}/metrics");
    crate::support::get(&crate::support::client(), &url, None)
        .await
        .body
}

/// What one `gtlsclient` run printed, and where it saved bodies.
struct H3Run {
    output: String,
    downloads: PathBuf,
}

impl H3Run {
    /// The `:status` of every response, in the order they came.
    fn statuses(&self) -> Vec<u16> {
        self.output
            .lines()
            .filter_map(|line| line.split("[:status: ").nth(1))
            .filter_map(|rest| rest.trim_end_matches(']').parse().ok())
            .collect()
    }

    /// A body saved under its path's last segment.
    fn body(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.downloads.join(name)).unwrap_or_default()
    }
}

/// Runs `gtlsclient` (an HTTP/3 client on ngtcp2 and GnuTLS) against the proxy's UDP port with
/// `args` and `paths`, on a thread of its own; bodies are saved in a fresh directory.
async fn gtlsclient(addr: SocketAddr, args: &[&str], paths: &[&str]) -> H3Run {
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

#[tokio::test]
async fn gtlsclient_downloads_a_mebibyte_and_uploads_a_body_intact() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c).await;
    let run = gtlsclient(proxy.addr, &[], &["/pattern?bytes=1048576"]).await;
    assert_eq!(run.statuses(), [200], "{}", run.output);
    assert!(
        run.output.contains("Negotiated ALPN is h3"),
        "{}",
        run.output
    );
    let body = run.body("pattern?bytes=1048576");
    assert_eq!(body.len(), 1 << 20);
    assert_eq!(sha256_hex(&body), sha256_hex(&pattern(1 << 20)));

    let upload = temp_dir().join("upload.bin");
    let sent = pattern(300_000);
    std::fs::write(&upload, &sent).expect("write upload");
    let data = format!("--data={}", upload.display());
    let run = gtlsclient(proxy.addr, &["--http-method=POST", &data], &["/sha256"]).await;
    assert_eq!(run.statuses(), [200], "{}", run.output);
    assert_eq!(
        String::from_utf8_lossy(&run.body("sha256")),
        sha256_hex(&sent)
    );

    let metrics = metrics(&proxy).await;
    for line in [
        "switchyard_quic_handshakes_total{listener=\"https\"} 2",
        "switchyard_quic_streams_total{listener=\"https\"} 2",
        "switchyard_requests_by_protocol_total{protocol=\"HTTP/3\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn http3_is_refused_by_check_on_a_listener_without_tls() {
    let upstream = Upstream::start("u").await;
    let toml = ConfigBuilder::single_pool(&[("a", upstream.addr, 1)])
        .set_listener("http3", true)
        .toml();
    let err = switchyard::config::parse(&toml, "test.toml").expect_err("http3 without TLS");
    let text = err.to_string();
    assert!(
        text.contains("listeners[0].http3: needs [listeners.tls]"),
        "{text}"
    );
    assert!(
        text.contains("test.toml:"),
        "file:line:col expected: {text}"
    );

    let toml = ConfigBuilder::single_pool(&[("a", upstream.addr, 1)])
        .set_listener("advertised_port", 443)
        .toml();
    let err = switchyard::config::parse(&toml, "test.toml").expect_err("option without http3");
    assert!(
        err.to_string()
            .contains("listeners[0].advertised_port: needs http3 = true"),
        "{err}"
    );
}

#[tokio::test]
async fn responses_over_tcp_advertise_http3_and_a_client_follows() {
    let upstream = Upstream::start("u").await;
    let (proxy, ca) = h3_proxy(&[&upstream], |c| c.set_listener("advertised_port", 8443)).await;
    // The advertised port is the one a port map in front would take; niquests is sent to the
    // real one by a second proxy that advertises its own.
    let headers = tls_get_headers(proxy.addr, &ca).await;
    assert!(
        headers.contains("alt-svc: h3=\":8443\"; ma=86400"),
        "{headers}"
    );
    let (proxy, ca) = h3_proxy(&[&upstream], |c| c).await;
    let ca = ca.display().to_string();
    let url = format!("https://localhost:{}/headers", proxy.addr.port());
    let script = r#"
import sys, niquests
ca, url = sys.argv[1], sys.argv[2]
with niquests.Session() as s:
    for _ in range(3):
        r = s.get(url, verify=ca, timeout=10)
        print(r.status_code, r.conn_info.http_version, r.headers.get("alt-svc"))
"#;
    let out = python(script, &[&ca, &url]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("200 HttpVersion.h2") || lines[0].starts_with("200 HttpVersion.h11"),
        "{out}"
    );
    assert!(
        lines[0].contains(&format!("h3=\":{}\"", proxy.addr.port())),
        "{out}"
    );
    assert!(
        lines[2].starts_with("200 HttpVersion.h3"),
        "the client moved to HTTP/3: {out}"
    );
}

/// The response headers (lower case) of a GET over HTTPS by curl trusting `ca`.
async fn tls_get_headers(addr: SocketAddr, ca: &Path) -> String {
    let output = tokio::task::spawn_blocking({
        let ca = ca.to_owned();
        move || {
            Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-D", "-", "--cacert"])
                .arg(&ca)
                .arg("--resolve")
                .arg(format!("localhost:{}:{}", addr.port(), addr.ip()))
                .arg(format!("https://localhost:{}/", addr.port()))
                .output()
        }
    })
    .await
    .expect("curl thread")
    .expect("curl is installed");
    String::from_utf8_lossy(&output.stdout).to_lowercase()
}

/// Runs `script` with `args` under a Python that has niquests (the venv tests/run.sh makes).
async fn python(script: &str, args: &[&str]) -> String {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python3");
    let python = if venv.exists() {
        venv.display().to_string()
    } else {
        "python3".to_owned()
    };
    let mut command = Command::new(python);
    command.arg("-c").arg(script).args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("python thread")
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn early_data_takes_safe_methods_and_answers_425_to_others() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c.set_listener("early_data", true)).await;
    let dir = temp_dir();
    let session = format!("--session-file={}", dir.join("session").display());
    let params = format!("--tp-file={}", dir.join("params").display());
    let resume = [session.as_str(), params.as_str()];
    // A first connection leaves a ticket; each later one spends it in 0-RTT.
    let first = gtlsclient(proxy.addr, &resume, &["/"]).await;
    assert_eq!(first.statuses(), [200], "{}", first.output);
    let post = gtlsclient(
        proxy.addr,
        &[resume[0], resume[1], "--http-method=POST"],
        &["/sha256"],
    )
    .await;
    assert!(
        !post.output.contains("Early data was rejected"),
        "{}",
        post.output
    );
    assert_eq!(post.statuses(), [425], "{}", post.output);
    let get = gtlsclient(proxy.addr, &resume, &["/headers"]).await;
    assert!(
        !get.output.contains("Early data was rejected"),
        "{}",
        get.output
    );
    assert_eq!(get.statuses(), [200], "{}", get.output);
    let seen = String::from_utf8_lossy(&get.body("headers")).into_owned();
    assert!(
        seen.contains("early-data: 1"),
        "the backend is told: {seen}"
    );
    // Without a ticket there is no early data, and a POST goes through.
    let post = gtlsclient(proxy.addr, &["--http-method=POST"], &["/sha256"]).await;
    assert_eq!(post.statuses(), [200], "{}", post.output);
}

#[tokio::test]
async fn a_backend_killed_under_http3_load_loses_no_get() {
    let upstreams = Upstream::start_all(["a", "b", "c"]).await;
    let refs: Vec<&Upstream> = upstreams.iter().collect();
    let (proxy, _ca) = h3_proxy(&refs, |c| c).await;
    let paths = vec!["/"; 300];
    let addr = proxy.addr;
    let client = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.extend(gtlsclient(addr, &[], &paths).await.statuses());
        }
        statuses
    });
    eventually(DEADLINE, "requests reach b", || {
        upstreams[1].requests() >= 100
    })
    .await;
    upstreams[1].stop();
    let statuses = client.await.expect("client");
    assert_eq!(statuses.len(), 3000);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // b died a tenth of the way in, and the others took the rest.
    assert!(
        upstreams[1].requests() < 1000,
        "{}",
        upstreams[1].requests()
    );
}

#[tokio::test]
async fn a_download_survives_100_reloads_and_certificate_rotations() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let leaves = [
        pki.leaf("one", &["localhost"]),
        pki.leaf("two", &["localhost"]),
    ];
    let version = |i: usize| {
        tls_config_over(&[("u", upstream.addr, 1)], &[&leaves[i % 2]])
            .set_listener("http3", true)
            .set("reload.watch", false)
            .toml()
    };
    let path = temp_config(&version(0));
    let proxy = TestProxy::start_file(&path).await;
    let addr = proxy.addr;
    let download =
        tokio::spawn(async move { gtlsclient(addr, &[], &["/held-body?bytes=4000000"]).await });
    eventually(DEADLINE, "the first half sent", || upstream.held() == 1).await;
    for i in 1..=100 {
        std::fs::write(&path, version(i)).expect("write config");
        let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
        assert_eq!(status, 200, "reload {i}: {outcome}");
    }
    // New handshakes still succeed...
    let fresh = gtlsclient(addr, &[], &["/"]).await;
    assert_eq!(fresh.statuses(), [200], "{}", fresh.output);
    // ...and the download that began before them all completes intact.
    upstream.release_held();
    let run = download.await.expect("download");
    assert_eq!(run.statuses(), [200], "{}", run.output);
    let body = run.body("held-body?bytes=4000000");
    assert_eq!(sha256_hex(&body), sha256_hex(&pattern(4_000_000)));
}

#[tokio::test]
async fn shutdown_sends_goaway_and_the_request_in_flight_finishes() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c).await;
    // quinn and h3's own client: it tells when the server's GOAWAY has come.
    let mut tls = crate::support::tls::client_config(&[&rustls::version::TLS13], &["h3"]);
    Arc::get_mut(&mut tls).expect("fresh").enable_early_data = false;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC client");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("UDP");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = endpoint
        .connect(proxy.addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut driver, mut sender) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .expect("HTTP/3 connection");
    let driving =
        tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
    let url = format!(
        "https://localhost:{}/held-body?bytes=1000000",
        proxy.addr.port()
    );
    let request = http::Request::get(url).body(()).expect("request");
    let mut stream = sender.send_request(request.clone()).await.expect("sent");
    stream.finish().await.expect("request end");
    let response = stream.recv_response().await.expect("response head");
    assert_eq!(response.status(), 200);
    eventually(DEADLINE, "the first half sent", || upstream.held() == 1).await;

    let shutdown = tokio::spawn(proxy.gateway.shutdown(DEADLINE));
    // Once the GOAWAY has come, the client opens no more requests on this connection...
    poll_until(DEADLINE, "the GOAWAY", || {
        let (mut sender, request) = (sender.clone(), request.clone());
        async move { sender.send_request(request).await.err() }
    })
    .await;
    // ...while the request in flight is still served, to its end.
    assert!(!shutdown.is_finished());
    upstream.release_held();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await.expect("body") {
        use bytes::Buf;
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    assert_eq!(body, pattern(1_000_000));
    assert!(
        shutdown.await.expect("shutdown"),
        "drained within the grace period"
    );
    let closed = driving.await.expect("driver");
    assert!(closed.is_h3_no_error(), "closed gracefully: {closed}");
}

#[tokio::test]
async fn chromium_loads_a_page_over_http3() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let config = tls_config_over(&[("u", upstream.addr, 1)], &[&leaf]).set_listener("http3", true);
    let proxy = TestProxy::start(&config.toml()).await;
    let port = proxy.addr.port();
    // Chromium speaks QUIC only to a certificate it trusts: this one's key, by its hash.
    let flags = [
        format!("--origin-to-force-quic-on=localhost:{port}"),
        format!(
            "--ignore-certificate-errors-spki-list={}",
            spki_hash(&leaf.der)
        ),
        "--host-resolver-rules=MAP localhost 127.0.0.1".to_owned(),
    ];
    let browser = Browser::open_with(&format!("https://localhost:{port}/"), &flags);
    let mut page = Page::attach(&browser).await;
    let protocol = page
        .wait_for(
            "the page loaded",
            "(performance.getEntries()[0] || {}).nextHopProtocol || ''",
            |p| !p.is_empty(),
        )
        .await;
    assert_eq!(protocol, "h3");
    let text = page.eval("document.body.innerText").await;
    assert_eq!(text.trim(), "u");
}

/// base64(SHA-256(SubjectPublicKeyInfo)) of a DER certificate, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it.
fn spki_hash(der: &[u8]) -> String {
    use base64::Engine as _;
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}
