//! Certificates by ACME from a real CA (pebble): obtained from an empty state by http-01 (on a
//! plain listener that otherwise redirects to HTTPS) and tls-alpn-01, verified with OpenSSL
//! against pebble's root, announced on the event stream, and taken from storage on a restart
//! without a new order.
//!
//! Longer than most files on purpose: each scenario runs a real CA and up to three replicas,
//! and its checks read best next to its setup.

use crate::support::events::EventStream;
use crate::support::pebble::{Pebble, openssl_verifies};
use crate::support::tls::{Http, connect, default_client, presented, presented_by};
use crate::support::{
    DEADLINE, TestProxy, Upstream, closed_port, eventually, poll_until, sample, temp_dir,
};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Obtaining a certificate takes pebble a second or two; the issue's bound is 30 s.
const OBTAINED_WITHIN: Duration = Duration::from_secs(30);

/// A proxy answering pebble's validations: its plain listener redirects to HTTPS, its TLS
/// listener has a certificate for a.test and b.test by http-01 and one for c.test by
/// tls-alpn-01, and nothing else.
fn config(pebble: &Pebble, storage: &str, extra: &str) -> String {
    config_to(pebble, storage, extra, closed_port())
}

/// `config`, its pool's one backend at `backend`.
fn config_to(pebble: &Pebble, storage: &str, extra: &str, backend: SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "test"
bind = "127.0.0.1:{http}"
redirect_to_https = true

[[listeners]]
name = "tls"
bind = "127.0.0.1:{tls}"
[listeners.tls]
[[listeners.tls.acme]]
names = ["a.test", "b.test"]
[[listeners.tls.acme]]
names = ["c.test"]
challenge = "tls-alpn-01"

[acme]
directory = "{directory}"
ca = "{ca}"
contact = "ops@example.com"
storage = "{storage}"

[[routes]]
name = "all"
pool = "p"

[[pools]]
name = "p"
[[pools.backends]]
name = "nowhere"
address = "{nowhere}"

[admin]
bind = "127.0.0.1:0"
{extra}
"#,
        http = pebble.http_port,
        tls = pebble.tls_port,
        directory = pebble.directory,
        ca = pebble.ca.display(),
        nowhere = backend,
    )
}

/// Waits until OpenSSL verifies the chain `addr` presents for each of `names` against `root`.
async fn served_and_verified(addr: SocketAddr, names: &[&str], root: &Path) {
    for name in names {
        let (name, root) = ((*name).to_owned(), root.to_owned());
        poll_until(
            OBTAINED_WITHIN,
            &format!("a verified certificate for {name}"),
            || {
                let (name, root) = (name.clone(), root.clone());
                async move {
                    tokio::task::spawn_blocking(move || openssl_verifies(addr, &name, &root).ok())
                        .await
                        .unwrap()
                }
            },
        )
        .await;
    }
}

/// The certificate named `name` in `GET /api/certificates`.
async fn listed(proxy: &TestProxy, name: &str) -> serde_json::Value {
    let (status, listing) = proxy.admin("GET", "/api/certificates", None, None).await;
    assert_eq!(status, 200);
    listing["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["names"][0] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} listed in {listing}"))
}

fn tls_addr(pebble: &Pebble) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], pebble.tls_port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_and_tls_alpn01_certificates_are_obtained_from_nothing_and_verify_against_pebbles_root()
 {
    let pebble = Pebble::start(&[]).await;
    let storage = temp_dir().join("acme");
    let proxy = TestProxy::start(&config(&pebble, &storage.display().to_string(), "")).await;
    let addr = tls_addr(&pebble);
    // Before its certificate is in hand, a name gets a TLS alert, and the proxy serves on.
    let early = presented(addr, Some("nothing.test")).await;
    assert!(early.is_err(), "no certificate for a name nobody ordered");

    served_and_verified(addr, &["a.test", "b.test", "c.test"], &pebble.root_file()).await;
    let a = presented(addr, Some("a.test")).await.unwrap();
    assert_eq!(
        a,
        presented(addr, Some("B.TEST")).await.unwrap(),
        "one certificate for a and b"
    );
    assert_ne!(a, presented(addr, Some("c.test")).await.unwrap());
    assert_eq!(pebble.orders(), 2, "one order per certificate");

    let (kept, _, _) = proxy.gateway.control().events.subscribe(Some(0));
    let obtained: Vec<String> = kept
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["type"] == "certificate_obtained")
        .map(|e| e["names"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(obtained.len(), 2, "{obtained:?}");
    assert!(obtained.contains(&"a.test".to_owned()) && obtained.contains(&"c.test".to_owned()));

    // Kept in files only its user may read.
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::read_dir(&storage)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("a.test/key.pem");
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_directory_storage_serves_the_stored_certificates_without_an_order() {
    let pebble = Pebble::start(&[]).await;
    let storage = temp_dir().join("acme").display().to_string();
    let root = pebble.root_file();
    let first = TestProxy::start(&config(&pebble, &storage, "")).await;
    served_and_verified(tls_addr(&pebble), &["a.test", "c.test"], &root).await;
    let before = presented(tls_addr(&pebble), Some("a.test")).await.unwrap();
    assert!(first.gateway.shutdown(Duration::from_secs(5)).await);
    assert_eq!(pebble.orders(), 2);

    let second = TestProxy::start(&config(&pebble, &storage, "")).await;
    served_and_verified(tls_addr(&pebble), &["a.test", "c.test"], &root).await;
    assert_eq!(
        presented(tls_addr(&pebble), Some("a.test")).await.unwrap(),
        before,
        "the stored certificate"
    );
    assert_eq!(pebble.orders(), 2, "no new order");
    drop(second);
}

/// Two replicas on one Redis, only the first reachable by the CA (it listens where pebble
/// validates): the second holds the order locks (set here, as if it had taken them first), so
/// it orders, and its answers reach the CA through the first. One order per certificate; both
/// serve it; a third replica started later takes it from Redis without ordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_orders_each_certificate_once_and_every_replica_serves_it() {
    let pebble = Pebble::start(&[]).await;
    let redis = crate::support::redis::RedisServer::start().await;
    let root = pebble.root_file();
    let fleet = |replica: &str| {
        format!(
            "[fleet]\nredis = \"{}\"\nreplica = \"{replica}\"\n",
            redis.url()
        )
    };
    let mut conn = redis.connection().await;
    for name in ["a.test", "c.test"] {
        let key = format!("switchyard:acme:{}:lock:{name}", pebble.directory);
        let _: () = redis::AsyncCommands::set(&mut conn, key, "replica-b")
            .await
            .unwrap();
    }
    // `storage` is left out: in fleet mode it is the fleet's Redis.
    let without_storage = |text: String| text.replace("storage = \"-\"\n", "");
    let a = TestProxy::start(&without_storage(config(&pebble, "-", &fleet("replica-a")))).await;
    let elsewhere = |text: String| {
        text.replace(&format!(":{}\"", pebble.http_port), ":0\"")
            .replace(&format!(":{}\"", pebble.tls_port), ":0\"")
    };
    let b = TestProxy::start(&elsewhere(without_storage(config(
        &pebble,
        "-",
        &fleet("replica-b"),
    ))))
    .await;
    let b_tls = b.gateway.addr_of("tls").unwrap();
    assert_ne!(b_tls.port(), pebble.tls_port);

    served_and_verified(tls_addr(&pebble), &["a.test", "b.test", "c.test"], &root).await;
    served_and_verified(b_tls, &["a.test", "b.test", "c.test"], &root).await;
    for name in ["a.test", "c.test"] {
        assert_eq!(
            presented(tls_addr(&pebble), Some(name)).await.unwrap(),
            presented(b_tls, Some(name)).await.unwrap(),
            "both replicas serve the one certificate for {name}"
        );
    }
    assert_eq!(
        pebble.orders(),
        2,
        "one order per certificate for the fleet"
    );
    let obtained = |proxy: &TestProxy| {
        let (kept, _, _) = proxy.gateway.control().events.subscribe(Some(0));
        kept.iter()
            .filter(|e| e.event.kind() == "certificate_obtained")
            .count()
    };
    assert_eq!(obtained(&b), 2, "the replica holding the locks ordered");
    assert_eq!(obtained(&a), 0, "the other took them from Redis");

    let c = TestProxy::start(&elsewhere(without_storage(config(
        &pebble,
        "-",
        &fleet("replica-c"),
    ))))
    .await;
    served_and_verified(
        c.gateway.addr_of("tls").unwrap(),
        &["a.test", "c.test"],
        &root,
    )
    .await;
    assert_eq!(pebble.orders(), 2, "a replica started later orders nothing");
}

/// An operator's renewal (`POST /api/certificates/{name}/renew`) swaps the certificate for new
/// handshakes while an HTTP/2 stream that began before it stays open and completes on its
/// connection; `GET /api/certificates` and the metrics show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_asked_for_swaps_the_certificate_while_an_http2_stream_stays_open() {
    let pebble = Pebble::start(&[]).await;
    let upstream = Upstream::start("held").await;
    let storage = temp_dir().join("acme").display().to_string();
    let proxy = TestProxy::start(&config_to(&pebble, &storage, "", upstream.addr)).await;
    let addr = tls_addr(&pebble);
    served_and_verified(addr, &["a.test"], &pebble.root_file()).await;
    let before = presented(addr, Some("a.test")).await.unwrap();

    let stream = connect(addr, Some("a.test"), &default_client())
        .await
        .unwrap();
    assert_eq!(presented_by(&stream), before);
    let mut h2 = Http::over(stream).await;
    assert!(matches!(h2, Http::Two(_)), "HTTP/2 by ALPN");
    let held = tokio::spawn(async move {
        let answer = h2.get("a.test", "/hold").await;
        (answer, h2)
    });
    eventually(DEADLINE, "the stream held upstream", || {
        upstream.held() == 1
    })
    .await;

    let entry = listed(&proxy, "a.test").await;
    assert_eq!(entry["source"], "acme");
    assert_eq!(entry["names"], serde_json::json!(["a.test", "b.test"]));
    assert!(entry["not_after"].is_string() && entry["renew_at"].is_string());
    assert!(entry["last_error"].is_null());
    let expiry = [("listener", "tls"), ("name", "a.test")];
    assert!(
        sample(
            &proxy,
            "switchyard_tls_certificate_expiry_timestamp_seconds",
            &expiry
        )
        .await
        .unwrap()
            > 0.0
    );

    let (status, _) = proxy
        .admin("POST", "/api/certificates/nope.test/renew", None, None)
        .await;
    assert_eq!(status, 404);
    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;
    let (status, _) = proxy
        .admin("POST", "/api/certificates/B.TEST/renew", None, None)
        .await;
    assert_eq!(status, 202, "renewed by any of its names");
    let renewed = events
        .next_matching(|e| e["type"] == "certificate_renewed")
        .await;
    assert_eq!(renewed["names"][0], "a.test");
    let after = presented(addr, Some("a.test")).await.unwrap();
    assert_ne!(after, before, "new handshakes get the new certificate");
    assert_eq!(pebble.orders(), 3);

    upstream.release_held();
    let ((status, version, body), mut h2) = held.await.unwrap();
    assert_eq!(
        (status.as_u16(), version, body.as_str()),
        (200, http::Version::HTTP_2, "released")
    );
    let (status, _, _) = h2.get("a.test", "/").await;
    assert_eq!(
        status, 200,
        "the connection serves on with its own certificate"
    );
    let obtained = [("result", "obtained")];
    assert_eq!(
        sample(&proxy, "switchyard_acme_orders_total", &obtained).await,
        Some(3.0)
    );
}

/// With `PEBBLE_WFE_NONCEREJECT=50` pebble refuses half the nonces it gave: orders still
/// succeed, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_succeed_when_the_ca_refuses_half_its_nonces() {
    let pebble = Pebble::start(&[("PEBBLE_WFE_NONCEREJECT", "50")]).await;
    let storage = temp_dir().join("acme").display().to_string();
    let _proxy = TestProxy::start(&config(&pebble, &storage, "")).await;
    served_and_verified(
        tls_addr(&pebble),
        &["a.test", "c.test"],
        &pebble.root_file(),
    )
    .await;
    assert_eq!(pebble.orders(), 2, "no order failed and was made again");
}

/// With the CA gone, a renewal fails, reaches the event stream with its error and a retry
/// some seconds later (backed off, not at once), and the old certificate keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_gone_a_renewal_backs_off_and_the_old_certificate_serves_on() {
    let pebble = Pebble::start(&[]).await;
    let storage = temp_dir().join("acme").display().to_string();
    let proxy = TestProxy::start(&config(&pebble, &storage, "")).await;
    let addr = tls_addr(&pebble);
    // Both orders finished: with the CA gone, only the renewal asked for fails.
    served_and_verified(addr, &["a.test", "c.test"], &pebble.root_file()).await;
    let before = presented(addr, Some("a.test")).await.unwrap();
    pebble.stop();

    let mut events = EventStream::open(proxy.gateway.admin_addr().unwrap(), None).await;
    let (status, _) = proxy
        .admin("POST", "/api/certificates/a.test/renew", None, None)
        .await;
    assert_eq!(status, 202);
    let failed = events
        .next_matching(|e| e["type"] == "certificate_failed")
        .await;
    assert_eq!(failed["names"][0], "a.test");
    assert!(!failed["error"].as_str().unwrap().is_empty());
    let parse = |t: &serde_json::Value| humantime::parse_rfc3339(t.as_str().unwrap()).unwrap();
    let wait = parse(&failed["retry_at"])
        .duration_since(parse(&failed["time"]))
        .unwrap();
    assert!(wait >= Duration::from_secs(7), "backed off: {wait:?}");
    assert_eq!(
        presented(addr, Some("a.test")).await.unwrap(),
        before,
        "the old one serves on"
    );
    let entry = listed(&proxy, "a.test").await;
    assert!(entry["last_error"].is_string() && entry["retry_at"].is_string());
    assert!(entry["not_after"].is_string(), "still served");
}
