//! What recording one request costs on the request path: the status counter, the duration
//! histogram and the two clock reads, against doing nothing; and queueing an access log record.

use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard::metrics::{Metrics, RequestMetrics};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let cell = RequestMetrics::new(&metrics, "web", "web", "b1");
    let mut group = c.benchmark_group("request_metrics");
    group.bench_function("without_recording", |b| {
        b.iter(|| black_box(StatusCode::OK))
    });
    // Histogram samples are folded into buckets by a periodic upkeep in the proxy; do the same
    // here, outside the timed part, so samples do not pile up unrealistically.
    group.bench_function("count_and_duration", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let chunk = left.min(10_000);
                let started = Instant::now();
                for _ in 0..chunk {
                    let start = Instant::now();
                    cell.count(black_box(StatusCode::OK));
                    cell.duration.record(start.elapsed().as_secs_f64());
                }
                timed += started.elapsed();
                metrics.run_upkeep();
                left -= chunk;
            }
            timed
        })
    });
    group.bench_function("clock_reads_only", |b| {
        b.iter(|| black_box(Instant::now().elapsed()))
    });
    group.bench_function("count_only", |b| {
        b.iter(|| cell.count(black_box(StatusCode::OK)))
    });
    group.finish();
    // Keep histogram samples from piling up across the run.
    metrics.run_upkeep();
}

criterion_group!(benches, bench);
criterion_main!(benches);
