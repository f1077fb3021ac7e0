//! Fleet mode in the control plane: an operator change made through this replica's admin API
//! is handed to the fleet task to store, and changes other replicas stored are applied here.
//! Per backend the latest change wins (`override_at`), so an echo of this replica's own change,
//! or a stale read, changes nothing.

use super::Control;
use super::views::{DRAINED, UNDRAINED};
use crate::fleet::{Override, SharedDrain, unix_ms};
use crate::upstream::{BackendKey, Exclusion, MAX_DRAIN_DEADLINE};
use std::time::Duration;

impl Control {
    /// Hands backend `key`'s operator state, just changed here, to the fleet.
    pub(super) fn share(&mut self, key: &BackendKey) {
        let Some(fleet) = &self.fleet.sender else {
            return;
        };
        let Some(runtime) = self.pools.backend_mut(key) else {
            return;
        };
        let drained = runtime.state.is(Exclusion::Draining) && !runtime.leaving;
        let deadline = runtime
            .state
            .status()
            .drain
            .as_ref()
            .and_then(|d| d.deadline)
            .map(unix_ms);
        let at = unix_ms(self.now.wall).max(runtime.override_at.saturating_add(1));
        runtime.override_at = at;
        let change = Override {
            pool: key.pool.to_string(),
            backend: runtime.config.name.clone(),
            drain: drained.then_some(SharedDrain { deadline }),
            weight: runtime.weight_override,
            at,
            by: self.fleet.replica.clone(),
        };
        self.fleet.latest.insert(
            (change.pool.clone(), change.backend.clone()),
            change.clone(),
        );
        // The fleet task gone means the proxy is stopping.
        let _closed = fleet.send(change);
    }

    /// Takes a change stored by the fleet (another replica's, or this one's echoed back).
    pub(super) fn apply_shared(&mut self, change: Override) {
        let key = (change.pool.clone(), change.backend.clone());
        if self
            .fleet
            .latest
            .get(&key)
            .is_some_and(|known| known.at >= change.at)
        {
            return;
        }
        self.fleet.latest.insert(key, change.clone());
        if let Ok(key) = self.find(&change.pool, &change.backend) {
            self.apply_shared_override(&key);
        }
    }

    /// Applies the fleet's state of backend `key`, if newer than what it has.
    pub(super) fn apply_shared_override(&mut self, key: &BackendKey) {
        let Some(runtime) = self.pools.backend_mut(key) else {
            return;
        };
        let shared = (key.pool.to_string(), runtime.config.name.clone());
        let Some(change) = self
            .fleet
            .latest
            .get(&shared)
            .filter(|c| c.at > runtime.override_at)
        else {
            return;
        };
        let change = change.clone();
        runtime.override_at = change.at;
        let draining = runtime.state.is(Exclusion::Draining);
        let leaving = runtime.leaving;
        let weight_changed = runtime.weight_override != change.weight;
        match change.drain {
            Some(drain) => {
                let now = unix_ms(self.now.wall);
                let remaining = drain.deadline.map(|at| {
                    Duration::from_millis(at.saturating_sub(now)).min(MAX_DRAIN_DEADLINE)
                });
                let reason = format!("{DRAINED} of replica {}", change.by);
                self.drain(key, remaining, &reason);
            }
            None if draining && !leaving => {
                let reason = format!("{UNDRAINED} of replica {}", change.by);
                self.undrain(key, &reason);
            }
            None => {}
        }
        if weight_changed {
            self.set_weight(key, change.weight);
        }
    }
}
