//! A room's messages on this node: in `seq` order, each once, holes
//! repaired from the stream, joins admitted right after the message they
//! answered with.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Admission, Backplane, Prepared, Repair, RoomState, Sub, Then};
use crate::cluster::scripts;
use crate::protocol::encode;
use crate::router::ClusterEvent;
use crate::ws::encode::data_frame;

impl Backplane {
    /// Admit a member whose join answered `at`: the home adds it and sends
    /// its ack, then what came after `at`.
    pub(super) async fn admit(&mut self, room: &Arc<str>, admission: Admission) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        let last = state.node_seq.unwrap_or(admission.at);
        let mut catchup = Vec::new();
        if last > admission.at {
            let first_kept = state
                .recent
                .iter()
                .find(|(s, _, _)| *s > admission.at)
                .map_or(last + 1, |(s, _, _)| *s);
            if first_kept > admission.at + 1 {
                catchup.push(encode::gap(room, admission.at + 1, first_kept - 1));
            }
            // Not its own messages sent with `exclude_self` while its join
            // was in flight.
            catchup.extend(
                state
                    .recent
                    .iter()
                    .filter(|(s, _, skip)| *s > admission.at && *skip != Some(admission.conn))
                    .map(|(_, f, _)| f.clone()),
            );
        }
        let event = ClusterEvent::Admit {
            room: room.clone(),
            conn: admission.conn,
            user: admission.user,
            name: admission.name,
            facts: admission.facts,
            reply: admission.reply,
            catchup,
        };
        self.to_home(room, event).await;
    }

    /// Forget a room this node no longer has any interest in, and stop
    /// hearing it.
    pub(super) async fn release_if_idle(&mut self, room: &Arc<str>) {
        let idle = self.rooms.get(room).is_some_and(RoomState::idle);
        if !idle {
            return;
        }
        if let Some(state) = self.rooms.remove(room) {
            if state.sub != Sub::Off {
                self.change_subscription(false, vec![scripts::room_channel(room)])
                    .await;
            }
        }
    }

    pub(super) async fn on_room_message(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
    ) {
        let limit = self.cfg.catchup_messages;
        let max_bytes = self.shared.config.room.history_max_bytes;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if let Some(repair) = &mut state.repair {
            if repair.waiting.len() < limit && repair.waiting_bytes + frame.len() <= max_bytes {
                repair.waiting_bytes += frame.len();
                repair.waiting.push((seq, frame, skip));
                return;
            }
            // The repair takes too long: give up on it (a `gap` covers
            // what it would have brought).
            let waiting = std::mem::take(&mut repair.waiting);
            state.repair = None;
            for (s, f, k) in waiting {
                self.forward(room, s, f, k).await;
            }
            return self.forward(room, seq, frame, skip).await;
        }
        match state.node_seq {
            Some(last) if seq <= last => {} // delivered already
            Some(last) if seq > last + 1 => {
                self.start_repair(room, last, Some(seq));
                if let Some(repair) = self.rooms.get_mut(room).and_then(|s| s.repair.as_mut()) {
                    repair.waiting.push((seq, frame, skip));
                } else {
                    self.forward(room, seq, frame, skip).await;
                }
            }
            _ => self.forward(room, seq, frame, skip).await,
        }
    }

    /// Ask the room's stream for the messages after `last` (and before
    /// `below`, when known); live messages wait meanwhile.
    pub(super) fn start_repair(&mut self, room: &Arc<str>, last: u64, below: Option<u64>) {
        if self.cmd.is_none() {
            return;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.repair.is_some() {
            return;
        }
        if let Some(cluster) = &self.shared.cluster {
            cluster.counters.repairs.fetch_add(1, Ordering::Relaxed);
        }
        state.repair = Some(Repair {
            epoch,
            waiting: Vec::new(),
            waiting_bytes: 0,
        });
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(scripts::history_key(room))
            .arg(format!("{}-0", last + 1));
        match below {
            Some(b) => cmd.arg(format!("{}-0", b.saturating_sub(1))),
            None => cmd.arg("+"),
        };
        cmd.arg("COUNT").arg(self.cfg.catchup_messages.max(1));
        self.ready.push_back(Prepared {
            cmd,
            then: Then::Repair {
                room: room.clone(),
                epoch,
            },
        });
    }

    pub(super) async fn repair_done(
        &mut self,
        room: &Arc<str>,
        epoch: u64,
        found: Vec<(u64, Bytes)>,
    ) {
        let waiting = match self.rooms.get_mut(room) {
            Some(state) if state.repair.as_ref().is_some_and(|r| r.epoch == epoch) => {
                state.repair.take().map(|r| r.waiting).unwrap_or_default()
            }
            _ => return,
        };
        for (seq, json) in found {
            self.forward_if_new(room, seq, data_frame(true, &json), None)
                .await;
        }
        for (seq, frame, skip) in waiting {
            self.forward_if_new(room, seq, frame, skip).await;
        }
    }

    pub(super) async fn forward_if_new(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
    ) {
        let last = self.rooms.get(room).and_then(|s| s.node_seq);
        if last.is_none_or(|l| seq > l) {
            self.forward(room, seq, frame, skip).await;
        }
    }

    /// Hand message `seq` to the home shard (with a `gap` first if messages
    /// before it are lost), then admit the joins that waited for it.
    pub(super) async fn forward(
        &mut self,
        room: &Arc<str>,
        seq: u64,
        frame: Bytes,
        skip: Option<u64>,
    ) {
        let limit = self.cfg.catchup_messages;
        let max_bytes = self.shared.config.room.history_max_bytes;
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let missing = match state.node_seq {
            Some(last) if seq > last + 1 => Some((last + 1, seq - 1)),
            _ => None,
        };
        state.node_seq = Some(seq);
        if limit > 0 {
            state.recent_bytes += frame.len();
            state.recent.push_back((seq, frame.clone(), skip));
            while state.recent.len() > limit
                || (state.recent_bytes > max_bytes && state.recent.len() > 1)
            {
                if let Some((_, old, _)) = state.recent.pop_front() {
                    state.recent_bytes -= old.len();
                }
            }
        }
        let (due, rest): (Vec<Admission>, Vec<Admission>) = std::mem::take(&mut state.stash)
            .into_iter()
            .partition(|a| a.at <= seq);
        state.stash = rest;
        if let Some((from, to)) = missing {
            tracing::warn!(%room, from, to, "cluster: messages lost between Redis and this node");
            if let Some(cluster) = &self.shared.cluster {
                cluster.counters.gaps.fetch_add(1, Ordering::Relaxed);
            }
            let gap = ClusterEvent::Gap {
                room: room.clone(),
                from,
                to,
            };
            self.to_home(room, gap).await;
        }
        let event = ClusterEvent::Message {
            room: room.clone(),
            seq,
            frame,
            skip,
            stamp_us: crate::metrics::now_us(),
        };
        self.to_home(room, event).await;
        for admission in due {
            self.admit(room, admission).await;
        }
    }
}
