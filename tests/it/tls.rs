//! TLS termination through the real proxy and a real rustls client: certificates by SNI, TLS
//! versions, ALPN, the handshake timeout, key formats, session resumption, the access log and
//! metrics, and the plain-HTTP redirect.
//!
//! Longer than most files on purpose: each TLS behaviour is tested with a real client, next to
//! its setup.

use crate::support::config::ConfigBuilder;
use crate::support::tls::{self, Http, KeyFormat, Leaf, Pki, presented, tls_config};
use crate::support::{DEADLINE, TestProxy, Upstream, poll_until};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy serving the usual test names: localhost (default), a.test, b.test, *.example.test.
async fn sni_proxy(pki: &Pki, upstream: SocketAddr, strict_sni: bool) -> (TestProxy, [Leaf; 4]) {
    let leaves = [
        pki.leaf("localhost", &["localhost"]),
        pki.leaf("a", &["a.test"]),
        pki.leaf("b", &["B.test"]),
        pki.leaf("wildcard", &["*.example.test"]),
    ];
    let refs: Vec<&Leaf> = leaves.iter().collect();
    let config = tls_config(upstream, &refs).set_listener("tls.strict_sni", strict_sni);
    let proxy = TestProxy::start(&config.toml()).await;
    (proxy, leaves)
}

/// An upstream and a proxy terminating TLS with one `localhost` certificate, `change` applied.
async fn localhost_proxy(
    change: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
) -> (Upstream, Leaf, TestProxy) {
    let upstream = Upstream::start("u").await;
    let leaf = Pki::new().leaf("localhost", &["localhost"]);
    let config = change(tls_config(upstream.addr, &[&leaf]));
    let proxy = TestProxy::start(&config.toml()).await;
    (upstream, leaf, proxy)
}

/// Asserts the proxy counted `count` handshake failures for `reason`.
async fn assert_failures(proxy: &TestProxy, reason: &str, count: u32) {
    let metrics = metrics(proxy).await;
    let line = format!(
        "switchyard_tls_handshake_failures_total{{listener=\"https\",reason=\"{reason}\"}} {count}"
    );
    assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
}

#[tokio::test]
async fn sni_chooses_the_certificate_and_unknown_or_missing_names_get_the_default() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let (proxy, [default, a, b, wildcard]) = sni_proxy(&pki, upstream.addr, false).await;
    let addr = proxy.addr;
    for (sni, expected, what) in [
        (Some("a.test"), &a, "exact name"),
        (Some("A.Test"), &a, "exact name in another case"),
        (
            Some("b.test"),
            &b,
            "name written in upper case in the certificate",
        ),
        (Some("x.example.test"), &wildcard, "wildcard"),
        (
            Some("x.y.example.test"),
            &default,
            "wildcard covers one label only",
        ),
        (Some("unknown.test"), &default, "unknown name"),
        (None, &default, "no SNI"),
    ] {
        let got = presented(addr, sni).await.expect("handshake");
        assert_eq!(got, expected.der, "{what}: {sni:?}");
    }
}

#[tokio::test]
async fn strict_sni_refuses_unknown_names_and_serves_known_ones() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let (proxy, [_, a, _, _]) = sni_proxy(&pki, upstream.addr, true).await;
    assert_eq!(
        presented(proxy.addr, Some("a.test")).await.expect("known"),
        a.der
    );
    assert!(presented(proxy.addr, Some("unknown.test")).await.is_err());
    assert!(presented(proxy.addr, None).await.is_err());
    assert_failures(&proxy, "unknown_server_name", 2).await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_work_and_a_client_offering_only_tls_1_1_is_refused() {
    let (_upstream, _leaf, proxy) = localhost_proxy(|c| c).await;
    for (version, name) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let client = tls::client_config(&[version], &["http/1.1"]);
        let stream = tls::connect(proxy.addr, Some("localhost"), &client)
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(name));
        let (status, _, body) = Http::over(stream).await.get("localhost", "/").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "u"));
    }

    // rustls cannot speak TLS 1.1: hand-made TLS 1.1 ClientHellos stand in for such clients.
    // Without extensions, as OpenSSL's `s_client -tls1_1` sends it, the refusal is a
    // handshake_failure alert (40); with signature_algorithms, a protocol_version alert (70).
    for (hello, alert) in [
        (tls11_client_hello(&[]), 40),
        (tls11_client_hello(&SIGNATURE_ALGORITHMS), 70),
    ] {
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        tcp.write_all(&hello).await.expect("send hello");
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer))
            .await
            .expect("the proxy answers and closes")
            .ok();
        // One fatal alert record: type 21, level 2, then the description.
        assert_eq!(answer.first(), Some(&21), "{answer:?}");
        assert_eq!(answer.get(5..), Some(&[2, alert][..]), "{answer:?}");
    }
    assert_failures(&proxy, "protocol_version", 2).await;
    let metrics = metrics(&proxy).await;
    for line in [
        "switchyard_tls_handshakes_total{listener=\"https\",version=\"TLSv1.2\",alpn=\"http/1.1\"} 1",
        "switchyard_tls_handshakes_total{listener=\"https\",version=\"TLSv1.3\",alpn=\"http/1.1\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2() {
    let (_upstream, _leaf, proxy) =
        localhost_proxy(|c| c.set_listener("tls.min_version", "1.3")).await;
    let tls12 = tls::client_config(&[&rustls::version::TLS12], &[]);
    assert!(tls::connect(proxy.addr, None, &tls12).await.is_err());
    let tls13 = tls::client_config(&[&rustls::version::TLS13], &[]);
    assert!(tls::connect(proxy.addr, None, &tls13).await.is_ok());
}

#[tokio::test]
async fn http2_by_alpn_reaches_the_upstream_and_http1_works_on_the_same_port() {
    let (_upstream, _leaf, proxy) = localhost_proxy(|c| c).await;
    for (alpn, version) in [
        ("h2", http::Version::HTTP_2),
        ("http/1.1", http::Version::HTTP_11),
    ] {
        let client = tls::client_config(rustls::ALL_VERSIONS, &[alpn]);
        let stream = tls::connect(proxy.addr, Some("localhost"), &client)
            .await
            .expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn.as_bytes()));
        let mut http = Http::over(stream).await;
        let (status, got_version, headers) = http.get("localhost", "/headers").await;
        assert_eq!((status.as_u16(), got_version), (200, version), "{alpn}");
        assert!(
            headers.contains("x-forwarded-proto: https"),
            "{alpn}: the upstream saw:\n{headers}"
        );
    }
    // A client that offers no ALPN gets HTTP/1.1 (or HTTP/2 if it sends the preface).
    let stream = tls::connect(
        proxy.addr,
        None,
        &tls::client_config(rustls::ALL_VERSIONS, &[]),
    )
    .await
    .expect("handshake");
    let (status, version, _) = Http::over(stream).await.get("localhost", "/").await;
    assert_eq!((status.as_u16(), version), (200, http::Version::HTTP_11));
}

#[tokio::test]
async fn silent_and_stalled_clients_are_closed_after_the_handshake_timeout() {
    let (_upstream, _leaf, proxy) =
        localhost_proxy(|c| c.set_listener("tls.handshake_timeout", "300ms")).await;
    let hello = tls11_client_hello(&[]);
    for (sent, what) in [
        (&[][..], "sends nothing"),
        (&hello[..20], "stalls mid-hello"),
    ] {
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        tcp.write_all(sent).await.expect("send");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a client that {what} is still connected");
        assert!(rest.is_empty(), "{what}: got {rest:?}");
    }
    assert_failures(&proxy, "timeout", 2).await;
}

#[tokio::test]
async fn every_key_format_loads_and_serves() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    for format in [
        KeyFormat::EcdsaPkcs8,
        KeyFormat::EcdsaSec1,
        KeyFormat::RsaPkcs1,
        KeyFormat::Ed25519,
    ] {
        let leaf = pki.leaf_with(&format!("{format:?}"), &["localhost"], format);
        let proxy = TestProxy::start(&tls_config(upstream.addr, &[&leaf]).toml()).await;
        let stream = tls::connect(proxy.addr, Some("localhost"), &tls::default_client())
            .await
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
        assert_eq!(tls::presented_by(&stream), leaf.der, "{format:?}");
        let (status, _, _) = Http::over(stream).await.get("localhost", "/").await;
        assert_eq!(status, 200, "{format:?}");
    }
}

#[tokio::test]
async fn a_redirect_listener_answers_308_with_the_https_url() {
    let upstream = Upstream::start("u").await;
    let config = ConfigBuilder::single_pool(&[("a", upstream.addr, 1)])
        .with_listener(|listener| {
            listener.insert("name".into(), "plain".into());
            listener.insert("redirect_to_https".into(), true.into());
            listener.insert("https_port".into(), 8443.into());
        })
        .toml();
    let proxy = TestProxy::start(&config).await;
    let answer = crate::support::get(
        &crate::support::client(),
        &proxy.url("/a/b?c=d"),
        Some("shop.test:80"),
    )
    .await;
    assert_eq!(answer.status, 308);
    assert_eq!(
        answer.headers.get("location").map(|l| l.to_str().unwrap()),
        Some("https://shop.test:8443/a/b?c=d")
    );
    assert_eq!(
        upstream.requests(),
        0,
        "a redirect is answered by the proxy"
    );
}

#[tokio::test]
async fn certificate_expiry_is_exported_per_listener_and_name() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let (proxy, _) = sni_proxy(&pki, upstream.addr, false).await;
    let metrics = metrics(&proxy).await;
    for name in ["localhost", "a.test", "b.test", "*.example.test"] {
        let prefix = format!(
            "switchyard_tls_certificate_expiry_timestamp_seconds{{listener=\"https\",name=\"{name}\"}} "
        );
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} missing from:\n{metrics}"))
            .parse()
            .expect("a number");
        // rcgen's default notAfter.
        let not_after = humantime::parse_rfc3339("4096-01-01T00:00:00Z").expect("a date");
        let expected = not_after
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert_eq!(value, expected, "{name}");
    }
}

async fn metrics(proxy: &TestProxy) -> String {
    let addr = proxy.gateway.admin_addr().expect("admin API");
    crate::support::get(
        &crate::support::client(),
        &format!("http://{addr}/metrics"),
        None,
    )
    .await
    .body
}

/// A signature_algorithms extension offering ecdsa_secp256r1_sha256.
const SIGNATURE_ALGORITHMS: [u8; 8] = [0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03];

/// A ClientHello offering TLS 1.1 at most (no supported_versions extension), with `extensions`.
fn tls11_client_hello(extensions: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.0/1.1 suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    if !extensions.is_empty() {
        body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
        body.extend_from_slice(extensions);
    }
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn sessions_resume_on_tls_1_2_and_1_3_and_the_access_log_has_the_tls_details() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let log = crate::support::temp_dir().join("access.log");
    let config = tls_config(upstream.addr, &[&leaf])
        .set("access_log.enabled", true)
        .set("access_log.path", log.display().to_string())
        .toml();
    let proxy = TestProxy::start(&config).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        // One client config keeps its session store across connections, as a browser does.
        let client = tls::client_config(&[version], &["h2"]);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let stream = tls::connect(proxy.addr, Some("localhost"), &client)
                .await
                .expect("handshake");
            kinds.push(stream.get_ref().1.handshake_kind());
            // A request lets the client read the TLS 1.3 tickets sent after the handshake.
            assert_eq!(Http::over(stream).await.get("localhost", "/").await.0, 200);
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(kinds, [Some(Full), Some(Resumed)], "{version:?}");
    }
    let line = poll_until(
        DEADLINE,
        "the access log line of a TLS 1.3 request",
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find(|l| l.contains("TLSv1.3"))
                .map(str::to_owned)
        },
    )
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(entry["tls"]["sni"], "localhost", "{line}");
    assert_eq!(entry["tls"]["alpn"], "h2", "{line}");
    assert!(
        entry["tls"]["cipher"]
            .as_str()
            .is_some_and(|c| c.starts_with("TLS13_")),
        "{line}"
    );
}

#[tokio::test]
async fn a_listener_with_hsts_sends_it_on_every_response_over_both_protocols() {
    let (_upstream, _leaf, proxy) = localhost_proxy(|c| {
        c.set_listener("tls.hsts.max_age", "1d")
            .set_listener("tls.hsts.include_subdomains", true)
    })
    .await;
    for alpn in ["http/1.1", "h2"] {
        let client = tls::client_config(&[&rustls::version::TLS13], &[alpn]);
        let stream = tls::connect(proxy.addr, Some("localhost"), &client)
            .await
            .expect("handshake");
        let mut http = Http::over(stream).await;
        for path in ["/", "/missing-route-too"] {
            let (head, _) = http.fetch("localhost", path).await;
            assert_eq!(
                head.headers["strict-transport-security"], "max-age=86400; includeSubDomains",
                "{alpn} {path}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_header_comes_before_the_tls_handshake() {
    let (_upstream, _leaf, proxy) =
        localhost_proxy(|c| c.set_listener("proxy_protocol", "required")).await;
    // A v1 header, as a balancer writes it, then TLS on the same connection.
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls::default_client())
        .connect(name, tcp)
        .await
        .expect("the handshake right after the header");
    let mut http = Http::over(stream).await;
    let (status, _, seen) = http.get("localhost", "/headers").await;
    assert_eq!(status, 200);
    assert!(
        seen.to_ascii_lowercase()
            .lines()
            .any(|l| l == "x-forwarded-for: 192.0.2.7"),
        "{seen}"
    );
}
