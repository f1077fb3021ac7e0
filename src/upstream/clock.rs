//! The backends' coarse clock: milliseconds in a `u64`, so that times fit in atomics.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first call: a clock that fits in an atomic (never 0 once read).
pub(crate) fn millis_now() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| Instant::now() - Duration::from_millis(1));
    start.elapsed().as_millis() as u64
}
