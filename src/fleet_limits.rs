//! The fleet rate limits' leaser: it asks Redis for tokens when a key's lease runs low, in
//! pipelined batches (one round trip for every want that queued meanwhile), and keeps this
//! replica's heartbeat so each replica knows its share of a rate while Redis is away. Each
//! key's GCRA state lives in Redis as one number, updated by a script that also charges what
//! replicas admitted by their share. Requests never wait on any of it.
//!
//! Redis keys: `switchyard:ratelimit:<route>.<rule>:<key as hex>` (the theoretical arrival
//! time, µs on Redis' clock, expiring with it) and the sorted set
//! `switchyard:ratelimit:replicas` (replica name → last heartbeat, unix ms).

use crate::config::FleetConfig;
use crate::route::access::fleet::{FleetShare, Want};
use crate::route::access::{Shelf, clock};
use redis::aio::ConnectionManager;
use redis::{Client, RedisResult};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The replicas' heartbeats.
const REPLICAS: &str = "switchyard:ratelimit:replicas";
/// Between heartbeats; a replica silent for `GONE` is no longer counted.
const HEARTBEAT: Duration = Duration::from_secs(2);
const GONE: Duration = Duration::from_secs(10);
/// Wants sent in one round trip at most.
const BATCH: usize = 128;

/// Grants up to ARGV[3] tokens of the key's GCRA (ARGV[1] interval, ARGV[2] window, µs),
/// after charging ARGV[4] admissions made without a lease; returns {granted, µs to wait}.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + tonumber(ARGV[4]) * interval
local room = math.floor((window - (tat - now)) / interval)
local granted = math.max(0, math.min(tonumber(ARGV[3]), room))
tat = tat + granted * interval
if tat > now then
  redis.call('SET', KEYS[1], tat, 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local wait = 0
if granted == 0 then wait = tat + interval - window - now end
return {granted, wait}
";

/// Starts the leaser for `shelf`'s fleet rules, on the fleet's Redis: it takes what they
/// want from `wanted`.
pub fn spawn(
    config: &FleetConfig,
    shelf: Arc<Shelf>,
    mut wanted: UnboundedReceiver<Want>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let client = match Client::open(config.redis.as_str()) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "fleet rate limits: bad Redis URL");
            return;
        }
    };
    let replica = config.replica.clone();
    tasks.spawn(async move {
        let mut link: Option<ConnectionManager> = None;
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut down_logged = false;
        loop {
            let mut wants = Vec::new();
            tokio::select! {
                Some(want) = wanted.recv() => {
                    wants.push(want);
                    while wants.len() < BATCH {
                        match wanted.try_recv() {
                            Ok(want) => wants.push(want),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let shares = shelf.chores().shares;
            if shares.is_empty() {
                continue;
            }
            let result = match connect(&mut link, &client).await {
                Ok(conn) if wants.is_empty() => heartbeat(conn, &replica, &shares).await,
                Ok(conn) => lease(conn, &wants).await,
                Err(err) => Err(err),
            };
            let healthy = result.is_ok();
            if let Err(err) = result {
                link = None;
                // Each may be asked for again (what a failed round had taken, it gave back).
                for want in wants {
                    want.share.failed(want.key, 0);
                }
                if !std::mem::replace(&mut down_logged, true) {
                    tracing::warn!(%err, "fleet rate limits: Redis unreachable; each replica limits alone (on_store_error)");
                }
            } else if std::mem::take(&mut down_logged) {
                tracing::info!("fleet rate limits: Redis reachable again; limits shared");
            }
            for (_, share) in &shares {
                share.healthy.store(healthy, Ordering::Relaxed);
            }
        }
    });
}

async fn connect<'a>(
    link: &'a mut Option<ConnectionManager>,
    client: &Client,
) -> RedisResult<&'a mut ConnectionManager> {
    crate::redis_link::connected(link, client).await
}

/// Asks for every want's tokens in one round trip.
async fn lease(conn: &mut ConnectionManager, wants: &[Want]) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut spent = Vec::with_capacity(wants.len());
    for want in wants {
        let share: &FleetShare = &want.share;
        let charged = share.take_spent(want.key);
        spent.push(charged);
        pipe.cmd("EVAL")
            .arg(LEASE)
            .arg(1)
            .arg(format!("{}{:032x}", share.prefix, want.key))
            .arg((share.gcra.interval / 1_000).max(1))
            .arg((share.gcra.window / 1_000).max(1))
            .arg(share.batch)
            .arg(charged);
    }
    let answers: RedisResult<Vec<(i64, i64)>> =
        tokio::time::timeout(Duration::from_secs(1), pipe.query_async(conn))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer within 1s",
                )))
            });
    let answers = match answers {
        Ok(answers) => answers,
        Err(err) => {
            for (want, spent) in wants.iter().zip(spent) {
                want.share.failed(want.key, spent);
            }
            return Err(err);
        }
    };
    let now = clock();
    for (want, (granted, wait)) in wants.iter().zip(answers) {
        // From Redis: checked before use.
        let granted = u32::try_from(granted.clamp(0, i64::from(want.share.batch))).unwrap_or(0);
        let wait = Duration::from_micros(u64::try_from(wait.clamp(0, 3_600_000_000)).unwrap_or(0));
        want.share.granted(want.key, granted, wait, now);
    }
    Ok(())
}

/// Marks this replica alive and counts the live ones.
async fn heartbeat(
    conn: &mut ConnectionManager,
    replica: &str,
    shares: &[(String, Arc<FleetShare>)],
) -> RedisResult<()> {
    let now = crate::fleet::unix_ms(SystemTime::now());
    let gone = now.saturating_sub(u64::try_from(GONE.as_millis()).unwrap_or(0));
    let mut pipe = redis::pipe();
    pipe.cmd("ZADD")
        .arg(REPLICAS)
        .arg(now)
        .arg(replica)
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(REPLICAS)
        .arg("-inf")
        .arg(gone)
        .ignore()
        .cmd("ZCARD")
        .arg(REPLICAS);
    let query = pipe.query_async::<(u32,)>(conn);
    let (live,) = tokio::time::timeout(Duration::from_secs(1), query)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "no answer within 1s",
            )))
        })?;
    let live = live.clamp(1, 10_000);
    for (_, share) in shares {
        share.replicas.store(live, Ordering::Relaxed);
    }
    Ok(())
}
