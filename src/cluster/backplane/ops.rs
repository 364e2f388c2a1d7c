//! Operations from the shards' route: the command each becomes, and what
//! its answer (or its failure) does.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redis::{Cmd, Value};

use super::answers::{Details, bytes_of, int, refusal_of, stream_entry, text};
use super::connect::evalsha;
use super::rooms::{Admission, Sub};
use super::{Backplane, Prepared, Then};
use crate::backend::RemoteCounters;
use crate::cluster::scripts::{self, Status};
use crate::cluster::{RoomFacts, wire};
use crate::config::OverflowPolicy;
use crate::delivery::{Ack, Delivery, JoinAck, MemberList};
use crate::epoch::Epoch;
use crate::error::Refusal;
use crate::op::{Audience, Creator, Join, Op, Origin, Publish};
use crate::protocol::encode;
use crate::room::namespaces::RoomSettings;
use crate::ws::encode::{data_frame, text_payload};

impl Backplane {
    pub(super) fn on_op(&mut self, op: Op) {
        if self.drain.is_some() {
            return self.refuse_while_draining(op);
        }
        let node = self.node.clone();
        match op {
            Op::Join(join) => self.join(join),
            Op::Leave { origin, room } => {
                let keeps = self
                    .rooms
                    .get(&room)
                    .is_some_and(|r| r.joining > 0 || r.members.keys().any(|c| *c != origin.conn));
                let mut cmd = room_script(&self.shas.leave, &room, Some(&node));
                cmd.arg(scripts::member_field(&node, origin.conn))
                    .arg(&*node)
                    .arg(origin.conn)
                    .arg(u8::from(keeps))
                    .arg(&*room)
                    .arg(self.shared.config.room.empty_ttl_ms);
                let then = Then::Leave {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::Publish(Publish {
                room,
                from,
                data,
                exclude_self,
                reply,
                ..
            }) => {
                // A connection must be a member (its presence field); the
                // API (no field) publishes into any room.
                let conn = reply.conn();
                let field = conn.map_or_else(String::new, |c| scripts::member_field(&node, c));
                let skip = conn.filter(|_| exclude_self).unwrap_or(0);
                let cmd = self.publish_cmd(&room, &field, &from, &data, skip);
                let then = Then::Publish {
                    room: room.clone(),
                    reply,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::Create {
                room,
                options,
                creator,
                reply,
            } => {
                // A create may only tighten its namespace's options.
                let namespaces = &self.shared.namespaces;
                let ns = namespaces.find(&room);
                let settings = match namespaces.created_settings(ns, &room, &options) {
                    Ok(settings) => settings,
                    Err(refusal) => return self.settle_refused(reply, refusal),
                };
                let facts = RoomFacts {
                    room: settings,
                    explicit: true,
                };
                let cmd = self.create_cmd(&room, &facts, creator.as_ref());
                let then = Then::Create {
                    room: room.clone(),
                    reply,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::Delete { room, reply } => {
                let mut cmd = room_script(&self.shas.delete, &room, None);
                cmd.arg(&*room);
                let then = Then::Delete {
                    room: room.clone(),
                    reply,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::Members { origin, room } => {
                let field = scripts::member_field(&node, origin.conn);
                let cmd = self.details_cmd(&room, &field);
                let then = Then::Members {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::Details { room, reply } => {
                let cmd = self.details_cmd(&room, "");
                let then = Then::Details {
                    room: room.clone(),
                    reply,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then });
            }
            Op::ToUsers {
                audience, frame, ..
            } => {
                let channel = match &audience {
                    Audience::User(user) => scripts::user_channel(user),
                    Audience::All => scripts::ALL_CHANNEL.to_string(),
                };
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(channel)
                    .arg(wire::frame_payload(&node, &text_payload(&frame)));
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Nothing,
                });
            }
            Op::WatchUser { user, watch, heard } => {
                let channel = scripts::user_channel(&user);
                if watch {
                    let count = self.users.entry(user).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        self.change_subscription(true, vec![channel.clone()]);
                    }
                    self.when_heard(channel, heard);
                } else if let Some(count) = self.users.get_mut(&user) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.users.remove(&user);
                        self.change_subscription(false, vec![channel]);
                    }
                }
            }
        }
    }

    fn join(&mut self, join: Join) {
        let Join {
            origin,
            room,
            user,
            name,
            since,
            epoch,
            create,
            may_create,
            may_join_private,
        } = join;
        let node = self.node.clone();
        // The room's namespace decides whether a join may make it, and how.
        let namespaces = &self.shared.namespaces;
        let rules = namespaces.rules(namespaces.find(&room));
        let limits = &self.shared.config.limits;
        let value = wire::member_value(&user, name.as_deref());
        let field = scripts::member_field(&node, origin.conn);
        let (meta, presence) = (scripts::meta_key(&room), scripts::presence_key(&room));
        let (history, channel) = (scripts::history_key(&room), scripts::room_channel(&room));
        let node_rooms = scripts::node_rooms_key(&node);
        let (user_quota, conn_quota) = (
            scripts::user_quota_key(&user),
            scripts::conn_quota_key(&field),
        );
        let keys = [
            &meta,
            &presence,
            &history,
            &channel,
            &node_rooms,
            &user_quota,
            &conn_quota,
        ];
        let mut cmd = evalsha(&self.shas.join, &keys.map(String::as_str));
        cmd.arg(&field)
            .arg(&value)
            .arg(u8::from(create))
            .arg(u8::from(may_create))
            .arg(u8::from(rules.auto_create))
            .arg(u8::from(may_join_private))
            .arg(rules.max_members)
            .arg(rules.overflow.as_str())
            .arg(rules.history)
            .arg(since.map_or(-1, |s| s.min(i64::MAX as u64) as i64))
            .arg(rules.history_on_join)
            .arg(&*node)
            .arg(origin.conn)
            .arg(&*room)
            .arg(epoch.as_deref().unwrap_or(""))
            .arg(Epoch::new().as_str())
            .arg(u8::from(rules.private))
            .arg(limits.max_rooms_created_per_user)
            .arg(limits.max_rooms_created_per_connection)
            .arg(&*user)
            .arg(u8::from(self.shared.memory.over()));
        self.room_state(&room).joining += 1;
        let then = Then::Join {
            origin,
            room: room.clone(),
            value,
        };
        self.enqueue_subscribed(&room, Prepared { cmd, then });
    }

    pub(super) fn publish_cmd(
        &self,
        room: &str,
        field: &str,
        from: &str,
        data: &[u8],
        skip: u64,
    ) -> Cmd {
        let (before, after) = encode::message_parts(room, from, encode::now_ms(), data);
        let mut cmd = room_script(&self.shas.publish, room, None);
        cmd.arg(field)
            .arg(&before[..])
            .arg(&after[..])
            .arg(&*self.node)
            .arg(skip);
        cmd
    }

    /// CREATE of `room` by `creator` (`None`: the API, not counted).
    pub(super) fn create_cmd(
        &self,
        room: &str,
        facts: &RoomFacts,
        creator: Option<&Creator>,
    ) -> Cmd {
        let (user, field) = match creator {
            Some(c) => (&*c.user, scripts::member_field(&self.node, c.conn)),
            None => ("", String::new()),
        };
        let keys = [
            scripts::meta_key(room),
            scripts::user_quota_key(user),
            scripts::conn_quota_key(&field),
        ];
        let limits = &self.shared.config.limits;
        let mut cmd = evalsha(&self.shas.create, &keys.each_ref().map(String::as_str));
        cmd.arg(u8::from(facts.room.private))
            .arg(facts.room.max_members)
            .arg(facts.room.overflow.as_str())
            .arg(facts.room.history)
            .arg(Epoch::new().as_str())
            .arg(room)
            .arg(user)
            .arg(&field)
            .arg(limits.max_rooms_created_per_user)
            .arg(limits.max_rooms_created_per_connection)
            .arg(u8::from(self.shared.memory.over()));
        cmd
    }

    pub(super) fn details_cmd(&self, room: &str, field: &str) -> Cmd {
        let namespaces = &self.shared.namespaces;
        let private = namespaces.rules(namespaces.find(room)).private;
        let mut cmd = room_script(&self.shas.details, room, None);
        cmd.arg(field)
            .arg(self.shared.config.limits.max_presence_list)
            .arg(u8::from(private));
        cmd
    }

    /// Queue a command that needs nothing but the command connection.
    pub(super) fn enqueue(&mut self, prepared: Prepared) {
        if self.cmd.is_none() {
            return self.fail(prepared.then);
        }
        self.ready.push_back(prepared);
    }

    /// Queue a room command behind the room's held ones, if any.
    pub(super) fn enqueue_in_order(&mut self, room: &Arc<str>, prepared: Prepared) {
        match self.rooms.get_mut(room) {
            Some(state) if !state.held.is_empty() => state.held.push(prepared),
            _ => self.enqueue(prepared),
        }
    }

    /// Queue a command that must run only once this node hears the room.
    pub(super) fn enqueue_subscribed(&mut self, room: &Arc<str>, prepared: Prepared) {
        if self.cmd.is_none() || self.sub.is_none() {
            return self.fail(prepared.then);
        }
        let Some(state) = self.rooms.get_mut(room) else {
            return self.fail(prepared.then);
        };
        match state.sub {
            Sub::On if state.held.is_empty() => self.ready.push_back(prepared),
            Sub::On | Sub::Pending => state.held.push(prepared),
            Sub::Off => {
                state.sub = Sub::Pending;
                state.pending_since = Some(std::time::Instant::now());
                state.held.push(prepared);
                self.change_subscription(true, vec![scripts::room_channel(room)]);
            }
        }
    }

    /// A join did not happen: its connection settles it with `refusal`.
    fn refuse_join(&mut self, origin: Origin, room: Arc<str>, refusal: Refusal) {
        self.join_done(&room);
        self.count_refusal(&refusal);
        let refused = Delivery::JoinRefused {
            conn: origin.conn,
            room,
            id: origin.id,
            refusal,
        };
        self.out.for_conn(origin.conn, refused);
    }

    /// Draining: an op that would change rooms is refused (it would get no
    /// delivery on this node); a closing connection's leave still runs, so
    /// presence stays right until this node removes itself.
    fn refuse_while_draining(&mut self, op: Op) {
        match op {
            Op::Leave { origin, room } if origin.id.is_none() => {
                self.member_gone(&room, origin.conn, None);
            }
            Op::ToUsers { .. } | Op::WatchUser { .. } => {}
            op => {
                let refusal = Refusal::shutting_down();
                self.count_refusal(&refusal);
                self.out.refuse_op(op, refusal);
            }
        }
    }

    /// Answer `reply` with `refusal` (counted).
    fn settle_refused<T>(&mut self, reply: crate::op::Reply<T>, refusal: Refusal) {
        self.count_refusal(&refusal);
        self.out.refuse(reply, refusal);
    }

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
            Then::Repair { room, id } => self.repair_done(&room, id, Vec::new()),
            Then::Nothing => {}
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
            } => self.join_answered(origin, room, value, status, &items),
            Then::Leave { origin, room } => match status {
                Status::Ok => self.member_gone(&room, origin.conn, origin.id),
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
                    Status::Ok => Ok(()),
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

    fn join_answered(
        &mut self,
        origin: Origin,
        room: Arc<str>,
        value: String,
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
        let ack = origin.id.map(|id| JoinAck {
            id,
            seq,
            epoch: items.get(10).and_then(text).unwrap_or("").to_string(),
            members: count,
            history: items
                .iter()
                .skip(11)
                .filter_map(bytes_of)
                .map(Bytes::copy_from_slice)
                .collect(),
            recovered,
        });
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.joining = state.joining.saturating_sub(1);
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
    fn join_done(&mut self, room: &Arc<str>) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.joining = state.joining.saturating_sub(1);
        }
        self.release_if_idle(room);
    }
}

/// A call of a room script with the keys every room script takes: meta,
/// presence, history, channel, and (JOIN, LEAVE) `node`'s room set.
fn room_script(sha: &str, room: &str, node: Option<&str>) -> Cmd {
    let (meta, presence) = (scripts::meta_key(room), scripts::presence_key(room));
    let (history, channel) = (scripts::history_key(room), scripts::room_channel(room));
    match node {
        Some(node) => {
            let node_rooms = scripts::node_rooms_key(node);
            evalsha(sha, &[&meta, &presence, &history, &channel, &node_rooms])
        }
        None => evalsha(sha, &[&meta, &presence, &history, &channel]),
    }
}
