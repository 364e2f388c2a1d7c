//! Operations from the shards' route: the command each becomes and the
//! queue it waits in, or the refusal it gets at once (a join the namespace
//! forbids, a room op while draining). What the answer does is
//! [`super::outcomes`].
//!
//! **Invariant:** a room's commands are queued in the order its ops arrived
//! ([`Backplane::enqueue_in_order`]); a join is sent only once this node
//! hears the room ([`Backplane::enqueue_subscribed`]).

use std::sync::Arc;

use redis::Cmd;

use super::connect::evalsha;
use super::rooms::Sub;
use super::{Backplane, Prepared, Then};
use crate::cluster::scripts;
use crate::cluster::{RoomFacts, wire};
use crate::delivery::Delivery;
use crate::epoch::Epoch;
use crate::error::Refusal;
use crate::op::{Audience, Creator, Join, Op, Origin, Publish, UserFrame};
use crate::protocol::encode;
use crate::ws::encode::text_payload;

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
    pub(super) fn refuse_join(&mut self, origin: Origin, room: Arc<str>, refusal: Refusal) {
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
    pub(super) fn settle_refused<T>(&mut self, reply: crate::op::Reply<T>, refusal: Refusal) {
        self.count_refusal(&refusal);
        self.out.refuse(reply, refusal);
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
