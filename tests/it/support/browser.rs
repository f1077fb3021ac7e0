//! A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests
//! of what a browser does: the status page, CORS, redirects of requests with bodies.

use super::{DEADLINE, client, get, poll_until, temp_dir};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Headless Chromium showing `url`, killed on drop.
pub struct Browser {
    child: Child,
    devtools_port: u16,
}

impl Browser {
    pub fn open(url: &str) -> Self {
        Self::open_with(url, &[])
    }

    /// Headless Chromium with `flags` besides the usual ones, showing `url`.
    pub fn open_with(url: &str, flags: &[String]) -> Self {
        let profile = temp_dir();
        // Chromium's own temporary files go in the profile, under target/, not /tmp.
        let mut child = Command::new("chromium")
            .env("TMPDIR", &profile)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1200,800",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(flags)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (Debian's chromium package) is installed");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut lines = stderr.lines().map_while(Result::ok);
        let devtools_port = lines
            .find_map(|line| {
                let rest = line.split("DevTools listening on ws://127.0.0.1:").nth(1)?;
                rest.split('/').next()?.parse().ok()
            })
            .expect("chromium prints its DevTools address");
        // Keep reading stderr so Chromium never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            devtools_port,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools session with the browser's page.
pub struct Page {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    pub async fn attach(browser: &Browser) -> Self {
        let list = format!("http://127.0.0.1:{}/json/list", browser.devtools_port);
        let url = poll_until(DEADLINE, "the page target", || async {
            let answer = get(&client(), &list, None).await;
            let targets: Value = serde_json::from_str(&answer.body).ok()?;
            targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(str::to_owned)
        })
        .await;
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { socket, next_id: 1 }
    }

    /// Calls a DevTools method and returns its result.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(DEADLINE, self.socket.next())
                .await
                .expect("a DevTools answer")
                .expect("the DevTools connection open")
                .unwrap();
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["id"] == id {
                    return value["result"].clone();
                }
            }
        }
    }

    /// Evaluates `expression` until `done` accepts its value (returned), for at most `DEADLINE`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let value = self.eval(expression).await;
            if done(&value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what} (last: {value:?})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Evaluates `expression` in the page and returns its value as a string.
    pub async fn eval(&mut self, expression: &str) -> String {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        match &result["result"]["value"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}
