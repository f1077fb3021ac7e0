//! The fleet's sticky-cookie key: one record in Redis every replica signs and verifies with, so
//! each honours the cookies of every other. The first replica to find no record writes one
//! with a fresh secret; a rotation (`POST /api/sticky/rotate` on any replica) writes a new
//! current secret and keeps the one before it accepted, then tells the others.
//!
//! Redis: the string `switchyard:fleet:sticky`, JSON `{"secrets": [<base64url>, ...], "at":
//! <unix ms>}` (current first, at most two, each 32 to 64 bytes), and the channel of the same
//! name announcing a change. A record that fails these checks is ignored and logged; while
//! Redis is away the keys last heard stay in force.

use crate::config::FleetConfig;
use crate::redis_link::{self, Backoff};
use crate::upstream::sticky_keys::{FleetKeys, random_secret};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::{ConnectionManager, PubSubStream};
use redis::{AsyncCommands, Client, RedisResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The record, and the channel announcing its changes.
pub const STICKY: &str = "switchyard:fleet:sticky";

/// The stored record.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    secrets: Vec<String>,
    at: u64,
}

/// Reads a stored record: the secrets, current first, if every check passes.
pub fn parse(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let record: Record = serde_json::from_str(text).map_err(|err| err.to_string())?;
    if !(1..=2).contains(&record.secrets.len()) {
        return Err(format!("{} secrets, not 1 or 2", record.secrets.len()));
    }
    record
        .secrets
        .iter()
        .map(|secret| {
            let bytes = URL_SAFE_NO_PAD
                .decode(secret)
                .map_err(|_| "a secret is not base64url".to_owned())?;
            if (32..=64).contains(&bytes.len()) {
                Ok(bytes)
            } else {
                Err(format!("a secret of {} bytes, not 32 to 64", bytes.len()))
            }
        })
        .collect()
}

fn record(secrets: &[&[u8]]) -> String {
    let record = Record {
        secrets: secrets.iter().map(|s| URL_SAFE_NO_PAD.encode(s)).collect(),
        at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    serde_json::to_string(&record).expect("a record serializes")
}

/// Starts the task keeping `keys` as the fleet's Redis says.
pub fn spawn(
    config: &FleetConfig,
    keys: Arc<FleetKeys>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    match Client::open(config.redis.as_str()) {
        Ok(client) => {
            tasks.spawn(
                Link {
                    client,
                    keys,
                    commands: None,
                    changes: None,
                }
                .run(shutdown),
            );
        }
        // Validation accepted the URL; only a bug gets here.
        Err(err) => tracing::error!(%err, "fleet sticky key off: bad Redis URL"),
    }
}

struct Link {
    client: Client,
    keys: Arc<FleetKeys>,
    commands: Option<ConnectionManager>,
    changes: Option<PubSubStream>,
}

impl Link {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        let mut retry_at = Instant::now();
        let mut rotation_waiting = false;
        loop {
            if self.changes.is_none() && Instant::now() >= retry_at {
                match self.connect().await {
                    Ok(()) => backoff.reset(),
                    Err(err) => {
                        tracing::debug!(%err, "fleet sticky key: Redis unreachable");
                        self.changes = None;
                        retry_at = Instant::now() + backoff.next();
                    }
                }
            }
            if rotation_waiting && self.changes.is_some() {
                match self.rotate().await {
                    Ok(()) => rotation_waiting = false,
                    Err(err) => {
                        tracing::warn!(%err, "fleet sticky key: rotation not stored yet");
                        self.changes = None;
                    }
                }
            }
            let reconnect = redis_link::retry_due(self.changes.is_some(), retry_at);
            tokio::select! {
                message = redis_link::next_message(&mut self.changes) => match message {
                    Some(_) => {
                        if let Err(err) = self.read().await {
                            tracing::debug!(%err, "fleet sticky key: read failed");
                            self.changes = None;
                        }
                    }
                    None => {
                        self.changes = None;
                        retry_at = Instant::now() + backoff.next();
                    }
                },
                () = self.keys.rotation_requested() => rotation_waiting = true,
                () = reconnect => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Subscribes, writes a first record if there is none, and takes the one stored.
    async fn connect(&mut self) -> RedisResult<()> {
        let pubsub = redis_link::subscribe(&self.client, STICKY).await?;
        let conn = redis_link::connected(&mut self.commands, &self.client).await?;
        let first = record(&[&random_secret()]);
        // Only the first replica's record is stored; the others read it.
        let _stored: Option<String> = redis::cmd("SET")
            .arg(STICKY)
            .arg(first)
            .arg("NX")
            .query_async(conn)
            .await?;
        self.changes = Some(pubsub.into_on_message());
        self.read().await
    }

    async fn read(&mut self) -> RedisResult<()> {
        let Some(conn) = self.commands.as_mut() else {
            return Ok(());
        };
        let text: Option<String> = conn.get(STICKY).await?;
        match text.as_deref().map(parse) {
            Some(Ok(secrets)) => self.keys.install(&secrets),
            Some(Err(err)) => tracing::warn!(%err, "fleet sticky key: ignoring an invalid record"),
            None => {
                tracing::warn!("fleet sticky key: the record is gone; keeping the keys in force")
            }
        }
        Ok(())
    }

    /// A new current secret; the one it replaces stays accepted.
    async fn rotate(&mut self) -> RedisResult<()> {
        let Some(conn) = self.commands.as_mut() else {
            return Ok(());
        };
        let text: Option<String> = conn.get(STICKY).await?;
        let current = text
            .as_deref()
            .and_then(|text| parse(text).ok())
            .and_then(|secrets| secrets.into_iter().next());
        let fresh = random_secret();
        let mut secrets: Vec<&[u8]> = vec![&fresh];
        secrets.extend(current.as_deref());
        let (): () = redis::pipe()
            .set(STICKY, record(&secrets))
            .ignore()
            .publish(STICKY, "rotated")
            .ignore()
            .query_async(conn)
            .await?;
        tracing::info!("fleet sticky key rotated; the previous key stays accepted");
        self.read().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_out_of_bounds_are_refused() {
        let ok = record(&[&[7u8; 32], &[8u8; 64]]);
        assert_eq!(parse(&ok).unwrap().len(), 2);
        assert!(parse(&record(&[&[7u8; 31]])).is_err());
        assert!(parse(&record(&[&[7u8; 65]])).is_err());
        assert!(parse(&record(&[])).is_err());
        assert!(parse(&record(&[&[1u8; 32], &[2u8; 32], &[3u8; 32]])).is_err());
        assert!(parse(r#"{"secrets": ["not base64!"], "at": 1}"#).is_err());
        assert!(parse("[]").is_err());
    }
}
