//! The native protocol's front door: a client's text frame, decoded and
//! checked for rights, becomes an [`Op`] for [`Shard::route`] (or is
//! answered here, for frames that need no back end).
//!
//! **Invariant:** checks run in PROTOCOL.md's order — shape (decoding),
//! rights (here), then state (the back end) — and every refusal reaches the
//! client as one `error` frame carrying the frame's `id`.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::Conn;
use crate::auth::{Authenticator, Grant};
use crate::config::AuthMode;
use crate::error::{ErrorCode, Refusal};
use crate::metrics::FRAME_INVALID;
use crate::op::{Audience, Creator, Join, Op, Origin, Publish, Reply};
use crate::perms::Perm;
use crate::protocol::decode::{ClientFrame, decode_client_frame};
use crate::protocol::encode;
use crate::protocol::json::check_depth;
use crate::shard::Shard;

/// Handle one text message.
pub(super) async fn handle_text(shard: &Shard, conn: &Rc<Conn>, payload: Bytes) {
    // Validated by the reader already; simdutf8 re-checks at memory speed
    // (no unsafe to skip it).
    let Ok(text) = simdutf8::basic::from_utf8(&payload) else {
        // The reader validated UTF-8 already; this cannot happen.
        return;
    };
    let frame = match decode_client_frame(text) {
        Ok(frame) => frame,
        Err(e) => {
            conn.counters.frame_in(FRAME_INVALID);
            return conn.refuse(e.id, &e.refusal);
        }
    };
    conn.counters.frame_in(frame.kind_index());
    let id = frame.id();
    let max_depth = shard.shared.config.limits.max_json_depth;
    if let Some(data) = frame.data() {
        if check_depth(data.as_bytes(), max_depth).is_err() {
            return conn.refuse(id, &Refusal::json_too_deep("data", max_depth));
        }
    }
    if let Err(refusal) = dispatch(shard, conn, &payload, text, frame).await {
        conn.refuse(id, &refusal);
    }
}

/// The `Bytes` of `part`, a sub-slice of `text`, which is `payload`.
fn slice_of(payload: &Bytes, text: &str, part: &str) -> Bytes {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    payload.slice(start..start + part.len())
}

/// Why a connection that is neither in nor joining `room` cannot act on it.
fn membership_refusal(shard: &Shard, room: &str) -> Refusal {
    if shard.shared.rooms.contains(room) {
        Refusal::not_member(room)
    } else {
        Refusal::room_not_found(room)
    }
}

async fn dispatch(
    shard: &Shard,
    conn: &Rc<Conn>,
    payload: &Bytes,
    text: &str,
    frame: ClientFrame<'_>,
) -> Result<(), Refusal> {
    let limits = &shard.shared.config.limits;
    match frame {
        ClientFrame::Ping { id } => conn.reply(encode::pong(id)),
        ClientFrame::Join {
            id,
            room,
            since,
            epoch,
            create,
        } => {
            // Rights before state: a private room the index knows needs a
            // matching grant (the back end checks again, and decides the
            // `create` right against whether the room exists).
            let private = shard.shared.rooms.get(room).is_some_and(|m| m.private);
            if private && !conn.may_join_private(room) {
                return Err(Refusal::private_room(room));
            }
            let room = match conn.known_room(room) {
                Some(known) => known,
                None => {
                    let held = conn.rooms.borrow().len() + conn.joining.borrow().len();
                    if held >= limits.max_rooms_per_connection {
                        return Err(Refusal::too_many_rooms_per_connection(
                            limits.max_rooms_per_connection,
                        ));
                    }
                    Arc::from(room)
                }
            };
            *conn.joining.borrow_mut().entry(room.clone()).or_insert(0) += 1;
            let join = Join {
                origin: Origin { conn: conn.id, id },
                user: conn.user.clone(),
                name: conn.name.clone(),
                since,
                epoch: epoch.map(Arc::from),
                create,
                may_create: conn.perms().allows(Perm::Create),
                may_join_private: conn.may_join_private(&room),
                room,
            };
            shard.route(Op::Join(join)).await;
        }
        ClientFrame::Leave { id, room } => {
            // Routed also while the join is in flight: the back end decides,
            // in the order the client sent its frames.
            let Some(room) = conn.known_room(room) else {
                return Err(membership_refusal(shard, room));
            };
            let origin = Origin { conn: conn.id, id };
            shard.route(Op::Leave { origin, room }).await;
        }
        ClientFrame::Create { id, room, options } => {
            conn.perms().require(Perm::Create)?;
            let op = Op::Create {
                room: Arc::from(room),
                options,
                creator: Some(Creator {
                    user: conn.user.clone(),
                    conn: conn.id,
                }),
                reply: Reply::Conn(Origin { conn: conn.id, id }),
            };
            shard.route(op).await;
        }
        ClientFrame::Publish {
            id,
            room,
            data,
            exclude_self,
        } => {
            conn.perms().require(Perm::Publish)?;
            // A room the connection is not in goes to the back end too: only
            // it knows whether the room exists (on any node).
            let room = conn.known_room(room).unwrap_or_else(|| Arc::from(room));
            conn.take_token()?;
            let publish = Publish {
                room,
                from: conn.user.clone(),
                data: slice_of(payload, text, data),
                exclude_self,
                reply: Reply::Conn(Origin { conn: conn.id, id }),
            };
            shard.route(Op::Publish(publish)).await;
        }
        ClientFrame::Send { id, to, data } => {
            conn.perms().require(Perm::Send)?;
            conn.take_token()?;
            let frame = encode::direct(&conn.user, encode::now_ms(), data.as_bytes());
            let op = Op::ToUsers {
                audience: Audience::User(Arc::from(to)),
                frame,
                counted: None,
            };
            shard.route(op).await;
            if let Some(id) = id {
                conn.reply(encode::ack_send(id, to));
            }
        }
        ClientFrame::Broadcast { id, data } => {
            conn.perms().require(Perm::Broadcast)?;
            conn.take_token()?;
            let frame = encode::broadcast(&conn.user, encode::now_ms(), data.as_bytes());
            let op = Op::ToUsers {
                audience: Audience::All,
                frame,
                counted: None,
            };
            shard.route(op).await;
            if let Some(id) = id {
                conn.reply(encode::ack(id));
            }
        }
        ClientFrame::Members { id, room } => {
            conn.perms().require(Perm::Presence)?;
            let origin = Origin { conn: conn.id, id };
            let room = Arc::from(room);
            shard.route(Op::Members { origin, room }).await;
        }
        ClientFrame::Refresh { id, token } => {
            let grant = check_refresh(&shard.shared.auth, &conn.user, token)?;
            let exp = grant.exp;
            conn.refresh(grant);
            if let Some(id) = id {
                conn.reply(encode::ack_refresh(id, exp));
            }
        }
    }
    Ok(())
}

/// Check a `refresh` token of `user`'s connection like a connect token;
/// its `sub` must be `user`. A refusal changes nothing.
fn check_refresh(auth: &Authenticator, user: &str, token: &str) -> Result<Grant, Refusal> {
    if auth.mode() != AuthMode::Jwt {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "`refresh` needs auth.mode = \"jwt\"; this server uses no tokens",
        ));
    }
    let grant = auth.authenticate(Some(token))?;
    if grant.user.as_deref() != Some(user) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "the new token's `sub` is not this connection's user",
        ));
    }
    Ok(grant)
}
