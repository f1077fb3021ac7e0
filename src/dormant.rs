//! A future polled only after it asked to be woken, so racing a rarely ready future against a
//! busy one costs nothing on the busy one's wake-ups.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

pin_project_lite::pin_project! {
    /// A future polled only after it asked to be woken: raced against a busy future, a rarely
    /// ready one (a timer, a shutdown signal) then costs nothing on the busy one's wake-ups.
    pub(crate) struct Dormant<F> {
        #[pin]
        inner: F,
        signal: Option<Arc<Signal>>,
    }
}

impl<F> Dormant<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self {
            inner,
            signal: None,
        }
    }
}

/// The waker handed to a dormant future: notes that it woke, then wakes the task.
struct Signal {
    woken: AtomicBool,
    task: Waker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release, paired with the Acquire in `poll`: the event that woke us is visible there.
        self.woken.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

impl<F: Future> Future for Dormant<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let signal = match this.signal {
            Some(signal) if signal.task.will_wake(cx.waker()) => signal,
            // First poll, or polled by another task: a new signal, and poll now so the inner
            // future registers it.
            slot => slot.insert(Arc::new(Signal {
                woken: AtomicBool::new(true),
                task: cx.waker().clone(),
            })),
        };
        if !signal.woken.swap(false, Ordering::Acquire) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(signal));
        this.inner.poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, having registered the waker.
    struct Probe<'a> {
        polls: &'a AtomicUsize,
        ready: &'a AtomicBool,
        waker: &'a std::sync::OnceLock<Waker>,
    }

    impl Future for Probe<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.ready.load(Ordering::Relaxed) {
                return Poll::Ready(());
            }
            self.waker.get_or_init(|| cx.waker().clone());
            Poll::Pending
        }
    }

    struct TaskWakes(AtomicUsize);

    impl Wake for TaskWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_dormant_future_is_polled_only_after_it_wakes() {
        let (polls, ready, waker) = (
            AtomicUsize::new(0),
            AtomicBool::new(false),
            std::sync::OnceLock::new(),
        );
        let mut dormant = std::pin::pin!(Dormant::new(Probe {
            polls: &polls,
            ready: &ready,
            waker: &waker,
        }));
        let task = Arc::new(TaskWakes(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        assert!(dormant.as_mut().poll(&mut cx).is_pending());
        for _ in 0..10 {
            assert!(dormant.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled without a wake");

        ready.store(true, Ordering::Relaxed);
        waker
            .get()
            .expect("the inner future registered")
            .wake_by_ref();
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "the task was woken");
        assert!(dormant.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }
}
