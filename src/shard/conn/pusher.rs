//! The Pusher Channels protocol's front door on a connection: a client
//! event, decoded and checked (signatures, rights, rates), becomes an
//! [`Op`] for [`Shard::route`], like a native frame; what the back end
//! answers is written as Pusher events.
//!
//! A subscription is a `join` of the channel's room (made on demand); an
//! unsubscribe a `leave`; a `client-*` event a `publish` with the event's
//! name, skipping its sender. Presence channels join with the member's
//! `user_id` and `user_info`, and the back end tells each member shard
//! when a *user* (not a connection) came or went, so
//! `pusher_internal:member_added`/`member_removed` go out once per user.
//!
//! This file holds a Pusher connection's state ([`PusherConn`]), the forms
//! of what it is sent, and [`handle_text`], which reads one event and hands
//! it on; the events that need more than a line live beside it:
//! `pusher/subscribe.rs` (signatures, presence members, the join),
//! `pusher/signin.rs` and `pusher/client_event.rs`.
//!
//! **Invariant:** every refusal reaches the client as `pusher:error` or
//! `pusher:subscription_error` with the protocol's code; nothing here
//! closes a connection for bad input, and nothing one connection sends
//! reaches another except through the route.

mod client_event;
mod signin;
mod subscribe;

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::Conn;
use crate::config::PusherConfig;
use crate::delivery::{JoinAck, RoomFrame};
use crate::error::{ErrorCode, Refusal, close};
use crate::metrics::FRAME_INVALID;
use crate::op::{Op, Origin};
use crate::pusher::App;
use crate::pusher::names::{self, Kind, channel_name};
use crate::pusher::wire::{self, ClientEvent, PresenceMember, WireError, codes};
use crate::ratelimit::TokenBucket;
use crate::shard::{Shard, Waiting};
use client_event::client_event;
use signin::signin;
use subscribe::{Subscription, subscribe};

/// `shardcast_frames_in_total` slots Pusher events are counted in (the
/// native frame of the same meaning).
mod slot {
    pub(super) const SUBSCRIBE: usize = 0; // join
    pub(super) const UNSUBSCRIBE: usize = 1; // leave
    pub(super) const CLIENT_EVENT: usize = 3; // publish
    pub(super) const PING: usize = 7; // ping
    pub(super) const SIGNIN: usize = 8; // refresh
}

/// A Pusher connection's state beside the common one.
pub(crate) struct PusherConn {
    app: Arc<App>,
    socket_id: String,
    /// The presence `user_id` of each presence room subscribed (or being
    /// subscribed): `user_id` of its client events.
    presence: RefCell<HashMap<Arc<str>, Arc<str>>>,
    /// `client-*` events per second.
    client_bucket: RefCell<TokenBucket>,
    /// Ids of subscriptions in flight (their acks become
    /// `subscription_succeeded`).
    next_id: Cell<u64>,
}

impl PusherConn {
    /// The state of connection `conn` of `app`.
    pub(crate) fn new(app: Arc<App>, conn: u64, config: &PusherConfig) -> Self {
        let mut salt = [0u8; 4];
        // Any value will do if the OS has no randomness: it only makes
        // socket ids harder to guess.
        let _ = getrandom::fill(&mut salt);
        let rate = config.client_event_rate_per_sec.max(1);
        PusherConn {
            app,
            socket_id: format!("{conn}.{}", u32::from_le_bytes(salt)),
            presence: RefCell::default(),
            client_bucket: RefCell::new(TokenBucket::new(rate, rate, Instant::now())),
            next_id: Cell::new(1),
        }
    }

    /// `pusher:connection_established`.
    pub(crate) fn established(&self, config: &PusherConfig) -> Bytes {
        wire::connection_established(&self.socket_id, config.activity_timeout_s)
    }

    /// The back end admitted the connection to `room`: what it is told.
    pub(crate) fn joined(
        &self,
        room: &str,
        ack: Option<JoinAck>,
        catchup: Vec<Bytes>,
    ) -> Vec<Bytes> {
        let channel = channel_name(room);
        let mut frames = Vec::with_capacity(1 + catchup.len());
        if let Some(ack) = ack {
            frames.push(match &ack.users {
                Some(users) => {
                    let members = users.iter().map(|u| PresenceMember {
                        user: &u.user,
                        info: u.info.as_deref(),
                    });
                    wire::presence_subscribed(channel, members, ack.user_count as usize)
                }
                None => wire::subscribed(channel),
            });
        }
        frames.extend(catchup.iter().filter_map(|f| wire::from_native(channel, f)));
        frames
    }

    /// The back end refused the subscription of `room`.
    pub(crate) fn subscription_refused(&self, room: &str, refusal: &Refusal) -> Bytes {
        self.presence.borrow_mut().remove(room);
        wire::subscription_error(
            channel_name(room),
            "SubscriptionError",
            &refusal.message,
            refusal.code.http_status(),
        )
    }

    /// The connection left `room`.
    pub(crate) fn left(&self, room: &str) {
        self.presence.borrow_mut().remove(room);
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }
}

/// The Pusher form of a room frame of `room`: a message or `gap` from its
/// native form; a presence change as `member_added`/`member_removed` when
/// it changed a presence channel's users; nothing else.
pub(crate) fn room_form(room: &str, frame: &RoomFrame) -> Option<Bytes> {
    let channel = channel_name(room);
    match frame.change() {
        Some(change) => {
            if Kind::of(channel) != Kind::Presence || !change.user_changed {
                return None;
            }
            Some(if change.joined {
                wire::member_added(channel, &change.user, change.info.as_deref())
            } else {
                wire::member_removed(channel, &change.user)
            })
        }
        None => wire::from_native(channel, frame.native_frame()?),
    }
}

/// A `gap` of `room` for a Pusher connection.
pub(crate) fn gap_frame(room: &str, from: u64, to: u64) -> Bytes {
    wire::gap(channel_name(room), from, to)
}

/// The Pusher close code standing for a native one: the 4000-4299 ranges
/// tell pusher-js whether and how to reconnect.
pub(crate) fn close_code(native: u16) -> u16 {
    match native {
        close::SLOW_CONSUMER => codes::SLOW_CONSUMER,
        close::HEARTBEAT_TIMEOUT => codes::PONG_TIMEOUT,
        close::GOING_AWAY => codes::RECONNECT,
        close::POLICY => codes::POLICY,
        other => other,
    }
}

/// `pusher:error` for a refusal.
pub(crate) fn error_frame(refusal: &Refusal) -> Bytes {
    let code = match refusal.code {
        ErrorCode::RateLimited => codes::CLIENT_RATE,
        ErrorCode::PayloadTooLarge => codes::TOO_LARGE,
        _ => codes::GENERIC,
    };
    wire::error(Some(code), &refusal.message)
}

/// Handle one text message of a Pusher connection: answered here, or its
/// op on the way. Returns what the reader must await before its next
/// frame, boxed: a subscribe, a sign-in, or an op that waits for room on
/// its way. Pings and client events that go through (the common frames)
/// allocate no future.
pub(super) fn handle_text<'a>(
    shard: &'a Shard,
    conn: &'a Rc<Conn>,
    payload: Bytes,
) -> Option<Waiting<'a>> {
    let p = conn.pusher()?;
    // The reader validated UTF-8 already.
    let text = simdutf8::basic::from_utf8(&payload).ok()?;
    let max_depth = shard.shared.config.limits.max_json_depth;
    let event = match wire::decode(text, max_depth) {
        Ok(event) => event,
        Err(e) => {
            conn.counters.frame_in(FRAME_INVALID);
            wire_error(conn, &e);
            return None;
        }
    };
    match event {
        ClientEvent::Ping => {
            conn.counters.frame_in(slot::PING);
            conn.reply(wire::pong());
            None
        }
        ClientEvent::Pong => {
            conn.counters.frame_in(slot::PING);
            None
        }
        ClientEvent::Subscribe {
            channel,
            auth,
            channel_data,
        } => {
            conn.counters.frame_in(slot::SUBSCRIBE);
            let channel = channel.into_owned();
            let auth = auth.map(Cow::into_owned);
            let channel_data = channel_data.map(Cow::into_owned);
            Some(Box::pin(async move {
                let asked = Subscription {
                    channel: &channel,
                    auth: auth.as_deref(),
                    channel_data: channel_data.as_deref(),
                };
                if let Err((status, why)) = subscribe(shard, conn, p, asked).await {
                    conn.counters.error_out(ErrorCode::Forbidden);
                    let kind = if status == 401 {
                        "AuthError"
                    } else {
                        "SubscriptionError"
                    };
                    conn.reply(wire::subscription_error(&channel, kind, &why, status));
                }
            }))
        }
        ClientEvent::Unsubscribe { channel } => {
            conn.counters.frame_in(slot::UNSUBSCRIBE);
            // Unsubscribing from a channel one is not in is no error.
            let room = conn.known_room(&names::room_of(&p.app.id, &channel))?;
            let origin = Origin {
                conn: conn.id,
                id: None,
            };
            shard.route_or_wait(Op::Leave { origin, room })
        }
        ClientEvent::Signin { auth, user_data } => {
            conn.counters.frame_in(slot::SIGNIN);
            let (auth, user_data) = (auth.into_owned(), user_data.into_owned());
            Some(Box::pin(async move {
                match signin(shard, conn, p, &auth, &user_data).await {
                    Ok(()) => conn.reply(wire::signin_success(&user_data)),
                    Err(e) => wire_error(conn, &e),
                }
            }))
        }
        ClientEvent::Client {
            event,
            channel,
            data,
        } => {
            conn.counters.frame_in(slot::CLIENT_EVENT);
            let data = match data {
                Some(data) => super::dispatch::slice_of(&payload, text, data),
                None => Bytes::from_static(b"null"),
            };
            match client_event(shard, conn, p, &event, &channel, data) {
                Ok(publish) => shard.route_or_wait(publish),
                Err(e) => {
                    wire_error(conn, &e);
                    None
                }
            }
        }
    }
}

fn wire_error(conn: &Conn, e: &WireError) {
    conn.counters.error_out(ErrorCode::BadRequest);
    conn.reply(wire::error(Some(e.code), &e.message));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::PresenceChange;
    use crate::protocol::encode;

    #[test]
    fn presence_changes_speak_pusher_once_per_user() {
        let change = |user_changed| PresenceChange {
            joined: true,
            user: Arc::from("u1"),
            info: Some(Arc::from(r#"{"n":1}"#)),
            user_changed,
        };
        let native = Some(encode::presence(
            encode::PresenceKind::Joined,
            "#1#presence-a",
            "u1",
            None,
            2,
        ));
        let first = RoomFrame::presence(native.clone(), change(true));
        assert!(room_form("#1#presence-a", &first).is_some());
        let second = RoomFrame::presence(native, change(false));
        assert!(
            room_form("#1#presence-a", &second).is_none(),
            "a second connection of u1"
        );
        assert!(
            room_form("#1#private-a", &first).is_none(),
            "not a presence channel"
        );
    }

    #[test]
    fn close_codes_say_how_to_reconnect() {
        assert_eq!(close_code(close::GOING_AWAY), 4200);
        assert_eq!(close_code(close::HEARTBEAT_TIMEOUT), 4201);
        assert_eq!(close_code(close::SLOW_CONSUMER), 4100);
        assert_eq!(close_code(close::TOO_BIG), close::TOO_BIG);
    }
}
