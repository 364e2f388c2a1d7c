//! A one-waiter wake-up for tasks of one shard: no atomics, no lock.

use std::cell::Cell;
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// A flag plus the waker of the one task that waits on it. `notify` before
/// `wait` is remembered, so no wake-up is lost.
#[derive(Default)]
pub(crate) struct LocalSignal {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl LocalSignal {
    /// Set the flag and wake the waiter, if any.
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Wait until the flag is set, then clear it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
