//! A real `redis-server` (Debian's package) on an ephemeral port of 127.0.0.1, with its files
//! in a temporary directory; stopped when dropped. Its append-only file is synced on every
//! write, so a killed server restarts with everything it had acknowledged, as a production
//! registry with persistence would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// A running (or deliberately killed) Redis server.
pub struct RedisServer {
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub async fn start() -> Self {
        let server = Self {
            addr: super::closed_port(),
            dir: super::temp_dir(),
            child: Mutex::new(None),
        };
        server.launch().await;
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// A command connection for the test's own writes and reads.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            child.kill().expect("kill redis-server");
            child.wait().expect("reap redis-server");
        }
    }

    /// Stops the server without closing anything (SIGSTOP): connections stay open and
    /// commands hang, as with a stalled or partitioned server.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = self.child.lock().unwrap().as_ref() {
            let status = Command::new("kill")
                .arg(signal)
                .arg(child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success());
        }
    }

    /// Starts the server again on the same port and files.
    pub async fn restart(&self) {
        self.kill();
        self.launch().await;
    }

    async fn launch(&self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server (Debian package redis-server)");
        *self.child.lock().unwrap() = Some(child);
        let url = self.url();
        super::poll_until(super::DEADLINE, "redis-server answering", || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                (pong == "PONG").then_some(())
            }
        })
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
