//! `pusher:subscribe`: a channel's signature checked (private, presence,
//! and the signed-in user's own channel), a presence member read from its
//! `channel_data`, and the subscription routed as a `join` of the
//! channel's room.
//!
//! **Invariant:** nothing is routed before every check passed; a refusal
//! is an HTTP-like status and why (the caller writes it as
//! `pusher:subscription_error`), and a presence member's `user_info` is
//! bounded by `limits.max_json_depth` before it reaches any other member.

use std::rc::Rc;
use std::sync::Arc;

use super::PusherConn;
use crate::error::Refusal;
use crate::op::{Join, Op, Origin};
use crate::protocol::json::shallow;
use crate::pusher::names::{self, Kind};
use crate::pusher::sign;
use crate::shard::Shard;
use crate::shard::conn::Conn;

/// What a `pusher:subscribe` asks.
pub(super) struct Subscription<'a> {
    pub(super) channel: &'a str,
    pub(super) auth: Option<&'a str>,
    pub(super) channel_data: Option<&'a str>,
}

/// Why a subscription is refused: an HTTP-like status and why.
pub(super) type SubscribeRefusal = (u16, String);

/// A presence member: its user id and compact `user_info`.
type Member = (Arc<str>, Option<Arc<String>>);

/// A presence member, as `channel_data` gives it.
#[derive(serde::Deserialize)]
struct ChannelData {
    user_id: serde_json::Value,
    #[serde(default)]
    user_info: Option<serde_json::Value>,
}

/// Check a subscription and route its join. A refusal is (status, why).
pub(super) async fn subscribe(
    shard: &Shard,
    conn: &Rc<Conn>,
    p: &PusherConn,
    asked: Subscription<'_>,
) -> Result<(), SubscribeRefusal> {
    let kind = Kind::of(asked.channel);
    let presence = kind == Kind::Presence;
    if kind == Kind::ServerToUser {
        // Only the signed-in user's own channel, no signature needed.
        let own = names::room_of(&p.app.id, &asked.channel[names::SERVER_TO_USER.len()..]);
        if *conn.user() != *own {
            return Err((
                403,
                "sign in as this user to subscribe to its channel".into(),
            ));
        }
    } else if kind.needs_auth() {
        let Some(auth) = asked.auth else {
            return Err((401, format!("{} needs an auth signature", asked.channel)));
        };
        let data = if presence { asked.channel_data } else { None };
        if presence && data.is_none() {
            return Err((400, "a presence channel needs channel_data".into()));
        }
        sign::check_channel_auth(
            &p.app.key,
            &p.app.secret,
            &p.socket_id,
            asked.channel,
            data,
            auth,
        )
        .map_err(|e| (401, e.to_string()))?;
    }
    let (user, info) = if presence {
        let max_depth = shard.shared.config.limits.max_json_depth;
        member_of(asked.channel_data.unwrap_or(""), max_depth)?
    } else {
        (conn.user(), None)
    };
    let room = p.app.room(asked.channel);
    let room = match conn.known_room(&room) {
        Some(known) => known,
        None => {
            let limits = &shard.shared.config.limits;
            let held = conn.rooms.borrow().len() + conn.joining.borrow().len();
            if held >= limits.max_rooms_per_connection {
                let refusal =
                    Refusal::too_many_rooms_per_connection(limits.max_rooms_per_connection);
                return Err((refusal.code.http_status(), refusal.message));
            }
            room
        }
    };
    if presence {
        p.presence.borrow_mut().insert(room.clone(), user.clone());
    }
    *conn.joining.borrow_mut().entry(room.clone()).or_insert(0) += 1;
    let join = Join {
        origin: Origin {
            conn: conn.id,
            id: Some(p.next_id()),
        },
        room,
        user,
        name: None,
        since: None,
        epoch: None,
        create: true,
        may_create: true,
        // A channel the app's signature admits (private-, presence-) may
        // be a private room (a namespace with `private = true`); a public
        // channel may not.
        may_join_private: kind.needs_auth(),
        info,
        list_users: presence,
    };
    shard.route(Op::Join(join)).await;
    Ok(())
}

/// The `user_id` and compact `user_info` of a presence `channel_data`,
/// which nests at most `max_depth` arrays and objects (its `user_info`
/// goes to every member of the channel).
fn member_of(channel_data: &str, max_depth: usize) -> Result<Member, SubscribeRefusal> {
    shallow("channel_data", channel_data.as_bytes(), max_depth).map_err(|r| (400, r.message))?;
    let data: ChannelData = serde_json::from_str(channel_data)
        .map_err(|e| (400, format!("invalid channel_data: {e}")))?;
    let user = match data.user_id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return Err((
                400,
                "channel_data.user_id must be a string or a number".into(),
            ));
        }
    };
    if !names::is_valid_user_id(&user) {
        return Err((
            400,
            "channel_data.user_id must be 1-128 bytes without control characters".into(),
        ));
    }
    // Compact JSON (no raw tabs or newlines), kept as the member's info.
    let info = data.user_info.map(|v| Arc::new(v.to_string()));
    Ok((Arc::from(user.as_str()), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_gives_a_user_and_compact_info() {
        let (user, info) =
            member_of(r#"{"user_id": 42, "user_info": {"name": "A\tB"}}"#, 32).expect("member");
        assert_eq!(&*user, "42");
        assert_eq!(
            info.as_deref().map(String::as_str),
            Some(r#"{"name":"A\tB"}"#)
        );
        assert!(member_of(r#"{"user_id": ""}"#, 32).is_err());
        assert!(member_of(r#"{"user_id": true}"#, 32).is_err());
        assert!(member_of("nope", 32).is_err());
        let deep = |n: usize| {
            format!(
                r#"{{"user_id":1,"user_info":{}1{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(member_of(&deep(1), 2).is_ok());
        let (status, why) = member_of(&deep(2), 2).expect_err("3 deep");
        assert_eq!(status, 400);
        assert!(why.contains("limits.max_json_depth"), "{why}");
    }
}
