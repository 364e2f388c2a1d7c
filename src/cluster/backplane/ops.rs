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
use crate::delivery::{Ack, Delivery, JoinAck, MemberList, RoomCounts, UserEntry};
use crate::epoch::Epoch;
use crate::error::Refusal;
use crate::observe::RoomChange;
use crate::op::{Audience, Creator, Join, Op, Origin, Publish, UserFrame};
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
                event,
                exclude,
                reply,
                ..
            }) => {
                // A connection must be a member (its presence field); the
                // API (no field) publishes into any room.
                let conn = reply.conn();
                let field = conn.map_or_else(String::new, |c| scripts::member_field(&node, c));
                // The publisher is on this node; a connection the API names
                // may be on any (connection ids differ between nodes).
                let skip = match exclude.map(std::num::NonZeroU64::get) {
                    Some(skip) if Some(skip) == conn => Skip::Here(skip),
                    Some(skip) => Skip::Anywhere(skip),
                    None => Skip::None,
                };
                let message = wire::Outgoing {
                    from: &from,
                    data: &data,
                    event: event.as_deref().map(String::as_str),
                };
                let cmd = self.publish_cmd(&room, &field, message, skip);
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
            Op::Rooms {
                prefix,
                limit,
                reply,
            } => {
                let mut cmd = evalsha(&self.shas.rooms, &[]);
                cmd.arg(&*prefix).arg(limit);
                self.enqueue(Prepared {
                    cmd,
                    then: Then::Rooms { reply },
                });
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
                let payload = match &frame {
                    UserFrame::Frame(frame) => wire::frame_payload(&node, &text_payload(frame)),
                    UserFrame::Close(reason) => wire::close_payload(&node, reason),
                };
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(channel).arg(payload);
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
            info,
            list_users,
        } = join;
        let node = self.node.clone();
        // The room's namespace decides whether a join may make it, and how.
        let namespaces = &self.shared.namespaces;
        let rules = namespaces.rules(namespaces.find(&room));
        let limits = &self.shared.config.limits;
        let value = wire::member_value(&user, name.as_deref(), info.as_deref().map(String::as_str));
        let field = scripts::member_field(&node, origin.conn);
        let (user_quota, conn_quota) = (
            scripts::user_quota_key(&user),
            scripts::conn_quota_key(&field),
        );
        let mut cmd = room_script_with(
            &self.shas.join,
            &room,
            Some(&node),
            &[&user_quota, &conn_quota],
        );
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
            .arg(&*user)
            .arg(if list_users {
                limits.max_presence_list
            } else {
                0
            })
            .arg(limits.max_rooms_created_per_user)
            .arg(limits.max_rooms_created_per_connection)
            .arg(u8::from(self.shared.memory.over()));
        self.room_state(&room).joining += 1;
        let then = Then::Join {
            origin,
            room: room.clone(),
            value,
            list_users,
        };
        self.enqueue_subscribed(&room, Prepared { cmd, then });
    }

    pub(super) fn publish_cmd(
        &self,
        room: &str,
        field: &str,
        message: wire::Outgoing<'_>,
        skip: Skip,
    ) -> Cmd {
        let (before, after) = encode::message_parts(
            room,
            message.from,
            encode::now_ms(),
            message.data,
            message.event,
        );
        let (skip_node, skip) = match skip {
            Skip::None => (&*self.node, 0),
            Skip::Here(conn) => (&*self.node, conn),
            Skip::Anywhere(conn) => (wire::ANY_NODE, conn),
        };
        let mut cmd = room_script(&self.shas.publish, room, None);
        cmd.arg(field)
            .arg(&before[..])
            .arg(&after[..])
            .arg(skip_node)
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
    fn join_done(&mut self, room: &Arc<str>) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.joining = state.joining.saturating_sub(1);
        }
        self.release_if_idle(room);
    }
}

/// Which connection a published message skips.
pub(super) enum Skip {
    /// None.
    None,
    /// A connection of this node (the publisher).
    Here(u64),
    /// A connection of whichever node has it (the API's `socket_id`).
    Anywhere(u64),
}

/// A call of a room script with the keys every room script takes: meta,
/// presence, history, channel, users, and (JOIN, LEAVE) `node`'s room set.
fn room_script(sha: &str, room: &str, node: Option<&str>) -> Cmd {
    room_script_with(sha, room, node, &[])
}

/// [`room_script`] with `extra` keys after the room's (and the node's).
fn room_script_with(sha: &str, room: &str, node: Option<&str>, extra: &[&str]) -> Cmd {
    let (meta, presence) = (scripts::meta_key(room), scripts::presence_key(room));
    let (history, channel) = (scripts::history_key(room), scripts::room_channel(room));
    let users = scripts::users_key(room);
    let node_rooms = node.map(scripts::node_rooms_key);
    let mut keys = vec![&*meta, &*presence, &*history, &*channel, &*users];
    keys.extend(node_rooms.as_deref());
    keys.extend_from_slice(extra);
    evalsha(sha, &keys)
}
