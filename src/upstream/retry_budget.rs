//! A pool's retry budget: retries per second limited to a share of the previous second's
//! requests plus a floor, so a failing pool cannot multiply its own load (Finagle's and
//! Linkerd's retry budgets). The data plane counts and spends through atomics; the control plane
//! refills once a second.

use crate::config::RetryBudgetConfig;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Shared by every snapshot of one pool.
#[derive(Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    requests: AtomicU64,
    tokens: AtomicI64,
}

impl RetryBudget {
    /// A budget that starts with its floor.
    pub fn new(config: RetryBudgetConfig) -> Self {
        Self {
            config,
            requests: AtomicU64::new(0),
            tokens: AtomicI64::new(i64::from(config.min_per_second)),
        }
    }

    /// Counts one client request towards the next refill.
    pub fn record_request(&self) {
        // Relaxed: an approximate rate; nothing else is published through it.
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_spend(&self) -> bool {
        // Relaxed: see `record_request`. Going below zero is harmless; `refill` resets.
        self.tokens.fetch_sub(1, Ordering::Relaxed) > 0
    }

    /// Starts a new second: the budget becomes the percentage of the last second's requests,
    /// or the floor if that is larger. Unused retries do not carry over.
    pub fn refill(&self) {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let share = requests.saturating_mul(u64::from(self.config.percent)) / 100;
        let tokens = share.max(u64::from(self.config.min_per_second));
        self.tokens
            .store(i64::try_from(tokens).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_a_share_of_requests_with_a_floor() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            percent: 20,
            min_per_second: 3,
        });
        assert_eq!((0..10).filter(|_| budget.try_spend()).count(), 3);
        for _ in 0..100 {
            budget.record_request();
        }
        budget.refill();
        assert_eq!((0..50).filter(|_| budget.try_spend()).count(), 20);
        budget.refill();
        assert_eq!(
            (0..50).filter(|_| budget.try_spend()).count(),
            3,
            "quiet second: the floor"
        );
    }
}
