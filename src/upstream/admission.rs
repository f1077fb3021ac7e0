//! A pool's admission queue (HAProxy's `maxconn` + `timeout queue`): a request that finds
//! every backend at its `max_in_flight` waits here, first come first served, until a request
//! ends and frees a place, its `queue_timeout` passes (shed: 503) or its client leaves.
//!
//! Lock-free: a bounded array of waiters, each with its own waker. A pool without a queue has
//! none of this, and the end of its requests touches nothing of it.

use crate::config::AdmissionConfig;
pub use crate::error::Shed;
use crate::metrics::{self, Metrics};
use ::metrics::{Counter, Gauge, Histogram};
use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// A waiter's state: queued, woken by a request that ended, or gone (admitted, shed or its
/// client left).
const WAITING: u8 = 0;
const WOKEN: u8 = 1;
const GONE: u8 = 2;

#[derive(Debug, Default)]
struct Waiter {
    state: AtomicU8,
    waker: AtomicWaker,
}

/// One pool's queue and its counters; shared by every snapshot of the pool while its
/// settings stay the same.
#[derive(Debug)]
pub struct Admission {
    /// Waiters in arrival order. Those gone stay until a wake-up pops them, so the array has
    /// room for as many gone ones as live ones.
    queue: ArrayQueue<Arc<Waiter>>,
    /// Requests queued or woken that have not picked yet: while there are any, a new request
    /// queues behind them instead of taking a place that frees.
    waiting: AtomicU32,
    /// Requests woken that have not picked yet: places already promised.
    woken: AtomicU32,
    /// How many may wait.
    limit: u32,
    /// How many may wait now: what drains within the timeout. A request that timed out at
    /// position p lowers it to p; each request admitted from the queue raises it by one, up to
    /// `limit`. Past it, a request is shed at once rather than after waiting in vain.
    drains: AtomicU32,
    /// How long one may wait.
    pub timeout: Duration,
    /// Seconds a shed client is asked to wait (`Retry-After`).
    pub retry_after: u32,
    /// A hashing or sticky request whose backend is full takes another rather than waiting.
    pub spill: bool,
    /// Each backend's limit follows its latency.
    pub adaptive: bool,
    /// `switchyard_admission_shed_total` by `Shed` reason.
    pub shed: [Counter; 2],
    /// `switchyard_admission_queued_total`.
    queued: Counter,
    /// `switchyard_admission_spilled_total`.
    pub spilled: Counter,
    /// `switchyard_admission_queue_wait_seconds`: how long admitted requests waited.
    pub waited: Histogram,
    /// `switchyard_admission_queue_length`.
    length: Gauge,
}

impl Admission {
    /// The queue of pool `pool`, its counters registered at zero.
    pub fn new(settings: &AdmissionConfig, pool: &str, metrics: &Metrics) -> Self {
        let labels = [("pool", pool)];
        Self {
            queue: ArrayQueue::new(settings.queue.max(1) as usize * 2),
            waiting: AtomicU32::new(0),
            woken: AtomicU32::new(0),
            drains: AtomicU32::new(settings.queue),
            limit: settings.queue,
            timeout: settings.queue_timeout,
            retry_after: settings.retry_after,
            spill: settings.spill,
            adaptive: settings.adaptive,
            shed: Shed::ALL.map(|reason| {
                metrics.counter(
                    metrics::ADMISSION_SHED,
                    &[("pool", pool), ("reason", reason.as_str())],
                )
            }),
            queued: metrics.counter(metrics::ADMISSION_QUEUED, &labels),
            spilled: metrics.counter(metrics::ADMISSION_SPILLED, &labels),
            waited: metrics.histogram(metrics::ADMISSION_WAIT, &labels),
            length: metrics.gauge(metrics::ADMISSION_LENGTH, &labels),
        }
    }

    /// Whether requests wait: a new one then queues behind them.
    pub fn busy(&self) -> bool {
        // Relaxed: a hint; a request that misses a waiter by an instant takes a free place,
        // which the waiter would have had to race it for anyway.
        self.waiting.load(Ordering::Relaxed) != 0
    }

    /// How many woken requests have yet to pick: a place that freed is theirs.
    pub fn promised(&self) -> u32 {
        // Relaxed: a hint for whether to wake another; a wrong guess costs a wasted wake-up
        // or a wait for the next request to end.
        self.woken.load(Ordering::Relaxed)
    }

    /// A place in the queue, or `QueueFull`.
    pub fn enqueue(self: &Arc<Self>) -> Result<Ticket, Shed> {
        let before = self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiter = Arc::new(Waiter::default());
        // Relaxed: a bound that moves with the queue's pace; a request let in or shed by an
        // instant's difference is as right as the other.
        let room = self.drains.load(Ordering::Relaxed).min(self.limit);
        if before >= room || !self.push(Arc::clone(&waiter)) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Shed::QueueFull);
        }
        self.queued.increment(1);
        self.length.increment(1.0);
        Ok(Ticket {
            admission: Arc::clone(self),
            waiter,
            position: before,
        })
    }

    /// A request waited `queue_timeout` at `position` without a place: no more than that
    /// many drain within the timeout now.
    fn timed_out(&self, position: u32) {
        self.drains.fetch_min(position.max(1), Ordering::Relaxed);
    }

    /// A request left the queue for a backend: the queue may be one longer again.
    fn admitted(&self) {
        let limit = self.limit;
        let _ = self
            .drains
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |room| {
                (room < limit).then_some(room + 1)
            });
    }

    /// Adds `waiter` at the tail. When the array is full of gone waiters no wake-up has popped
    /// yet (no request ended for a while), they are cleared first; the live ones met on the
    /// way go back to the tail, in their order.
    fn push(&self, waiter: Arc<Waiter>) -> bool {
        let mut waiter = waiter;
        for _ in 0..=self.queue.capacity() {
            match self.queue.push(waiter) {
                Ok(()) => return true,
                Err(back) => waiter = back,
            }
            // A live head popped goes back; another push may have taken its slot meanwhile.
            let Some(head) = self.queue.pop() else {
                continue;
            };
            if head.state.load(Ordering::Acquire) != GONE && self.queue.push(head).is_err() {
                return false;
            }
        }
        false
    }

    /// Wakes the request that has waited longest, if one still does: a place has freed.
    pub fn wake_one(&self) {
        while let Some(waiter) = self.queue.pop() {
            // AcqRel: the waiter's poll reads the state after registering its waker.
            if waiter
                .state
                .compare_exchange(WAITING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.woken.fetch_add(1, Ordering::Relaxed);
                waiter.waker.wake();
                return;
            }
        }
    }
}

/// A request's place in the queue: a future that completes when a place frees. Dropped
/// unfinished (the client left, or the timeout passed), it leaves the queue, and a wake-up it
/// had received goes to the next waiter.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    waiter: Arc<Waiter>,
    /// How many waited before it when it queued.
    position: u32,
}

impl Ticket {
    /// It waited the whole `queue_timeout`: the queue shortens to what drains in time.
    pub fn timed_out(self) {
        self.admission.timed_out(self.position);
    }

    /// The wake-up was used to pick, and the request took a place on a backend (`admitted`)
    /// or found none after all: either way it is not passed on.
    pub fn finish(self, admitted: bool) {
        if admitted {
            self.admission.admitted();
        }
        if self.waiter.state.swap(GONE, Ordering::AcqRel) == WOKEN {
            self.admission.woken.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Future for Ticket {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waiter.state.load(Ordering::Acquire) == WOKEN {
            return Poll::Ready(());
        }
        self.waiter.waker.register(cx.waker());
        // Checked again: a wake-up between the first check and the registration found no waker.
        if self.waiter.state.load(Ordering::Acquire) == WOKEN {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.waiting.fetch_sub(1, Ordering::Relaxed);
        admission.length.decrement(1.0);
        if self.waiter.state.swap(GONE, Ordering::AcqRel) == WOKEN {
            admission.woken.fetch_sub(1, Ordering::Relaxed);
            admission.wake_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn admission(size: u32) -> Arc<Admission> {
        let settings = AdmissionConfig {
            max_in_flight: None,
            queue: size,
            queue_timeout: Duration::from_secs(1),
            retry_after: 1,
            spill: false,
            adaptive: false,
        };
        Arc::new(Admission::new(&settings, "p", &Metrics::new()))
    }

    fn ready(ticket: &mut Ticket) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(ticket).poll(&mut cx).is_ready()
    }

    #[test]
    fn waiters_are_woken_in_arrival_order_one_per_freed_place() {
        let queue = admission(3);
        let mut tickets: Vec<Ticket> = (0..3).map(|_| queue.enqueue().unwrap()).collect();
        assert!(queue.busy());
        assert_eq!(queue.enqueue().unwrap_err(), Shed::QueueFull);
        assert!(tickets.iter_mut().all(|t| !ready(t)));
        queue.wake_one();
        let woken: Vec<bool> = tickets.iter_mut().map(ready).collect();
        assert_eq!(woken, [true, false, false]);
        queue.wake_one();
        assert!(ready(&mut tickets[1]) && !ready(&mut tickets[2]));
    }

    #[test]
    fn a_waiter_that_leaves_gives_its_place_and_its_wake_up_to_the_next() {
        let queue = admission(3);
        let first = queue.enqueue().unwrap();
        let mut second = queue.enqueue().unwrap();
        let mut third = queue.enqueue().unwrap();
        // The first leaves before a place frees: the wake-up skips it.
        drop(first);
        queue.wake_one();
        assert!(ready(&mut second));
        // Woken but gone before picking (its client left): the third gets the wake-up.
        drop(second);
        assert_eq!(
            queue.promised(),
            1,
            "the wake-up passed on is still promised"
        );
        assert!(ready(&mut third));
        third.finish(false);
        assert_eq!(queue.promised(), 0);
        assert!(!queue.busy());
    }

    #[test]
    fn a_used_wake_up_is_not_passed_on() {
        let queue = admission(2);
        let mut first = queue.enqueue().unwrap();
        let mut second = queue.enqueue().unwrap();
        queue.wake_one();
        assert_eq!(queue.promised(), 1);
        assert!(ready(&mut first));
        first.finish(false);
        assert_eq!(queue.promised(), 0);
        assert!(!ready(&mut second));
    }

    #[test]
    fn gone_waiters_never_fill_the_queue_for_live_ones() {
        let queue = admission(2);
        for _ in 0..100 {
            let a = queue.enqueue().unwrap();
            let b = queue.enqueue().unwrap();
            drop((a, b));
        }
        let _kept = queue.enqueue().unwrap();
        assert!(queue.enqueue().is_ok());
    }

    #[test]
    fn the_queue_shortens_to_what_drains_in_time_and_lengthens_as_requests_leave_it() {
        let queue = admission(10);
        let mut tickets: Vec<Ticket> = (0..4).map(|_| queue.enqueue().unwrap()).collect();
        // The fourth (three before it) waited in vain: from now on three may wait, and three do.
        tickets.pop().unwrap().timed_out();
        assert_eq!(queue.enqueue().unwrap_err(), Shed::QueueFull);
        // The first admitted: the queue may be one longer, and it is one shorter.
        queue.wake_one();
        let first = tickets.remove(0);
        first.finish(true);
        let _a = queue.enqueue().unwrap();
        let _b = queue.enqueue().unwrap();
        assert_eq!(queue.enqueue().unwrap_err(), Shed::QueueFull, "four wait");
    }
}
