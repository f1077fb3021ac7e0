//! A ketama ring (libketama, as NGINX's `hash … consistent` and HAProxy's `hash-type
//! consistent`): each backend places points on a 64-bit circle, hashed from its *name* and the
//! point's number, as many as its share of 160 per backend; a key belongs to the first point at
//! or after it. Removing a backend moves exactly the keys of its points.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Points per backend of average weight.
const POINTS_PER_BACKEND: u64 = 160;

/// The ring for backends with these names and weights: the points in order, and for each the
/// index of its backend. A backend of weight 0 places none.
pub fn fill(names: &[&str], weights: &[u32]) -> (Box<[u64]>, Box<[u32]>) {
    let placed: Vec<usize> = (0..names.len()).filter(|&i| weights[i] > 0).collect();
    let total: u64 = placed.iter().map(|&i| u64::from(weights[i])).sum();
    let mut points: Vec<(u64, &str, u32)> = Vec::new();
    for &i in &placed {
        let share = POINTS_PER_BACKEND * placed.len() as u64 * u64::from(weights[i]);
        let count = (share / total.max(1)).max(1);
        let name = names[i];
        points.extend((0..count).map(|n| (xxh3_64_with_seed(name.as_bytes(), n), name, i as u32)));
    }
    // Ties (two equal 64-bit points) fall to the smaller name: the order of the config never
    // decides.
    points.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let (positions, owners): (Vec<u64>, Vec<u32>) = points.iter().map(|p| (p.0, p.2)).unzip();
    (positions.into_boxed_slice(), owners.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use crate::balance::HashTable;
    use crate::config::HashLayout;

    fn owners(names: &[&str], weights: &[u32], keys: u64) -> Vec<String> {
        let ring = HashTable::new(HashLayout::Ring, names, weights);
        let fakes = crate::balance::testing::fakes(weights);
        (0..keys)
            .map(|k| {
                let key = xxhash_rust::xxh3::xxh3_64(&k.to_be_bytes());
                let i = ring.pick(key, None, &fakes, crate::balance::testing::open);
                names[i.unwrap()].to_owned()
            })
            .collect()
    }

    #[test]
    fn removing_a_backend_moves_exactly_its_keys_and_order_does_not_matter() {
        let before = owners(&["a", "b", "c", "d"], &[1, 1, 1, 1], 20_000);
        let after = owners(&["d", "b", "a"], &[1, 1, 1], 20_000);
        for (b, a) in before.iter().zip(&after) {
            if b != "c" {
                assert_eq!(b, a, "a key of {b} moved");
            } else {
                assert_ne!(a, "c");
            }
        }
        assert_eq!(before, owners(&["c", "a", "d", "b"], &[1, 1, 1, 1], 20_000));
    }

    #[test]
    fn keys_follow_weights_roughly() {
        let owned = owners(&["a", "b"], &[1, 3], 40_000);
        let share = owned.iter().filter(|o| *o == "b").count() as f64 / 40_000.0;
        // 160 points per backend on average: within a few percent of 3/4.
        assert!((0.68..0.82).contains(&share), "b has {share}");
    }
}
