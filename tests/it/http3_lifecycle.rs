//! HTTP/3 connections over their life, with real clients: 0-RTT (`gtlsclient` resuming a
//! session), a backend killed under HTTP/3 load, a download across 100 reloads and certificate
//! rotations, and shutdown as quinn and h3's own client sees it.

use crate::support::h3::{gtlsclient, h3_client, h3_proxy, quinn_client};
use crate::support::tls::{Pki, tls_config_over};
use crate::support::upstream::{pattern, sha256_hex};
use crate::support::{
    DEADLINE, TestProxy, Upstream, eventually, metric, poll_until, temp_config, temp_dir,
};

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
    let (mut sender, driving) = h3_client(proxy.addr).await;
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
async fn quic_retry_validates_every_new_client_first() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c.set_listener("quic_retry", true)).await;
    for round in 1..=2 {
        let run = gtlsclient(proxy.addr, &[], &["/"]).await;
        assert_eq!(run.statuses(), [200], "{}", run.output);
        let line = format!("switchyard_quic_retries_total{{listener=\"https\"}} {round}");
        let metrics = crate::support::h3::metrics(&proxy).await;
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
}

#[tokio::test]
async fn a_reload_moves_http3_to_a_new_port_and_turns_it_off() {
    let upstream = Upstream::start("u").await;
    let pki = Pki::new();
    let leaf = pki.leaf("localhost", &["localhost"]);
    let free_udp = || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        socket.local_addr().expect("address").port()
    };
    let (first, second) = (free_udp(), free_udp());
    let version = |port: Option<u16>| {
        let config =
            tls_config_over(&[("u", upstream.addr, 1)], &[&leaf]).set("reload.watch", false);
        match port {
            Some(port) => config
                .set_listener("http3", true)
                .set_listener("http3_port", i64::from(port)),
            None => config,
        }
        .toml()
    };
    let path = temp_config(&version(Some(first)));
    let proxy = TestProxy::start_file(&path).await;
    let at = |port: u16| std::net::SocketAddr::new(proxy.addr.ip(), port);
    let served = |port: u16| async move {
        gtlsclient(at(port), &["--timeout=1s"], &["/"])
            .await
            .statuses()
            == [200]
    };
    assert!(served(first).await);
    std::fs::write(&path, version(Some(second))).expect("write config");
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    assert!(served(second).await, "the new port serves");
    eventually(DEADLINE, "the old port closed", || {
        std::net::UdpSocket::bind(at(first)).is_ok()
    })
    .await;
    std::fs::write(&path, version(None)).expect("write config");
    let (status, outcome) = proxy.admin("POST", "/api/reload", None, None).await;
    assert_eq!(status, 200, "{outcome}");
    eventually(DEADLINE, "HTTP/3 off", || {
        std::net::UdpSocket::bind(at(second)).is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_handshake_flood_sends_new_clients_a_retry_first() {
    let upstream = Upstream::start("u").await;
    let (proxy, _ca) = h3_proxy(&[&upstream], |c| c).await;
    // 70 handshakes begun from sockets that never answer: in progress until the timeout.
    let _silent = silent_initials(proxy.addr, 70).await;
    let gauge = "switchyard_quic_handshakes_in_progress{listener=\"https\"}";
    poll_until(DEADLINE, "the flood's handshakes in progress", || async {
        (metric(&proxy, gauge).await? >= 64.0).then_some(())
    })
    .await;
    // (The flood's packets past the 64th were sent a Retry already, which nobody answered.)
    // A real client now gets a Retry first, answers it, and is served.
    let retries = || async {
        metric(&proxy, "switchyard_quic_retries_total{listener=\"https\"}")
            .await
            .expect("the Retry counter")
    };
    let before = retries().await;
    let run = gtlsclient(proxy.addr, &[], &["/"]).await;
    assert_eq!(run.statuses(), [200], "{}", run.output);
    assert_eq!(retries().await, before + 1.0);
}

#[tokio::test]
async fn an_unfinished_handshake_times_out_with_early_data_on_too() {
    let upstream = Upstream::start("u").await;
    for early_data in [false, true] {
        let (proxy, _ca) = h3_proxy(&[&upstream], |c| {
            c.set_listener("early_data", early_data)
                .set_listener("tls.handshake_timeout", "1s")
        })
        .await;
        let _silent = silent_initials(proxy.addr, 1).await;
        let line =
            "switchyard_quic_handshake_failures_total{listener=\"https\",reason=\"timeout\"} 1";
        poll_until(DEADLINE, "the handshake timed out", || async {
            let metrics = crate::support::h3::metrics(&proxy).await;
            let idle = "switchyard_quic_handshakes_in_progress{listener=\"https\"} 0";
            (metrics.contains(line) && metrics.contains(idle)).then_some(())
        })
        .await;
    }
}

/// `count` real clients' first packets, each caught on a socket of ours, then sent to `addr` from
/// sockets that never answer (returned, to keep them open): that many handshakes begun and
/// never finished.
async fn silent_initials(addr: std::net::SocketAddr, count: usize) -> Vec<tokio::net::UdpSocket> {
    let mut silent = Vec::new();
    for _ in 0..count {
        let catcher = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("UDP");
        let client = quinn_client("h3");
        let _connecting = client
            .connect(catcher.local_addr().unwrap(), "localhost")
            .expect("connect");
        let mut initial = vec![0u8; 2048];
        let (len, _) = tokio::time::timeout(DEADLINE, catcher.recv_from(&mut initial))
            .await
            .expect("an Initial packet")
            .expect("received");
        let sender = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("UDP");
        sender.send_to(&initial[..len], addr).await.expect("sent");
        silent.push(sender);
    }
    silent
}
