//! The Redis registry: where instances of a service register themselves, and how pools with
//! `type = "redis"` discovery follow it.
//!
//! Key layout, for service `api`:
//! - `switchyard:registry:api:<address>`: the instance, as JSON
//!   `{"address": "10.0.0.7:8080", "weight": 1, "metadata": {"zone": "a"}}`, with a TTL that
//!   the instance's heartbeat refreshes. The instance is gone when the key expires or is deleted.
//! - `switchyard:registry:api`: a set of the addresses registered, so that a reader never scans
//!   the key space. Members whose key has expired are removed by the readers.
//! - channel `switchyard:registry:api`: an address is published when it registers, changes or
//!   leaves, so readers look again at once. Readers also read the whole service every
//!   `refresh`, and when the soonest TTL runs out: a missed message or an expiry heals by itself.

use super::Reporter;
use crate::config::BackendConfig;
use crate::redis_link::{self, Backoff};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, RedisResult, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The names a service's registry uses.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The set of registered addresses; also the change channel's name.
    pub index: String,
}

impl Keys {
    /// The keys of `service`.
    pub fn new(service: &str) -> Self {
        Self {
            index: format!("switchyard:registry:{service}"),
        }
    }

    /// The key of the instance at `address`.
    pub fn instance(&self, address: &str) -> String {
        format!("{}:{address}", self.index)
    }
}

/// One registered instance, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// `host:port` the proxy connects to.
    pub address: String,
    /// Relative share of traffic, 1 to 256.
    #[serde(default = "one")]
    pub weight: u32,
    /// Free-form labels (zone, version, ...), kept for operators.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// Follows `service`'s registry until `stop`; while Redis is away the last known set stays.
pub(super) async fn follow(
    url: String,
    service: String,
    refresh: Duration,
    mut reporter: Reporter,
    stop: CancellationToken,
) {
    let client = match Client::open(url.as_str()) {
        Ok(client) => client,
        Err(err) => return reporter.failed(&err),
    };
    let keys = Keys::new(&service);
    let mut reader = Reader {
        client,
        keys,
        commands: None,
        warned: HashMap::new(),
    };
    let mut changes: Option<redis::aio::PubSubStream> = None;
    let mut backoff = Backoff::default();
    let mut resubscribe_at = Instant::now();
    let mut read_at = Instant::now();
    loop {
        let now = Instant::now();
        if changes.is_none() && now >= resubscribe_at {
            match redis_link::subscribe(&reader.client, &reader.keys.index).await {
                Ok(pubsub) => {
                    changes = Some(pubsub.into_on_message());
                    backoff.reset();
                    // Whatever changed while away is read now.
                    read_at = now;
                }
                Err(err) => {
                    reporter.failed(&err);
                    resubscribe_at = now + backoff.next();
                }
            }
        }
        if Instant::now() >= read_at {
            // A read in progress does not hold up shutdown.
            let read = tokio::select! {
                read = reader.read() => read,
                () = stop.cancelled() => return,
            };
            let next = match read {
                Ok((backends, soonest_expiry)) => {
                    reporter.found(backends);
                    soonest_expiry.map_or(refresh, |expiry| expiry.min(refresh))
                }
                Err(err) => {
                    reporter.failed(&err);
                    refresh.min(Duration::from_secs(1))
                }
            };
            read_at = Instant::now() + next;
        }
        let wake = if changes.is_some() {
            read_at
        } else {
            read_at.min(resubscribe_at)
        };
        tokio::select! {
            message = redis_link::next_message(&mut changes) => {
                if message.is_none() {
                    // The subscription broke: Redis went away.
                    changes = None;
                    resubscribe_at = Instant::now() + backoff.next();
                }
                read_at = Instant::now();
            }
            () = tokio::time::sleep_until(wake) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Reads a service's instances.
struct Reader {
    client: Client,
    keys: Keys,
    commands: Option<ConnectionManager>,
    /// Entries already warned about, by address, with the text warned about.
    warned: HashMap<String, String>,
}

impl Reader {
    /// Every valid instance, and how long until the soonest registration expires.
    async fn read(&mut self) -> RedisResult<(Vec<BackendConfig>, Option<Duration>)> {
        let conn = redis_link::connected(&mut self.commands, &self.client).await?;
        let members: Vec<String> = conn.smembers(&self.keys.index).await?;
        if members.is_empty() {
            return Ok((Vec::new(), None));
        }
        let mut pipe = redis::pipe();
        for member in &members {
            let key = self.keys.instance(member);
            pipe.get(&key).pttl(&key);
        }
        let values: Vec<Value> = pipe.query_async(conn).await?;
        let mut backends = Vec::new();
        let mut gone = Vec::new();
        let mut soonest: Option<u64> = None;
        for (member, pair) in members.iter().zip(values.chunks(2)) {
            let [text, ttl] = pair else { continue };
            let text: Option<String> = redis::from_redis_value_ref(text)?;
            let Some(text) = text else {
                gone.push(member.clone());
                continue;
            };
            match parse(member, &text) {
                Ok(backend) => {
                    self.warned.remove(member);
                    backends.push(backend);
                    let ttl: i64 = redis::from_redis_value_ref(ttl)?;
                    if let Ok(ttl) = u64::try_from(ttl) {
                        soonest = Some(soonest.map_or(ttl, |s| s.min(ttl)));
                    }
                }
                Err(problem) => {
                    if self.warned.get(member) != Some(&text) {
                        tracing::warn!(key = %self.keys.instance(member), %problem, "skipping a malformed registry entry");
                        self.warned.insert(member.clone(), text);
                    }
                }
            }
        }
        if !gone.is_empty() {
            // Best effort: another reader may have done it, and the next read tries again.
            let removed: RedisResult<i64> = conn.srem(&self.keys.index, &gone).await;
            if let Err(err) = removed {
                tracing::debug!(%err, "could not trim expired registry members");
            }
        }
        // Read again just after the soonest registration would expire.
        let expiry = soonest.map(|ms| Duration::from_millis(ms + 5));
        Ok((backends, expiry))
    }
}

/// An entry's backend, or why it is skipped.
fn parse(member: &str, text: &str) -> Result<BackendConfig, String> {
    let instance: Instance = serde_json::from_str(text).map_err(|err| err.to_string())?;
    if instance.address != member {
        return Err(format!(
            "address {:?} differs from the key's {member:?}",
            instance.address
        ));
    }
    if !(1..=BackendConfig::MAX_WEIGHT).contains(&instance.weight) {
        return Err(format!(
            "weight {} is not between 1 and {}",
            instance.weight,
            BackendConfig::MAX_WEIGHT
        ));
    }
    super::backend(&instance.address, instance.weight)
        .ok_or_else(|| format!("address {:?} is not host:port", instance.address))
}

/// Keeps one instance registered: `switchyard register`.
#[derive(Debug)]
pub struct Registration {
    /// The registry.
    pub client: Client,
    /// The service's keys.
    pub keys: Keys,
    /// What is registered.
    pub instance: Instance,
    /// How long the registration outlives its last heartbeat.
    pub ttl: Duration,
}

impl Registration {
    /// Registers, refreshes the registration every third of its TTL until `stop`, then
    /// deregisters. Redis going away is waited out: the heartbeat resumes when it returns.
    pub async fn keep(self, stop: CancellationToken) -> RedisResult<()> {
        let key = self.keys.instance(&self.instance.address);
        let value = serde_json::to_string(&self.instance).expect("an instance serializes");
        let mut conn: Option<ConnectionManager> = None;
        let mut backoff = Backoff::default();
        let mut down = false;
        loop {
            let wait = match self.heartbeat(&mut conn, &key, &value).await {
                Ok(()) => {
                    if std::mem::take(&mut down) {
                        tracing::info!(%key, "registered again");
                    }
                    backoff.reset();
                    self.ttl / 3
                }
                Err(err) => {
                    if !std::mem::replace(&mut down, true) {
                        tracing::warn!(%key, %err, "registration failed; retrying");
                    }
                    backoff.next().min(self.ttl / 3)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
        }
        let conn = redis_link::connected(&mut conn, &self.client).await?;
        self.deregister(conn, &key).await
    }

    async fn heartbeat(
        &self,
        conn: &mut Option<ConnectionManager>,
        key: &str,
        value: &str,
    ) -> RedisResult<()> {
        let conn = redis_link::connected(conn, &self.client).await?;
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let (previous, _added): (Option<String>, i64) = redis::pipe()
            .cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .arg("GET")
            .sadd(&self.keys.index, &self.instance.address)
            .query_async(conn)
            .await?;
        if previous.as_deref() != Some(value) {
            let _receivers: i64 = conn
                .publish(&self.keys.index, &self.instance.address)
                .await?;
            tracing::info!(%key, ttl = ?self.ttl, "registered");
        }
        Ok(())
    }

    async fn deregister(&self, conn: &mut ConnectionManager, key: &str) -> RedisResult<()> {
        let (): () = redis::pipe()
            .del(key)
            .ignore()
            .srem(&self.keys.index, &self.instance.address)
            .ignore()
            .publish(&self.keys.index, &self.instance.address)
            .ignore()
            .query_async(conn)
            .await?;
        tracing::info!(%key, "deregistered");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_becomes_a_backend_named_by_its_address() {
        let backend = parse(
            "10.0.0.7:8080",
            r#"{"address":"10.0.0.7:8080","weight":3,"metadata":{"zone":"a"}}"#,
        )
        .unwrap();
        assert_eq!(backend.name, "10.0.0.7:8080");
        assert_eq!(backend.weight.get(), 3);
        let defaulted = parse("api.internal:80", r#"{"address":"api.internal:80"}"#).unwrap();
        assert_eq!(defaulted.weight.get(), 1);
    }

    #[test]
    fn malformed_entries_are_refused_with_the_reason() {
        let refused = |member: &str, text: &str| parse(member, text).unwrap_err();
        assert!(refused("a:1", "{not json").contains("key must be a string"));
        assert!(refused("a:1", r#"{"address":"a:1","colour":"red"}"#).contains("unknown field"));
        assert!(refused("a:1", r#"{"address":"a:1","weight":0}"#).contains("weight 0"));
        assert!(refused("a:1", r#"{"address":"a:1","weight":257}"#).contains("weight 257"));
        assert!(refused("a:1", r#"{"address":"b:1"}"#).contains("differs"));
        assert!(refused("a", r#"{"address":"a"}"#).contains("not host:port"));
    }

    #[test]
    fn the_key_layout_is_the_documented_one() {
        let keys = Keys::new("api");
        assert_eq!(keys.index, "switchyard:registry:api");
        assert_eq!(
            keys.instance("10.0.0.7:8080"),
            "switchyard:registry:api:10.0.0.7:8080"
        );
    }
}
