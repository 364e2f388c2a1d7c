//! Corking: while a pump applies a batch of deliveries, connections whose
//! queue was empty are listed instead of waking their writer tasks; at the
//! end of the batch each is flushed once, straight to its socket
//! ([`super::conn::Conn::flush_now`]).
//!
//! This is what a single-threaded event loop does (write what a turn
//! produced, once per socket), kept inside the shard's task model: a
//! message to a quiet member costs one `writev` and no task wake-up, and a
//! member that gets several frames in one batch (its copy and its ack, or a
//! burst of messages) gets them in one write.
//!
//! **Invariants:** a corked section never spans an `.await` that can wait
//! (a pump uncorks before it waits for room in another shard's inbox), so
//! a listed connection is flushed within the batch that listed it; and a
//! flush writes only when the connection's writer task is asleep with
//! nothing in flight, so frames leave in queue order.

use std::cell::{Cell, RefCell};

/// The shard's cork: how many sections are open, and the connections to
/// flush when the last one closes. A listed connection is a `T`: the shard
/// lists `Weak<Conn>` handles, so the flush reaches each connection without
/// a lookup in the shard's connection table (a cache miss per delivery in
/// small rooms), and a connection gone meanwhile is skipped.
pub(crate) struct Cork<T> {
    depth: Cell<u32>,
    dirty: RefCell<Vec<T>>,
    /// The list being flushed (kept to reuse its allocation).
    flushing: RefCell<Vec<T>>,
}

impl<T> Default for Cork<T> {
    fn default() -> Self {
        Cork {
            depth: Cell::new(0),
            dirty: RefCell::default(),
            flushing: RefCell::default(),
        }
    }
}

impl<T> Cork<T> {
    /// Open a section.
    pub(crate) fn open(&self) {
        self.depth.set(self.depth.get() + 1);
    }

    /// Close a section: the connections to flush now, if it was the last
    /// one open (hand the list back with [`Cork::done`]).
    pub(crate) fn close(&self) -> Option<std::cell::RefMut<'_, Vec<T>>> {
        let depth = self.depth.get().saturating_sub(1);
        self.depth.set(depth);
        if depth > 0 || self.dirty.borrow().is_empty() {
            return None;
        }
        let mut flushing = self.flushing.borrow_mut();
        std::mem::swap(&mut *flushing, &mut *self.dirty.borrow_mut());
        Some(flushing)
    }

    /// Whether a connection's writer is to be flushed at the end of the
    /// open section (listed now, as made by `conn`) rather than woken.
    pub(crate) fn defer(&self, conn: impl FnOnce() -> T) -> bool {
        if self.depth.get() == 0 {
            return false;
        }
        self.dirty.borrow_mut().push(conn());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_section_to_close_hands_out_the_list() {
        let cork = Cork::<u64>::default();
        assert!(!cork.defer(|| 1), "nothing open: wake at once");
        cork.open();
        cork.open();
        assert!(cork.defer(|| 1) && cork.defer(|| 2));
        assert!(cork.close().is_none(), "one section still open");
        let mut list = cork.close().expect("the list");
        assert_eq!(*list, vec![1, 2]);
        list.clear();
        drop(list);
        assert!(!cork.defer(|| 3), "closed again");
        cork.open();
        assert!(cork.close().is_none(), "nothing listed");
    }
}
