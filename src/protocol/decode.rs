//! Client frames: parse and validate, in PROTOCOL.md's order of checks
//! (shape: JSON, object, `type`, fields, names; rights and state are checked
//! by the caller).
//!
//! The first pass, every field as a raw slice of the frame, is `fields.rs`;
//! here, which fields each `type` allows and what their values must be.

use serde::de;
use serde_json::value::RawValue;

use crate::config::OverflowPolicy;
use crate::error::{ErrorCode, Refusal};
use crate::limits::{MAX_FRAME_ID, MAX_ROOM_HISTORY};
use crate::protocol::names::is_valid_name;

mod fields;

use fields::{Fields, Stray};

/// A valid client frame. Names borrow from the frame's bytes; `data` is the
/// raw JSON text of the value, passed through without re-encoding.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame<'a> {
    /// `join`
    Join {
        /// Reply id.
        id: Option<u64>,
        /// Room name (valid).
        room: &'a str,
        /// Recover messages after this seq.
        since: Option<u64>,
        /// The room epoch `since` belongs to (v1.1; a valid name).
        epoch: Option<&'a str>,
        /// Create the room if it is missing.
        create: bool,
    },
    /// `leave`
    Leave {
        /// Reply id.
        id: Option<u64>,
        /// Room name (valid).
        room: &'a str,
    },
    /// `create`
    Create {
        /// Reply id.
        id: Option<u64>,
        /// Room name (valid).
        room: &'a str,
        /// Options of the new room.
        options: RoomOptions,
    },
    /// `publish`
    Publish {
        /// Reply id.
        id: Option<u64>,
        /// Room name (valid).
        room: &'a str,
        /// Raw JSON value.
        data: &'a str,
        /// Do not deliver to the publishing connection.
        exclude_self: bool,
    },
    /// `send`
    Send {
        /// Reply id.
        id: Option<u64>,
        /// User id (valid).
        to: &'a str,
        /// Raw JSON value.
        data: &'a str,
    },
    /// `broadcast`
    Broadcast {
        /// Reply id.
        id: Option<u64>,
        /// Raw JSON value.
        data: &'a str,
    },
    /// `members`
    Members {
        /// Reply id.
        id: Option<u64>,
        /// Room name (valid).
        room: &'a str,
    },
    /// `ping`
    Ping {
        /// Reply id.
        id: Option<u64>,
    },
    /// `refresh` (v1.1): replace the connection's token.
    Refresh {
        /// Reply id.
        id: Option<u64>,
        /// The new token (a non-empty string, not checked yet).
        token: &'a str,
    },
}

impl ClientFrame<'_> {
    /// Position of the frame's type in [`crate::metrics::FRAME_KINDS`].
    pub fn kind_index(&self) -> usize {
        match self {
            ClientFrame::Join { .. } => 0,
            ClientFrame::Leave { .. } => 1,
            ClientFrame::Create { .. } => 2,
            ClientFrame::Publish { .. } => 3,
            ClientFrame::Send { .. } => 4,
            ClientFrame::Broadcast { .. } => 5,
            ClientFrame::Members { .. } => 6,
            ClientFrame::Ping { .. } => 7,
            ClientFrame::Refresh { .. } => 8,
        }
    }

    /// The raw JSON of the frame's `data`, for frames that carry one.
    pub fn data(&self) -> Option<&str> {
        match self {
            ClientFrame::Publish { data, .. }
            | ClientFrame::Send { data, .. }
            | ClientFrame::Broadcast { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The frame's `id`.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::Create { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Send { id, .. }
            | ClientFrame::Broadcast { id, .. }
            | ClientFrame::Members { id, .. }
            | ClientFrame::Refresh { id, .. }
            | ClientFrame::Ping { id } => *id,
        }
    }
}

/// Options given to `create` (absent ones take the configured defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomOptions {
    /// `max_members`
    pub max_members: Option<u32>,
    /// `private`, if the frame says (absent: the namespace's, or false)
    pub private: Option<bool>,
    /// `history` (ring length)
    pub history: Option<usize>,
    /// `overflow`
    pub overflow: Option<OverflowPolicy>,
}

/// A frame that failed the shape checks: the refusal, and the frame's `id`
/// when it could be read, so the error can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The frame's `id`, if it was readable.
    pub id: Option<u64>,
    /// Why the frame was refused.
    pub refusal: Refusal,
}

/// The frame types, with the fields each may carry besides `type` and `id`.
const TYPES: [(&str, &[&str]); 9] = [
    ("join", &["room", "since", "epoch", "create"]),
    ("leave", &["room"]),
    (
        "create",
        &["room", "max_members", "private", "history", "overflow"],
    ),
    ("publish", &["room", "data", "exclude_self"]),
    ("send", &["to", "data"]),
    ("broadcast", &["data"]),
    ("members", &["room"]),
    ("ping", &[]),
    ("refresh", &["token"]),
];

fn bad(id: Option<u64>, message: impl Into<String>) -> DecodeError {
    DecodeError {
        id,
        refusal: Refusal::new(ErrorCode::BadRequest, message),
    }
}

/// Parse and shape-check one client text frame.
pub fn decode_client_frame(text: &str) -> Result<ClientFrame<'_>, DecodeError> {
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            bad(None, "a frame must be a JSON object")
        } else {
            bad(None, format!("the frame is not valid JSON: {e}"))
        }
    })?;
    // The id first, so every later error can carry it.
    let id = match fields.id {
        None => None,
        Some(raw) => match serde_json::from_str::<u64>(raw.get()) {
            Ok(id) if id <= MAX_FRAME_ID => Some(id),
            _ => {
                return Err(bad(None, "`id` must be an integer from 0 to 2^53-1"));
            }
        },
    };
    let Some(kind) = fields.kind else {
        return Err(bad(id, "missing field `type`"));
    };
    let Ok(kind) = serde_json::from_str::<&str>(kind.get()) else {
        return Err(bad(id, "`type` must be a string"));
    };
    let Some((kind, allowed)) = TYPES.iter().find(|(name, _)| *name == kind) else {
        return Err(DecodeError {
            id,
            refusal: Refusal::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown frame type {kind:?}; expected one of join, leave, create, publish, send, broadcast, members, ping, refresh"
                ),
            ),
        });
    };
    match &fields.stray {
        Some(Stray::Unknown(key)) => {
            return Err(bad(
                id,
                format!("unknown field `{key}` in a `{kind}` frame"),
            ));
        }
        Some(Stray::Duplicate(key)) => {
            return Err(bad(id, format!("field `{key}` appears twice")));
        }
        None => {}
    }
    if let Some(field) = fields
        .present()
        .find(|f| *f != "type" && *f != "id" && !allowed.contains(f))
    {
        return Err(bad(
            id,
            format!("unknown field `{field}` in a `{kind}` frame"),
        ));
    }
    let p = Parser { id, kind };
    let frame = match *kind {
        "join" => ClientFrame::Join {
            id,
            room: p.name("room", fields.room)?,
            since: p.optional::<u64>("since", fields.since, "an unsigned integer")?,
            epoch: match fields.epoch {
                None => None,
                Some(raw) => Some(p.name("epoch", Some(raw))?),
            },
            create: p
                .optional::<bool>("create", fields.create, "a boolean")?
                .unwrap_or(true),
        },
        "leave" => ClientFrame::Leave {
            id,
            room: p.name("room", fields.room)?,
        },
        "create" => ClientFrame::Create {
            id,
            room: p.name("room", fields.room)?,
            options: RoomOptions {
                max_members: match p.optional::<u32>(
                    "max_members",
                    fields.max_members,
                    "an integer from 1 to 4294967295",
                )? {
                    Some(0) => return Err(bad(id, "`max_members` must be at least 1")),
                    other => other,
                },
                private: p.optional::<bool>("private", fields.private, "a boolean")?,
                history: match p.optional::<usize>(
                    "history",
                    fields.history,
                    "an unsigned integer",
                )? {
                    Some(h) if h > MAX_ROOM_HISTORY => {
                        return Err(bad(
                            id,
                            format!("`history` must be at most {MAX_ROOM_HISTORY}"),
                        ));
                    }
                    other => other,
                },
                overflow: p.optional::<OverflowPolicy>(
                    "overflow",
                    fields.overflow,
                    "\"disconnect\" or \"drop\"",
                )?,
            },
        },
        "publish" => ClientFrame::Publish {
            id,
            room: p.name("room", fields.room)?,
            data: p.data(fields.data)?,
            exclude_self: p
                .optional::<bool>("exclude_self", fields.exclude_self, "a boolean")?
                .unwrap_or(false),
        },
        "send" => ClientFrame::Send {
            id,
            to: p.name("to", fields.to)?,
            data: p.data(fields.data)?,
        },
        "broadcast" => ClientFrame::Broadcast {
            id,
            data: p.data(fields.data)?,
        },
        "members" => ClientFrame::Members {
            id,
            room: p.name("room", fields.room)?,
        },
        "refresh" => ClientFrame::Refresh {
            id,
            token: p.token(fields.token)?,
        },
        _ => ClientFrame::Ping { id },
    };
    Ok(frame)
}

struct Parser<'k> {
    id: Option<u64>,
    kind: &'k str,
}

impl Parser<'_> {
    fn required<'a>(
        &self,
        field: &str,
        raw: Option<&'a RawValue>,
    ) -> Result<&'a RawValue, DecodeError> {
        raw.ok_or_else(|| bad(self.id, format!("a `{}` frame needs `{field}`", self.kind)))
    }

    fn name<'a>(&self, field: &str, raw: Option<&'a RawValue>) -> Result<&'a str, DecodeError> {
        let raw = self.required(field, raw)?;
        match serde_json::from_str::<&str>(raw.get()) {
            Ok(name) if is_valid_name(name) => Ok(name),
            _ => Err(bad(
                self.id,
                format!("`{field}` must be 1-128 bytes of [A-Za-z0-9_.:@-]"),
            )),
        }
    }

    fn token<'a>(&self, raw: Option<&'a RawValue>) -> Result<&'a str, DecodeError> {
        let raw = self.required("token", raw)?;
        match serde_json::from_str::<&str>(raw.get()) {
            Ok(token) if !token.is_empty() => Ok(token),
            _ => Err(bad(
                self.id,
                "`token` must be a non-empty string without escapes (a JWT)",
            )),
        }
    }

    fn data<'a>(&self, raw: Option<&'a RawValue>) -> Result<&'a str, DecodeError> {
        Ok(self.required("data", raw)?.get())
    }

    fn optional<T: de::DeserializeOwned>(
        &self,
        field: &str,
        raw: Option<&RawValue>,
        expected: &str,
    ) -> Result<Option<T>, DecodeError> {
        match raw {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<T>(raw.get())
                .map(Some)
                .map_err(|_| bad(self.id, format!("`{field}` must be {expected}"))),
        }
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
