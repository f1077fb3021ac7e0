//! `GET /api/events`: Server-Sent Events. Each event is an `id:` line (its number) and one
//! `data:` line of JSON; a client reconnecting with `Last-Event-ID` first gets the events it
//! missed from a short history (or a `lagged` event counting those no longer kept). A comment
//! every 15 s keeps intermediaries from closing the connection.

use super::AdminState;
use super::body::AdminBody;
use crate::events::Numbered;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Starts streaming events to one subscriber.
pub(super) fn stream<B>(req: &Request<B>, state: &AdminState) -> Response<AdminBody> {
    let last_seen = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (replay, lost, mut events) = state.control.events.subscribe(last_seen);
    let shutdown = state.shutdown.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut backlog: Vec<Bytes> = Vec::new();
        if lost > 0 {
            backlog.push(lagged(lost));
        }
        backlog.extend(replay.iter().filter_map(frame));
        for chunk in backlog {
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let chunk = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => match frame(&event) {
                        Some(chunk) => chunk,
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => lagged(missed),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
            };
            if tx.send(chunk).await.is_err() {
                return; // the subscriber went away
            }
        }
    });
    let mut reply = Response::new(AdminBody::Events(rx));
    let headers = reply.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

/// One event as SSE: its id, then its JSON.
fn frame(event: &Numbered) -> Option<Bytes> {
    match serde_json::to_string(event) {
        Ok(json) => Some(Bytes::from(format!("id: {}\ndata: {json}\n\n", event.id))),
        Err(err) => {
            tracing::error!(%err, "cannot serialize an event");
            None
        }
    }
}

/// Says that `missed` events could not be delivered.
fn lagged(missed: u64) -> Bytes {
    Bytes::from(format!(
        "data: {{\"type\":\"lagged\",\"missed\":{missed}}}\n\n"
    ))
}
