//! A real ACME CA: Debian's `pebble`, its HTTPS certificate made here (the package ships none),
//! with `pebble-challtestsrv` as its DNS server answering 127.0.0.1 for every name. Its
//! validations connect to `http_port` (http-01) and `tls_port` (tls-alpn-01) on 127.0.0.1,
//! where the test's proxy listens. Stopped when dropped.

use super::tls::Pki;
use super::{DEADLINE, closed_port, poll_until};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// A running pebble and its DNS server.
pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// The CA file that makes pebble's HTTPS trusted (`[acme] ca`).
    pub ca: PathBuf,
    /// Where http-01 validations connect.
    pub http_port: u16,
    /// Where tls-alpn-01 validations connect.
    pub tls_port: u16,
    listen: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    dir: PathBuf,
    env: Vec<(String, String)>,
    pebble: Mutex<Option<Child>>,
    challtestsrv: Mutex<Option<Child>>,
}

impl Pebble {
    /// Starts pebble and its DNS server, and waits until the directory answers. `env` adds
    /// pebble's own settings (`PEBBLE_WFE_NONCEREJECT`, ...).
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let pki = Pki::new();
        let leaf = pki.leaf("pebble", &["localhost", "127.0.0.1"]);
        let ca = pki.ca_file("ca.pem");
        let dir = pki.dir.clone();
        let (listen, management, dns) = (closed_port(), closed_port(), closed_port());
        let (http_port, tls_port) = (closed_port().port(), closed_port().port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": leaf.cert,
            "privateKey": leaf.key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write pebble config");
        let pebble = Self {
            directory: format!("https://{listen}/dir"),
            ca,
            http_port,
            tls_port,
            listen,
            management,
            dns,
            dir,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            pebble: Mutex::new(None),
            challtestsrv: Mutex::new(None),
        };
        let challtestsrv_management = closed_port();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &challtestsrv_management.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (Debian package pebble)");
        *pebble.challtestsrv.lock().unwrap() = Some(challtestsrv);
        // Its management port opens after its DNS server.
        poll_until(DEADLINE, "pebble-challtestsrv listening", || async move {
            tokio::net::TcpStream::connect(challtestsrv_management)
                .await
                .ok()
        })
        .await;
        pebble.launch().await;
        pebble
    }

    /// Starts pebble (again), keeping its settings; it forgets its orders and makes a new root.
    pub async fn launch(&self) {
        let log = std::fs::File::create(self.dir.join("pebble.log")).expect("pebble log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            .args(["-dnsserver", &self.dns.to_string()])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("pebble runs (Debian package pebble)");
        *self.pebble.lock().unwrap() = Some(child);
        let listen = self.listen;
        poll_until(DEADLINE, "pebble listening", || async move {
            tokio::net::TcpStream::connect(listen).await.ok()
        })
        .await;
    }

    /// Kills pebble (its DNS server stays).
    pub fn stop(&self) {
        if let Some(mut child) = self.pebble.lock().unwrap().take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// The orders pebble has taken since it (re)started, from its log.
    pub fn orders(&self) -> usize {
        std::fs::read_to_string(self.dir.join("pebble.log"))
            .unwrap_or_default()
            .matches("Added order")
            .count()
    }

    /// pebble's root certificate (`/roots/0` on its management port), written to a file.
    pub fn root_file(&self) -> PathBuf {
        let path = self.dir.join("root.pem");
        let output = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "pebble's root is fetched");
        std::fs::write(&path, output.stdout).expect("write root");
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut child) = self.challtestsrv.lock().unwrap().take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// What `openssl s_client` says of the chain `addr` presents for `name`, verified against
/// `root` with the host name checked: `Ok(())` when it verified a presented chain (OpenSSL also
/// says `Verify return code: 0 (ok)` when the handshake failed before any), else its output.
pub fn openssl_verifies(
    addr: SocketAddr,
    name: &str,
    root: &std::path::Path,
) -> Result<(), String> {
    let root = root.display().to_string();
    let text = s_client(
        addr,
        name,
        &[
            "-verify_hostname",
            name,
            "-verify_return_error",
            "-CAfile",
            &root,
        ],
    );
    if text.contains(&format!("Verified peername: {name}")) && text.contains("Verification: OK") {
        Ok(())
    } else {
        Err(text)
    }
}

/// What `openssl s_client` prints of a handshake with `addr` asking for `name`, with `extra`
/// options.
pub fn s_client(addr: SocketAddr, name: &str, extra: &[&str]) -> String {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
