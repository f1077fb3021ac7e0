//! Certificates by ACME from a real CA (pebble): obtained from an empty state by http-01 (on a
//! plain listener that otherwise redirects to HTTPS) and tls-alpn-01, verified with OpenSSL
//! against pebble's root, announced on the event stream, and taken from storage on a restart
//! without a new order.

use crate::support::pebble::{Pebble, openssl_verifies};
use crate::support::tls::presented;
use crate::support::{TestProxy, closed_port, poll_until, temp_dir};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Obtaining a certificate takes pebble a second or two; the issue's bound is 30 s.
const OBTAINED_WITHIN: Duration = Duration::from_secs(30);

/// A proxy answering pebble's validations: its plain listener redirects to HTTPS, its TLS
/// listener has a certificate for a.test and b.test by http-01 and one for c.test by
/// tls-alpn-01, and nothing else.
fn config(pebble: &Pebble, storage: &str, extra: &str) -> String {
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
        nowhere = closed_port(),
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
