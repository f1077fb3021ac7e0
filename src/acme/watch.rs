//! Fleet mode's shared challenge answers: the ordering replica puts its answers in Redis and
//! announces them, every replica's watcher installs them and acknowledges, and the order goes
//! on once every replica that heard has acknowledged. The watcher also wakes the ACME task
//! when a replica stores a certificate.

use super::solver::Answer;
use super::storage::{Storage, StorageError};
use crate::live_certs::LiveCerts;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long shared answers stay in Redis if their replica dies mid-order.
const ANSWERS_FOR: Duration = Duration::from_secs(600);
/// How long the ordering replica waits for the others to acknowledge its answers; one that
/// does not by then may miss the CA's validation (the order then fails and is retried).
const ACKS_WITHIN: Duration = Duration::from_secs(5);

impl Storage {
    /// Shares `answers` with every replica and waits (up to `ACKS_WITHIN`) until every one
    /// listening has installed them. Nothing to do for a directory.
    pub async fn share(&self, answers: &[Answer]) -> Result<(), StorageError> {
        let Self::Redis { conn, prefix, .. } = self else {
            return Ok(());
        };
        let mut conn = conn.clone();
        let fields: Vec<(String, String)> = answers.iter().map(Answer::to_field).collect();
        let key = format!("{prefix}:answers");
        let mut pipe = redis::pipe();
        pipe.hset_multiple(&key, &fields).ignore();
        pipe.pexpire(
            &key,
            i64::try_from(ANSWERS_FOR.as_millis()).unwrap_or(i64::MAX),
        )
        .ignore();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let round = fastrand::u64(..);
        let heard: i64 = conn
            .publish(format!("{prefix}:changed"), format!("answers:{round}"))
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let acks = format!("{prefix}:acks:{round}");
        let deadline = tokio::time::Instant::now() + ACKS_WITHIN;
        loop {
            let acked: i64 = conn.scard(&acks).await.map_err(|e| format!("redis: {e}"))?;
            if acked >= heard {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    acked,
                    heard,
                    "ACME answers not acknowledged by every replica in time: ordering anyway"
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes `answers` out of Redis (every replica drops them at the next announcement).
    pub async fn unshare(&self, answers: &[Answer]) {
        let Self::Redis { conn, prefix, .. } = self else {
            return;
        };
        if answers.is_empty() {
            return;
        }
        let mut conn = conn.clone();
        let fields: Vec<String> = answers.iter().map(|a| a.to_field().0).collect();
        let removed: Result<i64, _> = conn.hdel(format!("{prefix}:answers"), fields).await;
        let announced: Result<i64, _> =
            conn.publish(format!("{prefix}:changed"), "answers:0").await;
        if let Err(err) = removed.and(announced) {
            tracing::warn!(%err, "ACME answers not withdrawn from Redis: they expire by themselves");
        }
    }

    /// In fleet mode: serves every replica's shared answers here, acknowledging each round,
    /// and wakes `stored` when a replica stores a certificate. Never ends (nothing to do for
    /// a directory).
    pub async fn watch(&self, live: Arc<LiveCerts>, stored: Arc<Notify>) {
        let Self::Redis {
            client,
            conn,
            prefix,
            replica,
        } = self
        else {
            return std::future::pending().await;
        };
        let channel = format!("{prefix}:changed");
        let mut installed: HashMap<String, Answer> = HashMap::new();
        let mut backoff = crate::redis_link::Backoff::default();
        loop {
            let pubsub = match crate::redis_link::subscribe(client, &channel).await {
                Ok(pubsub) => pubsub,
                Err(err) => {
                    let wait = backoff.next();
                    tracing::warn!(%err, retry_in = ?wait, "ACME: fleet channel unavailable");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            backoff.reset();
            let mut messages = Some(pubsub.into_on_message());
            // What was shared while away.
            sync_answers(&mut conn.clone(), prefix, &live, &mut installed).await;
            stored.notify_one();
            while let Some(message) = crate::redis_link::next_message(&mut messages).await {
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                if let Some(round) = text.strip_prefix("answers:") {
                    let mut conn = conn.clone();
                    sync_answers(&mut conn, prefix, &live, &mut installed).await;
                    if round != "0"
                        && round.len() <= 20
                        && round.bytes().all(|b| b.is_ascii_digit())
                    {
                        let acks = format!("{prefix}:acks:{round}");
                        let acked: Result<(), _> = redis::pipe()
                            .sadd(&acks, replica)
                            .ignore()
                            .expire(&acks, 60)
                            .ignore()
                            .query_async(&mut conn)
                            .await;
                        if let Err(err) = acked {
                            tracing::warn!(%err, "ACME answers not acknowledged");
                        }
                    }
                } else if text.starts_with("cert:") {
                    stored.notify_one();
                }
            }
        }
    }
}

/// Makes the answers served here from other replicas those in Redis now.
async fn sync_answers(
    conn: &mut ConnectionManager,
    prefix: &str,
    live: &LiveCerts,
    installed: &mut HashMap<String, Answer>,
) {
    let shared: HashMap<String, String> = match conn.hgetall(format!("{prefix}:answers")).await {
        Ok(shared) => shared,
        Err(err) => {
            tracing::warn!(%err, "ACME: shared answers unreadable");
            return;
        }
    };
    installed.retain(|field, answer| {
        let keep = shared.get(field).is_some_and(|v| answer.to_field().1 == *v);
        if !keep {
            answer.withdraw(live);
        }
        keep
    });
    for (field, value) in shared {
        if installed.contains_key(&field) {
            continue;
        }
        let Some(answer) = Answer::from_field(&field, &value) else {
            tracing::warn!(%field, "ACME: a malformed shared answer, ignored");
            continue;
        };
        match answer.install(live) {
            Ok(()) => {
                installed.insert(field, answer);
            }
            Err(err) => tracing::warn!(%err, "ACME: a shared answer not installed"),
        }
    }
}
