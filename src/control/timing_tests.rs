//! The control plane's timing, through its real event loop on tokio's paused clock: ejections
//! that double up to their ceiling and end on time, a slow-start ramp over its window, a drain
//! deadline. No socket is opened (no probes, no discovery), so virtual time is exact: each
//! change is announced at the very instant it is due.

use super::{BackendChange, Command, Control, ControlHandle};
use crate::events::{Event, Numbered};
use crate::metrics::Metrics;
use crate::upstream::{BackendKey, Failure, OutlierReport, State};
use std::time::Duration;
use tokio::sync::broadcast::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running control plane over pool `p` of backends `a` and `b`, `pool` (keys and tables of
/// the pool) added; its handle, its event stream, and what stops it.
fn start(pool: &str) -> (ControlHandle, Receiver<Numbered>, CancellationToken) {
    let text = format!(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"r\"\npool = \"p\"\n\
         [[pools]]\nname = \"p\"\n{pool}\n\
         [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
         [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n"
    );
    let config = crate::config::parse(&text, "t.toml").expect("a valid config");
    let stop = CancellationToken::new();
    let (control, handle) =
        Control::new(&config, &Metrics::new(), TaskTracker::new(), stop.clone());
    let (_, _, events) = handle.events.subscribe(None);
    tokio::spawn(control.run());
    (handle, events, stop)
}

/// The next change of backend state: (backend, from, to, reason).
async fn next_change(events: &mut Receiver<Numbered>) -> (String, State, State, String) {
    loop {
        if let Event::Backend {
            backend,
            from,
            to,
            reason,
            ..
        } = events.recv().await.expect("the event stream").event
        {
            return (backend, from, to, reason);
        }
    }
}

fn key_of_a(handle: &ControlHandle) -> BackendKey {
    handle.snapshot.load().pools[0].backends[0].key()
}

fn weight_of_a(handle: &ControlHandle) -> u32 {
    handle.snapshot.load().pools[0].backends[0].effective_weight()
}

/// Reports `a` past its 5xx threshold and waits for the ejection; returns its reason.
async fn eject_a(handle: &ControlHandle, events: &mut Receiver<Numbered>) -> String {
    let report = OutlierReport {
        backend: key_of_a(handle),
        failure: Failure::Status5xx,
        consecutive: 5,
    };
    handle.outliers.send(report).expect("control running");
    let (backend, _, to, reason) = next_change(events).await;
    assert_eq!((backend.as_str(), to), ("a", State::Ejected));
    reason
}

/// Asserts `elapsed` is `due`, to the timer's millisecond.
fn assert_on_time(elapsed: Duration, due: Duration) {
    assert!(
        elapsed >= due && elapsed < due + Duration::from_millis(2),
        "due after {due:?}, happened after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ejections_last_twice_as_long_each_time_up_to_the_ceiling_and_end_on_time() {
    let (handle, mut events, stop) = start(
        "[pools.outlier_detection]\nbase_ejection_time = \"300ms\"\n\
         max_ejection_time = \"1s\"\nmax_ejection_percent = 50",
    );
    for due in [300, 600, 1000, 1000] {
        let due = Duration::from_millis(due);
        let reason = eject_a(&handle, &mut events).await;
        assert!(
            reason.ends_with(&format!("ejected for {due:?}")),
            "{reason}"
        );
        let ejected = Instant::now();
        let (_, from, to, reason) = next_change(&mut events).await;
        assert_eq!((from, to), (State::Ejected, State::Healthy));
        assert_eq!(reason, "ejection time over");
        assert_on_time(ejected.elapsed(), due);
    }
    // Quiet for `max_ejection_time`, the doubling starts again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reason = eject_a(&handle, &mut events).await;
    assert!(reason.ends_with("ejected for 300ms"), "{reason}");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_returning_backend_ramps_up_over_the_slow_start_window_then_is_healthy() {
    let (handle, mut events, stop) = start(
        "slow_start = \"10s\"\n\
         [pools.outlier_detection]\nbase_ejection_time = \"1s\"\nmax_ejection_percent = 50",
    );
    let full = weight_of_a(&handle);
    eject_a(&handle, &mut events).await;
    let (_, _, to, _) = next_change(&mut events).await;
    assert_eq!(to, State::SlowStart);
    let returned = Instant::now();
    let mut last = weight_of_a(&handle);
    assert!(last < full / 4, "back at {last} of {full}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let now = weight_of_a(&handle);
        assert!(last < now && now < full, "{last} then {now} of {full}");
        last = now;
    }
    let (_, from, to, reason) = next_change(&mut events).await;
    assert_eq!((from, to), (State::SlowStart, State::Healthy));
    assert_eq!(reason, "slow start finished");
    assert_on_time(returned.elapsed(), Duration::from_secs(10));
    assert_eq!(weight_of_a(&handle), full);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_drain_deadline_closes_what_remains_at_the_deadline() {
    let (handle, mut events, stop) = start("");
    let a = std::sync::Arc::clone(&handle.snapshot.load().pools[0].backends[0]);
    let in_flight = a.begin_request();
    let cut = a.cut_signal();
    let drain = |reply| Command::Backend {
        pool: "p".into(),
        backend: "a".into(),
        change: BackendChange::Drain(Some(Duration::from_secs(5))),
        reply,
    };
    handle.ask(drain).await.expect("answered").expect("found");
    let (_, _, to, _) = next_change(&mut events).await;
    assert_eq!(to, State::Draining);
    let drained = Instant::now();
    let (_, from, to, reason) = next_change(&mut events).await;
    assert_eq!((from, to), (State::Draining, State::Drained));
    assert_eq!(
        reason,
        "drain deadline reached: 1 requests or tunnels still open were closed"
    );
    assert_on_time(drained.elapsed(), Duration::from_secs(5));
    assert!(
        cut.is_cancelled(),
        "the remaining connections were told to close"
    );
    drop(in_flight);
    stop.cancel();
}
