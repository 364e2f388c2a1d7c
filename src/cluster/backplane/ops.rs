//! Operations from connections and the API: the command each becomes,
//! and what its answer does.

use std::sync::Arc;

use bytes::Bytes;
use redis::{Cmd, Value};

use super::answers::{
    Details, api_answered, bytes_of, call_failed, int, refusal_of, stream_entry, text,
};
use super::{Admission, Backplane, Prepared, RoomState, Sub, Then, evalsha};
use crate::cluster::scripts::{self, Status};
use crate::cluster::wire;
use crate::cluster::{Op, RoomFacts, unavailable};
use crate::config::OverflowPolicy;
use crate::epoch::Epoch;
use crate::error::{ErrorCode, Refusal};
use crate::protocol::encode::{self, MemberEntry};
use crate::router::{ApiOp, ClusterEvent, Delivery, Origin};

impl Backplane {
    pub(super) async fn on_op(&mut self, op: Op) {
        if self.drain.is_some() {
            return self.refuse_while_draining(op).await;
        }
        let node = self.node.clone();
        match op {
            Op::Join {
                origin,
                room,
                user,
                name,
                since,
                epoch,
                create,
                may_create,
                may_join_private,
            } => {
                let cfg = &self.shared.config;
                let value = wire::member_value(&user, name.as_deref());
                let mut cmd = room_script(&self.shas.join, &room, Some(&node));
                cmd.arg(scripts::member_field(&node, origin.conn))
                    .arg(&value)
                    .arg(u8::from(create))
                    .arg(u8::from(may_create))
                    .arg(u8::from(cfg.room.auto_create))
                    .arg(u8::from(may_join_private))
                    .arg(cfg.room.default_max_members)
                    .arg(cfg.limits.slow_consumer_policy.as_str())
                    .arg(cfg.room.history)
                    .arg(since.map_or(-1, |s| s.min(i64::MAX as u64) as i64))
                    .arg(cfg.room.history_on_join)
                    .arg(&*node)
                    .arg(origin.conn)
                    .arg(&*room)
                    .arg(epoch.as_deref().unwrap_or(""))
                    .arg(Epoch::new().as_str());
                self.rooms
                    .entry(room.clone())
                    .or_insert_with(RoomState::new)
                    .joining += 1;
                let then = Then::Join {
                    origin,
                    room: room.clone(),
                    user,
                    name,
                    value,
                };
                self.enqueue_subscribed(&room, Prepared { cmd, then }).await;
            }
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
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Publish {
                origin,
                room,
                from,
                data,
                exclude_self,
            } => {
                let field = scripts::member_field(&node, origin.conn);
                let skip = if exclude_self { origin.conn } else { 0 };
                let cmd = self.publish_cmd(&room, &field, &from, &data, skip);
                let then = Then::Publish {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Create {
                origin,
                room,
                options,
            } => {
                let cfg = &self.shared.config;
                let facts =
                    RoomFacts::from_options(&options, &cfg.room, cfg.limits.slow_consumer_policy);
                let cmd = self.create_cmd(&room, &facts);
                let then = Then::Create {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::Members { origin, room } => {
                let field = scripts::member_field(&node, origin.conn);
                let cmd = self.details_cmd(&room, &field);
                let then = Then::Members {
                    origin,
                    room: room.clone(),
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
            Op::ToUser { user, json } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(scripts::user_channel(&user))
                    .arg(wire::frame_payload(&node, &json));
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Nothing,
                })
                .await;
            }
            Op::ToAll { json } => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(scripts::ALL_CHANNEL)
                    .arg(wire::frame_payload(&node, &json));
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Nothing,
                })
                .await;
            }
            Op::WatchUser { user, watch } => {
                let channel = scripts::user_channel(&user);
                if watch {
                    let count = self.users.entry(user).or_insert(0);
                    *count += 1;
                    if *count == 1 {
                        self.change_subscription(true, vec![channel]).await;
                    }
                } else if let Some(count) = self.users.get_mut(&user) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.users.remove(&user);
                        self.change_subscription(false, vec![channel]).await;
                    }
                }
            }
            Op::Api { room, op } => {
                let cmd = match &op {
                    ApiOp::Create { options, .. } => {
                        let cfg = &self.shared.config;
                        let facts = RoomFacts::from_options(
                            options,
                            &cfg.room,
                            cfg.limits.slow_consumer_policy,
                        );
                        self.create_cmd(&room, &facts)
                    }
                    ApiOp::Delete { .. } => room_script(&self.shas.delete, &room, None),
                    ApiOp::Publish { data, .. } => {
                        self.publish_cmd(&room, "", crate::server::SYSTEM_USER, data, 0)
                    }
                    ApiOp::Details { .. } => self.details_cmd(&room, ""),
                };
                let then = Then::Api {
                    room: room.clone(),
                    call: op,
                };
                self.enqueue_in_order(&room, Prepared { cmd, then }).await;
            }
        }
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

    pub(super) fn create_cmd(&self, room: &str, facts: &RoomFacts) -> Cmd {
        let mut cmd = evalsha(&self.shas.create, &[&scripts::meta_key(room)]);
        cmd.arg(u8::from(facts.private))
            .arg(facts.max_members)
            .arg(facts.overflow.as_str())
            .arg(facts.history)
            .arg(Epoch::new().as_str());
        cmd
    }

    pub(super) fn details_cmd(&self, room: &str, field: &str) -> Cmd {
        let mut cmd = room_script(&self.shas.details, room, None);
        cmd.arg(field)
            .arg(self.shared.config.limits.max_presence_list);
        cmd
    }

    /// Queue a command that needs nothing but the command connection.
    pub(super) async fn enqueue(&mut self, prepared: Prepared) {
        if self.cmd.is_none() {
            return self.fail(prepared.then).await;
        }
        self.ready.push_back(prepared);
    }

    /// Queue a room command behind the room's held ones, if any.
    pub(super) async fn enqueue_in_order(&mut self, room: &Arc<str>, prepared: Prepared) {
        match self.rooms.get_mut(room) {
            Some(state) if !state.held.is_empty() => state.held.push(prepared),
            _ => self.enqueue(prepared).await,
        }
    }

    /// Queue a command that must run only once this node hears the room.
    pub(super) async fn enqueue_subscribed(&mut self, room: &Arc<str>, prepared: Prepared) {
        if self.cmd.is_none() || self.sub.is_none() {
            return self.fail(prepared.then).await;
        }
        let Some(state) = self.rooms.get_mut(room) else {
            return self.fail(prepared.then).await;
        };
        match state.sub {
            Sub::On if state.held.is_empty() => self.ready.push_back(prepared),
            Sub::On | Sub::Pending => state.held.push(prepared),
            Sub::Off => {
                state.sub = Sub::Pending;
                state.held.push(prepared);
                self.change_subscription(true, vec![scripts::room_channel(room)])
                    .await;
            }
        }
    }

    /// A join did not happen: its connection settles it with `refusal`.
    async fn refuse_join(&mut self, origin: Origin, room: Arc<str>, refusal: Refusal) {
        self.join_done(&room).await;
        self.counters_error(&refusal);
        let reply = encode::error(origin.id, refusal.code, &refusal.message);
        let shard = self.shard_of(origin.conn);
        let refused = Delivery::JoinRefused {
            conn: origin.conn,
            room,
            reply,
        };
        self.deliver(shard, refused).await;
    }

    /// Draining: an op that would change rooms is refused (it would get no
    /// delivery on this node); a closing connection's leave still runs, so
    /// presence stays right until this node removes itself.
    async fn refuse_while_draining(&mut self, op: Op) {
        let refusal = shutting_down();
        match op {
            Op::Join { origin, room, .. } => {
                self.rooms
                    .entry(room.clone())
                    .or_insert_with(RoomState::new)
                    .joining += 1;
                self.refuse_join(origin, room, refusal).await;
            }
            Op::Leave { origin, room } if origin.id.is_none() => {
                self.member_gone(&room, origin.conn, None).await;
            }
            Op::Leave { origin, .. }
            | Op::Publish { origin, .. }
            | Op::Create { origin, .. }
            | Op::Members { origin, .. } => self.reply_error(&origin, &refusal).await,
            Op::Api { op, .. } => call_failed(op, refusal),
            Op::ToUser { .. } | Op::ToAll { .. } | Op::WatchUser { .. } => {}
        }
    }

    /// Answer `then` with `unavailable` (Redis is unreachable), or, while
    /// draining, with `internal` (shutting down).
    pub(super) async fn fail(&mut self, then: Then) {
        let refusal = match self.drain {
            Some(_) => shutting_down(),
            None => unavailable(),
        };
        match then {
            Then::Join { origin, room, .. } => self.refuse_join(origin, room, refusal).await,
            Then::Leave { origin, room } if origin.id.is_none() => {
                // A closing connection: it leaves here whatever Redis says;
                // RESTORE puts this node's true members back on reconnect.
                self.member_gone(&room, origin.conn, None).await;
            }
            Then::Leave { origin, .. }
            | Then::Publish { origin, .. }
            | Then::Create { origin, .. }
            | Then::Members { origin, .. } => self.reply_error(&origin, &refusal).await,
            Then::Api { call, .. } => call_failed(call, refusal),
            Then::Repair { room, epoch } => self.repair_done(&room, epoch, Vec::new()).await,
            Then::Nothing => {}
        }
    }

    pub(super) async fn answer(&mut self, then: Then, value: Value) {
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        let status = Status::from_code(items.first().and_then(int).unwrap_or(i64::MIN));
        match then {
            Then::Join {
                origin,
                room,
                user,
                name,
                value,
            } => {
                self.join_answered(origin, room, user, name, value, status, &items)
                    .await
            }
            Then::Leave { origin, room } => match status {
                Status::Ok => {
                    let reply = origin.id.map(|id| encode::ack_room(id, &room));
                    self.member_gone(&room, origin.conn, reply).await;
                }
                _ if origin.id.is_none() => self.member_gone(&room, origin.conn, None).await,
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Publish { origin, room } => match status {
                Status::Ok => {
                    self.count_published();
                    if let Some(id) = origin.id {
                        let seq = items.get(1).and_then(int).unwrap_or(0) as u64;
                        let frame = encode::ack_publish(id, &room, seq);
                        self.to_conn(origin.conn, frame).await;
                    }
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Create { origin, room } => match status {
                Status::Ok => {
                    if let Some(id) = origin.id {
                        self.to_conn(origin.conn, encode::ack_room(id, &room)).await;
                    }
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Members { origin, room } => match status {
                Status::Ok => {
                    let Some(id) = origin.id else {
                        return;
                    };
                    let details = Details::read(&items);
                    let entries = details.members.iter().map(|m| MemberEntry {
                        conn: m.conn,
                        user: &m.user,
                        name: m.name.as_deref(),
                    });
                    let frame = encode::ack_members(id, &room, entries, details.total);
                    self.to_conn(origin.conn, frame).await;
                }
                _ => {
                    let refusal = refusal_of(status, &room, &items);
                    self.reply_error(&origin, &refusal).await;
                }
            },
            Then::Api { room, call } => api_answered(call, &room, status, &items),
            Then::Repair { room, epoch } => {
                let mut found = Vec::new();
                for entry in items {
                    if let Some((seq, json)) = stream_entry(entry) {
                        found.push((seq, json));
                    }
                }
                self.repair_done(&room, epoch, found).await;
            }
            Then::Nothing => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn join_answered(
        &mut self,
        origin: Origin,
        room: Arc<str>,
        user: Arc<str>,
        name: Option<Arc<str>>,
        value: String,
        status: Status,
        items: &[Value],
    ) {
        if status != Status::Ok {
            let refusal = refusal_of(status, &room, items);
            return self.refuse_join(origin, room, refusal).await;
        }
        let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
        let count = items.get(2).and_then(int).unwrap_or(0).max(0) as u32;
        let facts = RoomFacts {
            private: items.get(3).and_then(int) == Some(1),
            max_members: items.get(4).and_then(int).unwrap_or(0).max(0) as u32,
            overflow: match items.get(5).and_then(text) {
                Some("drop") => OverflowPolicy::Drop,
                _ => OverflowPolicy::Disconnect,
            },
            explicit: items.get(6).and_then(int) == Some(1),
            history: items.get(9).and_then(int).unwrap_or(0).max(0) as usize,
        };
        let recovered = match items.get(7).and_then(int) {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        };
        let reply = origin.id.map(|id| {
            let epoch = items.get(10).and_then(text).unwrap_or("");
            let history: Vec<&[u8]> = items.iter().skip(11).filter_map(bytes_of).collect();
            encode::ack_join(id, &room, seq, epoch, count, history.into_iter(), recovered)
        });
        let Some(state) = self.rooms.get_mut(&room) else {
            return;
        };
        state.joining = state.joining.saturating_sub(1);
        state.members.insert(origin.conn, value);
        state.facts = Some(facts);
        let admission = Admission {
            at: seq,
            conn: origin.conn,
            user,
            name,
            facts,
            reply,
        };
        match state.node_seq {
            Some(last) if last < seq => state.stash.push(admission),
            Some(_) => self.admit(&room, admission).await,
            None => {
                let newest = state.recent.back().map_or(0, |(s, _, _)| *s);
                state.node_seq = Some(seq.max(newest));
                self.admit(&room, admission).await;
            }
        }
    }

    /// A join was answered or failed: the room may have lost its interest.
    pub(super) async fn join_done(&mut self, room: &Arc<str>) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.joining = state.joining.saturating_sub(1);
        }
        self.release_if_idle(room).await;
    }

    /// `conn` is no longer a member of `room` here.
    pub(super) async fn member_gone(&mut self, room: &Arc<str>, conn: u64, reply: Option<Bytes>) {
        // A join still waiting for its message is admitted first, so the
        // connection's pending join settles, then removed.
        let stashed: Vec<Admission> = match self.rooms.get_mut(room) {
            Some(state) => {
                state.members.remove(&conn);
                let (mine, others): (Vec<Admission>, Vec<Admission>) =
                    state.stash.drain(..).partition(|a| a.conn == conn);
                state.stash = others;
                mine
            }
            None => Vec::new(),
        };
        for admission in stashed {
            self.admit(room, admission).await;
        }
        let event = ClusterEvent::Removed {
            room: room.clone(),
            conn,
            reply,
        };
        self.to_home(room, event).await;
        self.release_if_idle(room).await;
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

/// The refusal of an op that arrives while this node drains.
fn shutting_down() -> Refusal {
    Refusal::new(
        ErrorCode::Internal,
        "the server is shutting down; the operation did not run",
    )
}
