//! A `client-*` event: checked against the app, the channel's kind, its
//! size, the sender's subscription and its rate, reported to the app's
//! webhook, and turned into the publish that reaches the channel's other
//! members.
//!
//! **Invariant:** a client event reaches others only as an [`Op::Publish`]
//! that skips its sender and is not privileged (a namespace with
//! `client_publish = false` refuses it), and only from a connection
//! subscribed to the channel (not merely subscribing).

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::PusherConn;
use crate::op::{Op, Origin, Publish, Reply};
use crate::pusher::names::Kind;
use crate::pusher::wire::{WireError, codes};
use crate::shard::Shard;
use crate::shard::conn::Conn;

/// A `client-*` event: checked (and reported to the app's webhook); the
/// publish to the channel's other members, to route.
pub(super) fn client_event(
    shard: &Shard,
    conn: &Rc<Conn>,
    p: &PusherConn,
    event: &str,
    channel: &str,
    data: Bytes,
) -> Result<Op, WireError> {
    let refused = |message: &str| WireError {
        code: codes::GENERIC,
        message: message.to_string(),
    };
    if !p.app.client_events {
        return Err(refused("client events are not enabled for this app"));
    }
    match Kind::of(channel) {
        Kind::Private | Kind::Presence => {}
        Kind::Public | Kind::ServerToUser => {
            return Err(refused("client events need a private or presence channel"));
        }
        Kind::Encrypted => {
            return Err(refused(
                "client events are not supported on encrypted channels",
            ));
        }
    }
    let max = shard.shared.config.pusher.max_event_bytes;
    if data.len() > max {
        return Err(WireError {
            code: codes::TOO_LARGE,
            message: format!("the event's data is larger than {max} bytes"),
        });
    }
    let room = p.app.room(channel);
    // Subscribed, not only subscribing: the protocol's rule.
    let Some(room) = conn.rooms.borrow().get(&room).cloned() else {
        return Err(refused(
            "subscribe to the channel before sending client events on it",
        ));
    };
    if !p.client_bucket.borrow_mut().try_take(Instant::now()) {
        return Err(WireError {
            code: codes::CLIENT_RATE,
            message: format!(
                "client event rejected: only {} accepted per second",
                shard.shared.config.pusher.client_event_rate_per_sec
            ),
        });
    }
    let user = p.presence.borrow().get(&room).cloned();
    if let Some(hooks) = &shard
        .shared
        .pusher
        .as_ref()
        .and_then(|p| p.webhooks.as_ref())
    {
        hooks.client_event(&p.app, channel, event, &data, &p.socket_id, user.as_deref());
    }
    let publish = Publish {
        room,
        from: user.unwrap_or_else(|| conn.user()),
        data,
        event: Some(Arc::new(event.to_string())),
        exclude: std::num::NonZeroU64::new(conn.id),
        // A namespace with `client_publish = false` refuses client events.
        privileged: false,
        reply: Reply::Conn(Origin {
            conn: conn.id,
            id: None,
        }),
    };
    Ok(Op::Publish(publish))
}
