//! A pool's retry budget: in each second, retries may add up to a share of that second's
//! requests plus a small floor, so a failing pool cannot multiply its own load (the retry
//! budgets of Finagle and Linkerd). Every request deposits its share at once, so the budget is
//! there from the first second; the control plane resets it to the floor once a second so
//! unused retries do not pile up. Counting and spending are atomics on the request path.

use crate::config::RetryBudgetConfig;
use std::sync::atomic::{AtomicI64, Ordering};

/// One retry, in the budget's units; a request deposits `percent` units.
const RETRY_COST: i64 = 100;

/// Shared by every snapshot of one pool.
#[derive(Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    /// In hundredths of a retry.
    balance: AtomicI64,
}

impl RetryBudget {
    /// A budget that starts with its floor.
    pub fn new(config: RetryBudgetConfig) -> Self {
        Self {
            config,
            balance: AtomicI64::new(floor(config)),
        }
    }

    /// Deposits one request's share of a retry.
    pub fn record_request(&self) {
        // Relaxed: an approximate budget; nothing else is published through it.
        self.balance
            .fetch_add(i64::from(self.config.percent), Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_spend(&self) -> bool {
        // Relaxed: see `record_request`.
        if self.balance.fetch_sub(RETRY_COST, Ordering::Relaxed) >= RETRY_COST {
            true
        } else {
            self.balance.fetch_add(RETRY_COST, Ordering::Relaxed);
            false
        }
    }

    /// Starts a new second with only the floor.
    pub fn refill(&self) {
        self.balance.store(floor(self.config), Ordering::Relaxed);
    }
}

fn floor(config: RetryBudgetConfig) -> i64 {
    i64::from(config.min_per_second) * RETRY_COST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_a_share_of_requests_plus_a_floor() {
        let budget = RetryBudget::new(RetryBudgetConfig {
            percent: 20,
            min_per_second: 3,
        });
        assert_eq!((0..10).filter(|_| budget.try_spend()).count(), 3);
        for _ in 0..100 {
            budget.record_request();
        }
        assert_eq!((0..50).filter(|_| budget.try_spend()).count(), 20);
        budget.refill();
        assert_eq!(
            (0..50).filter(|_| budget.try_spend()).count(),
            3,
            "a new second starts with the floor only"
        );
    }
}
