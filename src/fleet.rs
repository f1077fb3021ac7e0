//! Fleet mode: operator state shared by every replica through one Redis, and every replica's
//! events published there. No cluster protocol: Redis holds the state, replicas read it.
//!
//! - Hash `switchyard:fleet:overrides`, field `<pool>/<backend>`: the operator state of one
//!   backend (drained or not, with its deadline; weight override), as JSON, with when (`at`,
//!   unix ms) and by which replica it was set. The latest write wins.
//! - Channel `switchyard:fleet:overrides`: the field just written, so replicas read it at once.
//!   A replica (re)connecting reads the whole hash, so one that restarts or was cut off from
//!   Redis catches up.
//! - Channel `switchyard:events`: every replica's events, as the admin event stream's JSON
//!   plus `replica`.

use crate::config::{BackendConfig, FleetConfig, is_name};
use crate::events::Numbered;
use crate::metrics::{self, Metrics};
use crate::redis_link::{self, Backoff};
use crate::upstream::MAX_DRAIN_DEADLINE;
use ::metrics::Gauge;
use redis::aio::{ConnectionManager, PubSubStream};
use redis::{AsyncCommands, Client, RedisResult};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The hash of shared operator state, and the channel announcing its changes.
pub const OVERRIDES: &str = "switchyard:fleet:overrides";
/// The channel every replica publishes its events on.
pub const EVENTS: &str = "switchyard:events";

/// One backend's operator state, as shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// Pool name.
    pub pool: String,
    /// Backend name.
    pub backend: String,
    /// Set while drained.
    pub drain: Option<SharedDrain>,
    /// The weight override, if any.
    pub weight: Option<u32>,
    /// When it was set (unix ms).
    pub at: u64,
    /// The replica whose admin API set it.
    pub by: String,
}

/// A shared drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDrain {
    /// When what remains is closed (unix ms), if ever.
    pub deadline: Option<u64>,
}

/// How far ahead of this replica's clock another replica's change may be dated: past it, the
/// change would win over every later one, so it is refused.
const MAX_CLOCK_AHEAD_MS: u64 = 3_600_000;

impl Override {
    /// The hash field of this backend.
    pub fn field(&self) -> String {
        format!("{}/{}", self.pool, self.backend)
    }

    /// Reads one stored entry and checks it as the admin API checks its input: names, a weight
    /// from 1 to 256, a drain deadline at most 30 days ahead, a date not in the future.
    /// `now_ms` is this replica's clock (unix ms).
    pub fn parse(text: &str, now_ms: u64) -> Result<Self, String> {
        let entry: Self = serde_json::from_str(text).map_err(|err| err.to_string())?;
        let ahead = |at: u64, slack: u64| at > now_ms.saturating_add(slack);
        let max_deadline_ms = u64::try_from(MAX_DRAIN_DEADLINE.as_millis()).unwrap_or(u64::MAX);
        if !is_name(&entry.pool) || !is_name(&entry.backend) {
            Err("pool or backend is not a name".to_owned())
        } else if entry.by.len() > 256 {
            Err("by: longer than 256 bytes".to_owned())
        } else if entry
            .weight
            .is_some_and(|w| !(1..=BackendConfig::MAX_WEIGHT).contains(&w))
        {
            Err(format!("weight {:?} is not from 1 to 256", entry.weight))
        } else if ahead(entry.at, MAX_CLOCK_AHEAD_MS) {
            Err(format!(
                "at {}: later than this replica's clock allows",
                entry.at
            ))
        } else if let Some(deadline) = entry.drain.and_then(|d| d.deadline)
            && ahead(deadline, max_deadline_ms.saturating_add(MAX_CLOCK_AHEAD_MS))
        {
            Err(format!(
                "drain deadline {deadline}: more than 30 days ahead"
            ))
        } else {
            Ok(entry)
        }
    }
}

/// Starts the fleet task: it stores what arrives on the returned sender, sends what other
/// replicas stored to `applied`, and publishes `events`.
pub fn spawn(
    config: &FleetConfig,
    applied: UnboundedSender<Override>,
    events: broadcast::Receiver<Numbered>,
    metrics: &Metrics,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> UnboundedSender<Override> {
    let (writes_tx, writes) = mpsc::unbounded_channel();
    match Client::open(config.redis.as_str()) {
        Ok(client) => {
            let link = Link {
                client,
                replica: config.replica.clone(),
                applied,
                commands: None,
                changes: None,
                pending: HashMap::new(),
                connected: metrics.gauge(metrics::FLEET_CONNECTED, &[]),
                down_logged: false,
            };
            tasks.spawn(link.run(writes, events, shutdown));
        }
        // Validation accepted the URL; only a bug gets here.
        Err(err) => tracing::error!(%err, "fleet mode off: bad Redis URL"),
    }
    writes_tx
}

struct Link {
    client: Client,
    replica: String,
    applied: UnboundedSender<Override>,
    commands: Option<ConnectionManager>,
    changes: Option<PubSubStream>,
    /// Local changes not yet stored (Redis away), the latest per backend.
    pending: HashMap<String, Override>,
    connected: Gauge,
    down_logged: bool,
}

impl Link {
    async fn run(
        mut self,
        mut writes: UnboundedReceiver<Override>,
        mut events: broadcast::Receiver<Numbered>,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        let mut retry_at = Instant::now();
        loop {
            if self.changes.is_none() && Instant::now() >= retry_at {
                match self.connect().await {
                    Ok(()) => backoff.reset(),
                    Err(err) => {
                        self.lost(&err);
                        retry_at = Instant::now() + backoff.next();
                    }
                }
            }
            let reconnect = redis_link::retry_due(self.changes.is_some(), retry_at);
            tokio::select! {
                Some(change) = writes.recv() => {
                    self.pending.insert(change.field(), change);
                    if let Err(err) = self.flush().await {
                        self.lost(&err);
                    }
                }
                message = redis_link::next_message(&mut self.changes) => match message {
                    Some(message) => {
                        let field: String = message.get_payload().unwrap_or_default();
                        if let Err(err) = self.read(Some(&field)).await {
                            self.lost(&err);
                        }
                    }
                    None => {
                        self.lost(&"subscription closed");
                        retry_at = Instant::now() + backoff.next();
                    }
                },
                event = events.recv() => match event {
                    Ok(event) => self.publish(&event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "fleet: events not published (too many at once)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = reconnect => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Subscribes, stores what waited, and reads everything other replicas stored.
    async fn connect(&mut self) -> RedisResult<()> {
        let pubsub = redis_link::subscribe(&self.client, OVERRIDES).await?;
        redis_link::connected(&mut self.commands, &self.client).await?;
        self.changes = Some(pubsub.into_on_message());
        self.flush().await?;
        self.read(None).await?;
        self.connected.set(1.0);
        if std::mem::take(&mut self.down_logged) {
            tracing::info!("fleet: Redis reachable again; shared state read");
        }
        Ok(())
    }

    /// Redis is away: local changes wait, the last known shared state stays.
    fn lost(&mut self, err: &dyn std::fmt::Display) {
        self.changes = None;
        self.connected.set(0.0);
        if !std::mem::replace(&mut self.down_logged, true) {
            tracing::warn!(%err, "fleet: Redis unreachable; local changes will be stored when it returns");
        }
    }

    async fn flush(&mut self) -> RedisResult<()> {
        let Some(conn) = self.commands.as_mut().filter(|_| !self.pending.is_empty()) else {
            return Ok(());
        };
        for (field, change) in &self.pending {
            // Stored while this replica was cut off, and newer: that one stands (the control
            // plane gets it from the read that follows a reconnection).
            let stored: Option<String> = conn.hget(OVERRIDES, field).await?;
            let stored = stored.and_then(|text| Override::parse(&text, change.at).ok());
            if stored.is_some_and(|stored| stored.at > change.at) {
                continue;
            }
            let json = serde_json::to_string(change).expect("an override serializes");
            let (): () = redis::pipe()
                .hset(OVERRIDES, field, json)
                .ignore()
                .publish(OVERRIDES, field)
                .ignore()
                .query_async(conn)
                .await?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Reads one field, or all, and hands each valid entry to the control plane.
    async fn read(&mut self, field: Option<&str>) -> RedisResult<()> {
        let Some(conn) = self.commands.as_mut() else {
            return Ok(());
        };
        let entries: Vec<String> = match field {
            Some(field) => conn
                .hget::<_, _, Option<String>>(OVERRIDES, field)
                .await?
                .into_iter()
                .collect(),
            None => conn.hvals(OVERRIDES).await?,
        };
        let now = unix_ms(SystemTime::now());
        for text in entries {
            match Override::parse(&text, now) {
                Ok(entry) => {
                    // The control plane gone means the proxy is stopping.
                    let _closed = self.applied.send(entry);
                }
                Err(err) => tracing::warn!(%err, "fleet: ignoring an invalid shared override"),
            }
        }
        Ok(())
    }

    async fn publish(&mut self, event: &Numbered) {
        let Some(conn) = self.commands.as_mut().filter(|_| self.changes.is_some()) else {
            return; // Redis away: the event stays in this replica's own stream only
        };
        let mut json = serde_json::to_value(event).expect("an event serializes");
        if let Some(object) = json.as_object_mut() {
            object.insert("replica".into(), self.replica.clone().into());
        }
        let published: RedisResult<i64> = conn.publish(EVENTS, json.to_string()).await;
        if let Err(err) = published {
            self.lost(&err);
        }
    }
}

/// `time` in unix milliseconds, as fleet records date things.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_795_000_000_000;

    fn entry(deadline: Option<u64>, weight: Option<u32>, at: u64) -> String {
        serde_json::json!({
            "pool": "web", "backend": "alpha", "by": "r1", "at": at, "weight": weight,
            "drain": deadline.map(|d| serde_json::json!({ "deadline": d })),
        })
        .to_string()
    }

    #[test]
    fn entries_out_of_bounds_are_refused() {
        let day = 86_400_000;
        assert!(Override::parse(&entry(Some(NOW + 29 * day), Some(7), NOW), NOW).is_ok());
        assert!(Override::parse(&entry(Some(NOW + 400 * day), None, NOW), NOW).is_err());
        assert!(Override::parse(&entry(Some(u64::MAX), None, NOW), NOW).is_err());
        assert!(Override::parse(&entry(None, Some(0), NOW), NOW).is_err());
        assert!(Override::parse(&entry(None, Some(257), NOW), NOW).is_err());
        assert!(Override::parse(&entry(None, None, u64::MAX), NOW).is_err());
        let bad_name = entry(None, None, NOW).replace("alpha", "al/pha");
        assert!(Override::parse(&bad_name, NOW).is_err());
    }

    proptest! {
        /// Any record, well-formed or not, is refused or within what the admin API accepts.
        #[test]
        fn any_record_is_refused_or_bounded(
            text in ".{0,80}",
            deadline: Option<u64>,
            weight: Option<u32>,
            at: u64,
        ) {
            let object = text.trim_start().starts_with('{');
            prop_assert!(Override::parse(&text, NOW).is_err() || object);
            if let Ok(entry) = Override::parse(&entry(deadline, weight, at), NOW) {
                prop_assert!(entry.weight.is_none_or(|w| (1..=256).contains(&w)));
                prop_assert!(entry.at <= NOW + MAX_CLOCK_AHEAD_MS);
                let remaining = entry.drain.and_then(|d| d.deadline).map_or(0, |d| d.saturating_sub(NOW));
                prop_assert!(u128::from(remaining) <= MAX_DRAIN_DEADLINE.as_millis() + u128::from(MAX_CLOCK_AHEAD_MS));
            }
        }
    }
}
