//! The native protocol's front door: a client's text frame, decoded and
//! checked for rights, becomes an [`Op`] for [`Shard::route`] (or is
//! answered here, for frames that need no back end).
//!
//! Decoding and checks are synchronous; only handing the op on may wait
//! (a full inbox), and that wait is boxed, so an idle connection's reader
//! does not carry its state.
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
use crate::op::{Audience, Creator, Join, Op, Origin, Publish, Reply, UserFrame};
use crate::perms::Perm;
use crate::protocol::decode::{ClientFrame, decode_client_frame};
use crate::protocol::encode;
use crate::protocol::json::shallow;
use crate::shard::Shard;
use crate::shard::Waiting;

/// Handle one text message in the connection's protocol: the Pusher
/// front door, or the native one (decode and checks here, then the op on
/// its way). Returns what the reader must await before its next frame,
/// boxed, or `None` when the frame is done with (the common case: no
/// allocation, and the reader's future stays small).
pub(super) fn handle<'a>(
    shard: &'a Shard,
    conn: &'a Rc<Conn>,
    payload: Bytes,
) -> Option<Waiting<'a>> {
    if let super::Protocol::Pusher(_) = conn.protocol {
        return super::pusher::handle_text(shard, conn, payload);
    }
    let Routed { op, then } = handle_text(shard, conn, payload)?;
    match shard.route_or_wait(op) {
        None => {
            if let Some(frame) = then {
                conn.reply(frame);
            }
            None
        }
        Some(wait) => Some(Box::pin(async move {
            wait.await;
            if let Some(frame) = then {
                conn.reply(frame);
            }
        })),
    }
}

/// What a frame asks of the back end, and what the client is told once
/// the op is on its way.
pub(super) struct Routed {
    op: Op,
    then: Option<Bytes>,
}

impl Routed {
    fn op(op: Op) -> Self {
        Routed { op, then: None }
    }
}

/// Handle one text message: answered here, or an op to route.
pub(super) fn handle_text(shard: &Shard, conn: &Rc<Conn>, payload: Bytes) -> Option<Routed> {
    // Validated by the reader already; simdutf8 re-checks at memory speed
    // (no unsafe to skip it).
    let Ok(text) = simdutf8::basic::from_utf8(&payload) else {
        // The reader validated UTF-8 already; this cannot happen.
        return None;
    };
    let frame = match decode_client_frame(text) {
        Ok(frame) => frame,
        Err(e) => {
            conn.counters.frame_in(FRAME_INVALID);
            conn.refuse(e.id, &e.refusal);
            return None;
        }
    };
    conn.counters.frame_in(frame.kind_index());
    let id = frame.id();
    if let Some(data) = frame.data() {
        let max_depth = shard.shared.config.limits.max_json_depth;
        if let Err(refusal) = shallow("data", data.as_bytes(), max_depth) {
            conn.refuse(id, &refusal);
            return None;
        }
    }
    match dispatch(shard, conn, &payload, text, frame) {
        Ok(routed) => routed,
        Err(refusal) => {
            conn.refuse(id, &refusal);
            None
        }
    }
}

/// The `Bytes` of `part`, a sub-slice of `text`, which is `payload`.
pub(super) fn slice_of(payload: &Bytes, text: &str, part: &str) -> Bytes {
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

fn dispatch(
    shard: &Shard,
    conn: &Rc<Conn>,
    payload: &Bytes,
    text: &str,
    frame: ClientFrame<'_>,
) -> Result<Option<Routed>, Refusal> {
    let limits = &shard.shared.config.limits;
    let op = match frame {
        ClientFrame::Ping { id } => {
            conn.reply(encode::pong(id));
            return Ok(None);
        }
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
            Op::Join(Join {
                origin: Origin { conn: conn.id, id },
                user: conn.user(),
                name: conn.name.clone(),
                since,
                epoch: epoch.map(Arc::from),
                create,
                may_create: conn.perms().allows(Perm::Create),
                may_join_private: conn.may_join_private(&room),
                info: None,
                list_users: false,
                room,
            })
        }
        ClientFrame::Leave { id, room } => {
            // Routed also while the join is in flight: the back end decides,
            // in the order the client sent its frames.
            let Some(room) = conn.known_room(room) else {
                return Err(membership_refusal(shard, room));
            };
            let origin = Origin { conn: conn.id, id };
            Op::Leave { origin, room }
        }
        ClientFrame::Create { id, room, options } => {
            conn.perms().require(Perm::Create)?;
            Op::Create {
                room: Arc::from(room),
                options,
                creator: Some(Creator {
                    user: conn.user(),
                    conn: conn.id,
                }),
                reply: Reply::Conn(Origin { conn: conn.id, id }),
            }
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
            Op::Publish(Publish {
                room,
                from: conn.user(),
                data: slice_of(payload, text, data),
                event: None,
                exclude: if exclude_self {
                    std::num::NonZeroU64::new(conn.id)
                } else {
                    None
                },
                privileged: conn.perms().allows(Perm::Admin),
                reply: Reply::Conn(Origin { conn: conn.id, id }),
            })
        }
        ClientFrame::Send { id, to, data } => {
            conn.perms().require(Perm::Send)?;
            conn.take_token()?;
            let frame = encode::direct(&conn.user(), encode::now_ms(), data.as_bytes());
            let op = Op::ToUsers {
                audience: Audience::User(Arc::from(to)),
                frame: UserFrame::Frame(frame),
                counted: None,
            };
            let then = id.map(|id| encode::ack_send(id, to));
            return Ok(Some(Routed { op, then }));
        }
        ClientFrame::Broadcast { id, data } => {
            conn.perms().require(Perm::Broadcast)?;
            conn.take_token()?;
            let frame = encode::broadcast(&conn.user(), encode::now_ms(), data.as_bytes());
            let op = Op::ToUsers {
                audience: Audience::All,
                frame: UserFrame::Frame(frame),
                counted: None,
            };
            let then = id.map(encode::ack);
            return Ok(Some(Routed { op, then }));
        }
        ClientFrame::Members { id, room } => {
            conn.perms().require(Perm::Presence)?;
            let origin = Origin { conn: conn.id, id };
            let room = Arc::from(room);
            Op::Members { origin, room }
        }
        ClientFrame::Refresh { id, token } => {
            let grant = check_refresh(&shard.shared.auth, &conn.user(), token)?;
            let exp = grant.exp;
            conn.refresh(grant);
            if let Some(id) = id {
                conn.reply(encode::ack_refresh(id, exp));
            }
            return Ok(None);
        }
    };
    Ok(Some(Routed::op(op)))
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
