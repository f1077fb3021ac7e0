//! The `combined` access log line is NGINX's: the same requests through a real NGINX and through
//! Switchyard log identical lines, once the time is set aside.

use crate::support::config::ConfigBuilder;
use crate::support::*;
use std::process::{Child, Command, Stdio};

/// NGINX serving `ok\n` on an ephemeral port (HTTP/1.x) and another (h2c with prior
/// knowledge) with a `combined` access log; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    h2_port: u16,
    log: std::path::PathBuf,
}

impl Nginx {
    fn start() -> Self {
        let dir = temp_dir();
        let (port, h2_port) = (
            crate::support::closed_port().port(),
            crate::support::closed_port().port(),
        );
        let log = dir.join("access.log");
        let conf = format!(
            "daemon off; master_process off; pid {dir}/nginx.pid; error_log {dir}/error.log;
             events {{}}
             http {{
               access_log {log} combined;
               client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
               uwsgi_temp_path {dir}; scgi_temp_path {dir};
               server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}
               server {{ listen 127.0.0.1:{h2_port} http2; location / {{ return 200 \"ok\\n\"; }} }}
             }}",
            dir = dir.display(),
            log = log.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (Debian's nginx-light) is installed");
        Self {
            child,
            port,
            h2_port,
            log,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log's lines with the `[time]` field removed.
fn lines_without_time(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| match (line.find(" ["), line.find("] ")) {
            (Some(open), Some(close)) => format!("{}{}", &line[..open], &line[close + 1..]),
            _ => line.to_owned(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_lines_are_the_ones_nginx_writes() {
    let nginx = Nginx::start();
    let (up, _) = upstream::start_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
    )
    .await;
    let log = temp_dir().join("access.log");
    let config = ConfigBuilder::single_pool(&[("up", up, 1)])
        .set("access_log.enabled", true)
        .set("access_log.format", "combined")
        .set("access_log.path", log.display().to_string());
    let proxy = TestProxy::start(&config.toml()).await;
    let nginx_addr: std::net::SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().unwrap();
    poll_until(DEADLINE, "nginx listening", || async {
        tokio::net::TcpStream::connect(nginx_addr).await.ok()
    })
    .await;

    let nginx_h2: std::net::SocketAddr = format!("127.0.0.1:{}", nginx.h2_port).parse().unwrap();
    poll_until(DEADLINE, "nginx listening for h2c", || async {
        tokio::net::TcpStream::connect(nginx_h2).await.ok()
    })
    .await;

    let requests: [&[u8]; 3] = [
        b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nUser-Agent: t \"q\" \xc3\xa9\\\r\nReferer: http://r.example/p?q\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD /head HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    ];
    for request in requests {
        for addr in [nginx_addr, proxy.addr] {
            let answer = raw::exchange(addr, request).await;
            assert_eq!(raw::status(&answer), 200, "{answer}");
        }
    }
    // HTTP/2 has no request line: NGINX logs the path and query, with "HTTP/2.0".
    for addr in [nginx_h2, proxy.addr] {
        assert_eq!(h2_get(addr, "/h2?x=1").await, 200);
    }
    let read = |path: &std::path::Path, what: &str| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (text.lines().count() > requests.len())
            .then_some(text)
            .ok_or(what.to_owned())
    };
    let ours = poll_until(DEADLINE, "our lines", || async { read(&log, "ours").ok() }).await;
    let theirs = poll_until(DEADLINE, "nginx's lines", || async {
        read(&nginx.log, "nginx").ok()
    })
    .await;
    assert_eq!(lines_without_time(&ours), lines_without_time(&theirs));
}

/// GET `path` over h2c (prior knowledge) from `addr`, with a User-Agent; returns the status.
async fn h2_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    use http_body_util::BodyExt;
    let (mut sender, _conn) = h2c(addr).await;
    let request = http::Request::get(format!("http://{addr}{path}"))
        .header("user-agent", "h2-test")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.expect("h2 request");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("the body");
    status
}

/// An HTTP/2 request's host is its `:authority`, in the JSON log as in every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_log_their_authority_as_host() {
    let up = Upstream::start("up").await;
    let log = temp_dir().join("access.log");
    let config = ConfigBuilder::single_pool(&[("up", up.addr, 1)])
        .set("access_log.enabled", true)
        .set("access_log.format", "json")
        .set("access_log.path", log.display().to_string());
    let proxy = TestProxy::start(&config.toml()).await;
    assert_eq!(h2_get(proxy.addr, "/x?y=1").await, 200);
    let line = poll_until(DEADLINE, "the access log line", || async {
        std::fs::read_to_string(&log)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
    })
    .await;
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["host"], format!("{}", proxy.addr), "{line}");
    assert_eq!(record["protocol"], "HTTP/2.0", "{line}");
    assert_eq!(record["path"], "/x", "{line}");
}
