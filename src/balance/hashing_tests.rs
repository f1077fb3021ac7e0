//! Tests of `hashing.rs`, kept apart so the code reads in one screenful or two.

use super::*;
use crate::balance::testing::{fakes, open};

fn owners(maglev: &HashTable, names: &[&str]) -> Vec<String> {
    maglev
        .entries()
        .iter()
        .map(|&i| names[i as usize].to_owned())
        .collect()
}

fn shares(maglev: &HashTable, n: usize) -> Vec<f64> {
    let mut counts = vec![0usize; n];
    for &i in maglev.entries() {
        counts[i as usize] += 1;
    }
    counts
        .iter()
        .map(|&c| c as f64 / TABLE_SIZE as f64)
        .collect()
}

#[test]
fn the_table_does_not_depend_on_the_order_of_the_backends() {
    let names = ["cache-a", "cache-b", "cache-c", "cache-d"];
    let weights = [1, 2, 1, 3];
    let reversed_names: Vec<&str> = names.iter().rev().copied().collect();
    let reversed_weights: Vec<u32> = weights.iter().rev().copied().collect();
    let one = HashTable::new(Layout::Maglev, &names, &weights);
    let other = HashTable::new(Layout::Maglev, &reversed_names, &reversed_weights);
    assert_eq!(owners(&one, &names), owners(&other, &reversed_names));
}

#[test]
fn entries_follow_weights_within_one_percent() {
    // A few weight sets, skewed and even, small and large pools.
    let sets: [&[u32]; 4] = [&[1, 1, 1, 1], &[1, 2, 3, 4], &[5, 1, 1, 10, 3], &[100; 40]];
    for weights in sets {
        let names: Vec<String> = (0..weights.len()).map(|i| format!("b{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let maglev = HashTable::new(Layout::Maglev, &names, weights);
        let total: u32 = weights.iter().sum();
        for (i, share) in shares(&maglev, weights.len()).into_iter().enumerate() {
            let want = f64::from(weights[i]) / f64::from(total);
            assert!(
                (share - want).abs() <= 0.01 * want.max(0.01) + 1.0 / TABLE_SIZE as f64,
                "{weights:?}: backend {i} has {share:.4}, wants {want:.4}"
            );
        }
    }
}

#[test]
fn removing_a_backend_moves_little_more_than_its_keys() {
    let names = ["a", "b", "c", "d"];
    let all = HashTable::new(Layout::Maglev, &names, &[1, 1, 1, 1]);
    let without_c = HashTable::new(Layout::Maglev, &["a", "b", "d"], &[1, 1, 1]);
    let before = owners(&all, &names);
    let after = owners(&without_c, &["a", "b", "d"]);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let of_c = before.iter().filter(|b| *b == "c").count();
    assert!(moved >= of_c);
    // Maglev trades a little disruption for even spread: a few percent beyond the removed
    // backend's own quarter.
    assert!(
        moved as f64 / (TABLE_SIZE as f64) < 0.30,
        "{moved} of {TABLE_SIZE} entries moved"
    );
}

#[test]
fn weight_zero_takes_no_entry_and_an_empty_pool_picks_none() {
    let maglev = HashTable::new(Layout::Maglev, &["a", "b"], &[0, 1]);
    assert!(maglev.entries().iter().all(|&i| i == 1));
    let none = HashTable::new(Layout::Maglev, &["a"], &[0]);
    assert_eq!(none.pick(7, None, &fakes(&[1]), open), None);
}

#[test]
fn a_key_keeps_its_backend_and_moves_when_it_cannot_take_it() {
    let c = fakes(&[1, 1, 1]);
    let maglev = HashTable::new(Layout::Maglev, &["a", "b", "c"], &[1, 1, 1]);
    let first = maglev.pick(42, None, &c, open).unwrap();
    for _ in 0..10 {
        assert_eq!(maglev.pick(42, None, &c, open), Some(first));
    }
    c[first].selectable.set(false);
    let second = maglev.pick(42, None, &c, open).unwrap();
    assert_ne!(second, first);
    c[first].selectable.set(true);
    assert_eq!(
        maglev.pick(42, None, &c, open),
        Some(first),
        "back when it is"
    );
}

#[test]
fn bounded_load_is_never_exceeded() {
    // One hot key sends everything; requests pile up without finishing.
    let factor = NonZeroU16::new(125);
    for weights in [[1u32, 1, 1, 1], [1, 2, 3, 4]] {
        let c = fakes(&weights);
        let maglev = HashTable::new(Layout::Maglev, &["a", "b", "c", "d"], &weights);
        let total_weight: u32 = weights.iter().sum();
        for request in 0..500u32 {
            let key = if request % 3 == 0 {
                u64::from(request)
            } else {
                7
            };
            let i = maglev
                .pick(key, factor, &c, open)
                .expect("always one within bound");
            let total: u32 = c.iter().map(|f| f.in_flight.get()).sum();
            let share = f64::from(total + 1) * f64::from(weights[i]) / f64::from(total_weight);
            let bound = (1.25 * share).ceil() as u32;
            let now = c[i].in_flight.get() + 1;
            assert!(now <= bound, "{weights:?}: {now} in flight over {bound}");
            c[i].in_flight.set(now);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Any pool, listed in any order, maps every entry to the same backend, each within
    /// 1 % of its weight's share (or one entry).
    #[test]
    fn any_pool_in_any_order_maps_alike_within_one_percent_of_weights(
        weights in proptest::collection::vec(1u32..=20, 2..12),
        rotation in 0usize..12,
    ) {
        let names: Vec<String> = (0..weights.len()).map(|i| format!("backend-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let k = rotation % names.len();
        let (mut other_names, mut other_weights) = (names.clone(), weights.clone());
        other_names.rotate_left(k);
        other_weights.rotate_left(k);
        other_names.reverse();
        other_weights.reverse();
        let one = HashTable::new(Layout::Maglev, &names, &weights);
        let other = HashTable::new(Layout::Maglev, &other_names, &other_weights);
        proptest::prop_assert_eq!(owners(&one, &names), owners(&other, &other_names));
        let total: u32 = weights.iter().sum();
        for (i, share) in shares(&one, weights.len()).into_iter().enumerate() {
            let want = f64::from(weights[i]) / f64::from(total);
            proptest::prop_assert!(
                (share - want).abs() <= 0.01 * want.max(0.01) + 1.0 / TABLE_SIZE as f64,
                "{:?}: backend {} has {:.4}, wants {:.4}", weights, i, share, want
            );
        }
    }

    /// Whatever the weights, keys and finishing order, no backend ever holds more than the
    /// bound allows (`balance_factor` % of its weighted share of what is in flight, this
    /// request included, rounded up).
    #[test]
    fn bounded_load_is_never_exceeded_whatever_the_traffic(
        weights in proptest::collection::vec(1u32..=8, 2..8),
        factor in 101u16..=300,
        steps in proptest::collection::vec((0u64..6, proptest::bool::ANY), 1..400),
    ) {
        let c = fakes(&weights);
        let names: Vec<String> = (0..weights.len()).map(|i| format!("b{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let maglev = HashTable::new(Layout::Maglev, &names, &weights);
        let total_weight: u32 = weights.iter().sum();
        for (key, finish) in steps {
            if finish {
                // A request ends somewhere.
                if let Some(busy) = c.iter().find(|f| f.in_flight.get() > 0) {
                    busy.in_flight.set(busy.in_flight.get() - 1);
                }
                continue;
            }
            let i = maglev
                .pick(key, NonZeroU16::new(factor), &c, open)
                .expect("always one within bound");
            let total: u32 = c.iter().map(|f| f.in_flight.get()).sum();
            let share = f64::from(total + 1) * f64::from(weights[i]) / f64::from(total_weight);
            let bound = (f64::from(factor) / 100.0 * share).ceil() as u32;
            let now = c[i].in_flight.get() + 1;
            proptest::prop_assert!(now <= bound, "{:?}: {} in flight over {}", weights, now, bound);
            c[i].in_flight.set(now);
        }
    }
}
