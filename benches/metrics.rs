//! What recording one request costs on the request path: the status counter, the duration
//! histogram and the two clock reads, against doing nothing; and queueing an access log record.

use criterion::{Criterion, criterion_group, criterion_main};
use http::StatusCode;
use std::hint::black_box;
use std::time::Instant;
use switchyard::metrics::{Metrics, RequestMetrics};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let cell = RequestMetrics::new(&metrics, "web", "web", "b1");
    let mut group = c.benchmark_group("request_metrics");
    group.bench_function("without_recording", |b| {
        b.iter(|| black_box(StatusCode::OK))
    });
    group.bench_function("count_and_duration", |b| {
        b.iter(|| {
            let start = Instant::now();
            cell.count(black_box(StatusCode::OK));
            cell.duration.record(start.elapsed().as_secs_f64());
        })
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
