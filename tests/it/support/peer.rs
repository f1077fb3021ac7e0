//! Real proxies from Debian beside Switchyard: HAProxy, NGINX and Varnish, each on a free port
//! with a config written for the test, stopped when dropped.

use super::{DEADLINE, poll_until, temp_dir};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A running HAProxy or NGINX.
pub struct Peer {
    child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    _dir: PathBuf,
}

impl Peer {
    /// HAProxy in TCP mode passing every connection to `to` with the PROXY protocol header
    /// `send` (`send-proxy` for v1, `send-proxy-v2`).
    pub async fn haproxy_tcp(to: SocketAddr, send: &str) -> Self {
        Self::haproxy(|addr| {
            format!(
                "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind {addr}\n  default_backend be\n\
                 backend be\n  server proxy {to} {send}\n"
            )
        })
        .await
    }

    /// HAProxy in HTTP mode taking the PROXY protocol (`accept-proxy`) and forwarding to
    /// `to` with `X-Proxy-Src` set to the client address and port the header named.
    pub async fn haproxy_accepting_proxy(to: SocketAddr) -> Self {
        Self::haproxy(|addr| {
            format!(
                "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
                 frontend fe\n  bind {addr} accept-proxy\n\
                 \x20 http-request set-header X-Proxy-Src %[src]:%[src_port]\n\
                 \x20 http-request set-header X-Proxy-Dst %[dst]:%[dst_port]\n  default_backend be\n\
                 backend be\n  server up {to}\n"
            )
        })
        .await
    }

    /// NGINX taking the PROXY protocol (`listen ... proxy_protocol`) and forwarding to `to`
    /// with `X-Proxy-Src` set to the client address and port the header named.
    pub async fn nginx_accepting_proxy(to: SocketAddr) -> Self {
        let addr = free_port();
        let dir = temp_dir();
        let config = dir.join("nginx.conf");
        std::fs::write(
            &config,
            format!(
                "daemon off;\nmaster_process off;\nerror_log stderr error;\npid {pid};\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n\
                 \x20 server {{\n    listen {addr} proxy_protocol;\n\
                 \x20   location / {{\n      proxy_set_header X-Proxy-Src $proxy_protocol_addr:$proxy_protocol_port;\n\
                 \x20     proxy_pass http://{to};\n    }}\n  }}\n}}\n",
                pid = dir.join("nginx.pid").display(),
                tmp = dir.display(),
            ),
        )
        .unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .spawn()
            .expect("nginx runs (tests/run.sh installs it)");
        Self::started(child, addr, dir).await
    }

    /// A Varnish cache in front of `origin` with Debian's default caching (two minutes for a
    /// 200 without cache headers); a hit answers `X-Varnish` with two transaction ids.
    pub async fn varnish(origin: SocketAddr) -> Self {
        let addr = free_port();
        let dir = temp_dir();
        let varnishd = ["/usr/sbin/varnishd", "varnishd"]
            .into_iter()
            .find(|path| !path.starts_with('/') || std::path::Path::new(path).exists())
            .unwrap_or("varnishd");
        let child = std::process::Command::new(varnishd)
            .args(["-F", "-j", "none", "-s", "malloc,16m", "-a"])
            .arg(addr.to_string())
            .arg("-b")
            .arg(origin.to_string())
            .arg("-n")
            .arg(dir.join("instance"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("varnishd runs (tests/run.sh installs varnish)");
        Self::started(child, addr, dir).await
    }

    async fn haproxy(config: impl FnOnce(SocketAddr) -> String) -> Self {
        let addr = free_port();
        let dir = temp_dir();
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config(addr)).unwrap();
        let child = std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .spawn()
            .expect("haproxy runs (tests/run.sh installs it)");
        Self::started(child, addr, dir).await
    }

    async fn started(child: std::process::Child, addr: SocketAddr, dir: PathBuf) -> Self {
        poll_until(DEADLINE, "the peer listening", || async {
            tokio::net::TcpStream::connect(addr).await.ok()
        })
        .await;
        Self {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
