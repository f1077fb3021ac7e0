//! The reconciliation plan: given the backends a pool has and the backends a new set names,
//! which are kept (and whether their settings changed), added or removed. Pure: it only compares
//! identities (name and address) and settings, so a reload and any other source of backend sets
//! can share it.

use crate::config::BackendConfig;

/// What happens to a pool's backends when it takes a new set.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// In the new set's order: where each backend comes from.
    pub backends: Vec<Step>,
    /// Indexes (into the old backends) of those that are gone.
    pub removed: Vec<usize>,
}

/// Where one backend of the new set comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The same backend as old index `.0`: it keeps its state. `changed`: its settings differ.
    Keep(usize, Changed),
    /// A backend that did not exist: new index `.0` of the new set.
    Add(usize),
}

/// Whether a kept backend's settings changed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Changed {
    /// Identical.
    No,
    /// Something other than the weight changed.
    Settings,
    /// The configured weight changed (and perhaps more).
    Weight,
}

/// Plans going from `old` to `new`: a backend is the same when name and address both match.
pub(super) fn plan(old: &[&BackendConfig], new: &[BackendConfig]) -> Plan {
    let mut taken = vec![false; old.len()];
    let backends = new
        .iter()
        .enumerate()
        .map(|(n, config)| {
            let same = old.iter().enumerate().position(|(i, o)| {
                !taken[i] && o.name == config.name && o.address == config.address
            });
            match same {
                Some(i) => {
                    taken[i] = true;
                    let changed = if old[i].weight != config.weight {
                        Changed::Weight
                    } else if *old[i] != *config {
                        Changed::Settings
                    } else {
                        Changed::No
                    };
                    Step::Keep(i, changed)
                }
                None => Step::Add(n),
            }
        })
        .collect();
    let removed = (0..old.len()).filter(|&i| !taken[i]).collect();
    Plan { backends, removed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn backend(name: &str, port: u16, weight: u32) -> BackendConfig {
        BackendConfig {
            name: name.to_owned(),
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            weight: NonZeroU32::new(weight).unwrap(),
            max_in_flight: None,
            max_connections: None,
        }
    }

    #[test]
    fn same_name_and_address_keep_their_state_and_everything_else_is_added_or_removed() {
        let old = [backend("a", 1, 1), backend("b", 2, 1), backend("c", 3, 1)];
        let new = [
            backend("c", 3, 1),
            backend("b", 9, 1), // same name, new address: a different backend
            backend("d", 4, 1),
        ];
        let plan = plan(&old.iter().collect::<Vec<_>>(), &new);
        assert_eq!(
            plan.backends,
            [Step::Keep(2, Changed::No), Step::Add(1), Step::Add(2)]
        );
        assert_eq!(plan.removed, [0, 1]);
    }

    #[test]
    fn changed_settings_are_told_apart_from_changed_weights() {
        let old = [backend("a", 1, 1), backend("b", 2, 1)];
        let mut limited = backend("b", 2, 1);
        limited.max_connections = NonZeroU32::new(8);
        let new = [backend("a", 1, 3), limited];
        let plan = plan(&old.iter().collect::<Vec<_>>(), &new);
        assert_eq!(
            plan.backends,
            [
                Step::Keep(0, Changed::Weight),
                Step::Keep(1, Changed::Settings)
            ]
        );
        assert!(plan.removed.is_empty());
    }

    #[test]
    fn an_empty_set_removes_everything_and_a_first_set_adds_everything() {
        let old = [backend("a", 1, 1)];
        assert_eq!(plan(&old.iter().collect::<Vec<_>>(), &[]).removed, [0]);
        let plan = plan(&[], &old);
        assert_eq!(plan.backends, [Step::Add(0)]);
    }
}
