//! Certificate rotation through the real proxy: by reload and by the file watcher, new
//! handshakes get the new certificate while established connections serve on, the socket is
//! kept, and a broken replacement is rejected while the running certificate keeps serving.

use crate::support::tls::{self, Http, Leaf, Pki, presented, tls_config};
use crate::support::{DEADLINE, TestProxy, Upstream, poll_until};

/// A proxy started from a config file with one `localhost` certificate, the file watched or not,
/// and a connection to it that has served one request and keeps that certificate.
async fn rotating_proxy(watch: bool) -> (Upstream, Pki, Leaf, TestProxy, Http) {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let config = tls_config(upstream.addr, &[&leaf])
        .set("reload.watch", watch)
        .set("reload.debounce", "50ms");
    let path = crate::support::temp_config(&config.toml());
    let proxy = TestProxy::start_file(&path).await;
    let stream = tls::connect(proxy.addr, Some("localhost"), &tls::default_client())
        .await
        .expect("handshake");
    assert_eq!(tls::presented_by(&stream), leaf.der);
    let mut established = Http::over(stream).await;
    assert_eq!(established.get("localhost", "/").await.0, 200);
    (upstream, pki, leaf, proxy, established)
}

#[tokio::test]
async fn reload_rotates_the_certificate_keeps_the_socket_and_old_connections_and_rejects_a_broken_one()
 {
    let (_upstream, pki, leaf, proxy, mut established) = rotating_proxy(false).await;
    let old = leaf.der.clone();

    let new = pki.leaf("localhost", &["localhost"]).der; // same files, new certificate and key
    assert_ne!(new, old);
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        outcome["changes"]["listeners_added"],
        serde_json::json!([]),
        "{outcome}"
    );
    assert_eq!(
        outcome["changes"]["listeners_removed"],
        serde_json::json!([]),
        "{outcome}"
    );
    // Same address: the socket was kept (a re-bind of port 0 would have moved it).
    assert_eq!(
        presented(proxy.addr, Some("localhost"))
            .await
            .expect("new handshake"),
        new
    );
    assert_eq!(
        established.get("localhost", "/").await.0,
        200,
        "the old connection serves on"
    );

    // A broken replacement: the reload is rejected naming the file, and the new one still serves.
    tls::write_atomically(
        &leaf.cert,
        b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 400, "{outcome}");
    let problems = outcome["problems"].to_string();
    assert!(
        problems.contains("listeners[0].tls.certificates[0].cert")
            && problems.contains("localhost.pem"),
        "{problems}"
    );
    assert_eq!(
        presented(proxy.addr, Some("localhost"))
            .await
            .expect("handshake"),
        new
    );
}

#[tokio::test]
async fn replaced_certificate_files_are_picked_up_by_the_watcher_and_a_broken_one_is_rejected() {
    let (_upstream, pki, leaf, proxy, mut established) = rotating_proxy(true).await;

    let new = pki.leaf("localhost", &["localhost"]).der;
    let addr = proxy.addr;
    poll_until(
        DEADLINE,
        "the watcher to serve the new certificate",
        || async {
            let got = presented(addr, Some("localhost")).await.ok()?;
            (got == new).then_some(())
        },
    )
    .await;
    assert_eq!(
        established.get("localhost", "/").await.0,
        200,
        "the old connection serves on"
    );

    // A key that does not belong to the certificate: rejected, and the running one serves on.
    let other = pki.leaf("other", &["localhost"]);
    tls::write_atomically(&leaf.key, &std::fs::read(&other.key).expect("read key"));
    let last = poll_until(
        DEADLINE,
        "the watcher to reject the mismatched key",
        || async {
            let (_, last) = proxy.admin("GET", "/api/reload", None, None).await;
            (last["result"] == "rejected").then_some(last)
        },
    )
    .await;
    assert_eq!(last["trigger"], "certificate", "{last}");
    assert!(
        last.to_string()
            .contains("the key does not belong to the certificate"),
        "{last}"
    );
    assert_eq!(
        presented(addr, Some("localhost")).await.expect("handshake"),
        new
    );
}
