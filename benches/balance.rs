//! Backend selection: smooth weighted round-robin and least-connections over pools of 2 to 1,024
//! backends, on one thread and with two threads picking from the same pool.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use switchyard::balance::Balancer;
use switchyard::config::{Algorithm, BackendConfig};
use switchyard::metrics::BackendMetrics;
use switchyard::upstream::{BackendState, Exclusion};

const SIZES: [usize; 4] = [2, 16, 256, 1024];

fn pool(n: usize) -> Vec<Arc<BackendState>> {
    (0..n)
        .map(|i| {
            let config = BackendConfig {
                name: format!("b{i}"),
                address: format!("10.0.{}.{}:8080", i / 250, i % 250)
                    .parse()
                    .unwrap(),
                weight: std::num::NonZeroU32::new(1 + (i % 5) as u32).unwrap(),
                max_requests: None,
                max_connections: None,
            };
            Arc::new(BackendState::new(
                "pool".into(),
                &config,
                true,
                BackendMetrics::noop(),
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for algorithm in [Algorithm::WeightedRoundRobin, Algorithm::LeastConnections] {
        let name = match algorithm {
            Algorithm::WeightedRoundRobin => "wrr_pick",
            Algorithm::LeastConnections => "least_conn_pick",
        };
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        for n in SIZES {
            let backends = pool(n);
            // Some load, so least-connections has something to compare.
            let _held: Vec<_> = backends
                .iter()
                .step_by(3)
                .map(|b| b.begin_request())
                .collect();
            let weights: Vec<u32> = backends.iter().map(|b| b.effective_weight()).collect();
            let balancer = Balancer::new(algorithm, &weights);
            let mask = Exclusion::ALL;
            group.bench_with_input(BenchmarkId::new("one_thread", n), &n, |b, _| {
                b.iter(|| balancer.pick(black_box(&backends), |s| s.accepts(mask)))
            });
            // A second thread picks from the same balancer all the while: contended cursors.
            let shared = Arc::new((Balancer::new(algorithm, &weights), backends.clone()));
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

criterion_group!(benches, bench);
criterion_main!(benches);
