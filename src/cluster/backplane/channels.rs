//! The subscriber side: which channels this node hears, and what arrives
//! on them.
//!
//! Subscribe and unsubscribe commands are queued as the loop decides them
//! and written before it waits again; a room counts as heard
//! ([`Sub::On`]) only when the confirmation of its latest subscribe comes
//! back, in the same stream as its messages, so a join released then runs
//! in Redis after the node hears the room.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::rooms::Sub;
use super::{Backplane, Drain, Link};
use crate::cluster::scripts;
use crate::cluster::subscriber::{SubEvent, SubReceiver, Subscriber};
use crate::cluster::wire::{self, Event};
use crate::delivery::{Delivery, PresenceChange, RoomFrame};
use crate::op::{Audience, UserFrame};
use crate::placement::ShardSet;
use crate::protocol::encode::{self, PresenceKind};
use crate::ws::encode::data_frame;

/// What a user channel's frame says: a frame to deliver, or (`!reason`)
/// a close.
fn user_frame(json: &[u8]) -> UserFrame {
    match json.strip_prefix(b"!") {
        Some(reason) => UserFrame::Close(Arc::from(String::from_utf8_lossy(reason).as_ref())),
        None => UserFrame::Frame(data_frame(true, json)),
    }
}

/// The next event of the subscriber connection, if there is one.
pub(super) async fn next_event(events: &mut Option<SubReceiver>) -> Option<SubEvent> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

impl Backplane {
    /// Subscribe (or unsubscribe) `channels` when the loop next writes, if
    /// the subscriber connection is up; a reconnect subscribes everything
    /// still wanted.
    pub(super) fn change_subscription(&mut self, subscribe: bool, channels: Vec<String>) {
        if self.sub.is_none() {
            return;
        }
        if subscribe {
            for c in &channels {
                *self.pending_subs.entry(c.clone()).or_insert(0) += 1;
            }
        }
        self.sub_changes.push((subscribe, channels));
    }

    /// Write the queued subscription changes, in order.
    pub(super) async fn write_sub_changes(&mut self) {
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        for (subscribe, channels) in std::mem::take(&mut self.sub_changes) {
            let Some(sub) = self.sub.as_mut() else {
                return;
            };
            let written = if subscribe {
                tokio::time::timeout(timeout, sub.subscribe(&channels)).await
            } else {
                tokio::time::timeout(timeout, sub.unsubscribe(&channels)).await
            };
            if !matches!(written, Ok(Ok(()))) {
                // Handled by the loop.
                self.sub_failed = Some("cannot write to the subscriber connection".into());
                return;
            }
        }
    }

    /// A liveness check of the subscriber connection, each heartbeat: a
    /// `PING` not answered within `cluster.command_timeout_ms` (also when
    /// this node is too far behind to read the answer) drops it.
    pub(super) async fn check_subscriber(&mut self) {
        if self.sub.is_none() {
            return;
        }
        let limit = Duration::from_millis(self.cfg.command_timeout_ms);
        match self.ping_sent {
            Some(at) if at.elapsed() > limit => {
                self.pubsub_lost("no answer to PING on the subscriber connection");
            }
            Some(_) => {}
            None => {
                self.ping_sent = Some(Instant::now());
                let ok = match self.sub.as_mut() {
                    Some(sub) => {
                        matches!(tokio::time::timeout(limit, sub.ping()).await, Ok(Ok(())))
                    }
                    None => false,
                };
                if !ok {
                    self.pubsub_lost("cannot write to the subscriber connection");
                }
            }
        }
    }

    pub(super) fn on_sub_event(&mut self, event: Option<SubEvent>) {
        match event {
            Some(SubEvent::Message { channel, payload }) => self.on_message(&channel, &payload),
            Some(SubEvent::Subscribed(channel)) => self.subscribed(channel),
            Some(SubEvent::Unsubscribed(_)) => {}
            Some(SubEvent::Pong) => {
                self.ping_sent = None;
                if self.drain == Some(Drain::Unsubscribing) {
                    // Every message published before the unsubscribe came
                    // before this answer.
                    self.drain = Some(Drain::Heard);
                }
            }
            Some(SubEvent::Lost(reason)) => self.pubsub_lost(&reason),
            None => self.pubsub_lost("the subscriber connection ended"),
        }
    }

    /// Tell `heard` once `channel` is heard: now if no subscribe of it is
    /// awaiting confirmation, else when the confirmation comes. Dropped
    /// (the waiting connection is welcomed anyway) while the subscriber
    /// connection is down or when it is lost.
    pub(super) fn when_heard(&mut self, channel: String, heard: Option<oneshot::Sender<()>>) {
        let Some(heard) = heard else {
            return;
        };
        if self.sub.is_none() {
            return;
        }
        if self.pending_subs.contains_key(&channel) {
            self.heard_waiters.entry(channel).or_default().push(heard);
        } else {
            let _ = heard.send(());
        }
    }

    fn subscribed(&mut self, channel: String) {
        if let Entry::Occupied(mut pending) = self.pending_subs.entry(channel.clone()) {
            *pending.get_mut() -= 1;
            if *pending.get() > 0 {
                return; // a later subscribe of this channel is still coming
            }
            pending.remove();
        }
        for heard in self.heard_waiters.remove(&channel).unwrap_or_default() {
            let _ = heard.send(());
        }
        let Some(room) = wire::room_of_channel(&channel) else {
            return;
        };
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.sub = Sub::On;
        state.pending_since = None;
        let held = std::mem::take(&mut state.held);
        let mut steps = Vec::new();
        // Heard again after a reconnect: fetch what was published meanwhile
        // (when the command connection is back, if it is not yet).
        let ids = self.cmd.is_some().then_some(&mut self.repair_ids);
        state.order.heard_again(ids, &mut steps);
        let room: Arc<str> = Arc::from(room);
        self.carry_out(&room, steps);
        for prepared in held {
            self.enqueue(prepared);
        }
    }

    /// The subscriber connection is gone: ops waiting for a subscription
    /// fail, and a reconnect is scheduled.
    pub(super) fn pubsub_lost(&mut self, reason: &str) {
        if self.sub.is_some() {
            tracing::warn!(%reason, "cluster: Redis subscriber connection lost; reconnecting");
            self.connection_changed(Link::Subscriber, false);
        }
        self.sub = None;
        self.events = None;
        self.pending_subs.clear();
        self.heard_waiters.clear();
        self.sub_changes.clear();
        self.ping_sent = None;
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let held = match self.rooms.get_mut(&room) {
                Some(state) => {
                    state.sub = Sub::Off;
                    state.pending_since = None;
                    state.order.unheard();
                    std::mem::take(&mut state.held)
                }
                None => continue,
            };
            for prepared in held {
                self.fail(prepared.then);
            }
        }
    }

    pub(super) fn reconnect_pubsub(
        &mut self,
    ) -> super::BoxFuture<Result<(Subscriber, SubReceiver), String>> {
        let wait = Duration::from_millis(self.pubsub_backoff);
        self.pubsub_backoff = (self.pubsub_backoff * 2).min(self.cfg.reconnect_max_backoff_ms);
        let target = self.target.clone();
        let setup = super::connect::SubscriberSetup {
            name: self.sub_name.clone(),
            bounds: self.bounds,
        };
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            super::connect::connect_subscriber(&target, &setup).await
        })
    }

    pub(super) fn pubsub_back(&mut self, result: Result<(Subscriber, SubReceiver), String>) {
        let (sub, events) = match result {
            Ok(pair) => pair,
            Err(reason) => return tracing::debug!(%reason, "cluster: resubscribe failed"),
        };
        tracing::info!("cluster: Redis subscriber connection back; resubscribing");
        self.connection_changed(Link::Subscriber, true);
        self.sub = Some(sub);
        self.events = Some(events);
        self.pubsub_backoff = super::FIRST_BACKOFF_MS;
        let mut channels = vec![scripts::ALL_CHANNEL.to_string()];
        channels.extend(self.users.keys().map(|u| scripts::user_channel(u)));
        let now = Instant::now();
        for (room, state) in &mut self.rooms {
            state.sub = Sub::Pending;
            state.pending_since = Some(now);
            channels.push(scripts::room_channel(room));
        }
        self.change_subscription(true, channels);
    }

    fn on_message(&mut self, channel: &str, payload: &[u8]) {
        if let Some(room) = wire::room_of_channel(channel) {
            let Some(event) = wire::parse_room(payload) else {
                return tracing::warn!(channel, "cluster: unreadable room event ignored");
            };
            let room: Arc<str> = Arc::from(room);
            self.on_room_event(&room, event);
        } else if let Some(user) = wire::user_of_channel(channel) {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let user: Arc<str> = Arc::from(user);
                    let shards = ShardSet::from_bits(self.shared.users.shards(&user));
                    self.relay_to_users(shards, Audience::User(user), user_frame(json));
                }
            }
        } else if channel == scripts::ALL_CHANNEL {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let shards = ShardSet::all(self.shared.shards());
                    self.relay_to_users(shards, Audience::All, user_frame(json));
                }
            }
        }
    }

    /// A frame another node sent to users: for this node's shards holding
    /// them.
    fn relay_to_users(&mut self, shards: ShardSet, audience: Audience, frame: UserFrame) {
        for shard in shards.iter() {
            let delivery = Delivery::ToUsers {
                audience: audience.clone(),
                frame: frame.clone(),
                counted: None,
            };
            self.out.push(shard, delivery);
        }
    }

    fn on_room_event(&mut self, room: &Arc<str>, event: Event<'_>) {
        if !self.rooms.contains_key(room) {
            return; // no interest here (a late message after unsubscribing)
        }
        match event {
            Event::Message {
                seq,
                node,
                skip,
                json,
            } => {
                let here = node == &*self.node || node == wire::ANY_NODE;
                let skip = (here && skip != 0).then_some(skip);
                self.on_room_message(room, seq, data_frame(true, json), skip);
            }
            Event::Presence {
                joined,
                node,
                conn,
                count,
                users: _,
                user_changed,
                user,
                name,
                info,
            } => {
                let namespaces = &self.shared.namespaces;
                let native_events = namespaces.rules(namespaces.find(room)).presence_events;
                let wanted = self.rooms.get(room).is_some_and(|r| r.user_presence);
                if !(native_events || (user_changed && wanted)) || (!joined && count == 0) {
                    return;
                }
                let kind = if joined {
                    PresenceKind::Joined
                } else {
                    PresenceKind::Left
                };
                let native = native_events.then(|| encode::presence(kind, room, user, name, count));
                let change = PresenceChange {
                    joined,
                    user: Arc::from(user),
                    info: info.map(Arc::from),
                    user_changed,
                };
                let frame = RoomFrame::presence(native, change);
                let skip = (node == &*self.node).then_some(conn);
                self.presence(room, &frame, skip);
            }
            Event::Closed => self.room_closed(room),
            Event::Frame { .. } => {}
        }
    }
}
