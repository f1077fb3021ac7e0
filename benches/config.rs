//! Parse, validate and build the first snapshot for a config of 1,000 backends in 10 pools.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard::control::Control;
use switchyard::metrics::Metrics;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn config_text() -> String {
    let mut text = String::from("[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n");
    for p in 0..10 {
        text += &format!(
            "\n[[routes]]\nname = \"r{p}\"\nhost = \"svc{p}.example.com\"\npool = \"p{p}\"\n"
        );
    }
    for p in 0..10 {
        text += &format!("\n[[pools]]\nname = \"p{p}\"\nalgorithm = \"weighted_round_robin\"\n");
        for b in 0..100 {
            text += &format!(
                "[[pools.backends]]\nname = \"b{b}\"\naddress = \"10.{p}.{}.{}:8080\"\nweight = {}\n",
                b / 200,
                b % 200 + 1,
                1 + b % 4
            );
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = config_text();
    let metrics = Metrics::new();
    c.bench_function("parse_validate_1000_backends", |b| {
        b.iter(|| switchyard::config::parse(black_box(&text), "bench.toml").unwrap())
    });
    let config = switchyard::config::parse(&text, "bench.toml").unwrap();
    c.bench_function("build_snapshot_1000_backends", |b| {
        b.iter(|| {
            Control::new(
                black_box(&config),
                &metrics,
                TaskTracker::new(),
                CancellationToken::new(),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
