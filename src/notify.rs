//! Webhook notifications: every event of the admin API's stream (backend state changes, panic
//! mode, weights, reloads) POSTed as the same JSON to each `[[notify.webhooks]]` receiver that
//! wants its type, retried with backoff. Each webhook reads the stream through a bounded queue
//! of its own: a slow or dead receiver never delays the control plane; what does not fit is
//! dropped, counted in `switchyard_webhook_events_total{result="dropped"}` and logged once per
//! run of drops.

use crate::body::UpstreamBody;
use crate::config::{TokenSource, WebhookConfig};
use crate::events::{EventLog, Numbered};
use crate::metrics::{self, Metrics};
use crate::upstream::endpoint::Endpoint;
use ::metrics::Counter;
use bytes::Bytes;
use http::{HeaderValue, header};
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The running webhooks; replaced whole when a reload changes them.
#[derive(Debug)]
pub struct Notifier {
    events: Arc<EventLog>,
    metrics: Metrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Stops the current webhooks' tasks.
    running: CancellationToken,
}

impl Notifier {
    /// Starts delivering to `webhooks`.
    pub fn new(
        webhooks: &[WebhookConfig],
        events: Arc<EventLog>,
        metrics: Metrics,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let mut notifier = Self {
            events,
            metrics,
            tasks,
            running: shutdown.child_token(),
            shutdown,
        };
        notifier.apply(webhooks);
        notifier
    }

    /// Replaces the running webhooks with `webhooks` (events queued for the old ones are lost).
    pub fn apply(&mut self, webhooks: &[WebhookConfig]) {
        self.running.cancel();
        self.running = self.shutdown.child_token();
        for config in webhooks {
            let counters = Counters::new(&self.metrics, &config.name);
            let (queue, queued) = mpsc::channel(config.queue);
            // Subscribed now, so nothing published from here on is missed.
            let (_, _, stream) = self.events.subscribe(None);
            let stop = self.running.clone();
            self.tasks.spawn(enqueue(
                stream,
                queue,
                config.clone(),
                counters.dropped.clone(),
                stop.clone(),
            ));
            self.tasks
                .spawn(deliver(queued, config.clone(), counters, stop));
        }
    }
}

/// `switchyard_webhook_events_total` of one webhook, by result, registered at zero.
#[derive(Debug, Clone)]
struct Counters {
    delivered: Counter,
    failed: Counter,
    dropped: Counter,
}

impl Counters {
    fn new(metrics: &Metrics, webhook: &str) -> Self {
        let counter = |result| {
            metrics.counter(
                metrics::WEBHOOK_EVENTS,
                &[("webhook", webhook), ("result", result)],
            )
        };
        Self {
            delivered: counter("delivered"),
            failed: counter("failed"),
            dropped: counter("dropped"),
        }
    }
}

/// Moves the events a webhook wants from the stream into its queue, never waiting for room.
async fn enqueue(
    mut stream: broadcast::Receiver<Numbered>,
    queue: mpsc::Sender<Numbered>,
    config: WebhookConfig,
    dropped: Counter,
    stop: CancellationToken,
) {
    let mut dropping = false;
    loop {
        let event = tokio::select! {
            event = stream.recv() => event,
            () = stop.cancelled() => return,
        };
        let missed = match event {
            Ok(event) if !wanted(&config, &event) => continue,
            Ok(event) => match queue.try_send(event) {
                Ok(()) => {
                    dropping = false;
                    continue;
                }
                Err(mpsc::error::TrySendError::Full(_)) => 1,
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            Err(broadcast::error::RecvError::Lagged(missed)) => missed,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        dropped.increment(missed);
        if !dropping {
            dropping = true;
            tracing::warn!(webhook = %config.name, "webhook receiver too slow: dropping events until it catches up");
        }
    }
}

/// Whether the webhook's `events` filter lets this event's type through.
fn wanted(config: &WebhookConfig, event: &Numbered) -> bool {
    let kind = event.event.kind();
    config.events.is_empty() || config.events.iter().any(|wanted| wanted == kind)
}

/// POSTs queued events one at a time, each retried with doubling backoff.
async fn deliver(
    mut queued: mpsc::Receiver<Numbered>,
    config: WebhookConfig,
    counters: Counters,
    stop: CancellationToken,
) {
    let target = match Target::new(&config) {
        Ok(target) => target,
        Err(err) => {
            tracing::error!(webhook = %config.name, %err, "webhook disabled");
            return;
        }
    };
    loop {
        let event = tokio::select! {
            Some(event) = queued.recv() => event,
            () = stop.cancelled() => return,
            else => return,
        };
        let body = match serde_json::to_vec(&event) {
            Ok(body) => Bytes::from(body),
            Err(err) => {
                tracing::error!(%err, "cannot serialize an event");
                continue;
            }
        };
        let mut wait = config.backoff;
        let mut attempt = 0;
        loop {
            match target.post(body.clone(), config.timeout).await {
                Ok(()) => {
                    counters.delivered.increment(1);
                    break;
                }
                Err(err) if attempt < config.retries => {
                    tracing::debug!(webhook = %config.name, %err, ?wait, "webhook delivery failed; retrying");
                    attempt += 1;
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => return,
                    }
                    wait = wait.saturating_mul(2);
                }
                Err(err) => {
                    counters.failed.increment(1);
                    tracing::warn!(webhook = %config.name, id = event.id, %err, "webhook delivery failed; event given up");
                    break;
                }
            }
        }
    }
}

/// Where a webhook POSTs: its URL's endpoint, and its token.
struct Target {
    endpoint: Endpoint,
    token: Option<HeaderValue>,
}

impl Target {
    fn new(config: &WebhookConfig) -> Result<Self, String> {
        let token = match &config.token {
            None => None,
            Some(source) => {
                let secret = read_token(source)?;
                let value = HeaderValue::from_str(&format!("Bearer {secret}"))
                    .map_err(|_| "the token is not a valid header value")?;
                Some(value)
            }
        };
        Ok(Self {
            endpoint: Endpoint::new(&config.url)?,
            token,
        })
    }

    /// One attempt: a 2xx answer within `timeout` is a delivery.
    async fn post(&self, body: Bytes, timeout: Duration) -> Result<(), String> {
        let mut request = self
            .endpoint
            .request(http::Method::POST, UpstreamBody::Bytes(Full::new(body)));
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(token) = &self.token {
            headers.insert(header::AUTHORIZATION, token.clone());
        }
        match self.endpoint.send(request, timeout).await? {
            response if response.status().is_success() => Ok(()),
            response => Err(format!("status {}", response.status().as_u16())),
        }
    }
}

/// A webhook's bearer token from its environment variable or file.
fn read_token(source: &TokenSource) -> Result<String, String> {
    let secret = match source {
        TokenSource::Env(name) => {
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
        }
        TokenSource::File(path) => std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read {}: {err}", path.display()))?,
    };
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(secret)
}
