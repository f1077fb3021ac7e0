//! Rate limits: GCRA (the generic cell rate algorithm) per key, one 16-byte cell per key in a
//! table of fixed buckets read without locks or guards. A key's state is its theoretical
//! arrival time (TAT); a key whose TAT has passed is exactly as if it had never been seen, so
//! its cell is free for the next key that needs the room, with no error at all, and the table
//! grows only with the keys active within their last burst window.

mod table;

pub use table::Table;

use crate::config::RateLimitConfig;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

/// What a rule said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether it may go on.
    pub admitted: bool,
    /// Requests still admitted at once after this one.
    pub remaining: u64,
    /// Until the key is back to a full burst.
    pub reset: Duration,
    /// Until the next request would be admitted (zero when admitted).
    pub retry_after: Duration,
}

/// A rule's arithmetic: nanoseconds between admissions and the window a burst spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds between two admissions at the steady rate.
    pub interval: u64,
    /// Nanoseconds a key's TAT may run ahead of now: `(burst + 1) × interval`.
    pub window: u64,
}

impl Gcra {
    /// The arithmetic of `rule`.
    pub fn of(rule: &RateLimitConfig) -> Self {
        let interval = u64::try_from(rule.interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            interval,
            window: interval.saturating_mul(u64::from(rule.burst) + 1),
        }
    }

    /// Admits or refuses one request at `now` against a TAT of `tat`; the new TAT when
    /// admitted. Pure: the table and the tests share it.
    pub fn decide(&self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead <= self.window {
            let decision = Decision {
                admitted: true,
                remaining: (self.window - ahead) / self.interval,
                reset: Duration::from_nanos(ahead),
                retry_after: Duration::ZERO,
            };
            (decision, Some(next))
        } else {
            let decision = Decision {
                admitted: false,
                remaining: 0,
                reset: Duration::from_nanos(ahead - self.interval),
                retry_after: Duration::from_nanos(ahead - self.window),
            };
            (decision, None)
        }
    }
}

/// The client's address cut to its network, as a key.
pub fn ip_key(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> u128 {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(v4_prefix)).unwrap_or(0);
            // Apart from every IPv6 key: the v4-mapped range.
            0xffff_0000_0000 | u128::from(bits)
        }
        IpAddr::V6(v6) => {
            u128::from(v6)
                & u128::MAX
                    .checked_shl(128 - u32::from(v6_prefix))
                    .unwrap_or(0)
        }
    }
}

/// How a rule hashes a text key (a header, a cookie, a claim) to 128 bits: with this process's
/// random key for a local rule (a client cannot aim two values at one cell), with a fixed one
/// for a fleet rule (every replica must name the key alike; finding two values that share 128
/// bits is out of reach either way).
#[derive(Debug, Clone)]
pub enum TextKeys {
    /// This process's random key.
    Local(std::hash::RandomState),
    /// The same on every replica.
    Fleet,
}

impl TextKeys {
    /// The key of `text`.
    pub fn key(&self, text: &[u8]) -> u128 {
        match self {
            Self::Local(hasher) => hash128(hasher, text),
            Self::Fleet => hash128(
                &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
                text,
            ),
        }
    }
}

fn hash128(hasher: &impl BuildHasher, text: &[u8]) -> u128 {
    (u128::from(hasher.hash_one(text)) << 64) | u128::from(hasher.hash_one((text, 1u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const MS: u64 = 1_000_000;

    pub(super) fn gcra(per_second: u64, burst: u64) -> Gcra {
        let interval = 1_000 * MS / per_second;
        Gcra {
            interval,
            window: interval * (burst + 1),
        }
    }

    #[test]
    fn a_refusal_says_when_to_come_back_and_does_not_spend() {
        let g = gcra(10, 0);
        let (first, tat) = g.decide(0, 1_000 * MS);
        assert!(first.admitted);
        assert_eq!(first.remaining, 0);
        let (second, none) = g.decide(tat.unwrap(), 1_000 * MS);
        assert!(!second.admitted && none.is_none());
        assert_eq!(second.retry_after, Duration::from_millis(100));
        let (later, _) = g.decide(tat.unwrap(), 1_100 * MS);
        assert!(later.admitted);
    }

    #[test]
    fn a_fleet_rule_names_a_text_key_alike_everywhere() {
        let local = TextKeys::Local(std::hash::RandomState::new());
        assert_eq!(TextKeys::Fleet.key(b"k1"), TextKeys::Fleet.key(b"k1"));
        assert_ne!(TextKeys::Fleet.key(b"k1"), TextKeys::Fleet.key(b"k2"));
        assert_eq!(local.key(b"k1"), local.key(b"k1"));
    }

    #[test]
    fn addresses_are_cut_to_their_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a, 32, 64), ip_key(b, 32, 64));
        assert_ne!(ip_key(a, 32, 64), ip_key(c, 32, 64));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v4b: IpAddr = "192.0.2.200".parse().unwrap();
        assert_ne!(ip_key(v4, 32, 64), ip_key(v4b, 32, 64));
        assert_eq!(ip_key(v4, 24, 64), ip_key(v4b, 24, 64));
        assert_ne!(
            ip_key(v4, 32, 128),
            ip_key("::c000:207".parse().unwrap(), 32, 128)
        );
    }
}
