//! The subscriber side: which channels this node hears, and what arrives
//! on them.
//!
//! Subscribe and unsubscribe commands are written at once; a room counts
//! as heard ([`Sub::On`]) only when the confirmation of its latest
//! subscribe comes back, in the same stream as its messages, so a join
//! released then runs in Redis after the node hears the room.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backplane, Drain, Sub};
use crate::cluster::scripts;
use crate::cluster::subscriber::{self, SubEvent, SubReceiver, Subscriber};
use crate::cluster::wire::{self, Event};
use crate::protocol::encode::{self, PresenceKind};
use crate::router::{ClusterEvent, Delivery};
use crate::ws::encode::data_frame;

impl Backplane {
    /// Subscribe (or unsubscribe) `channels` now, if the subscriber
    /// connection is up; a reconnect subscribes everything still wanted.
    pub(super) async fn change_subscription(&mut self, subscribe: bool, channels: Vec<String>) {
        let Some(sub) = self.sub.as_mut() else {
            return;
        };
        if subscribe {
            for c in &channels {
                *self.pending_subs.entry(c.clone()).or_insert(0) += 1;
            }
        }
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        let written = if subscribe {
            tokio::time::timeout(timeout, sub.subscribe(&channels)).await
        } else {
            tokio::time::timeout(timeout, sub.unsubscribe(&channels)).await
        };
        if !matches!(written, Ok(Ok(()))) {
            // Handled by the loop (`pubsub_lost` may call back here).
            self.sub = None;
            self.sub_failed = Some("cannot write to the subscriber connection".into());
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
                self.pubsub_lost("no answer to PING on the subscriber connection")
                    .await;
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
                    self.pubsub_lost("cannot write to the subscriber connection")
                        .await;
                }
            }
        }
    }

    pub(super) async fn on_sub_event(&mut self, event: Option<SubEvent>) {
        match event {
            Some(SubEvent::Message { channel, payload }) => {
                self.on_message(&channel, &payload).await
            }
            Some(SubEvent::Subscribed(channel)) => self.subscribed(channel).await,
            Some(SubEvent::Unsubscribed(_)) => {}
            Some(SubEvent::Pong) => {
                self.ping_sent = None;
                if self.drain == Some(Drain::Unsubscribing) {
                    // Every message published before the unsubscribe came
                    // before this answer.
                    self.drain = Some(Drain::Heard);
                }
            }
            Some(SubEvent::Lost(reason)) => self.pubsub_lost(&reason).await,
            None => self.pubsub_lost("the subscriber connection ended").await,
        }
    }

    async fn subscribed(&mut self, channel: String) {
        if let Entry::Occupied(mut pending) = self.pending_subs.entry(channel.clone()) {
            *pending.get_mut() -= 1;
            if *pending.get() > 0 {
                return; // a later subscribe of this channel is still coming
            }
            pending.remove();
        }
        let Some(room) = wire::room_of_channel(&channel) else {
            return;
        };
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.sub = Sub::On;
        let held = std::mem::take(&mut state.held);
        let repair_from = state.node_seq;
        let room: Arc<str> = Arc::from(room);
        if let Some(last) = repair_from {
            // Heard again after a reconnect: fetch what was published meanwhile.
            self.start_repair(&room, last, None);
        }
        for prepared in held {
            self.enqueue(prepared).await;
        }
    }

    /// The subscriber connection is gone: ops waiting for a subscription
    /// fail, and a reconnect is scheduled.
    pub(super) async fn pubsub_lost(&mut self, reason: &str) {
        if self.sub.is_some() {
            tracing::warn!(%reason, "cluster: Redis subscriber connection lost; reconnecting");
        }
        self.sub = None;
        self.events = None;
        self.pending_subs.clear();
        self.ping_sent = None;
        let rooms: Vec<Arc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let held = match self.rooms.get_mut(&room) {
                Some(state) => {
                    state.sub = Sub::Off;
                    state.repair = None;
                    std::mem::take(&mut state.held)
                }
                None => continue,
            };
            for prepared in held {
                self.fail(prepared.then).await;
            }
        }
    }

    pub(super) fn reconnect_pubsub(
        &mut self,
    ) -> super::BoxFuture<Result<(Subscriber, SubReceiver), String>> {
        let wait = Duration::from_millis(self.pubsub_backoff);
        self.pubsub_backoff = (self.pubsub_backoff * 2).min(self.cfg.reconnect_max_backoff_ms);
        let (endpoint, bounds) = (self.endpoint.clone(), self.bounds);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            subscriber::connect(&endpoint, bounds).await
        })
    }

    pub(super) async fn pubsub_back(&mut self, result: Result<(Subscriber, SubReceiver), String>) {
        let (sub, events) = match result {
            Ok(pair) => pair,
            Err(reason) => return tracing::debug!(%reason, "cluster: resubscribe failed"),
        };
        tracing::info!("cluster: Redis subscriber connection back; resubscribing");
        self.sub = Some(sub);
        self.events = Some(events);
        self.pubsub_backoff = super::FIRST_BACKOFF_MS;
        let mut channels = vec![scripts::ALL_CHANNEL.to_string()];
        channels.extend(self.users.keys().map(|u| scripts::user_channel(u)));
        for (room, state) in &mut self.rooms {
            state.sub = Sub::Pending;
            channels.push(scripts::room_channel(room));
        }
        self.change_subscription(true, channels).await;
    }

    async fn on_message(&mut self, channel: &str, payload: &[u8]) {
        if let Some(room) = wire::room_of_channel(channel) {
            let Some(event) = wire::parse_room(payload) else {
                return tracing::warn!(channel, "cluster: unreadable room event ignored");
            };
            let room: Arc<str> = Arc::from(room);
            self.on_room_event(&room, event).await;
        } else if let Some(user) = wire::user_of_channel(channel) {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let frame = data_frame(true, json);
                    let user: Arc<str> = Arc::from(user);
                    let mut shards = self.shared.users.shards(&user);
                    while shards != 0 {
                        let shard = shards.trailing_zeros() as usize;
                        shards &= shards - 1;
                        let delivery = Delivery::ToUser {
                            user: user.clone(),
                            frame: frame.clone(),
                        };
                        self.deliver(shard, delivery).await;
                    }
                }
            }
        } else if channel == scripts::ALL_CHANNEL {
            if let Some(Event::Frame { node, json }) = wire::parse_frame(payload) {
                if node != &*self.node {
                    let frame = data_frame(true, json);
                    for shard in 0..self.shared.shards() {
                        let delivery = Delivery::All {
                            frame: frame.clone(),
                        };
                        self.deliver(shard, delivery).await;
                    }
                }
            }
        }
    }
    async fn on_room_event(&mut self, room: &Arc<str>, event: Event<'_>) {
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
                let skip = (node == &*self.node && skip != 0).then_some(skip);
                self.on_room_message(room, seq, data_frame(true, json), skip)
                    .await;
            }
            Event::Presence {
                joined,
                node,
                conn,
                count,
                user,
                name,
            } => {
                if !self.shared.config.room.presence_events || (!joined && count == 0) {
                    return;
                }
                let kind = if joined {
                    PresenceKind::Joined
                } else {
                    PresenceKind::Left
                };
                let frame = encode::presence(kind, room, user, name, count);
                let skip = (node == &*self.node).then_some(conn);
                let event = ClusterEvent::Presence {
                    room: room.clone(),
                    frame,
                    skip,
                };
                self.to_home(room, event).await;
            }
            Event::Closed => {
                let stashed = match self.rooms.get_mut(room) {
                    Some(state) => std::mem::take(&mut state.stash),
                    None => Vec::new(),
                };
                for admission in stashed {
                    self.admit(room, admission).await;
                }
                self.to_home(room, ClusterEvent::Closed { room: room.clone() })
                    .await;
                if let Some(state) = self.rooms.get_mut(room) {
                    state.members.clear();
                    state.node_seq = None;
                    state.recent.clear();
                    state.recent_bytes = 0;
                }
                self.release_if_idle(room).await;
            }
            Event::Frame { .. } => {}
        }
    }
}
