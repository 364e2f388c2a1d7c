//! One room's state: joins, rejoins, and the exactly-once, in-order
//! message stream. Pure: it reads frames and acks and says what to emit and
//! which join to send; the connection task does the I/O.
//!
//! Invariants (per incarnation of the room, i.e. per `epoch`), the same as
//! the JavaScript client's `room.ts`:
//! - [`Event::Message`]s carry consecutive `seq`s, each once; a skipped
//!   range is reported by one [`Event::Gap`] before the next message.
//! - While a join is in flight the room's live messages are held, at most
//!   `max_buffered` of them; past that they are dropped and the room
//!   resyncs from history (join with `since`) after the ack.
//! - A `gap` frame, or a hole in the live stream, triggers a resync first;
//!   only what history no longer has becomes an [`Event::Gap`].
//! - After each rejoin that follows a reconnect, one [`Event::Resumed`]
//!   comes before the messages that rejoin recovered.

use crate::client::{Event, JoinOptions, JoinResult};
use crate::frames::{ClientFrame, JoinAck, Message};

/// Why a join is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    /// No seq known yet.
    First,
    /// After a reconnect.
    Rejoin,
    /// On the same connection, to fill a gap from history.
    Resync,
}

#[derive(Debug, Default)]
pub(crate) struct RoomState {
    pub(crate) name: String,
    /// The app wants to be in the room.
    pub(crate) desired: bool,
    pub(crate) options: JoinOptions,
    /// A join is in flight on the current connection.
    pub(crate) joining: bool,
    /// The current connection is in the room.
    pub(crate) joined: bool,
    /// Last seq delivered (or skipped by a reported gap).
    last_seq: Option<u64>,
    epoch: Option<String>,
    buffer: Vec<Message>,
    resync_after_ack: bool,
    pub(crate) last_result: Option<JoinResult>,
}

impl RoomState {
    pub(crate) fn new(name: &str) -> Self {
        RoomState {
            name: name.to_string(),
            ..RoomState::default()
        }
    }

    /// The kind of join to send on a new connection.
    pub(crate) fn reconnect_kind(&self) -> JoinKind {
        if self.last_seq.is_none() {
            JoinKind::First
        } else {
            JoinKind::Rejoin
        }
    }

    /// The join frame to send now (marks the join in flight).
    pub(crate) fn join_frame(&mut self, speaks_epochs: bool) -> ClientFrame {
        self.joining = true;
        self.buffer.clear();
        self.resync_after_ack = false;
        let since = self.last_seq;
        let epoch = if since.is_some() && speaks_epochs {
            self.epoch.clone()
        } else {
            None
        };
        ClientFrame::Join {
            room: self.name.clone(),
            since,
            epoch,
            create: (!self.options.create).then_some(false),
        }
    }

    pub(crate) fn disconnected(&mut self) {
        self.joining = false;
        self.joined = false;
        self.buffer.clear();
        self.resync_after_ack = false;
    }

    /// Forget everything (leave, refusal, room closed).
    pub(crate) fn reset(&mut self) {
        let name = std::mem::take(&mut self.name);
        *self = RoomState::new(&name);
    }

    /// A live message. Returns true if a resync join must be sent.
    pub(crate) fn on_message(
        &mut self,
        m: Message,
        max_buffered: usize,
        out: &mut Vec<Event>,
    ) -> bool {
        if !self.desired {
            return false;
        }
        if self.joining {
            if self.buffer.len() < max_buffered {
                self.buffer.push(m);
            } else {
                self.buffer.clear();
                self.resync_after_ack = true;
            }
            return false;
        }
        self.joined && self.accept(m, out)
    }

    /// A `gap` frame. Returns true if a resync join must be sent.
    pub(crate) fn on_gap(&mut self, to: u64) -> bool {
        let Some(last) = self.last_seq else {
            return false;
        };
        if !self.desired || to <= last {
            return false;
        }
        if self.joining {
            self.resync_after_ack = true;
            return false;
        }
        self.joined
    }

    /// The ack of this room's join. Returns true if a resync join must be sent.
    pub(crate) fn on_ack(&mut self, ack: JoinAck, kind: JoinKind, out: &mut Vec<Event>) -> bool {
        self.joining = false;
        self.joined = true;
        let mut history = ack.history;
        history.sort_by_key(|m| m.seq);
        match self.last_seq {
            None => {
                self.epoch = ack.epoch.clone();
                if self.options.history {
                    out.extend(history.into_iter().map(Event::Message));
                }
                self.last_seq = Some(ack.seq);
            }
            Some(previous) => {
                let same = match (&self.epoch, &ack.epoch) {
                    (Some(mine), Some(theirs)) => mine == theirs,
                    _ => ack.seq >= previous,
                };
                if same {
                    self.resume(&ack.recovered, ack.seq, history, previous, kind, out);
                } else {
                    self.epoch = ack.epoch.clone();
                    self.last_seq = Some(ack.seq);
                    out.push(Event::Resumed {
                        room: self.name.clone(),
                        recovered: false,
                        epoch_changed: true,
                    });
                    if self.options.history {
                        out.extend(history.into_iter().map(Event::Message));
                    }
                }
            }
        }
        self.last_result = Some(JoinResult {
            room: self.name.clone(),
            seq: ack.seq,
            members: ack.members,
            epoch: ack.epoch,
        });
        self.drain_buffer(out)
    }

    fn resume(
        &mut self,
        recovered_flag: &Option<bool>,
        seq: u64,
        history: Vec<Message>,
        previous: u64,
        kind: JoinKind,
        out: &mut Vec<Event>,
    ) {
        let missed: Vec<Message> = history.into_iter().filter(|m| m.seq > previous).collect();
        let first_held = missed.first().map_or(seq + 1, |m| m.seq);
        let recovered =
            *recovered_flag == Some(true) || first_held == previous + 1 || seq == previous;
        if !recovered {
            out.push(Event::Gap {
                room: self.name.clone(),
                from: previous + 1,
                to: first_held - 1,
            });
            self.last_seq = Some(first_held - 1);
        }
        if kind == JoinKind::Rejoin {
            out.push(Event::Resumed {
                room: self.name.clone(),
                recovered,
                epoch_changed: false,
            });
        }
        for m in missed {
            self.accept(m, out);
        }
        let last = self.last_seq.unwrap_or(0);
        if last < seq {
            out.push(Event::Gap {
                room: self.name.clone(),
                from: last + 1,
                to: seq,
            });
            self.last_seq = Some(seq);
        }
    }

    fn drain_buffer(&mut self, out: &mut Vec<Event>) -> bool {
        let mut held = std::mem::take(&mut self.buffer);
        held.sort_by_key(|m| m.seq);
        let mut resync = false;
        for m in held {
            if self.joining || resync {
                self.buffer.push(m);
            } else {
                resync = self.accept(m, out);
            }
        }
        if resync {
            return true;
        }
        std::mem::take(&mut self.resync_after_ack) && !self.joining
    }

    /// Deliver `m` if it is the next seq; drop duplicates; on a hole, hold
    /// it and ask for a resync (returns true).
    fn accept(&mut self, m: Message, out: &mut Vec<Event>) -> bool {
        let Some(last) = self.last_seq else {
            return false;
        };
        if m.seq <= last {
            return false;
        }
        if m.seq == last + 1 {
            self.last_seq = Some(m.seq);
            out.push(Event::Message(m));
            return false;
        }
        self.buffer.push(m);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(seq: u64) -> Message {
        Message {
            room: "r".into(),
            seq,
            from: "u".into(),
            ts: 0,
            data: json!(seq),
        }
    }

    fn ack(seq: u64, history: Vec<u64>, recovered: Option<bool>, epoch: &str) -> JoinAck {
        JoinAck {
            seq,
            members: 1,
            history: history.into_iter().map(msg).collect(),
            recovered,
            epoch: Some(epoch.into()),
        }
    }

    fn seqs(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Message(m) => m.seq.to_string(),
                Event::Gap { from, to, .. } => format!("gap {from}-{to}"),
                Event::Resumed {
                    recovered,
                    epoch_changed,
                    ..
                } => format!("resumed {recovered} {epoch_changed}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn joined_room(seq: u64) -> RoomState {
        let mut room = RoomState::new("r");
        room.desired = true;
        room.join_frame(true);
        room.on_ack(
            ack(seq, vec![], None, "e1"),
            JoinKind::First,
            &mut Vec::new(),
        );
        room
    }

    #[test]
    fn rejoin_delivers_missed_then_buffered_live_without_duplicates() {
        let mut room = joined_room(2);
        room.disconnected();
        let frame = room.join_frame(true);
        assert_eq!(
            frame,
            ClientFrame::Join {
                room: "r".into(),
                since: Some(2),
                epoch: Some("e1".into()),
                create: None
            }
        );
        let mut out = Vec::new();
        // Live 5 and 6 arrive before the ack (held); the ack recovers 3..=5.
        room.on_message(msg(5), 10, &mut out);
        room.on_message(msg(6), 10, &mut out);
        assert!(!room.on_ack(
            ack(5, vec![3, 4, 5], Some(true), "e1"),
            JoinKind::Rejoin,
            &mut out
        ));
        assert_eq!(seqs(&out), ["resumed true false", "3", "4", "5", "6"]);
    }

    #[test]
    fn truncated_history_reports_the_gap_then_the_rest() {
        let mut room = joined_room(2);
        room.disconnected();
        room.join_frame(true);
        let mut out = Vec::new();
        room.on_ack(
            ack(9, vec![7, 8, 9], Some(false), "e1"),
            JoinKind::Rejoin,
            &mut out,
        );
        assert_eq!(
            seqs(&out),
            ["gap 3-6", "resumed false false", "7", "8", "9"]
        );
    }

    #[test]
    fn a_new_epoch_is_never_taken_for_missed_messages() {
        let mut room = joined_room(2);
        room.disconnected();
        room.join_frame(true);
        let mut out = Vec::new();
        room.on_ack(
            ack(5, vec![1, 2, 3, 4, 5], Some(false), "e2"),
            JoinKind::Rejoin,
            &mut out,
        );
        assert_eq!(seqs(&out), ["resumed false true"]);
        room.on_message(msg(6), 10, &mut out);
        assert_eq!(seqs(&out).last().map(String::as_str), Some("6"));
    }

    #[test]
    fn a_hole_in_the_live_stream_resyncs_and_overflow_is_bounded() {
        let mut room = joined_room(1);
        let mut out = Vec::new();
        assert!(room.on_message(msg(3), 10, &mut out), "hole: resync");
        room.join_frame(true);
        for seq in 4..20 {
            room.on_message(msg(seq), 4, &mut out);
        }
        assert!(room.buffer.len() <= 4, "the buffer is bounded");
        assert!(
            room.on_ack(
                ack(19, (2..20).collect(), Some(true), "e1"),
                JoinKind::Resync,
                &mut out
            ),
            "resync after overflow"
        );
        let delivered: Vec<String> = (2..20).map(|s| s.to_string()).collect();
        assert_eq!(seqs(&out), delivered);
    }
}
