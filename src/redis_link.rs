//! What registry discovery, registration and fleet mode share about talking to Redis: one
//! connection setup with short timeouts (a dead Redis must fail a command quickly, never hang
//! the task), and the backoff between reconnections.

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub, PubSubStream};
use redis::{Client, RedisResult};
use std::time::Duration;

/// How long connecting, or one command, may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// A command connection that reconnects by itself; fails if Redis cannot be reached now.
pub async fn manager(client: &Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_with_config(client.clone(), config).await
}

/// The command connection in `slot`, made first if there is none yet.
pub async fn connected<'a>(
    slot: &'a mut Option<ConnectionManager>,
    client: &Client,
) -> RedisResult<&'a mut ConnectionManager> {
    match slot {
        Some(conn) => Ok(conn),
        None => Ok(slot.insert(manager(client).await?)),
    }
}

/// A subscription connection listening on `channel`.
pub async fn subscribe(client: &Client, channel: &str) -> RedisResult<PubSub> {
    let mut pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    tokio::time::timeout(TIMEOUT, pubsub.subscribe(channel))
        .await
        .map_err(|_| timed_out())??;
    Ok(pubsub)
}

/// The next message of a subscription; never, without one.
pub async fn next_message(changes: &mut Option<PubSubStream>) -> Option<redis::Msg> {
    match changes {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves at `retry_at` while not `subscribed` (time to connect again); never while it is.
pub async fn retry_due(subscribed: bool, retry_at: tokio::time::Instant) {
    if subscribed {
        std::future::pending().await
    } else {
        tokio::time::sleep_until(retry_at).await;
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

/// Doubling waits between reconnection attempts, from 100 ms to 5 s.
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(Self::FIRST)
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The wait before the next attempt; the one after is twice as long.
    pub fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        wait
    }

    /// Connected again: the next outage starts from the shortest wait.
    pub fn reset(&mut self) {
        self.0 = Self::FIRST;
    }
}
