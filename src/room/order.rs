//! A room's order on one node of a cluster: the messages a remote
//! sequencer (Redis) numbered, handed to this node's members in `seq`
//! order, each once; holes repaired from the room's history stream; joins
//! admitted right after the message they were answered with.
//!
//! It does no I/O. The cluster backplane feeds it what arrives (messages
//! from the room's channel, join answers, repair answers) and carries out
//! the [`Step`]s it returns, in order: deliver to members, say `gap`, admit
//! a member, fetch a repair.
//!
//! **Invariants** (pinned by the property test beside this file): every
//! admitted member sees, after the seq its join was answered with, each
//! later seq exactly once and in order, or a `gap` covering exactly the
//! seqs it cannot have; the order never goes back; everything it holds is
//! bounded (`catchup_messages` messages and `max_bytes` bytes of recent
//! messages, the same for a repair's waiting messages); and a join answered
//! ahead of the messages heard is admitted within a bounded time even if
//! those messages never come ([`RoomOrder::overdue`]).
//!
//! That last one is the fix of a hang seen after Redis restarts: a join
//! answered with `seq` S waited for message S, which Redis had lost with
//! its stream (or this node missed and could not repair), and was admitted
//! only if someone published again. Its connection got no `join` reply.
//!
//! A hole found while the node cannot read the stream (its command
//! connection is down or a read failed) is not a loss: the messages after
//! it wait, and the read is sent when the command connection is back
//! ([`RoomOrder::send_repair`]) or at the next [`RoomOrder::overdue`] check.
//! Only a hole that could not be read for `wait` is given up with a `gap`.
//! Before, such a hole became a `gap` at once: after a Redis restart, a
//! node whose subscriber connection came back before its command connection
//! told its members that a message Redis had acknowledged was lost.
//!
//! About 530 lines, and one file on purpose: it is one state machine. Every
//! input (a message, a join answer, a repair answer, a lost subscription,
//! the clock) reads and updates the same four things — the last seq
//! delivered, the recent messages, the joins waiting, the repair in flight
//! — and the invariants above hold only over all of its transitions read
//! together; the [`Step`]s it returns are its vocabulary. The tests are
//! beside it in `order_tests.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::room::history::HistoryRing;

/// What the backplane must do next for the room, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<A> {
    /// Deliver message `seq` to the node's admitted members (except `skip`).
    Deliver {
        /// Its seq.
        seq: u64,
        /// The encoded frame.
        frame: Bytes,
        /// A local connection that published it with `exclude_self`.
        skip: Option<u64>,
    },
    /// Messages `from..=to` are lost for the node's members.
    Gap {
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
    /// Admit member `conn` now: its ack, then `catchup`, then whatever is
    /// delivered after this step.
    Admit {
        /// The member connection.
        conn: u64,
        /// What the backplane keeps with the join (its ack).
        admission: A,
        /// What came after its join, oldest first.
        catchup: Vec<CatchUp>,
    },
    /// Read from the room's stream the messages after `after` (below
    /// `below`, when given), and hand them to [`RoomOrder::repaired`] with
    /// this `id` (nothing, if the read failed).
    Fetch {
        /// Names this repair.
        id: u64,
        /// Last seq delivered.
        after: u64,
        /// The first seq already here, if known.
        below: Option<u64>,
    },
}

/// What a member admitted late missed since its join.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// A message it gets now.
    Message(Bytes),
    /// Messages `from..=to` this node no longer has (or never had).
    Gap {
        /// First lost seq.
        from: u64,
        /// Last lost seq.
        to: u64,
    },
}

/// A join answered with `at`, waiting for message `at` since `since`.
#[derive(Debug)]
struct Pending<A> {
    at: u64,
    conn: u64,
    admission: A,
    since: Instant,
}

/// A hole being filled: the messages that came after it wait here.
#[derive(Debug)]
struct Repair {
    /// The read in flight; `None` while it waits to be sent (no command
    /// connection, or the last read failed).
    id: Option<u64>,
    /// The first [`RoomOrder::overdue`] check that found it unsent: it is
    /// given up `wait` after that.
    unsent_since: Option<Instant>,
    waiting: Vec<(u64, Bytes, Option<u64>)>,
    waiting_bytes: usize,
    /// Read after joins answered up to this seq ran in Redis: whatever the
    /// stream lacks up to it is gone (unless it waits here).
    through: Option<u64>,
}

/// The bounds of one room's order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrderLimits {
    /// Recent messages kept to catch up late joiners, and most messages
    /// waiting on a repair.
    pub(crate) messages: usize,
    /// The same bound in bytes.
    pub(crate) bytes: usize,
}

/// Where repair ids come from (one counter per backplane, so an answer to a
/// repair of a room's earlier state never passes for a later one's).
#[derive(Debug, Default)]
pub(crate) struct RepairIds(u64);

impl RepairIds {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

/// One room's order on this node.
#[derive(Debug)]
pub(crate) struct RoomOrder<A> {
    limits: OrderLimits,
    /// Last seq delivered; `None` until the first message or join answer.
    delivered: Option<u64>,
    /// The last delivered messages: (seq, frame, connection it skips).
    recent: HistoryRing<Option<u64>>,
    pending: Vec<Pending<A>>,
    repair: Option<Repair>,
}

impl<A> RoomOrder<A> {
    /// An empty order under `limits`.
    pub(crate) fn new(limits: OrderLimits) -> Self {
        RoomOrder {
            limits,
            delivered: None,
            recent: HistoryRing::new(limits.messages, limits.bytes),
            pending: Vec::new(),
            repair: None,
        }
    }

    /// Last seq delivered.
    pub(crate) fn delivered(&self) -> Option<u64> {
        self.delivered
    }

    /// Bytes of the recent messages kept to catch up late joiners.
    pub(crate) fn recent_bytes(&self) -> usize {
        self.recent.bytes()
    }

    /// Forget the oldest recent message (the node is over its history
    /// budget); the bytes freed, if there was one. A member admitted later
    /// gets a `gap` for it.
    pub(crate) fn forget_oldest_recent(&mut self) -> Option<usize> {
        self.recent.pop_oldest()
    }

    /// Whether no join waits for its message.
    pub(crate) fn nothing_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether [`RoomOrder::overdue`] has something to check: a join
    /// waiting for its message, or a repair waiting to be sent.
    pub(crate) fn waits_on_time(&self) -> bool {
        !self.pending.is_empty() || self.repair_unsent()
    }

    /// Message `seq` arrived on the room's channel. `ids` is `None` when no
    /// repair can be fetched now (no command connection).
    pub(crate) fn message(
        &mut self,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
        ids: Option<&mut RepairIds>,
        steps: &mut Vec<Step<A>>,
    ) {
        if let Some(repair) = &mut self.repair {
            if repair.waiting.len() < self.limits.messages
                && repair.waiting_bytes + frame.len() <= self.limits.bytes
            {
                repair.waiting_bytes += frame.len();
                repair.waiting.push((seq, frame, skip));
                return;
            }
            // The repair takes too long: give up on it (a `gap` covers what
            // it would have brought).
            let waiting = self.repair.take().map(|r| r.waiting).unwrap_or_default();
            for (s, f, k) in waiting {
                self.deliver_if_new(s, f, k, steps);
            }
            return self.deliver_if_new(seq, frame, skip, steps);
        }
        match self.delivered {
            Some(last) if seq <= last => {} // delivered already
            Some(last) if seq > last + 1 => {
                self.repair = Some(Repair {
                    id: None,
                    unsent_since: None,
                    waiting_bytes: frame.len(),
                    waiting: vec![(seq, frame, skip)],
                    through: None,
                });
                if let Some(ids) = ids {
                    self.send_repair(ids, steps);
                }
            }
            _ => self.deliver(seq, frame, skip, steps),
        }
    }

    /// Whether a repair waits to be sent ([`RoomOrder::send_repair`]).
    pub(crate) fn repair_unsent(&self) -> bool {
        self.repair.as_ref().is_some_and(|r| r.id.is_none())
    }

    /// Send the read of a repair that waits to be sent (the command
    /// connection is up again): everything after the last delivered seq,
    /// below the first message waiting.
    pub(crate) fn send_repair(&mut self, ids: &mut RepairIds, steps: &mut Vec<Step<A>>) {
        let after = self.delivered.unwrap_or(0);
        let Some(repair) = self.repair.as_mut().filter(|r| r.id.is_none()) else {
            return;
        };
        let id = ids.next();
        repair.id = Some(id);
        let below = repair.waiting.first().map(|(seq, ..)| *seq);
        steps.push(Step::Fetch { id, after, below });
    }

    /// Repair `id`'s read failed (its connection broke, or Redis refused
    /// it): the repair waits to be sent again; what waits on it stays.
    pub(crate) fn repair_failed(&mut self, id: u64) {
        if let Some(repair) = self.repair.as_mut().filter(|r| r.id == Some(id)) {
            repair.id = None;
        }
    }

    /// The answer to repair `id`: the stream's messages (seq, frame) after
    /// the hole, oldest first (at most `limits.messages`: the read's
    /// `COUNT`).
    pub(crate) fn repaired(&mut self, id: u64, found: Vec<(u64, Bytes)>, steps: &mut Vec<Step<A>>) {
        if self.repair.as_ref().is_none_or(|r| r.id != Some(id)) {
            return; // an answer for a repair given up or replaced
        }
        if let Some(repair) = self.repair.take() {
            self.finish_repair(repair, found, steps);
        }
    }

    /// End `repair` with what its read `found` (nothing, when it is given
    /// up): deliver what is new, in order, with a `gap` for what neither
    /// brought.
    fn finish_repair(
        &mut self,
        repair: Repair,
        found: Vec<(u64, Bytes)>,
        steps: &mut Vec<Step<A>>,
    ) {
        // A full read may have left messages in the stream: nothing is
        // known lost then (the next overdue check reads on).
        let through = repair
            .through
            .filter(|_| found.len() < self.limits.messages.max(1));
        for (seq, frame) in found {
            self.deliver_if_new(seq, frame, None, steps);
        }
        if let Some(through) = through {
            let first_waiting = repair.waiting.iter().map(|(seq, ..)| *seq).min();
            let before_waiting =
                first_waiting.map_or(through, |w| through.min(w.saturating_sub(1)));
            self.lost_through(before_waiting, steps);
        }
        for (seq, frame, skip) in repair.waiting {
            self.deliver_if_new(seq, frame, skip, steps);
        }
        if let Some(through) = through {
            self.lost_through(through, steps);
        }
    }

    /// Joins have waited at least `wait` (since `now`) for messages that did
    /// not come: read the stream for them (a repair that knows they exist),
    /// or, with no command connection (`ids` is `None`), say `gap` for them
    /// and admit the joins now.
    ///
    /// A repair waiting to be sent is sent now if `ids` allows, and given up
    /// (`gap` for its hole) once `wait` has passed since the first check
    /// that found it unsent.
    pub(crate) fn overdue(
        &mut self,
        now: Instant,
        wait: Duration,
        mut ids: Option<&mut RepairIds>,
        steps: &mut Vec<Step<A>>,
    ) {
        if let Some(repair) = self.repair.as_mut().filter(|r| r.id.is_none()) {
            let since = *repair.unsent_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= wait {
                if let Some(repair) = self.repair.take() {
                    self.finish_repair(repair, Vec::new(), steps);
                }
            } else if let Some(ids) = ids.as_deref_mut() {
                self.send_repair(ids, steps);
            }
        }
        let late = self
            .pending
            .iter()
            .filter(|p| now.saturating_duration_since(p.since) >= wait)
            .map(|p| p.at)
            .max();
        let Some(through) = late else {
            return;
        };
        match (ids, &self.repair) {
            // A repair is on its way. It may have read the stream before
            // these joins ran, so it proves nothing about their messages:
            // the next check, after it, reads again.
            (_, Some(_)) => {}
            (Some(ids), None) => {
                self.repair = Some(Repair {
                    id: None,
                    unsent_since: None,
                    waiting: Vec::new(),
                    waiting_bytes: 0,
                    through: Some(through),
                });
                self.send_repair(ids, steps);
            }
            (None, None) => self.lost_through(through, steps),
        }
    }

    /// Messages up to `through` will not come: say `gap` for those not
    /// delivered, and admit the joins that waited for them.
    fn lost_through(&mut self, through: u64, steps: &mut Vec<Step<A>>) {
        let Some(last) = self.delivered else {
            return;
        };
        if through <= last {
            return;
        }
        steps.push(Step::Gap {
            from: last + 1,
            to: through,
        });
        self.delivered = Some(through);
        self.admit_due(through, steps);
    }

    /// Admit the joins waiting for a message up to `seq`.
    fn admit_due(&mut self, seq: u64, steps: &mut Vec<Step<A>>) {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.at <= seq);
        self.pending = rest;
        for p in due {
            self.admit(p.at, p.conn, p.admission, steps);
        }
    }

    /// A join of `conn` was answered with `at` (the room's seq when it ran)
    /// at `now`: it is admitted right after message `at`.
    pub(crate) fn answered(
        &mut self,
        at: u64,
        conn: u64,
        admission: A,
        now: Instant,
        steps: &mut Vec<Step<A>>,
    ) {
        match self.delivered {
            Some(last) if last < at => self.pending.push(Pending {
                at,
                conn,
                admission,
                since: now,
            }),
            Some(_) => self.admit(at, conn, admission, steps),
            None => {
                // Nothing heard since subscribing: the room starts at `at`.
                let newest = self.recent.newest().unwrap_or(0);
                self.delivered = Some(at.max(newest));
                self.admit(at, conn, admission, steps);
            }
        }
    }

    /// Member `conn` is gone: a join of it still waiting is admitted first
    /// (so its connection's join settles) before the caller removes it.
    pub(crate) fn member_gone(&mut self, conn: u64, steps: &mut Vec<Step<A>>) {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.conn == conn);
        self.pending = others;
        for p in mine {
            self.admit(p.at, p.conn, p.admission, steps);
        }
    }

    /// The room was deleted: waiting joins are admitted (their connections
    /// get `room_closed` next) and the order starts over.
    pub(crate) fn closed(&mut self, steps: &mut Vec<Step<A>>) {
        for p in std::mem::take(&mut self.pending) {
            self.admit(p.at, p.conn, p.admission, steps);
        }
        self.delivered = None;
        self.recent.clear();
        self.repair = None;
    }

    /// The node stopped hearing the room (subscriber connection lost): a
    /// repair in progress is dropped with what waited on it (the repair
    /// after resubscribing brings those back).
    pub(crate) fn unheard(&mut self) {
        self.repair = None;
    }

    /// The node hears the room again: fetch what was published meanwhile
    /// (once `ids` is given, if not now: see [`RoomOrder::send_repair`]).
    /// Messages heard from now on wait for that read.
    pub(crate) fn heard_again(&mut self, ids: Option<&mut RepairIds>, steps: &mut Vec<Step<A>>) {
        if self.delivered.is_none() || self.repair.is_some() {
            return;
        }
        self.repair = Some(Repair {
            id: None,
            unsent_since: None,
            waiting: Vec::new(),
            waiting_bytes: 0,
            through: None,
        });
        if let Some(ids) = ids {
            self.send_repair(ids, steps);
        }
    }

    fn deliver_if_new(
        &mut self,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
        steps: &mut Vec<Step<A>>,
    ) {
        if self.delivered.is_none_or(|last| seq > last) {
            self.deliver(seq, frame, skip, steps);
        }
    }

    /// Deliver `seq` (with a `gap` first if messages before it are lost),
    /// then admit the joins that waited for it.
    fn deliver(&mut self, seq: u64, frame: Bytes, skip: Option<u64>, steps: &mut Vec<Step<A>>) {
        if let Some(last) = self.delivered {
            if seq > last + 1 {
                steps.push(Step::Gap {
                    from: last + 1,
                    to: seq - 1,
                });
            }
        }
        self.delivered = Some(seq);
        self.recent.push(seq, frame.clone(), skip);
        steps.push(Step::Deliver { seq, frame, skip });
        self.admit_due(seq, steps);
    }

    /// Admit `conn`, answered at `at`, with what came after `at`: the
    /// recent messages, and a gap for every hole among them (messages this
    /// node lost, or that `recent` no longer holds).
    fn admit(&mut self, at: u64, conn: u64, admission: A, steps: &mut Vec<Step<A>>) {
        let last = self.delivered.unwrap_or(at);
        let mut catchup = Vec::new();
        let mut next = at + 1;
        for entry in self.recent.after(at) {
            if entry.seq > next {
                catchup.push(CatchUp::Gap {
                    from: next,
                    to: entry.seq - 1,
                });
            }
            next = entry.seq + 1;
            // Not its own messages sent with `exclude_self` while its join
            // was in flight.
            if entry.meta != Some(conn) {
                catchup.push(CatchUp::Message(entry.frame.clone()));
            }
        }
        if next <= last {
            catchup.push(CatchUp::Gap {
                from: next,
                to: last,
            });
        }
        steps.push(Step::Admit {
            conn,
            admission,
            catchup,
        });
    }
}

#[cfg(test)]
#[path = "order_tests.rs"]
mod tests;
