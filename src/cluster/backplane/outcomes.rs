//! What an op's answer from Redis, or its failure, does: the answer each
//! connection or API request gets, the room changes this node reports, and
//! a join's admission into its room's order.
//!
//! **Invariant:** each [`Then`] is consumed once, by [`Backplane::answer`]
//! or [`Backplane::fail`]: whatever reply it carries is answered or
//! refused, never dropped unanswered.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis::Value;

use super::answers::{Details, bytes_of, int, refusal_of, stream_entry, text};
use super::rooms::Admission;
use super::{Backplane, Then};
use crate::backend::RemoteCounters;
use crate::cluster::scripts::Status;
use crate::cluster::{RoomFacts, wire};
use crate::config::OverflowPolicy;
use crate::delivery::{Ack, JoinAck, MemberList, RoomCounts, UserEntry};
use crate::error::Refusal;
use crate::observe::RoomChange;
use crate::op::Origin;
use crate::room::namespaces::RoomSettings;
use crate::ws::encode::data_frame;

impl Backplane {
    /// A publish Redis sequenced that `cluster.wait_replicas` replicas did
    /// not confirm in time: `unavailable`, not an ack (it may or may not
    /// survive a failover; the publisher may retry).
    pub(super) fn unconfirmed(&mut self, then: Then) {
        if let Then::Publish { reply, .. } = then {
            let refusal = Refusal::not_replicated(self.cfg.wait_replicas);
            self.settle_refused(reply, refusal);
        }
    }

    /// Answer `then` with `unavailable` (Redis is unreachable), or, while
    /// draining, with `internal` (shutting down).
    pub(super) fn fail(&mut self, then: Then) {
        let refusal = match self.drain {
            Some(_) => Refusal::shutting_down(),
            None => Refusal::unavailable(),
        };
        match then {
            Then::Join { origin, room, .. } => self.refuse_join(origin, room, refusal),
            Then::Leave { origin, room } if origin.id.is_none() => {
                // A closing connection: it leaves here whatever Redis says;
                // RESTORE puts this node's true members back on reconnect.
                self.member_gone(&room, origin.conn, None);
            }
            Then::Leave { origin, .. } | Then::Members { origin, .. } => {
                self.refuse(origin, refusal)
            }
            Then::Publish { reply, .. } => self.settle_refused(reply, refusal),
            Then::Create { reply, .. } => self.settle_refused(reply, refusal),
            Then::Delete { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Then::Details { reply, .. } => {
                let _ = reply.send(Err(refusal));
            }
            Then::Rooms { reply } => {
                let _ = reply.send(Err(refusal));
            }
            Then::Repair { room, id } => self.repair_failed(&room, id),
            Then::Nothing | Then::Swept => {}
        }
    }

    pub(super) fn answer(&mut self, then: Then, value: Value) {
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let status = Status::from_code(items.first().and_then(int).unwrap_or(i64::MIN));
        match then {
            Then::Join {
                origin,
                room,
                value,
                list_users,
            } => self.join_answered(origin, room, (value, list_users), status, &items),
            Then::Leave { origin, room } => match status {
                Status::Ok => {
                    // This call changed the room: this node reports it.
                    let count = items.get(1).and_then(int).unwrap_or(1);
                    if items.get(2).and_then(int) == Some(1) {
                        if let Some(value) = items.get(4).and_then(text) {
                            let (user, _, _) = wire::parse_member(value);
                            self.out
                                .observe(&room, RoomChange::UserRemoved(Arc::from(user)));
                        }
                    }
                    if count == 0 {
                        self.out.observe(&room, RoomChange::Vacated);
                    }
                    self.member_gone(&room, origin.conn, origin.id)
                }
                _ if origin.id.is_none() => self.member_gone(&room, origin.conn, None),
                _ => self.refuse(origin, refusal_of(status, &room, &items)),
            },
            Then::Publish { room, reply } => match status {
                Status::Ok => {
                    if let Some(counters) = self.counters() {
                        RemoteCounters::bump(&counters.published);
                    }
                    let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
                    self.out
                        .settle(reply, Ok(seq), |seq| Ack::Published { room, seq });
                }
                _ => self.settle_refused(reply, refusal_of(status, &room, &items)),
            },
            Then::Create { room, reply } => match status {
                Status::Ok => self.out.settle(reply, Ok(()), |()| Ack::Room(room)),
                _ => self.settle_refused(reply, refusal_of(status, &room, &items)),
            },
            Then::Delete { room, reply } => {
                let result = match status {
                    Status::Ok => {
                        if items.get(1).and_then(int).unwrap_or(0) > 0 {
                            self.out.observe(&room, RoomChange::Vacated);
                        }
                        Ok(())
                    }
                    _ => Err(refusal_of(status, &room, &items)),
                };
                let _ = reply.send(result);
            }
            Then::Members { origin, room } => match status {
                Status::Ok => {
                    let details = Details::read(&items);
                    let list = MemberList {
                        members: details.member_infos(),
                        total: details.total,
                        room,
                    };
                    self.out.answer(origin, Ok(Ack::Members(Box::new(list))));
                }
                _ => self.refuse(origin, refusal_of(status, &room, &items)),
            },
            Then::Details { room, reply } => {
                let result = match status {
                    Status::Ok => {
                        Ok(Details::read(&items).into_room_details(&room, &self.shared.namespaces))
                    }
                    _ => Err(refusal_of(status, &room, &items)),
                };
                let _ = reply.send(result);
            }
            Then::Rooms { reply } => {
                let result = match status {
                    Status::Ok => Ok(items
                        .get(1..)
                        .unwrap_or_default()
                        .chunks_exact(3)
                        .filter_map(|c| {
                            Some(RoomCounts {
                                room: Arc::from(text(&c[0])?),
                                members: int(&c[1])?.max(0) as u64,
                                users: int(&c[2])?.max(0) as u64,
                            })
                        })
                        .collect()),
                    _ => Err(refusal_of(status, "", &items)),
                };
                let _ = reply.send(result);
            }
            Then::Swept => self.swept(Value::Array(items)),
            Then::Repair { room, id } => {
                let found: Vec<(u64, Bytes)> = items
                    .into_iter()
                    .filter_map(stream_entry)
                    .map(|(seq, json)| (seq, data_frame(true, &json)))
                    .collect();
                self.repair_done(&room, id, found);
            }
            Then::Nothing => {}
        }
    }

    /// A heartbeat's sweep answered `answer`: report the changes it made
    /// (this node ran it, so only this node reports them).
    pub(super) fn swept(&mut self, answer: Value) {
        let Value::Array(items) = answer else {
            return;
        };
        for change in items.get(2..).unwrap_or_default().chunks_exact(3) {
            let (Some(kind), Some(room), Some(user)) =
                (text(&change[0]), text(&change[1]), text(&change[2]))
            else {
                continue;
            };
            let room: Arc<str> = Arc::from(room);
            match kind {
                "R" => self
                    .out
                    .observe(&room, RoomChange::UserRemoved(Arc::from(user))),
                "V" => self.out.observe(&room, RoomChange::Vacated),
                _ => {}
            }
        }
    }

    fn join_answered(
        &mut self,
        origin: Origin,
        room: Arc<str>,
        (value, list_users): (String, bool),
        status: Status,
        items: &[Value],
    ) {
        if status != Status::Ok {
            let refusal = refusal_of(status, &room, items);
            return self.refuse_join(origin, room, refusal);
        }
        let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
        let count = items
            .get(2)
            .and_then(int)
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32;
        let settings = RoomSettings {
            private: items.get(3).and_then(int) == Some(1),
            max_members: items
                .get(4)
                .and_then(int)
                .unwrap_or(0)
                .clamp(0, i64::from(u32::MAX)) as u32,
            overflow: match items.get(5).and_then(text) {
                Some("drop") => OverflowPolicy::Drop,
                _ => OverflowPolicy::Disconnect,
            },
            history: items.get(9).and_then(int).unwrap_or(0).max(0) as usize,
        };
        let facts = RoomFacts {
            room: settings,
            explicit: items.get(6).and_then(int) == Some(1),
        };
        let recovered = match items.get(7).and_then(int) {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        };
        let rejoin = items.get(8).and_then(int) == Some(1);
        let user_count = items
            .get(11)
            .and_then(int)
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32;
        let first_of_user = items.get(12).and_then(int) == Some(1);
        let listed = items.get(13).and_then(int).unwrap_or(0).max(0) as usize;
        let listed_end = (14 + 2 * listed).min(items.len());
        // This call changed the room: this node reports it.
        let (user, _, _) = wire::parse_member(&value);
        if !rejoin && count == 1 {
            self.out.observe(&room, RoomChange::Occupied);
        }
        if first_of_user {
            self.out
                .observe(&room, RoomChange::UserAdded(Arc::from(user)));
        }
        let ack = origin.id.map(|id| JoinAck {
            id,
            seq,
            epoch: items.get(10).and_then(text).unwrap_or("").to_string(),
            members: count,
            history: items
                .iter()
                .skip(listed_end)
                .filter_map(bytes_of)
                .map(Bytes::copy_from_slice)
                .collect(),
            recovered,
            users: list_users.then(|| {
                items
                    .get(14..listed_end)
                    .unwrap_or_default()
                    .chunks_exact(2)
                    .filter_map(|pair| text(&pair[1]))
                    .map(|value| {
                        let (user, _, info) = wire::parse_member(value);
                        UserEntry {
                            user: Arc::from(user),
                            info: info.map(Arc::from),
                        }
                    })
                    .collect()
            }),
            user_count,
        });
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.joining = state.joining.saturating_sub(1);
        state.user_presence |= list_users;
        state.members.insert(origin.conn, value);
        state.facts = Some(facts);
        let mut steps = Vec::new();
        let admission = Admission { facts, ack };
        state
            .order
            .answered(seq, origin.conn, admission, Instant::now(), &mut steps);
        self.carry_out(&room, steps);
    }

    /// A join was answered or failed: the room may have lost its interest.
    pub(super) fn join_done(&mut self, room: &Arc<str>) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.joining = state.joining.saturating_sub(1);
        }
        self.release_if_idle(room);
    }
}
