//! The request path's writes to memory every worker shares, each timed on one thread and with a
//! second thread doing the same write all the while: the smooth weighted round-robin cursor, a
//! backend's in-flight count (taken and released), a status counter, the duration histogram,
//! and queueing an access log record. Beside them, what a per-worker (sharded) counter costs,
//! the alternative for anything that turns out contended. docs/src/scaling.md reads these
//! figures into a model for 16 and 64 cores.

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, StatusCode, Uri, Version};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime};
use switchyard::access_log::{AccessLog, Record};
use switchyard::balance::Balancer;
use switchyard::config::{AccessLogConfig, AccessLogFormat, Algorithm, HashLayout};
use switchyard::metrics::{Metrics, RequestMetrics};
use switchyard::upstream::Exclusion;

#[path = "support/mod.rs"]
mod support;

/// Times `op` alone, then while another thread runs it in a loop on the same shared state.
fn contended<S: Send + Sync + 'static>(c: &mut Criterion, name: &str, state: Arc<S>, op: fn(&S)) {
    let mut group = c.benchmark_group(name);
    group.bench_function("one_thread", |b| b.iter(|| op(black_box(&state))));
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                op(black_box(&state));
            }
        })
    };
    group.bench_function("two_threads", |b| b.iter(|| op(black_box(&state))));
    stop.store(true, Ordering::Relaxed);
    other.join().expect("the second thread ends");
    group.finish();
}

fn record() -> Box<Record> {
    Box::new(Record {
        time: SystemTime::UNIX_EPOCH,
        client: http::HeaderValue::from_static("127.0.0.1"),
        host: None,
        version: Version::HTTP_11,
        user_agent: None,
        referer: None,
        method: Method::GET,
        uri: Uri::from_static("/"),
        status: StatusCode::OK,
        upstream_status: Some(200),
        upstream_error: None,
        bytes_in: 0,
        bytes_out: 0,
        total: Duration::from_micros(300),
        upstream: Some(Duration::from_micros(250)),
        route: None,
        pool: None,
        backend: None,
        retries: 0,
        request_id: http::HeaderValue::from_static("0123456789abcdef0123456789abcdef"),
        grpc_status: None,
        tls: None,
    })
}

fn bench(c: &mut Criterion) {
    let pool = support::pool(2);
    let weights: Vec<u32> = pool.iter().map(|b| b.effective_weight()).collect();
    let names: Vec<&str> = pool.iter().map(|b| &*b.name).collect();
    let balancer = Balancer::new(
        Algorithm::WeightedRoundRobin,
        HashLayout::Maglev,
        &names,
        &weights,
    );
    contended(c, "wrr_cursor", Arc::new((balancer, pool.clone())), |s| {
        black_box(s.0.pick(&s.1, |b| b.accepts(Exclusion::ALL)));
    });
    contended(c, "in_flight", Arc::new(Arc::clone(&pool[0])), |b| {
        drop(black_box(b.begin_request()));
    });

    let metrics = Metrics::new();
    let cell = Arc::new(RequestMetrics::new(&metrics, "web", "web", "b1"));
    contended(c, "status_counter", Arc::clone(&cell), |cell| {
        cell.count(StatusCode::OK);
    });
    // Samples wait in the histogram for the proxy's periodic upkeep; here a third thread folds
    // them as the proxy's would, so they do not pile up.
    let folding = Arc::new(AtomicBool::new(true));
    let upkeep = {
        let folding = Arc::clone(&folding);
        thread::spawn(move || {
            while folding.load(Ordering::Relaxed) {
                metrics.run_upkeep();
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    contended(c, "duration_histogram", Arc::clone(&cell), |cell| {
        cell.duration.record(0.000_3);
    });
    folding.store(false, Ordering::Relaxed);
    upkeep.join().expect("the upkeep thread ends");

    // The log's writer thread formats every record to /dev/null, as it would to a file; a
    // record the full queue refuses is counted as dropped, as in the proxy.
    let config = AccessLogConfig {
        format: AccessLogFormat::Json,
        path: Some("/dev/null".into()),
        buffer: 4096,
    };
    let dropped = Metrics::new().counter("dropped", &[]);
    let (log, done) = AccessLog::start(&config, dropped).expect("/dev/null opens");
    contended(c, "access_log_queue", Arc::new(log), |log| {
        log.log(record())
    });
    drop(done);

    // The alternative for a contended counter: one per worker, summed when scraped.
    contended(c, "sharded_counter", Arc::new(AtomicU64::new(0)), |_| {
        thread_local! {
            static MINE: AtomicU64 = const { AtomicU64::new(0) };
        }
        MINE.with(|c| c.fetch_add(1, Ordering::Relaxed));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
