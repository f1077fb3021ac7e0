//! The real `switchyard` binary as a child process, with the addresses it logged.

use super::{DEADLINE, poll_until};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// The proxy binary running on a config file, with the addresses it logged.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Running {
    /// Runs `switchyard run --config PATH` and waits for its listener and admin addresses.
    pub fn start(path: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--config"])
            .arg(path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the switchyard binary");
        // Operational logs go to stderr (stdout is the access log's).
        let stdout = child.stderr.take().expect("stderr");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("proxy: {line}");
                // Keep draining after the addresses are found, so the proxy never sees EPIPE.
                lines_tx.send(line).ok();
            }
        });
        let addr_after = |line: &str, marker: &str| {
            let rest = &line[line.find(marker)? + marker.len()..];
            let addr = rest.split("addr=").nth(1)?.split_whitespace().next()?;
            addr.parse::<SocketAddr>().ok()
        };
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = lines
                .recv_timeout(DEADLINE)
                .expect("the proxy logs its addresses");
            addr = addr.or_else(|| addr_after(&line, "listening listener=test"));
            admin = admin.or_else(|| addr_after(&line, "admin API listening"));
        }
        Self {
            child,
            addr: addr.unwrap(),
            admin: admin.unwrap(),
        }
    }

    /// Sends signal `name` (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    pub async fn exit(&mut self) -> bool {
        let child = &mut self.child;
        poll_until(DEADLINE, "the proxy to exit", || {
            std::future::ready(child.try_wait().expect("wait"))
        })
        .await
        .success()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
