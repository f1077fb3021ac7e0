//! HTTP/3 through the real proxy, with real HTTP/3 clients: ngtcp2's `gtlsclient` (Debian's
//! ngtcp2-client), Python's niquests (following `Alt-Svc`) and Chromium; and `check`'s refusal
//! of HTTP/3 without TLS. `http3_lifecycle` has 0-RTT, failover, reloads and shutdown.

use crate::support::browser::{Browser, Page};
use crate::support::config::ConfigBuilder;
use crate::support::h3::{gtlsclient, h3_client, h3_proxy, metrics, quic_connect};
use crate::support::tls::{Pki, tls_config_over};
use crate::support::upstream::{pattern, sha256_hex};
use crate::support::{TestProxy, Upstream, temp_dir};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

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

#[tokio::test]
async fn a_body_unlike_its_content_length_is_the_client_s_fault() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c).await;
    let (mut sender, _driving) = h3_client(proxy.addr).await;
    let url = format!("https://localhost:{}/sha256", proxy.addr.port());
    for (declared, sent) in [("5", 10), ("20", 10), ("+10", 10), ("1_0", 10), ("10", 10)] {
        let request = http::Request::post(&url)
            .header("content-length", declared)
            .body(())
            .expect("request");
        let mut stream = sender.send_request(request).await.expect("sent");
        stream
            .send_data(bytes::Bytes::from(vec![b'x'; sent]))
            .await
            .expect("body sent");
        stream.finish().await.expect("request end");
        let response = stream.recv_response().await.expect("response");
        let expected = if declared == sent.to_string() {
            200
        } else {
            400
        };
        assert_eq!(
            response.status(),
            expected,
            "{declared} declared, {sent} sent"
        );
    }
    assert_eq!(
        upstream.requests(),
        1,
        "only the whole body reached the backend"
    );
}

#[tokio::test]
async fn a_failed_quic_handshake_is_counted_by_reason() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c).await;
    let refused = quic_connect(proxy.addr, "h2").await;
    assert!(
        refused.is_err(),
        "a client offering only h2 over QUIC is refused"
    );
    let line = "switchyard_quic_handshake_failures_total{listener=\"https\",reason=\"no_application_protocol\"} 1";
    crate::support::poll_until(crate::support::DEADLINE, "the failure counted", || async {
        metrics(&proxy).await.contains(line).then_some(())
    })
    .await;
    assert!(quic_connect(proxy.addr, "h3").await.is_ok());
}
