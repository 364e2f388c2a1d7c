//! The home side of rooms: the one place that assigns `seq`, keeps the
//! history ring, admits members against `max_members` and decides fan-out.
//!
//! **Architecture Invariant:** only the request pump of a room's home shard
//! runs this code for that room, one request at a time, so `seq` is gap-free
//! and a cap check and its update cannot interleave with another.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::time::Instant;

use super::Shard;
use crate::epoch::{Epoch, Resume};
use crate::error::{ErrorCode, Refusal};
use crate::index::RoomMeta;
use crate::protocol::decode::RoomOptions;
use crate::protocol::encode::{self, MemberEntry, PresenceKind};
use crate::router::{ApiOp, ClusterEvent, Delivery, Origin, Request};
use crate::server::SYSTEM_USER;
use crate::ws::encode::text_payload;

/// A member connection as its room's home knows it.
struct Member {
    user: Arc<str>,
    name: Option<Arc<str>>,
}

/// A room homed on this shard.
pub struct HomeRoom {
    meta: Arc<RoomMeta>,
    /// This incarnation of the room (single node; in cluster mode the
    /// epoch lives in Redis with the room).
    epoch: Epoch,
    seq: u64,
    /// `(seq, message frame)`, oldest first, at most `history_len`.
    history: VecDeque<(u64, Bytes)>,
    history_len: usize,
    /// Bytes held by `history`, at most `room.history_max_bytes` (but the
    /// newest message is always kept).
    history_bytes: usize,
    members: HashMap<u64, Member>,
    /// Members per shard: where fan-out must go.
    per_shard: Vec<u32>,
    /// When the room last became empty (auto-created rooms only).
    empty_since: Option<Instant>,
    /// The room has an entry in the shard's expiry heap (at most one, so
    /// join/leave churn cannot grow the heap).
    expiry_scheduled: bool,
}

impl HomeRoom {
    fn new(meta: Arc<RoomMeta>, history_len: usize, shards: usize) -> Self {
        HomeRoom {
            meta,
            epoch: Epoch::new(),
            seq: 0,
            history: VecDeque::new(),
            history_len,
            history_bytes: 0,
            members: HashMap::new(),
            per_shard: vec![0; shards],
            empty_since: None,
            expiry_scheduled: false,
        }
    }

    /// Push a frame to every shard with members.
    fn fan_out(
        &self,
        seq: u64,
        frame: &Bytes,
        exclude: Option<u64>,
        out: &mut Vec<(usize, Delivery)>,
        room: &Arc<str>,
    ) {
        let stamp_us = if seq > 0 { crate::metrics::now_us() } else { 0 };
        self.fan_out_stamped(seq, frame, exclude, stamp_us, out, room);
    }

    /// [`HomeRoom::fan_out`] with the time the message was sequenced.
    fn fan_out_stamped(
        &self,
        seq: u64,
        frame: &Bytes,
        exclude: Option<u64>,
        stamp_us: u64,
        out: &mut Vec<(usize, Delivery)>,
        room: &Arc<str>,
    ) {
        for (shard, &count) in self.per_shard.iter().enumerate() {
            if count > 0 {
                out.push((
                    shard,
                    Delivery::Room {
                        room: room.clone(),
                        seq,
                        frame: frame.clone(),
                        exclude,
                        stamp_us,
                    },
                ));
            }
        }
    }

    /// History after `since` (or the last `on_join` messages), and whether
    /// it is complete. A `since` of another epoch gets the last `on_join`
    /// messages and `recovered: false`.
    fn history_for(&self, resume: Resume, on_join: usize) -> (Vec<Bytes>, Option<bool>) {
        match resume {
            Resume::After(since) => {
                let messages: Vec<Bytes> = self
                    .history
                    .iter()
                    .filter(|(seq, _)| *seq > since)
                    .map(|(_, f)| text_payload(f))
                    .collect();
                let oldest = self
                    .history
                    .front()
                    .map(|(s, _)| *s)
                    .unwrap_or(self.seq + 1);
                let recovered = since <= self.seq && (since == self.seq || oldest <= since + 1);
                (messages, Some(recovered))
            }
            Resume::Fresh | Resume::Stale => {
                let skip = self.history.len().saturating_sub(on_join);
                let messages = self
                    .history
                    .iter()
                    .skip(skip)
                    .map(|(_, f)| text_payload(f))
                    .collect();
                (messages, (resume == Resume::Stale).then_some(false))
            }
        }
    }
}

fn refuse(
    counters: &crate::metrics::ShardCounters,
    origin: &Origin,
    shards: usize,
    refusal: Refusal,
    out: &mut Vec<(usize, Delivery)>,
) {
    counters.error_out(refusal.code);
    let frame = encode::error(origin.id, refusal.code, &refusal.message);
    out.push((
        (origin.conn % shards as u64) as usize,
        Delivery::ToConn {
            conn: origin.conn,
            frame,
        },
    ));
}

fn not_found(room: &str) -> Refusal {
    Refusal::new(
        ErrorCode::RoomNotFound,
        format!("room {room} does not exist"),
    )
}

impl Shard {
    /// Run one request against the rooms homed here; the frames it causes
    /// go to `out` as `(shard, delivery)`, in the order they must be sent.
    pub(crate) fn handle_request(&self, request: Request, out: &mut Vec<(usize, Delivery)>) {
        match request {
            Request::Join {
                origin,
                user,
                name,
                room,
                since,
                epoch,
                create,
                may_create,
                may_join_private,
            } => {
                let member = Member { user, name };
                let args = JoinArgs {
                    since,
                    epoch,
                    create,
                    may_create,
                    may_join_private,
                };
                if let Err(refusal) = self.home_join(&origin, member, &room, args, out) {
                    self.counters.error_out(refusal.code);
                    let frame = encode::error(origin.id, refusal.code, &refusal.message);
                    out.push((
                        self.shard_of(origin.conn),
                        Delivery::JoinRefused {
                            conn: origin.conn,
                            room,
                            reply: frame,
                        },
                    ));
                }
            }
            Request::Leave { origin, room } => self.home_leave(&origin, &room, out),
            Request::Create {
                origin,
                room,
                options,
            } => match self.create_room(&room, &options, true) {
                Ok(()) => {
                    if let Some(id) = origin.id {
                        out.push((
                            self.shard_of(origin.conn),
                            Delivery::ToConn {
                                conn: origin.conn,
                                frame: encode::ack_room(id, &room),
                            },
                        ));
                    }
                }
                Err(refusal) => refuse(&self.counters, &origin, self.shared.shards(), refusal, out),
            },
            Request::Publish {
                origin,
                from,
                room,
                data,
                exclude_self,
            } => match self.publish(&room, origin.conn, &from, &data, exclude_self, out) {
                Ok(seq) => {
                    if let Some(id) = origin.id {
                        out.push((
                            self.shard_of(origin.conn),
                            Delivery::ToConn {
                                conn: origin.conn,
                                frame: encode::ack_publish(id, &room, seq),
                            },
                        ));
                    }
                }
                Err(refusal) => refuse(&self.counters, &origin, self.shared.shards(), refusal, out),
            },
            Request::Api { room, op } => self.home_api(room, op, out),
            Request::Cluster(event) => self.cluster_event(event, out),
            Request::Members { origin, room } => {
                let reply = self.members(&origin, &room);
                match reply {
                    Ok(Some(frame)) => out.push((
                        self.shard_of(origin.conn),
                        Delivery::ToConn {
                            conn: origin.conn,
                            frame,
                        },
                    )),
                    Ok(None) => {}
                    Err(refusal) => {
                        refuse(&self.counters, &origin, self.shared.shards(), refusal, out)
                    }
                }
            }
        }
    }

    /// Create `room` here. `explicit` rooms live until deleted; others
    /// expire `room.empty_ttl_ms` after their last member leaves.
    fn create_room(
        &self,
        room: &Arc<str>,
        options: &RoomOptions,
        explicit: bool,
    ) -> Result<(), Refusal> {
        let mut homes = self.homes.borrow_mut();
        if homes.contains_key(room) {
            return Err(Refusal::new(
                ErrorCode::RoomExists,
                format!("room {room} already exists"),
            ));
        }
        let cfg = &self.shared.config;
        let meta = Arc::new(RoomMeta {
            home: self.index,
            private: options.private,
            max_members: options.max_members.unwrap_or(cfg.room.default_max_members),
            overflow: options.overflow.unwrap_or(cfg.limits.slow_consumer_policy),
            explicit,
            members: AtomicU32::new(0),
            seq: AtomicU64::new(0),
        });
        self.shared.rooms.insert(room.clone(), meta.clone())?;
        let history_len = options.history.unwrap_or(cfg.room.history);
        let mut home = HomeRoom::new(meta, history_len, self.shared.shards());
        if !explicit {
            // Until its first member arrives it is as good as empty.
            home.empty_since = Some(Instant::now());
            self.schedule_expiry(room, &mut home);
        }
        homes.insert(room.clone(), home);
        Ok(())
    }

    fn home_join(
        &self,
        origin: &Origin,
        member: Member,
        room: &Arc<str>,
        args: JoinArgs,
        out: &mut Vec<(usize, Delivery)>,
    ) -> Result<(), Refusal> {
        let cfg = &self.shared.config;
        if !self.homes.borrow().contains_key(room) {
            if !args.create || !cfg.room.auto_create {
                return Err(not_found(room));
            }
            if !args.may_create {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!(
                        "room {room} does not exist and this connection lacks the `create` right"
                    ),
                ));
            }
            self.create_room(room, &RoomOptions::default(), false)?;
        }
        let mut homes = self.homes.borrow_mut();
        let Some(home) = homes.get_mut(room) else {
            return Err(not_found(room));
        };
        if home.meta.private && !args.may_join_private {
            return Err(super::conn::private_room_refusal(room));
        }
        let origin_shard = self.shard_of(origin.conn);
        let rejoin = home.members.contains_key(&origin.conn);
        if !rejoin {
            if home.members.len() >= home.meta.max_members as usize {
                return Err(Refusal::new(
                    ErrorCode::RoomFull,
                    format!("room {room} is full ({} members)", home.meta.max_members),
                ));
            }
            home.per_shard[origin_shard] += 1;
            home.empty_since = None;
        }
        let (user, name) = (member.user.clone(), member.name.clone());
        if !rejoin {
            home.members.insert(origin.conn, member);
            home.meta
                .members
                .store(home.members.len() as u32, Ordering::Relaxed);
        }
        let count = home.members.len() as u32;
        let reply = origin.id.map(|id| {
            let resume =
                crate::epoch::resume(args.since, args.epoch.as_deref(), home.epoch.as_str());
            let (history, recovered) = home.history_for(resume, cfg.room.history_on_join);
            encode::ack_join(
                id,
                room,
                home.seq,
                home.epoch.as_str(),
                count,
                history.iter().map(|b| &b[..]),
                recovered,
            )
        });
        out.push((
            origin_shard,
            Delivery::Joined {
                conn: origin.conn,
                room: room.clone(),
                overflow: home.meta.overflow,
                reply,
            },
        ));
        if !rejoin && cfg.room.presence_events {
            let frame = encode::presence(PresenceKind::Joined, room, &user, name.as_deref(), count);
            home.fan_out(0, &frame, Some(origin.conn), out, room);
        }
        Ok(())
    }

    fn home_leave(&self, origin: &Origin, room: &Arc<str>, out: &mut Vec<(usize, Delivery)>) {
        let origin_shard = self.shard_of(origin.conn);
        let mut homes = self.homes.borrow_mut();
        let Some(home) = homes.get_mut(room) else {
            refuse(
                &self.counters,
                origin,
                self.shared.shards(),
                not_found(room),
                out,
            );
            return;
        };
        let Some(member) = home.members.remove(&origin.conn) else {
            refuse(
                &self.counters,
                origin,
                self.shared.shards(),
                Refusal::new(ErrorCode::NotMember, format!("not a member of room {room}")),
                out,
            );
            return;
        };
        home.per_shard[origin_shard] = home.per_shard[origin_shard].saturating_sub(1);
        let count = home.members.len() as u32;
        home.meta.members.store(count, Ordering::Relaxed);
        out.push((
            origin_shard,
            Delivery::Left {
                conn: origin.conn,
                room: room.clone(),
                reply: origin.id.map(|id| encode::ack_room(id, room)),
            },
        ));
        if self.shared.config.room.presence_events && count > 0 {
            let frame = encode::presence(
                PresenceKind::Left,
                room,
                &member.user,
                member.name.as_deref(),
                count,
            );
            home.fan_out(0, &frame, Some(origin.conn), out, room);
        }
        if count == 0 && !home.meta.explicit {
            home.empty_since = Some(Instant::now());
            self.schedule_expiry(room, home);
        }
    }

    fn publish(
        &self,
        room: &Arc<str>,
        conn: u64,
        from: &str,
        data: &[u8],
        exclude_self: bool,
        out: &mut Vec<(usize, Delivery)>,
    ) -> Result<u64, Refusal> {
        // The origin forwards a publish also while a join is in flight, so
        // frames take effect in the order the client sent them: the home,
        // which saw that join first, decides.
        let member = self
            .homes
            .borrow()
            .get(room)
            .map(|h| h.members.contains_key(&conn));
        match member {
            None => Err(not_found(room)),
            Some(false) => Err(Refusal::new(
                ErrorCode::NotMember,
                format!("not a member of room {room}"),
            )),
            Some(true) => self.sequence(room, from, data, exclude_self.then_some(conn), out),
        }
    }

    /// Give the next seq to a message, encode it once, keep it in history
    /// and fan it out.
    fn sequence(
        &self,
        room: &Arc<str>,
        from: &str,
        data: &[u8],
        exclude: Option<u64>,
        out: &mut Vec<(usize, Delivery)>,
    ) -> Result<u64, Refusal> {
        if self.is_sealed() {
            // Draining: its fan-out could reach members already closed.
            return Err(Refusal::new(
                ErrorCode::Internal,
                "the server is shutting down; the message was not published",
            ));
        }
        let mut homes = self.homes.borrow_mut();
        let Some(home) = homes.get_mut(room) else {
            return Err(not_found(room));
        };
        home.seq += 1;
        let seq = home.seq;
        let frame = encode::message(room, seq, from, encode::now_ms(), data);
        if home.history_len > 0 {
            home.history_bytes += frame.len();
            home.history.push_back((seq, frame.clone()));
            let max_bytes = self.shared.config.room.history_max_bytes;
            while home.history.len() > home.history_len
                || (home.history_bytes > max_bytes && home.history.len() > 1)
            {
                if let Some((_, old)) = home.history.pop_front() {
                    home.history_bytes -= old.len();
                }
            }
        }
        home.meta.seq.store(seq, Ordering::Relaxed);
        home.fan_out(seq, &frame, exclude, out, room);
        self.counters
            .published
            .set(self.counters.published.get() + 1);
        Ok(seq)
    }

    /// An HTTP API operation on a room homed here.
    fn home_api(&self, room: Arc<str>, op: ApiOp, out: &mut Vec<(usize, Delivery)>) {
        match op {
            ApiOp::Create { options, reply } => {
                let _ = reply.send(self.create_room(&room, &options, true));
            }
            ApiOp::Delete { reply } => {
                let _ = reply.send(if self.close_room(&room, out) {
                    Ok(())
                } else {
                    Err(not_found(&room))
                });
            }
            ApiOp::Publish { data, reply } => {
                let _ = reply.send(self.sequence(&room, SYSTEM_USER, &data, None, out));
            }
            ApiOp::Details { reply } => {
                let homes = self.homes.borrow();
                let result = match homes.get(&room) {
                    None => Err(not_found(&room)),
                    Some(home) => {
                        let max = self.shared.config.limits.max_presence_list;
                        let members: Vec<serde_json::Value> = home
                            .members
                            .iter()
                            .take(max)
                            .map(|(conn, m)| {
                                serde_json::json!({"conn": conn, "user": &*m.user, "name": m.name.as_deref()})
                            })
                            .collect();
                        Ok(serde_json::json!({
                            "room": &*room,
                            "members": home.members.len(),
                            "seq": home.seq,
                            "epoch": home.epoch.as_str(),
                            "private": home.meta.private,
                            "max_members": home.meta.max_members,
                            "overflow": home.meta.overflow.as_str(),
                            "explicit": home.meta.explicit,
                            "history": home.history.len(),
                            "home_shard": self.index,
                            "member_list": members,
                        }))
                    }
                };
                let _ = reply.send(result);
            }
        }
    }

    fn members(&self, origin: &Origin, room: &str) -> Result<Option<Bytes>, Refusal> {
        let homes = self.homes.borrow();
        let Some(home) = homes.get(room) else {
            return Err(not_found(room));
        };
        if home.meta.private && !home.members.contains_key(&origin.conn) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("room {room} is private: only its members may list them"),
            ));
        }
        let Some(id) = origin.id else {
            return Ok(None);
        };
        let max = self.shared.config.limits.max_presence_list;
        let entries = home.members.iter().take(max).map(|(conn, m)| MemberEntry {
            conn: *conn,
            user: &m.user,
            name: m.name.as_deref(),
        });
        Ok(Some(encode::ack_members(
            id,
            room,
            entries,
            home.members.len(),
        )))
    }

    /// Cluster mode: apply the backplane's news about a room with members
    /// on this node. The backplane sends them in the room's order; this
    /// shard keeps only which local connections are members, on which
    /// shard (the room itself, its seq and history live in Redis).
    fn cluster_event(&self, event: ClusterEvent, out: &mut Vec<(usize, Delivery)>) {
        match event {
            ClusterEvent::Message {
                room,
                seq,
                frame,
                skip,
                stamp_us,
            } => {
                let homes = self.homes.borrow();
                if let Some(home) = homes.get(&room) {
                    home.meta.seq.store(seq, Ordering::Relaxed);
                    home.fan_out_stamped(seq, &frame, skip, stamp_us, out, &room);
                }
            }
            ClusterEvent::Gap { room, from, to } => {
                let homes = self.homes.borrow();
                if let Some(home) = homes.get(&room) {
                    let frame = encode::gap(&room, from, to);
                    home.fan_out(0, &frame, None, out, &room);
                }
            }
            ClusterEvent::Admit {
                room,
                conn,
                user,
                name,
                facts,
                reply,
                catchup,
            } => {
                let mut homes = self.homes.borrow_mut();
                let home = homes.entry(room.clone()).or_insert_with(|| {
                    let meta = Arc::new(RoomMeta {
                        home: self.index,
                        private: facts.private,
                        max_members: facts.max_members,
                        overflow: facts.overflow,
                        explicit: facts.explicit,
                        members: AtomicU32::new(0),
                        seq: AtomicU64::new(0),
                    });
                    // The index lists the rooms with members here (for
                    // /api/rooms and /metrics); its room cap does not apply
                    // to a room that Redis admitted already.
                    let _ = self.shared.rooms.insert(room.clone(), meta.clone());
                    HomeRoom::new(meta, 0, self.shared.shards())
                });
                let shard = self.shard_of(conn);
                if let std::collections::hash_map::Entry::Vacant(slot) = home.members.entry(conn) {
                    slot.insert(Member { user, name });
                    home.per_shard[shard] += 1;
                    home.meta
                        .members
                        .store(home.members.len() as u32, Ordering::Relaxed);
                }
                out.push((
                    shard,
                    Delivery::Joined {
                        conn,
                        room,
                        overflow: home.meta.overflow,
                        reply,
                    },
                ));
                for frame in catchup {
                    out.push((shard, Delivery::ToConn { conn, frame }));
                }
            }
            ClusterEvent::Removed { room, conn, reply } => {
                let shard = self.shard_of(conn);
                let mut homes = self.homes.borrow_mut();
                if let Some(home) = homes.get_mut(&room) {
                    if home.members.remove(&conn).is_some() {
                        home.per_shard[shard] = home.per_shard[shard].saturating_sub(1);
                        home.meta
                            .members
                            .store(home.members.len() as u32, Ordering::Relaxed);
                    }
                    if home.members.is_empty() {
                        homes.remove(&room);
                        self.shared.rooms.remove(&room);
                    }
                }
                out.push((shard, Delivery::Left { conn, room, reply }));
            }
            ClusterEvent::Presence { room, frame, skip } => {
                let homes = self.homes.borrow();
                if let Some(home) = homes.get(&room) {
                    home.fan_out(0, &frame, skip, out, &room);
                }
            }
            ClusterEvent::Sealed => {
                if !self.is_sealed() {
                    self.sealed.set(true);
                    for shard in 0..self.shared.shards() {
                        out.push((shard, Delivery::HomeSealed));
                    }
                }
            }
            ClusterEvent::Closed { room } => {
                self.close_room(&room, out);
            }
        }
    }

    /// Remove `room` homed here (deleted): its members on every shard get
    /// `room_closed`. False if there was no such room.
    fn close_room(&self, room: &Arc<str>, out: &mut Vec<(usize, Delivery)>) -> bool {
        let Some(home) = self.homes.borrow_mut().remove(room) else {
            return false;
        };
        self.shared.rooms.remove(room);
        let frame = encode::room_closed(room, "deleted");
        for (shard, &count) in home.per_shard.iter().enumerate() {
            if count > 0 {
                let closed = Delivery::RoomClosed {
                    room: room.clone(),
                    frame: frame.clone(),
                };
                out.push((shard, closed));
            }
        }
        true
    }

    /// Make sure `room` has one entry in the expiry heap.
    fn schedule_expiry(&self, room: &Arc<str>, home: &mut HomeRoom) {
        if home.expiry_scheduled {
            return;
        }
        let ttl = std::time::Duration::from_millis(self.shared.config.room.empty_ttl_ms);
        let since = home.empty_since.unwrap_or_else(Instant::now);
        home.expiry_scheduled = true;
        self.expiring
            .borrow_mut()
            .push(Reverse((since + ttl, room.clone())));
    }

    /// Remove auto-created rooms empty for at least `room.empty_ttl_ms`.
    pub(crate) fn expire_rooms(&self, now: Instant) {
        let ttl = std::time::Duration::from_millis(self.shared.config.room.empty_ttl_ms);
        loop {
            let room = {
                let mut expiring = self.expiring.borrow_mut();
                match expiring.peek() {
                    Some(Reverse((at, _))) if *at <= now => expiring.pop().map(|Reverse((_, r))| r),
                    _ => None,
                }
            };
            let Some(room) = room else {
                return;
            };
            let mut homes = self.homes.borrow_mut();
            let Some(home) = homes.get_mut(&room) else {
                continue;
            };
            home.expiry_scheduled = false;
            if !home.members.is_empty() || home.meta.explicit {
                continue;
            }
            match home.empty_since {
                Some(since) if since + ttl <= now => {
                    homes.remove(&room);
                    self.shared.rooms.remove(&room);
                }
                // Emptied again since it was scheduled: wait its full ttl.
                Some(_) => self.schedule_expiry(&room, home),
                None => {}
            }
        }
    }
}

/// The parts of a join request that steer admission.
struct JoinArgs {
    since: Option<u64>,
    /// The epoch the client's `since` belongs to (v1.1).
    epoch: Option<Arc<str>>,
    create: bool,
    may_create: bool,
    may_join_private: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OverflowPolicy;

    fn room_with_history(seqs: impl IntoIterator<Item = u64>, last: u64) -> HomeRoom {
        let meta = Arc::new(RoomMeta {
            home: 0,
            private: false,
            max_members: 10,
            overflow: OverflowPolicy::Disconnect,
            explicit: true,
            members: AtomicU32::new(0),
            seq: AtomicU64::new(last),
        });
        let mut home = HomeRoom::new(meta, 100, 1);
        home.seq = last;
        for s in seqs {
            home.history
                .push_back((s, encode::message("r", s, "u", 0, b"1")));
        }
        home
    }

    #[test]
    fn recovery_is_exact() {
        let home = room_with_history(5..=10, 10);
        let after = |since| home.history_for(Resume::After(since), 100);
        let (h, r) = after(4);
        assert_eq!((h.len(), r), (6, Some(true)));
        let (h, r) = after(3);
        assert_eq!((h.len(), r), (6, Some(false)));
        let (h, r) = after(10);
        assert_eq!((h.len(), r), (0, Some(true)));
        let (h, r) = after(11);
        assert_eq!((h.len(), r), (0, Some(false)));
        let (h, r) = home.history_for(Resume::Fresh, 2);
        assert_eq!((h.len(), r), (2, None));
        let empty = room_with_history(std::iter::empty(), 0);
        assert_eq!(
            empty.history_for(Resume::After(0), 100),
            (vec![], Some(true))
        );
    }

    #[test]
    fn a_since_of_another_epoch_is_never_recovered() {
        let home = room_with_history(1..=10, 10);
        let current = home.epoch.as_str();
        let stale = crate::epoch::resume(Some(10), Some("0123456789abcdef"), current);
        assert_eq!(stale, Resume::Stale);
        // Like a join without since (the last on_join messages), but said
        // to be unrecovered, even where the v1 rule would hold.
        let (h, r) = home.history_for(stale, 3);
        assert_eq!((h.len(), r), (3, Some(false)));
        let first = String::from_utf8_lossy(&h[0]).to_string();
        assert!(first.contains("\"seq\":8,"), "{first}");
        let same = crate::epoch::resume(Some(8), Some(current), current);
        assert_eq!(home.history_for(same, 3).1, Some(true));
        // Without an epoch, since keeps its v1 meaning.
        let v1 = crate::epoch::resume(Some(8), None, current);
        assert_eq!(home.history_for(v1, 3).1, Some(true));
        // Every incarnation has its own epoch.
        assert_ne!(home.epoch, room_with_history(1..=10, 10).epoch);
    }
}
