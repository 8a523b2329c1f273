//! Level-triggered wake-ups for API calls that wait on the engine.
//!
//! The Durable Object is single-threaded: every wait (a pong, a stream opening, data to
//! read, window to write) is a loop that checks the node's state and, if not done yet,
//! awaits [`Notify::changed`]. The driver calls [`Notify::notify`] after every drain of the
//! engine, which wakes all waiters to check again. Nothing is missed: a waiter registers
//! before it yields, and a change between its check and its registration bumps the epoch.

use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// Most wakers kept at once; beyond it the oldest are woken early (they check and re-wait).
pub const MAX_WAITERS: usize = 4096;

/// A change counter with the wakers of everyone waiting for the next change.
#[derive(Debug, Default)]
pub struct Notify {
    epoch: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// A notifier with no waiters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Something changed: wake every waiter.
    pub fn notify(&self) {
        self.epoch.set(self.epoch.get().wrapping_add(1));
        let wakers = core::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that completes at the next [`notify`](Self::notify) after this call.
    pub fn changed(&self) -> Changed<'_> {
        Changed {
            notify: self,
            seen: self.epoch.get(),
        }
    }

    /// Waiters currently registered.
    pub fn waiters(&self) -> usize {
        self.wakers.borrow().len()
    }
}

/// See [`Notify::changed`].
#[derive(Debug)]
pub struct Changed<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.epoch.get() != self.seen {
            return Poll::Ready(());
        }
        let mut wakers = self.notify.wakers.borrow_mut();
        if wakers.len() >= MAX_WAITERS {
            for waker in wakers.drain(..MAX_WAITERS / 2) {
                waker.wake();
            }
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiter_is_pending_until_notified_then_ready() {
        let notify = Notify::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut changed = core::pin::pin!(notify.changed());
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(notify.waiters(), 1, "one task registers once");
        notify.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_change_before_the_first_poll_is_not_missed() {
        let notify = Notify::new();
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let mut changed = core::pin::pin!(notify.changed());
        notify.notify();
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
