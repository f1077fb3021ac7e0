//! Routing lookup over 10 and 1,000 routes: exact hosts, wildcards and path prefixes.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use switchyard::config::{HostPattern, RouteConfig};
use switchyard::metrics::Metrics;
use switchyard::route::{Asked, Router};

fn routes(n: usize) -> Vec<RouteConfig> {
    (0..n)
        .map(|i| {
            let host = match i % 3 {
                0 => Some(HostPattern::Exact(format!("svc{i}.example.com"))),
                1 => Some(HostPattern::Suffix(format!(".tenant{i}.example.com"))),
                _ => None,
            };
            let prefix = format!("/api/v{}/{}", i % 7, i);
            RouteConfig::to_pool(&format!("r{i}"), host, &prefix, "p")
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_find");
    for n in [10, 1000] {
        let router = Router::new(
            &routes(n),
            &[],
            |_| Some(0),
            &Metrics::new(),
            &Default::default(),
        );
        let headers = http::HeaderMap::new();
        let asked = Asked {
            method: &http::Method::GET,
            headers: &headers,
            query: None,
        };
        let exact_host = format!("svc{}.example.com", (n / 3) * 3 - 3);
        group.bench_with_input(BenchmarkId::new("exact_host", n), &n, |b, _| {
            b.iter(|| {
                router.find(
                    black_box(Some(exact_host.as_str())),
                    black_box("/api/v0/x"),
                    &asked,
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("wildcard_host", n), &n, |b, _| {
            b.iter(|| {
                router.find(
                    black_box(Some("a.tenant1.example.com")),
                    black_box("/api/v1/1/x"),
                    &asked,
                )
            })
        });
        let path = format!("/api/v{}/{}/users", (n - 1) % 7, n - 1);
        group.bench_with_input(BenchmarkId::new("default_host_prefix", n), &n, |b, _| {
            b.iter(|| {
                router.find(
                    black_box(Some("unknown.org:8080")),
                    black_box(path.as_str()),
                    &asked,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
