//! Sticky sessions: reading (verifying) a session cookie and signing a new one.
//! `cargo bench --bench sticky` (figures in docs/src/performance.md).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard::config::StickyConfig;
use switchyard::metrics::Metrics;
use switchyard::upstream::sticky::Sticky;

fn bench(c: &mut Criterion) {
    let config = StickyConfig {
        cookie: "sy_backend".into(),
        secrets: vec![b"0123456789abcdef0123456789abcdef".to_vec()],
        max_life: Some(std::time::Duration::from_secs(43_200)),
        max_idle: Some(std::time::Duration::from_secs(1_800)),
        path: "/".into(),
        domain: None,
        secure: true,
        fleet_secret: false,
    };
    let sticky = Sticky::new(&config, "pool", &Metrics::new(), &Default::default());
    let now = 1_800_000_000;
    let cookie = sticky.cookie("web-backend-17", now - 60, now - 5).unwrap();
    let text = cookie.to_str().unwrap();
    let value = text["sy_backend=".len()..text.find(';').unwrap()].to_owned();
    c.bench_function("sticky_verify", |b| {
        b.iter(|| sticky.read(black_box(&value), now))
    });
    c.bench_function("sticky_sign", |b| {
        b.iter(|| sticky.cookie(black_box("web-backend-17"), now - 60, now))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
