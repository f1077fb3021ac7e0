//! A subscriber to the admin API's Server-Sent Events, as `curl -N` would read them.

use super::DEADLINE;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::time::Instant;

/// An open `/api/events` stream.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
    _sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl EventStream {
    /// Subscribes to the admin API at `admin`, resuming after `last_event_id` if given.
    pub async fn open(admin: SocketAddr, last_event_id: Option<u64>) -> Self {
        let stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut request = http::Request::get(format!("http://{admin}/api/events"))
            .header("host", admin.to_string());
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = sender
            .send_request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response.into_body(),
            buffer: String::new(),
            _sender: sender,
        }
    }

    /// The next event (its JSON, which carries its `id`); fails the test after `DEADLINE`.
    pub async fn next(&mut self) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let event: Value = serde_json::from_str(data.trim()).expect("event is JSON");
                    if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                        assert_eq!(event["id"].to_string(), id.trim(), "id line and JSON agree");
                    }
                    return event;
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("an event within the deadline")
                .expect("stream open")
                .expect("frame");
            if let Some(data) = frame.data_ref() {
                self.buffer.push_str(&String::from_utf8_lossy(data));
            }
        }
    }

    /// The next event satisfying `wanted`, skipping others.
    pub async fn next_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let event = self.next().await;
            if wanted(&event) {
                return event;
            }
        }
    }
}

/// An event in short: `backend a healthy->draining`, `panic pool on`, `weight ...`.
pub fn summary(event: &Value) -> String {
    match event["type"].as_str() {
        Some("backend") => format!(
            "backend {} {}->{}",
            event["backend"].as_str().unwrap_or("?"),
            event["from"].as_str().unwrap_or("?"),
            event["to"].as_str().unwrap_or("?")
        ),
        Some("panic") => format!(
            "panic {} {}",
            event["pool"].as_str().unwrap_or("?"),
            if event["active"] == true { "on" } else { "off" }
        ),
        other => format!("{} {}", other.unwrap_or("?"), event),
    }
}
