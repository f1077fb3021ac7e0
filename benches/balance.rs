//! Backend selection: smooth weighted round-robin, least-connections, least-latency (power of
//! two choices by peak-EWMA latency) and Maglev hashing (keys
//! varying per pick, with and without a load bound) over pools of 2 to 1,024 backends, on one
//! thread and with two threads picking from the same pool.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use switchyard::balance::Balancer;
use switchyard::config::{Algorithm, HashLayout};
use switchyard::upstream::{BackendState, Exclusion, InFlightGuard};

#[path = "support/mod.rs"]
mod support;
use support::pool;

const SIZES: [usize; 4] = [2, 16, 256, 1024];

/// A pool of `n` backends, one in three holding a request (so least-connections and the load
/// bound have something to compare; the guards hold them), and its balancer.
fn loaded(
    n: usize,
    algorithm: Algorithm,
    layout: HashLayout,
) -> (Vec<Arc<BackendState>>, Vec<InFlightGuard>, Balancer) {
    let backends = pool(n);
    let held = backends
        .iter()
        .step_by(3)
        .map(|b| b.begin_request())
        .collect();
    let balancer = balancer_for(&backends, algorithm, layout);
    (backends, held, balancer)
}

fn balancer_for(
    backends: &[Arc<BackendState>],
    algorithm: Algorithm,
    layout: HashLayout,
) -> Balancer {
    let weights: Vec<u32> = backends.iter().map(|b| b.effective_weight()).collect();
    let names: Vec<&str> = backends.iter().map(|b| &*b.name).collect();
    Balancer::new(algorithm, layout, &names, &weights)
}

fn bench(c: &mut Criterion) {
    for algorithm in [
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::LeastLatency,
    ] {
        let name = match algorithm {
            Algorithm::WeightedRoundRobin => "wrr_pick",
            Algorithm::LeastConnections => "least_conn_pick",
            Algorithm::LeastLatency => "least_latency_pick",
            Algorithm::Hash => unreachable!("benched below"),
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for n in SIZES {
            let (backends, _held, balancer) = loaded(n, algorithm, HashLayout::Maglev);
            let mask = Exclusion::ALL;
            // Latency estimates of 1 to 2 ms, 10 ms old, as in a busy pool (least-latency
            // decays them to now).
            let now = 2_000_000_000;
            for (i, backend) in backends.iter().enumerate() {
                let rtt = 1_000_000 + (i as u64 % 1_000) * 1_000;
                backend
                    .latency
                    .observe(rtt, now - 10_000_000, 10_000_000_000);
            }
            group.bench_with_input(BenchmarkId::new("one_thread", n), &n, |b, _| {
                b.iter(|| balancer.pick_at(now, black_box(&backends), |s| s.accepts(mask)))
            });
            // A second thread picks from the same balancer all the while: contended cursors.
            let shared = Arc::new((
                balancer_for(&backends, algorithm, HashLayout::Maglev),
                backends.clone(),
            ));
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        black_box(shared.0.pick(&shared.1, |s| s.accepts(mask)));
                    }
                })
            };
            group.bench_with_input(BenchmarkId::new("two_threads", n), &n, |b, _| {
                b.iter(|| shared.0.pick(black_box(&shared.1), |s| s.accepts(mask)))
            });
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
        }
        group.finish();
    }
}

/// A keyed pick in a hashing pool, the key changing every time, with and without a 125 % load
/// bound.
fn bench_hash(c: &mut Criterion) {
    for (group, layout) in [
        ("maglev_pick", HashLayout::Maglev),
        ("ring_pick", HashLayout::Ring),
    ] {
        bench_layout(c, group, layout);
    }
}

fn bench_layout(c: &mut Criterion, group: &str, layout: HashLayout) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let (backends, _held, balancer) = loaded(n, Algorithm::Hash, layout);
        let mask = Exclusion::ALL;
        for (label, factor) in [("unbounded", None), ("bounded_125", NonZeroU16::new(125))] {
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    balancer.pick_keyed(black_box(key), factor, &backends, |s| s.accepts(mask))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_hash);
criterion_main!(benches);
