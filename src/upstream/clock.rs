//! The backends' clocks: milliseconds (coarse) or nanoseconds in a `u64`, so that times fit
//! in atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first call: a clock that fits in an atomic (never 0 once read).
pub(crate) fn millis_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| Instant::now() - Duration::from_millis(1));
    start.elapsed().as_millis() as u64
}

/// Nanoseconds since the first call: least-latency estimates and penalties are stamped with it.
pub fn nanos_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
