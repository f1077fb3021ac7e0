//! Sticky sessions: an inserted cookie binds a client to a backend. Its value is a signed token
//! of the backend's *name*, the session's start and its last use, and the id of the key that
//! signed it — never an address, and unforgeable without the secret. Every replica with the
//! same secret honours every other's cookies; during a rotation the previous secret is still
//! accepted (and its sessions re-signed with the new one).
//!
//! Token: `<key id>.<backend name, base64url>.<start>.<last use>.<tag>`, times in Unix seconds,
//! the tag the first 16 bytes of HMAC-SHA256 over everything before it.

use super::sticky_keys::{FleetKeys, Keys};
use crate::config::StickyConfig;
use crate::metrics::{self, Metrics};
use ::metrics::Counter;
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the HMAC kept in a token.
const TAG: usize = 16;

/// How long a draining backend waits for the next request of its sessions when they have no
/// `max_idle`.
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(60);

/// Cookies remembered as verified at most; past it the memory is emptied and starts again.
const REMEMBERED: usize = 100_000;

/// A pool's sticky sessions, compiled: the keys and the counters.
#[derive(Debug)]
pub struct Sticky {
    /// As configured.
    pub config: StickyConfig,
    /// Where the keys come from.
    keys: KeySource,
    /// The fleet keys' generation the memory of verified cookies belongs to.
    generation: AtomicU64,
    /// How long a draining backend waits for a session's next request before its drain is
    /// complete: `max_idle`, or `QUIET` without it (milliseconds).
    pub quiet_ms: u64,
    /// `switchyard_sticky_sessions_total` by result: pinned, new, invalid, moved.
    pub results: [Counter; 4],
    /// Cookie values whose signature verified, and what they say: a session's later requests
    /// cost a lookup, not an HMAC (a value is only ever found by being sent exactly).
    verified: papaya::HashMap<Box<[u8]>, Token, foldhash::fast::RandomState>,
}

/// The pool's own keys, or the fleet's.
#[derive(Debug)]
enum KeySource {
    Own(Keys),
    Fleet(Arc<FleetKeys>),
}

/// What a verified cookie says.
#[derive(Debug, Clone)]
struct Token {
    backend: Arc<str>,
    start: u64,
    seen: u64,
    current: bool,
}

/// What a request's cookie said.
#[derive(Debug, PartialEq, Eq)]
pub enum Binding {
    /// Bound to this backend, since `start`; `current` when signed by the current key.
    Bound {
        /// The backend's name.
        backend: Arc<str>,
        /// When the session began (Unix seconds).
        start: u64,
        /// When it was last used.
        seen: u64,
        /// Signed by the current key (else by the previous one).
        current: bool,
    },
    /// A cookie that is forged, expired, or signed by a key no longer accepted.
    Invalid,
}

/// Indices of `Sticky::results`.
pub const PINNED: usize = 0;
/// A new session (no cookie, or an invalid one).
pub const NEW: usize = 1;
/// A cookie refused.
pub const INVALID: usize = 2;
/// A session whose backend could not take the request, bound anew.
pub const MOVED: usize = 3;

impl Sticky {
    /// Compiles `config` for pool `pool`; `fleet` holds the keys of a pool whose secret is
    /// the fleet's.
    pub fn new(
        config: &StickyConfig,
        pool: &str,
        metrics: &Metrics,
        fleet: &Arc<FleetKeys>,
    ) -> Self {
        let keys = if config.fleet_secret {
            KeySource::Fleet(Arc::clone(fleet))
        } else {
            KeySource::Own(Keys::from_secrets(&config.secrets))
        };
        Self {
            config: config.clone(),
            keys,
            generation: AtomicU64::new(0),
            quiet_ms: config
                .max_idle
                .unwrap_or(QUIET)
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            results: ["pinned", "new", "invalid", "moved"].map(|result| {
                metrics.counter(
                    metrics::STICKY_SESSIONS,
                    &[("pool", pool), ("result", result)],
                )
            }),
            verified: papaya::HashMap::default(),
        }
    }

    /// Reads a cookie's value at `now` (Unix seconds).
    pub fn read(&self, value: impl AsRef<[u8]>, now: u64) -> Binding {
        self.read_bytes(value.as_ref(), now)
    }

    fn read_bytes(&self, value: &[u8], now: u64) -> Binding {
        let verified = self.verified.pin();
        if let KeySource::Fleet(fleet) = &self.keys {
            // The fleet's keys changed: what they verified may no longer be accepted.
            // Read first: a request writes the shared number only when the keys changed.
            let generation = fleet.generation();
            if self.generation.load(Ordering::Relaxed) != generation {
                self.generation.store(generation, Ordering::Relaxed);
                verified.clear();
            }
        }
        let token = match verified.get(value) {
            Some(token) => token.clone(),
            None => {
                let Some(token) = self.verify(value) else {
                    return Binding::Invalid;
                };
                if verified.len() >= REMEMBERED {
                    verified.clear();
                }
                verified.insert(value.into(), token.clone());
                token
            }
        };
        let config = &self.config;
        let expired = |since: u64, limit: Option<std::time::Duration>| {
            limit.is_some_and(|limit| now.saturating_sub(since) >= limit.as_secs().max(1))
        };
        if expired(token.start, config.max_life)
            || expired(token.seen, config.max_idle)
            || token.seen > now + 60
        {
            return Binding::Invalid;
        }
        Binding::Bound {
            backend: token.backend,
            start: token.start,
            seen: token.seen,
            current: token.current,
        }
    }

    /// The token a cookie's value carries, if its signature is one of ours.
    fn verify(&self, value: &[u8]) -> Option<Token> {
        let (signed, tag) = std::str::from_utf8(value).ok()?.rsplit_once('.')?;
        let mut parts = signed.split('.');
        let (id, name, start, seen) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (expected, current) = self.with_keys(|keys| {
            let (key, current) = keys.find(id)?;
            Some((hmac::sign(key, signed.as_bytes()), current))
        })?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected.as_ref()[..TAG], &tag).ok()?;
        let backend = String::from_utf8(URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
        Some(Token {
            backend: backend.into(),
            start: start.parse().ok()?,
            seen: seen.parse().ok()?,
            current,
        })
    }

    /// The `Set-Cookie` binding a client to `backend`, the session begun at `start`, used at
    /// `now`.
    pub fn cookie(&self, backend: &str, start: u64, now: u64) -> Option<HeaderValue> {
        let (signed, tag) = self.with_keys(|keys| {
            let (id, key) = keys.current()?;
            let signed = format!("{id}.{}.{start}.{now}", URL_SAFE_NO_PAD.encode(backend));
            let tag = hmac::sign(key, signed.as_bytes());
            Some((signed, tag))
        })?;
        let config = &self.config;
        let mut cookie = format!(
            "{}={signed}.{}; Path={}; HttpOnly; SameSite=Lax",
            config.cookie,
            URL_SAFE_NO_PAD.encode(&tag.as_ref()[..TAG]),
            config.path
        );
        if let Some(domain) = &config.domain {
            cookie += &format!("; Domain={domain}");
        }
        if config.secure {
            cookie += "; Secure";
        }
        if let Some(life) = config.max_life {
            let left = life
                .as_secs()
                .saturating_sub(now.saturating_sub(start))
                .max(1);
            cookie += &format!("; Max-Age={left}");
        }
        HeaderValue::from_str(&cookie).ok()
    }

    /// Runs `f` on the keys in force.
    fn with_keys<R>(&self, f: impl FnOnce(&Keys) -> R) -> R {
        match &self.keys {
            KeySource::Own(keys) => f(keys),
            KeySource::Fleet(fleet) => f(&fleet.load()),
        }
    }

    /// Whether a bound session's cookie should be sent again: signed by the previous key, or
    /// (with `max_idle`) last refreshed more than a tenth of it ago.
    pub fn refresh(&self, seen: u64, current: bool, now: u64) -> bool {
        !current
            || self
                .config
                .max_idle
                .is_some_and(|idle| now.saturating_sub(seen) * 10 >= idle.as_secs().max(1))
    }
}

#[cfg(test)]
#[path = "sticky_tests.rs"]
mod tests;
