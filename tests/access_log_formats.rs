//! The `combined` access log line is NGINX's: the same requests through a real NGINX and through
//! Switchyard log identical lines, once the time is set aside.

mod support;

use std::process::{Child, Command, Stdio};
use support::config::ConfigBuilder;
use support::*;

/// NGINX serving `ok\n` on an ephemeral port with a `combined` access log; killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Nginx {
    fn start() -> Self {
        let dir = temp_dir();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("access.log");
        let conf = format!(
            "daemon off; master_process off; pid {dir}/nginx.pid; error_log {dir}/error.log;
             events {{}}
             http {{
               access_log {log} combined;
               client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
               uwsgi_temp_path {dir}; scgi_temp_path {dir};
               server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}
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
        Self { child, port, log }
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
    let read = |path: &std::path::Path, what: &str| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (text.lines().count() >= requests.len())
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
