//! A rate limit shared by the fleet: Redis holds each key's GCRA state, and each replica
//! spends tokens it leased from there in small batches. A request spends a leased token with
//! one atomic operation and never waits on Redis: when its key has no lease yet (or Redis is
//! away), it is decided by this replica's share of the rate (the rate divided by the live
//! replicas), and what was admitted that way is charged to the fleet's state with the next
//! lease, so the long-run rate stays the fleet's.

use super::limit::{Decision, Gcra, Table};
use crate::config::OnStoreError;
use ::metrics::Counter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How long leased tokens may be spent: unspent ones are then given up, so a replica cannot
/// hoard admissions a long-quiet key earned.
pub const LEASE_LIFE: Duration = Duration::from_secs(1);

/// One fleet rule's state on this replica.
#[derive(Debug)]
pub struct FleetShare {
    /// Its keys' prefix in Redis.
    pub prefix: String,
    /// The fleet's rate and burst.
    pub gcra: Gcra,
    /// Tokens asked for at a time.
    pub batch: u32,
    leases: papaya::HashMap<u128, Lease, foldhash::fast::RandomState>,
    /// Whether the last exchange with Redis succeeded (the leaser's to set).
    pub healthy: AtomicBool,
    /// Live replicas, by their heartbeats in Redis (at least 1).
    pub replicas: AtomicU32,
    /// This replica's share, when a key has no lease.
    local: Table,
    wants: UnboundedSender<Want>,
    /// Requests decided without Redis while it was away.
    pub store_errors: Counter,
}

/// A key whose lease runs low, for the leaser.
#[derive(Debug)]
pub struct Want {
    /// The rule.
    pub share: Arc<FleetShare>,
    /// The key.
    pub key: u128,
}

/// Tokens of one key leased from the fleet.
#[derive(Debug, Default)]
pub struct Lease {
    tokens: AtomicU32,
    /// Until when `tokens` may be spent (limiter clock).
    expires: AtomicU64,
    /// Set when the fleet had none to give: refused until then.
    refused_until: AtomicU64,
    /// Asked for already (one want at a time per key).
    asked: AtomicBool,
    /// Admitted by this replica's share, not yet charged to the fleet.
    spent_locally: AtomicU32,
}

impl FleetShare {
    /// A share of the rule with `gcra`, asking the leaser through `wants`.
    pub fn new(
        prefix: String,
        gcra: Gcra,
        batch: u32,
        wants: UnboundedSender<Want>,
        store_errors: Counter,
    ) -> Self {
        Self {
            prefix,
            gcra,
            batch: batch.max(1),
            leases: papaya::HashMap::default(),
            healthy: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            local: Table::default(),
            wants,
            store_errors,
        }
    }

    /// Admits or refuses one request of `key` at `now` (limiter clock).
    pub fn admit(self: &Arc<Self>, key: u128, now: u64, on_store_error: OnStoreError) -> Decision {
        let leases = self.leases.pin();
        let lease = leases.get_or_insert_with(key, Lease::default);
        // Relaxed throughout: each field is its own fact; a stale read costs at most one
        // decision by the share rather than by the lease.
        if lease.expires.load(Ordering::Relaxed) > now {
            let taken = lease
                .tokens
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1));
            if let Ok(before) = taken {
                let left = before - 1;
                if left <= self.batch / 2 {
                    self.ask(lease, key);
                }
                return Decision {
                    admitted: true,
                    remaining: u64::from(left),
                    reset: Duration::ZERO,
                    retry_after: Duration::ZERO,
                };
            }
        }
        let healthy = self.healthy.load(Ordering::Relaxed);
        let refused_until = lease.refused_until.load(Ordering::Relaxed);
        if healthy && refused_until > now {
            let wait = Duration::from_nanos(refused_until - now);
            return Decision {
                admitted: false,
                remaining: 0,
                reset: wait,
                retry_after: wait,
            };
        }
        self.ask(lease, key);
        if !healthy {
            self.store_errors.increment(1);
            match on_store_error {
                OnStoreError::Allow => return admitted(),
                OnStoreError::Deny => {
                    return Decision {
                        admitted: false,
                        remaining: 0,
                        reset: Duration::from_secs(1),
                        retry_after: Duration::from_secs(1),
                    };
                }
                OnStoreError::Local => {}
            }
        }
        let decision = self.local.admit(&self.share(), key, now);
        if decision.admitted && healthy {
            lease.spent_locally.fetch_add(1, Ordering::Relaxed);
        }
        decision
    }

    /// This replica's part of the rate: the interval times the live replicas.
    fn share(&self) -> Gcra {
        let replicas = u64::from(self.replicas.load(Ordering::Relaxed).max(1));
        let interval = self.gcra.interval.saturating_mul(replicas);
        Gcra {
            interval,
            window: (self.gcra.window / replicas).max(interval),
        }
    }

    fn ask(self: &Arc<Self>, lease: &Lease, key: u128) {
        if !lease.asked.swap(true, Ordering::Relaxed) {
            let want = Want {
                share: Arc::clone(self),
                key,
            };
            if self.wants.send(want).is_err() {
                lease.asked.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Admissions of `key` to charge to the fleet with the next lease.
    pub fn take_spent(&self, key: u128) -> u32 {
        let leases = self.leases.pin();
        leases
            .get(&key)
            .map_or(0, |l| l.spent_locally.swap(0, Ordering::Relaxed))
    }

    /// The leaser's answer for `key` at `now`: `granted` tokens, or none for `wait`.
    pub fn granted(&self, key: u128, granted: u32, wait: Duration, now: u64) {
        let leases = self.leases.pin();
        let lease = leases.get_or_insert_with(key, Lease::default);
        let life = u64::try_from(LEASE_LIFE.as_nanos()).unwrap_or(u64::MAX);
        if granted > 0 {
            lease.tokens.fetch_add(granted, Ordering::Relaxed);
            lease
                .expires
                .store(now.saturating_add(life), Ordering::Relaxed);
            lease.refused_until.store(0, Ordering::Relaxed);
        } else {
            let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
            lease
                .refused_until
                .store(now.saturating_add(wait), Ordering::Relaxed);
        }
        lease.asked.store(false, Ordering::Relaxed);
    }

    /// The leaser could not ask: `spent` goes back to be charged later.
    pub fn failed(&self, key: u128, spent: u32) {
        let leases = self.leases.pin();
        if let Some(lease) = leases.get(&key) {
            lease.spent_locally.fetch_add(spent, Ordering::Relaxed);
            lease.asked.store(false, Ordering::Relaxed);
        }
    }

    /// Drops leases with nothing left to spend, ask or charge. Returns how many remain.
    pub fn sweep(&self, now: u64) -> usize {
        let leases = self.leases.pin();
        leases.retain(|_, l| {
            l.expires.load(Ordering::Relaxed) > now
                || l.refused_until.load(Ordering::Relaxed) > now
                || l.asked.load(Ordering::Relaxed)
                || l.spent_locally.load(Ordering::Relaxed) > 0
        });
        leases.len()
    }
}

fn admitted() -> Decision {
    Decision {
        admitted: true,
        remaining: 0,
        reset: Duration::ZERO,
        retry_after: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn share() -> (Arc<FleetShare>, tokio::sync::mpsc::UnboundedReceiver<Want>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let gcra = Gcra {
            interval: 100 * MS,
            window: 200 * MS,
        };
        (
            Arc::new(FleetShare::new("t".into(), gcra, 4, tx, Counter::noop())),
            rx,
        )
    }

    #[test]
    fn leased_tokens_are_spent_and_asked_for_again_when_low() {
        let (share, mut wants) = share();
        share.healthy.store(true, Ordering::Relaxed);
        share.replicas.store(2, Ordering::Relaxed);
        let now = 10_000 * MS;
        // No lease yet: the share decides (10/s over 2 replicas), the lease is asked for once.
        assert!(share.admit(1, now, OnStoreError::Local).admitted);
        assert!(!share.admit(1, now, OnStoreError::Local).admitted);
        assert_eq!(wants.try_recv().unwrap().key, 1);
        assert!(wants.try_recv().is_err(), "one want at a time");
        assert_eq!(share.take_spent(1), 1, "charged with the lease");
        share.granted(1, 4, Duration::ZERO, now);
        for _ in 0..4 {
            assert!(share.admit(1, now, OnStoreError::Local).admitted);
        }
        assert!(wants.try_recv().is_ok(), "asked again when half spent");
        // The fleet has none: refused until it says.
        share.granted(1, 0, Duration::from_millis(300), now);
        let refused = share.admit(1, now, OnStoreError::Local);
        assert!(!refused.admitted);
        assert_eq!(refused.retry_after, Duration::from_millis(300));
    }

    #[test]
    fn without_redis_the_rule_does_what_on_store_error_says() {
        let (share, _wants) = share();
        let now = 10_000 * MS;
        assert!(share.admit(7, now, OnStoreError::Allow).admitted);
        assert!(!share.admit(7, now, OnStoreError::Deny).admitted);
        let local: usize = (0..10)
            .filter(|_| share.admit(8, now, OnStoreError::Local).admitted)
            .count();
        assert_eq!(
            local, 2,
            "one replica's share: the rate and burst of the rule"
        );
        assert_eq!(
            share.take_spent(8),
            0,
            "nothing to charge: Redis did not count it either"
        );
    }
}
