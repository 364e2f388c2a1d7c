//! The home room table: the rooms one home shard sequences (single-node
//! back end).
//!
//! It admits members against `max_members`, assigns `seq`, keeps the
//! history ring, expires empty auto-created rooms and decides fan-out. It
//! does no I/O: each op goes in with the time, and what must be sent comes
//! out as [`Delivery`]s in an [`Outbox`] (API answers go to their channel).
//!
//! Rooms are made through the broker's [`RoomIndex`], which counts them
//! against their creator's quotas (per user, per connection), `max_rooms`
//! and the memory budget; a room that goes gives its creator's quota back.
//! The table keeps its share of `limits.max_history_bytes_total` (the total
//! divided by the shards): past it, the oldest messages of its largest
//! rooms go first ([`RoomTable::trim_history`]).
//!
//! **Architecture Invariants:**
//!
//! * Only the request pump of a room's home shard applies ops to the room,
//!   one at a time, so `seq` is gap-free and a cap check and its update
//!   cannot interleave with another.
//! * A room's [`ShardCounts`] hold exactly its members' shards, so a
//!   message reaches every member's shard once and no other.
//! * Once sealed (drain) the table sequences nothing more.
//! * `history_bytes` is the sum of its rooms' history bytes, and is at most
//!   its share of the history budget after every op (one message larger
//!   than the share is kept alone until the next).
//!
//! About 800 lines: every op on a room is here, since each one checks and
//! updates the same state (members, caps, seq, history, expiry); the tests
//! are beside it in `table_tests.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::{Config, RoomConfig};
use crate::delivery::{
    Ack, Admitted, Delivery, JoinAck, MemberInfo, MemberList, Outbox, PresenceChange, RoomDetails,
    RoomFrame, UserEntry,
};
use crate::epoch::{Epoch, Resume};
use crate::error::Refusal;
use crate::index::{RoomIndex, RoomMeta};
use crate::limits::HISTORY_TRIM_TO_EIGHTHS;
use crate::observe::RoomChange;
use crate::op::{Creator, Join, Op, Origin, Publish};
use crate::placement::{ShardCounts, shard_of};
use crate::protocol::decode::RoomOptions;
use crate::protocol::encode::{self, PresenceKind};
use crate::room::history::{HistoryRing, trim_largest_first};
use crate::room::namespaces::{Namespaces, NsId, RoomSettings};
use crate::ws::encode::text_payload;

/// The clocks an op is applied with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Monotonic time (expiry).
    pub(crate) instant: Instant,
    /// Milliseconds since the Unix epoch (`ts` of messages).
    pub(crate) unix_ms: u64,
    /// [`crate::metrics::now_us`] (the publish-to-write histogram).
    pub(crate) stamp_us: u64,
}

impl Now {
    /// The clocks now.
    pub(crate) fn read() -> Self {
        Now {
            instant: Instant::now(),
            unix_ms: encode::now_ms(),
            stamp_us: crate::metrics::now_us(),
        }
    }
}

/// A member connection as its room's home knows it.
struct Member {
    user: Arc<str>,
    name: Option<Arc<str>>,
    info: Option<Arc<str>>,
}

/// A room homed here.
struct Room {
    meta: Arc<RoomMeta>,
    /// Its namespace (whose rules it follows).
    ns: NsId,
    /// This incarnation of the room.
    epoch: Epoch,
    seq: u64,
    history: HistoryRing,
    members: HashMap<u64, Member>,
    /// Member connections per user (each user once).
    users: HashMap<Arc<str>, u32>,
    /// A member asked for the room's users (a Pusher presence member):
    /// changes of its users are told even with native presence events off.
    user_presence: bool,
    /// Members per shard: where fan-out goes.
    shards: ShardCounts,
    /// When the room last became empty (auto-created rooms only).
    empty_since: Option<Instant>,
    /// The room has an entry in the expiry heap (at most one, so join/leave
    /// churn cannot grow the heap).
    expiry_scheduled: bool,
}

/// A message to sequence.
struct Message<'a> {
    from: &'a str,
    data: &'a [u8],
    event: Option<&'a str>,
    exclude: Option<u64>,
}

/// The settings the table applies (a copy of the relevant configuration).
#[derive(Debug, Clone)]
struct Settings {
    home: usize,
    room: RoomConfig,
    namespaces: Namespaces,
    max_presence_list: usize,
    /// This home's share of `limits.max_history_bytes_total`.
    history_share: usize,
}

/// The rooms homed on one shard.
pub(crate) struct RoomTable {
    settings: Settings,
    rooms: HashMap<Arc<str>, Room>,
    /// Empty auto-created rooms by the time they may go, earliest first.
    expiring: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    sealed: bool,
    published: u64,
    /// Bytes of history of the rooms homed here.
    history_bytes: usize,
    /// Messages dropped from history for the history budget.
    trimmed: u64,
}

impl RoomTable {
    /// The table of home shard `home` under `config`.
    pub(crate) fn new(home: usize, config: &Config) -> Self {
        let shards = config.server.shards.max(1) as u64;
        let share = config.limits.max_history_bytes_total / shards;
        RoomTable {
            settings: Settings {
                home,
                room: config.room.clone(),
                namespaces: Namespaces::new(config),
                max_presence_list: config.limits.max_presence_list,
                history_share: usize::try_from(share).unwrap_or(usize::MAX),
            },
            rooms: HashMap::new(),
            expiring: BinaryHeap::new(),
            sealed: false,
            published: 0,
            history_bytes: 0,
            trimmed: 0,
        }
    }

    /// Bytes of history kept by the rooms homed here.
    pub(crate) fn history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// Messages dropped from history for the history budget so far.
    pub(crate) fn history_trimmed(&self) -> u64 {
        self.trimmed
    }

    /// Rooms homed here.
    pub(crate) fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Messages sequenced here so far.
    pub(crate) fn published(&self) -> u64 {
        self.published
    }

    /// Drain: sequence nothing more.
    pub(crate) fn seal(&mut self) {
        self.sealed = true;
    }

    /// Whether the table is sealed.
    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Apply one op to the rooms homed here. `index` is the broker's room
    /// index (the table inserts and removes its rooms there).
    pub(crate) fn apply(&mut self, index: &RoomIndex, op: Op, now: Now, out: &mut Outbox) {
        match op {
            Op::Join(join) => {
                let (origin, room) = (join.origin, join.room.clone());
                if let Err(refusal) = self.join(index, join, now, out) {
                    let refused = Delivery::JoinRefused {
                        conn: origin.conn,
                        room,
                        id: origin.id,
                        refusal,
                    };
                    out.for_conn(origin.conn, refused);
                }
            }
            Op::Leave { origin, room } => {
                if let Err(refusal) = self.leave(origin, &room, now, out) {
                    out.answer(origin, Err(refusal));
                }
            }
            Op::Create {
                room,
                options,
                creator,
                reply,
            } => {
                let result = self.create(index, &room, &options, creator, now);
                out.settle(reply, result, |()| Ack::Room(room));
            }
            Op::Delete { room, reply } => {
                let result = self.close(index, &room, "deleted", out);
                let _ = reply.send(result);
            }
            Op::Publish(publish) => self.publish(publish, now, out),
            Op::Members { origin, room } => {
                let answer = self.members(origin, &room).map(Ack::Members);
                out.answer(origin, answer);
            }
            Op::Details { room, reply } => {
                let _ = reply.send(self.details(&room));
            }
            // Routed to the shards or answered by the route, never a home.
            Op::ToUsers { .. } | Op::WatchUser { .. } | Op::Rooms { .. } => {}
        }
    }

    /// `create`: make `room` with `options`, as far as its namespace
    /// allows (a create may only tighten the namespace's options), counted
    /// against `creator`'s quotas (`None`: the API). It lives until deleted.
    fn create(
        &mut self,
        index: &RoomIndex,
        room: &Arc<str>,
        options: &RoomOptions,
        creator: Option<Creator>,
        now: Now,
    ) -> Result<(), Refusal> {
        if self.rooms.contains_key(room) {
            return Err(Refusal::room_exists(room));
        }
        let namespaces = &self.settings.namespaces;
        let ns = namespaces.find(room);
        let settings = namespaces.created_settings(ns, room, options)?;
        self.make(index, room, (ns, settings), true, creator, now)
    }

    /// Make `room` in namespace `ns` with `settings`, made by `creator`
    /// (`None`: the API). `explicit` rooms live until deleted; others
    /// expire `room.empty_ttl_ms` after their last member leaves.
    fn make(
        &mut self,
        index: &RoomIndex,
        room: &Arc<str>,
        (ns, settings): (NsId, RoomSettings),
        explicit: bool,
        creator: Option<Creator>,
        now: Now,
    ) -> Result<(), Refusal> {
        let s = &self.settings;
        let meta = Arc::new(RoomMeta {
            home: s.home,
            private: settings.private,
            max_members: settings.max_members,
            overflow: settings.overflow,
            explicit,
            members: AtomicU32::new(0),
            users: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            creator,
        });
        index.insert(room.clone(), meta.clone())?;
        let mut home = Room {
            meta,
            ns,
            epoch: Epoch::new(),
            seq: 0,
            history: HistoryRing::new(settings.history, s.room.history_max_bytes),
            members: HashMap::new(),
            users: HashMap::new(),
            user_presence: false,
            shards: ShardCounts::default(),
            empty_since: None,
            expiry_scheduled: false,
        };
        if !explicit {
            // Until its first member arrives it is as good as empty.
            home.empty_since = Some(now.instant);
            self.schedule_expiry(room, &mut home);
        }
        self.rooms.insert(room.clone(), home);
        Ok(())
    }

    fn join(
        &mut self,
        index: &RoomIndex,
        join: Join,
        now: Now,
        out: &mut Outbox,
    ) -> Result<(), Refusal> {
        let room = &join.room;
        if !self.rooms.contains_key(room) {
            let namespaces = &self.settings.namespaces;
            let ns = namespaces.find(room);
            if !join.create || !namespaces.rules(ns).auto_create {
                return Err(Refusal::room_not_found(room));
            }
            if !join.may_create {
                return Err(Refusal::may_not_create(room));
            }
            let settings = namespaces.joined_settings(ns);
            // A private room the joiner could not enter is not made.
            if settings.private && !join.may_join_private {
                return Err(Refusal::private_room(room));
            }
            let creator = Some(join.creator());
            self.make(index, room, (ns, settings), false, creator, now)?;
        }
        let s = &self.settings;
        let Some(home) = self.rooms.get_mut(room) else {
            return Err(Refusal::room_not_found(room));
        };
        if home.meta.private && !join.may_join_private {
            return Err(Refusal::private_room(room));
        }
        let conn = join.origin.conn;
        let rejoin = home.members.contains_key(&conn);
        let mut first_of_user = false;
        if !rejoin {
            if home.members.len() >= home.meta.max_members as usize {
                return Err(Refusal::room_full(room, home.meta.max_members));
            }
            home.shards.add(shard_of(conn, out.shards()));
            home.empty_since = None;
            let member = Member {
                user: join.user.clone(),
                name: join.name.clone(),
                info: join.info.as_deref().map(|i| Arc::from(i.as_str())),
            };
            home.members.insert(conn, member);
            let of_user = home.users.entry(join.user.clone()).or_insert(0);
            *of_user += 1;
            first_of_user = *of_user == 1;
            home.meta
                .members
                .store(home.members.len() as u32, Ordering::Relaxed);
            home.meta
                .users
                .store(home.users.len() as u32, Ordering::Relaxed);
            if home.members.len() == 1 {
                out.observe(room, RoomChange::Occupied);
            }
            if first_of_user {
                out.observe(room, RoomChange::UserAdded(join.user.clone()));
            }
        }
        let count = home.members.len() as u32;
        let user_count = home.users.len() as u32;
        let ack = join.origin.id.map(|id| {
            let resume =
                crate::epoch::resume(join.since, join.epoch.as_deref(), home.epoch.as_str());
            let on_join = s.namespaces.rules(home.ns).history_on_join;
            let (history, recovered) = history_for(home, resume, on_join);
            JoinAck {
                id,
                seq: home.seq,
                epoch: home.epoch.as_str().to_string(),
                members: count,
                history,
                recovered,
                users: join
                    .list_users
                    .then(|| user_entries(home, s.max_presence_list)),
                user_count,
            }
        });
        let admitted = Admitted {
            overflow: home.meta.overflow,
            ack,
            catchup: Vec::new(),
        };
        let joined = Delivery::Joined {
            conn,
            room: room.clone(),
            admitted: Box::new(admitted),
        };
        out.for_conn(conn, joined);
        // The joiner is not told about itself: alone, nobody is told.
        home.user_presence |= join.list_users;
        let native_events = s.namespaces.rules(home.ns).presence_events;
        if !rejoin && count > 1 && (native_events || (first_of_user && home.user_presence)) {
            let member = Member {
                user: join.user.clone(),
                name: join.name.clone(),
                info: join.info.as_deref().map(|i| Arc::from(i.as_str())),
            };
            let frame = presence_frame(native_events, room, member, count, first_of_user, true);
            out.fan_out(home.shards.shards(), room, 0, &frame, Some(conn), 0);
        }
        Ok(())
    }

    fn leave(
        &mut self,
        origin: Origin,
        room: &Arc<str>,
        now: Now,
        out: &mut Outbox,
    ) -> Result<(), Refusal> {
        let ttl = self.ttl();
        let Some(home) = self.rooms.get_mut(room) else {
            return Err(Refusal::room_not_found(room));
        };
        let Some(member) = home.members.remove(&origin.conn) else {
            return Err(Refusal::not_member(room));
        };
        home.shards.remove(shard_of(origin.conn, out.shards()));
        let count = home.members.len() as u32;
        home.meta.members.store(count, Ordering::Relaxed);
        let last_of_user = match home.users.get_mut(&member.user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                home.users.remove(&member.user);
                true
            }
        };
        home.meta
            .users
            .store(home.users.len() as u32, Ordering::Relaxed);
        if last_of_user {
            out.observe(room, RoomChange::UserRemoved(member.user.clone()));
        }
        if count == 0 {
            out.observe(room, RoomChange::Vacated);
        }
        let left = Delivery::Left {
            conn: origin.conn,
            room: room.clone(),
            id: origin.id,
        };
        out.for_conn(origin.conn, left);
        let native_events = self.settings.namespaces.rules(home.ns).presence_events;
        if count > 0 && (native_events || (last_of_user && home.user_presence)) {
            let frame = presence_frame(native_events, room, member, count, last_of_user, false);
            out.fan_out(home.shards.shards(), room, 0, &frame, Some(origin.conn), 0);
        }
        if count == 0 && !home.meta.explicit {
            home.empty_since = Some(now.instant);
            schedule(&mut self.expiring, ttl, room, home);
        }
        Ok(())
    }

    fn publish(&mut self, publish: Publish, now: Now, out: &mut Outbox) {
        let Publish {
            room,
            from,
            data,
            event,
            exclude,
            reply,
            ..
        } = publish;
        // A connection must be a member; the API publishes into any room.
        // The origin forwards a publish also while its join is in flight, so
        // frames take effect in the order the client sent them: the home,
        // which saw that join first, decides.
        let publisher = reply.conn();
        let result = match (self.rooms.get(&room), publisher) {
            (None, _) => Err(Refusal::room_not_found(&room)),
            (Some(home), Some(conn)) if !home.members.contains_key(&conn) => {
                Err(Refusal::not_member(&room))
            }
            _ => {
                let message = Message {
                    from: &from,
                    data: &data,
                    event: event.as_deref().map(String::as_str),
                    exclude: exclude.map(std::num::NonZeroU64::get),
                };
                self.sequence(&room, message, now, out)
            }
        };
        out.settle(reply, result, |seq| Ack::Published {
            room: room.clone(),
            seq,
        });
    }

    /// Give the next seq to a message, encode it once, keep it in history
    /// and fan it out.
    fn sequence(
        &mut self,
        room: &Arc<str>,
        message: Message<'_>,
        now: Now,
        out: &mut Outbox,
    ) -> Result<u64, Refusal> {
        if self.sealed {
            // Draining: its fan-out could reach members already closed.
            return Err(Refusal::shutting_down());
        }
        let Some(home) = self.rooms.get_mut(room) else {
            return Err(Refusal::room_not_found(room));
        };
        home.seq += 1;
        let seq = home.seq;
        let frame = encode::message_event(
            room,
            seq,
            message.from,
            now.unix_ms,
            message.data,
            message.event,
        );
        let before = home.history.bytes();
        home.history.push(seq, frame.clone(), ());
        self.history_bytes = self.history_bytes - before + home.history.bytes();
        home.meta.seq.store(seq, Ordering::Relaxed);
        out.fan_out(
            home.shards.shards(),
            room,
            seq,
            &RoomFrame::new(frame),
            message.exclude,
            now.stamp_us,
        );
        self.published += 1;
        if self.history_bytes > self.settings.history_share {
            self.trim_history();
        }
        Ok(seq)
    }

    /// Over the history budget: drop the oldest messages of the largest
    /// rooms (by bytes of history) until the share is
    /// [`HISTORY_TRIM_TO_EIGHTHS`]/8 full, so one pass serves many
    /// publishes. O(rooms with history + messages dropped × log rooms).
    fn trim_history(&mut self) {
        let target = self.settings.history_share / 8 * HISTORY_TRIM_TO_EIGHTHS;
        let rooms = &mut self.rooms;
        let listed: Vec<(usize, Arc<str>)> = rooms
            .iter()
            .filter(|(_, home)| home.history.bytes() > 0)
            .map(|(name, home)| (home.history.bytes(), name.clone()))
            .collect();
        let (total, dropped) =
            trim_largest_first(listed.into_iter(), self.history_bytes, target, |name| {
                let history = &mut rooms.get_mut(name)?.history;
                history.pop_oldest().map(|freed| (freed, history.bytes()))
            });
        self.history_bytes = total;
        self.trimmed += dropped;
    }

    /// `room` is gone from the table: forget its history bytes, and free
    /// its name and its creator's quota in the index.
    fn forget(&mut self, index: &RoomIndex, room: &str, home: &Room) {
        self.history_bytes -= home.history.bytes();
        index.remove(room);
    }

    fn members(&self, origin: Origin, room: &Arc<str>) -> Result<Box<MemberList>, Refusal> {
        let Some(home) = self.rooms.get(room) else {
            return Err(Refusal::room_not_found(room));
        };
        if home.meta.private && !home.members.contains_key(&origin.conn) {
            return Err(Refusal::private_members(room));
        }
        let members = if origin.id.is_some() {
            member_infos(home, self.settings.max_presence_list)
        } else {
            Vec::new() // nobody reads the answer
        };
        Ok(Box::new(MemberList {
            room: room.clone(),
            members,
            total: home.members.len(),
        }))
    }

    fn details(&self, room: &Arc<str>) -> Result<RoomDetails, Refusal> {
        let Some(home) = self.rooms.get(room) else {
            return Err(Refusal::room_not_found(room));
        };
        let namespaces = &self.settings.namespaces;
        let settings = RoomSettings {
            private: home.meta.private,
            max_members: home.meta.max_members,
            history: home.history.max_len(),
            overflow: home.meta.overflow,
        };
        Ok(RoomDetails {
            room: room.clone(),
            members: home.members.len(),
            users: home.users.len(),
            seq: home.seq,
            epoch: home.epoch.as_str().to_string(),
            private: home.meta.private,
            max_members: home.meta.max_members,
            overflow: home.meta.overflow.as_str(),
            explicit: home.meta.explicit,
            history: home.history.len() as u64,
            home_shard: Some(self.settings.home),
            namespace: namespaces.prefix(home.ns).cloned(),
            options: namespaces.effective(home.ns, settings),
            member_list: member_infos(home, self.settings.max_presence_list),
        })
    }

    /// Remove `room` (deleted): its members on every shard get
    /// `room_closed` with `reason`.
    fn close(
        &mut self,
        index: &RoomIndex,
        room: &Arc<str>,
        reason: &str,
        out: &mut Outbox,
    ) -> Result<(), Refusal> {
        let Some(home) = self.rooms.remove(room) else {
            return Err(Refusal::room_not_found(room));
        };
        self.forget(index, room, &home);
        if !home.members.is_empty() {
            out.observe(room, RoomChange::Vacated);
        }
        let frame = encode::room_closed(room, reason);
        for shard in home.shards.shards().iter() {
            let closed = Delivery::RoomClosed {
                room: room.clone(),
                frame: frame.clone(),
            };
            out.push(shard, closed);
        }
        Ok(())
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.settings.room.empty_ttl_ms)
    }

    /// Make sure `room` has one entry in the expiry heap.
    fn schedule_expiry(&mut self, room: &Arc<str>, home: &mut Room) {
        let ttl = self.ttl();
        schedule(&mut self.expiring, ttl, room, home);
    }

    /// Remove auto-created rooms empty for at least `room.empty_ttl_ms`.
    pub(crate) fn expire(&mut self, index: &RoomIndex, now: Instant) {
        let ttl = self.ttl();
        while let Some(Reverse((at, _))) = self.expiring.peek() {
            if *at > now {
                return;
            }
            let Some(Reverse((_, room))) = self.expiring.pop() else {
                return;
            };
            let Some(home) = self.rooms.get_mut(&room) else {
                continue;
            };
            home.expiry_scheduled = false;
            if !home.members.is_empty() || home.meta.explicit {
                continue;
            }
            match home.empty_since {
                Some(since) if since + ttl <= now => {
                    if let Some(home) = self.rooms.remove(&room) {
                        self.forget(index, &room, &home);
                    }
                }
                // Emptied again since it was scheduled: wait its full ttl.
                Some(_) => schedule(&mut self.expiring, ttl, &room, home),
                None => {}
            }
        }
    }
}

/// Give `room` its one entry in `heap`, due `ttl` after it became empty.
fn schedule(
    heap: &mut BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    ttl: Duration,
    room: &Arc<str>,
    home: &mut Room,
) {
    if home.expiry_scheduled {
        return;
    }
    let Some(since) = home.empty_since else {
        return;
    };
    home.expiry_scheduled = true;
    heap.push(Reverse((since + ttl, room.clone())));
}

/// The frame telling a room's other members that `member` joined (or
/// left), leaving `count` members: the native `joined`/`left` when
/// `native_events`, and the change itself (did it change the room's
/// users?) for the other protocols.
fn presence_frame(
    native_events: bool,
    room: &str,
    member: Member,
    count: u32,
    user_changed: bool,
    joined: bool,
) -> RoomFrame {
    let kind = if joined {
        PresenceKind::Joined
    } else {
        PresenceKind::Left
    };
    let native = native_events
        .then(|| encode::presence(kind, room, &member.user, member.name.as_deref(), count));
    let change = PresenceChange {
        joined,
        user: member.user,
        info: member.info,
        user_changed,
    };
    RoomFrame::presence(native, change)
}

/// History after `since` (or the last `on_join` messages), as message
/// payloads, and whether it is complete. A `since` of another epoch gets
/// the last `on_join` messages and `recovered: false`.
fn history_for(home: &Room, resume: Resume, on_join: usize) -> (Vec<Bytes>, Option<bool>) {
    match resume {
        Resume::After(since) => {
            let messages = home.history.after(since).map(|e| text_payload(&e.frame));
            let recovered = home.history.covers(since, home.seq);
            (messages.collect(), Some(recovered))
        }
        Resume::Fresh | Resume::Stale => {
            let messages = home.history.last(on_join).map(|e| text_payload(&e.frame));
            (
                messages.collect(),
                (resume == Resume::Stale).then_some(false),
            )
        }
    }
}

/// The room's users, each once with the `info` of one of its connections,
/// at most `max`.
fn user_entries(home: &Room, max: usize) -> Vec<UserEntry> {
    let mut seen = std::collections::HashSet::with_capacity(home.users.len().min(max));
    let mut entries = Vec::with_capacity(home.users.len().min(max));
    for m in home.members.values() {
        if entries.len() >= max {
            break;
        }
        if seen.insert(m.user.clone()) {
            entries.push(UserEntry {
                user: m.user.clone(),
                info: m.info.clone(),
            });
        }
    }
    entries
}

fn member_infos(home: &Room, max: usize) -> Vec<MemberInfo> {
    home.members
        .iter()
        .take(max)
        .map(|(conn, m)| MemberInfo {
            conn: *conn,
            node: None,
            user: m.user.clone(),
            name: m.name.clone(),
        })
        .collect()
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "table_namespace_tests.rs"]
mod namespace_tests;
