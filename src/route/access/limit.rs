//! Rate limits: GCRA (the generic cell rate algorithm) per key, one `AtomicU64` per key in a
//! lock-free map. A key's state is its theoretical arrival time (TAT); a key whose TAT has
//! passed is exactly as if it had never been seen, so the sweeper removes such keys with no
//! error at all, and the table holds only keys active within their last burst window.

use crate::config::RateLimitConfig;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keys a table holds at most; past it, a new key is admitted without being remembered (and
/// counted), so a flood of addresses cannot grow memory without bound. A key costs about
/// 64 bytes (measured: `docs/src/access.md`), so a full table is some 64 MB.
pub const MAX_KEYS: usize = 1_000_000;

/// One rule's state: GCRA cells by key. Survives reloads that keep the rule.
#[derive(Debug, Default)]
pub struct Table {
    /// foldhash, seeded per process: a tenth of SipHash's cost for a 16-byte key, and a
    /// client still cannot predict where its keys land.
    cells: papaya::HashMap<u128, AtomicU64, foldhash::fast::RandomState>,
}

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

impl Table {
    /// Admits or refuses one request of `key` at `now` (nanoseconds on the limiter clock).
    pub fn admit(&self, gcra: &Gcra, key: u128, now: u64) -> Decision {
        let cells = self.cells.pin();
        let cell = match cells.get(&key) {
            Some(cell) => cell,
            None if cells.len() >= MAX_KEYS => return gcra.decide(0, now).0,
            None => cells.get_or_insert_with(key, || AtomicU64::new(0)),
        };
        // Relaxed: the cell is the whole state; no other memory is published through it.
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let (decision, next) = gcra.decide(tat, now);
            let Some(next) = next else { return decision };
            match cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return decision,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Removes keys whose TAT has passed (they are as good as new). Returns how many remain.
    pub fn sweep(&self, now: u64) -> usize {
        let cells = self.cells.pin();
        cells.retain(|_, cell| cell.load(Ordering::Relaxed) > now);
        cells.len()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
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

    const MS: u64 = 1_000_000;

    fn gcra(per_second: u64, burst: u64) -> Gcra {
        let interval = 1_000 * MS / per_second;
        Gcra {
            interval,
            window: interval * (burst + 1),
        }
    }

    #[test]
    fn a_burst_then_the_steady_rate() {
        let table = Table::default();
        let g = gcra(50, 10);
        let now = 1_000 * MS;
        let admitted = (0..20).filter(|_| table.admit(&g, 7, now).admitted).count();
        assert_eq!(admitted, 11, "one plus the burst at once");
        // 20 ms later one more interval has passed: exactly one more.
        assert!(table.admit(&g, 7, now + 20 * MS).admitted);
        assert!(!table.admit(&g, 7, now + 20 * MS).admitted);
        // Another key is untouched.
        assert!(table.admit(&g, 8, now).admitted);
    }

    #[test]
    fn over_ten_seconds_the_rate_plus_the_burst() {
        let table = Table::default();
        let g = gcra(50, 10);
        let mut admitted = 0;
        // 10 clients sharing one key, each every 5 ms, for 10 s.
        for step in 0..2_000u64 {
            for _ in 0..10 {
                admitted += usize::from(table.admit(&g, 1, step * 5 * MS).admitted);
            }
        }
        assert_eq!(admitted, 500 + 10);
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
    fn idle_keys_are_swept_exactly() {
        let table = Table::default();
        let g = gcra(1, 0);
        table.admit(&g, 1, 0);
        table.admit(&g, 2, 500 * MS);
        assert_eq!(table.sweep(1_000 * MS), 1, "key 1's TAT has passed");
        assert_eq!(table.sweep(1_500 * MS), 0);
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
