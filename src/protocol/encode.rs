//! Server frames, written straight into a WebSocket frame buffer.
//!
//! Names (rooms, users) are valid by construction and need no escaping;
//! free text (messages, display names) goes through serde_json's escaper;
//! `data` is the publisher's raw JSON, copied once.

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::ws::encode::FrameBuf;

/// Writes one JSON object into a [`FrameBuf`].
struct Obj {
    frame: FrameBuf,
}

impl Obj {
    fn new(kind: &str, hint: usize) -> Obj {
        let mut frame = FrameBuf::with_capacity(hint + 32);
        let out = frame.payload();
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'"');
        Obj { frame }
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        let out = self.frame.payload();
        out.extend_from_slice(b",\"");
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        out
    }

    /// A name that is valid by construction (no escaping needed).
    fn name(mut self, key: &str, value: &str) -> Obj {
        debug_assert!(!value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        let out = self.key(key);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        self
    }

    /// Free text, escaped.
    fn text(mut self, key: &str, value: &str) -> Obj {
        let out = self.key(key);
        if serde_json::to_writer(&mut *out, value).is_err() {
            out.extend_from_slice(b"\"\"");
        }
        self
    }

    fn uint(mut self, key: &str, value: u64) -> Obj {
        let mut b = itoa::Buffer::new();
        self.key(key).extend_from_slice(b.format(value).as_bytes());
        self
    }

    fn opt_id(self, id: Option<u64>) -> Obj {
        match id {
            Some(id) => self.uint("id", id),
            None => self,
        }
    }

    fn boolean(mut self, key: &str, value: bool) -> Obj {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
        self
    }

    /// Raw JSON, already valid.
    fn raw(mut self, key: &str, json: &[u8]) -> Obj {
        self.key(key).extend_from_slice(json);
        self
    }

    fn finish(mut self) -> Bytes {
        self.frame.payload().push(b'}');
        self.frame.finish_text()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The protocol version `welcome` announces.
pub const PROTOCOL_VERSION: &str = "1.1";

/// `welcome`
pub fn welcome(conn: u64, user: &str, shard: usize, node: &str, heartbeat_ms: u64) -> Bytes {
    Obj::new("welcome", 112)
        .uint("conn", conn)
        .name("user", user)
        .uint("shard", shard as u64)
        .name("node", node)
        .uint("heartbeat_ms", heartbeat_ms)
        .name("protocol", PROTOCOL_VERSION)
        .finish()
}

/// `ack` with only the id (`broadcast`).
pub fn ack(id: u64) -> Bytes {
    Obj::new("ack", 16).uint("id", id).finish()
}

/// `ack` with `room` (`leave`, `create`).
pub fn ack_room(id: u64, room: &str) -> Bytes {
    Obj::new("ack", 24 + room.len())
        .uint("id", id)
        .name("room", room)
        .finish()
}

/// `ack` of a `publish`.
pub fn ack_publish(id: u64, room: &str, seq: u64) -> Bytes {
    Obj::new("ack", 40 + room.len())
        .uint("id", id)
        .name("room", room)
        .uint("seq", seq)
        .finish()
}

/// `ack` of a `refresh`: when the new token expires (Unix seconds), if
/// it does.
pub fn ack_refresh(id: u64, exp: Option<u64>) -> Bytes {
    let obj = Obj::new("ack", 40).uint("id", id);
    match exp {
        Some(exp) => obj.uint("exp", exp).finish(),
        None => obj.finish(),
    }
}

/// `ack` of a `send`.
pub fn ack_send(id: u64, to: &str) -> Bytes {
    Obj::new("ack", 24 + to.len())
        .uint("id", id)
        .name("to", to)
        .finish()
}

/// `ack` of a `join`. `history` holds the JSON of `message` frames, oldest
/// first; `epoch` is the room's incarnation (v1.1).
pub fn ack_join<'h>(
    id: u64,
    room: &str,
    seq: u64,
    epoch: &str,
    members: u32,
    history: impl ExactSizeIterator<Item = &'h [u8]> + Clone,
    recovered: Option<bool>,
) -> Bytes {
    let hint = history.clone().map(|h| h.len() + 1).sum::<usize>();
    let mut obj = Obj::new("ack", 104 + room.len() + hint)
        .uint("id", id)
        .name("room", room)
        .uint("seq", seq)
        .text("epoch", epoch)
        .uint("members", u64::from(members));
    let out = obj.key("history");
    out.push(b'[');
    for (i, message) in history.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(message);
    }
    out.push(b']');
    match recovered {
        Some(r) => obj.boolean("recovered", r).finish(),
        None => obj.finish(),
    }
}

/// One entry of a `members` reply.
pub struct MemberEntry<'a> {
    /// Connection id.
    pub conn: u64,
    /// User id.
    pub user: &'a str,
    /// Display name.
    pub name: Option<&'a str>,
}

/// `ack` of a `members` request.
pub fn ack_members<'m>(
    id: u64,
    room: &str,
    members: impl Iterator<Item = MemberEntry<'m>>,
    total: usize,
) -> Bytes {
    let mut obj = Obj::new("ack", 64 + room.len())
        .uint("id", id)
        .name("room", room);
    let out = obj.key("members");
    out.push(b'[');
    let mut b = itoa::Buffer::new();
    for (i, m) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"conn\":");
        out.extend_from_slice(b.format(m.conn).as_bytes());
        out.extend_from_slice(b",\"user\":\"");
        out.extend_from_slice(m.user.as_bytes());
        out.extend_from_slice(b"\",\"name\":");
        match m.name {
            Some(name) => {
                if serde_json::to_writer(&mut *out, name).is_err() {
                    out.extend_from_slice(b"null");
                }
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.push(b']');
    obj.uint("total", total as u64).finish()
}

/// `error`
pub fn error(id: Option<u64>, code: ErrorCode, message: &str) -> Bytes {
    Obj::new("error", 48 + message.len())
        .opt_id(id)
        .name("code", code.as_str())
        .text("message", message)
        .finish()
}

/// `message`: a publish in a room.
pub fn message(room: &str, seq: u64, from: &str, ts: u64, data: &[u8]) -> Bytes {
    message_event(room, seq, from, ts, data, None)
}

/// `message` with the `event` name it was published as (an event of the
/// Pusher endpoint; `None` for native publishes, which have none). `from`
/// is escaped when it is not a valid name (a Pusher user id may hold any
/// printable character).
pub fn message_event(
    room: &str,
    seq: u64,
    from: &str,
    ts: u64,
    data: &[u8],
    event: Option<&str>,
) -> Bytes {
    let hint = 72 + room.len() + from.len() + data.len() + event.map_or(0, |e| e.len() + 10);
    let obj = Obj::new("message", hint)
        .name("room", room)
        .uint("seq", seq);
    let obj = if needs_escape(from) {
        obj.text("from", from)
    } else {
        obj.name("from", from)
    };
    let obj = obj.uint("ts", ts).raw("data", data);
    match event {
        Some(event) => obj.text("event", event).finish(),
        None => obj.finish(),
    }
}

/// Whether `text` needs JSON escaping.
fn needs_escape(text: &str) -> bool {
    text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// The JSON of a `message` split around its seq, for a sequencer that
/// learns the seq later (the cluster's Redis script): `before + seq + after`
/// is the payload [`message_event`] would encode.
pub fn message_parts(
    room: &str,
    from: &str,
    ts: u64,
    data: &[u8],
    event: Option<&str>,
) -> (Bytes, Bytes) {
    let payload = crate::ws::encode::text_payload(&message_event(room, 0, from, ts, data, event));
    // Room names cannot hold `"`, so the first `"seq":0` is the field itself.
    const SEQ: &[u8] = b"\"seq\":";
    let at = payload
        .windows(SEQ.len())
        .position(|w| w == SEQ)
        .map_or(payload.len(), |p| p + SEQ.len());
    (
        payload.slice(..at),
        payload.slice((at + 1).min(payload.len())..),
    )
}

/// `direct`: a `send` to this user.
pub fn direct(from: &str, ts: u64, data: &[u8]) -> Bytes {
    Obj::new("direct", 48 + from.len() + data.len())
        .name("from", from)
        .uint("ts", ts)
        .raw("data", data)
        .finish()
}

/// `broadcast`: a message to everyone.
pub fn broadcast(from: &str, ts: u64, data: &[u8]) -> Bytes {
    Obj::new("broadcast", 48 + from.len() + data.len())
        .name("from", from)
        .uint("ts", ts)
        .raw("data", data)
        .finish()
}

/// `joined` or `left`.
pub fn presence(
    kind: PresenceKind,
    room: &str,
    user: &str,
    name: Option<&str>,
    members: u32,
) -> Bytes {
    let kind = match kind {
        PresenceKind::Joined => "joined",
        PresenceKind::Left => "left",
    };
    let obj = Obj::new(kind, 64 + room.len() + user.len())
        .name("room", room)
        .name("user", user);
    let obj = match name {
        Some(name) => obj.text("name", name),
        None => obj,
    };
    obj.uint("members", u64::from(members)).finish()
}

/// Which presence event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// A member joined.
    Joined,
    /// A member left.
    Left,
}

/// `gap`: messages `from..=to` of `room` were dropped for this client.
pub fn gap(room: &str, from: u64, to: u64) -> Bytes {
    Obj::new("gap", 48 + room.len())
        .name("room", room)
        .uint("from", from)
        .uint("to", to)
        .finish()
}

/// `room_closed`: the room was deleted; members were removed.
pub fn room_closed(room: &str, reason: &str) -> Bytes {
    Obj::new("room_closed", 48 + room.len())
        .name("room", room)
        .text("reason", reason)
        .finish()
}

/// `notification`: pushed by the HTTP API.
pub fn notification(ts: u64, data: &[u8]) -> Bytes {
    Obj::new("notification", 32 + data.len())
        .uint("ts", ts)
        .raw("data", data)
        .finish()
}

/// `pong`
pub fn pong(id: Option<u64>) -> Bytes {
    Obj::new("pong", 16).opt_id(id).finish()
}

#[cfg(test)]
mod message_parts_tests {
    use super::*;

    #[test]
    fn parts_around_the_seq_rebuild_the_message() {
        let (before, after) = message_parts("r:1", "alice", 42, br#"{"seq":0}"#, None);
        let mut joined = before.to_vec();
        joined.extend_from_slice(b"1234");
        joined.extend_from_slice(&after);
        let whole =
            crate::ws::encode::text_payload(&message("r:1", 1234, "alice", 42, br#"{"seq":0}"#));
        assert_eq!(joined, whole.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::text_payload;

    fn json(frame: &Bytes) -> serde_json::Value {
        serde_json::from_slice(&text_payload(frame)).expect("valid JSON")
    }

    #[test]
    fn frames_are_valid_json() {
        let m = message("r", 3, "alice", 17, br#"{"a":"\"x\""}"#);
        let v = json(&m);
        assert_eq!(v["type"], "message");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["data"]["a"], "\"x\"");
        let e = error(Some(4), ErrorCode::RoomFull, "the room \"r\" is full");
        assert_eq!(json(&e)["message"], "the room \"r\" is full");
        let history = [text_payload(&m)];
        let a = ack_join(
            1,
            "r",
            3,
            "00ff00ff00ff00ff",
            2,
            history.iter().map(|b| &b[..]),
            Some(true),
        );
        let v = json(&a);
        assert_eq!(v["epoch"], "00ff00ff00ff00ff");
        assert_eq!(v["history"][0]["seq"], 3);
        assert_eq!(v["recovered"], true);
        let list = ack_members(
            2,
            "r",
            [MemberEntry {
                conn: 5,
                user: "u",
                name: Some("Ü \"n\""),
            }]
            .into_iter(),
            1,
        );
        assert_eq!(json(&list)["members"][0]["name"], "Ü \"n\"");
        let p = presence(PresenceKind::Left, "r", "u", None, 0);
        assert_eq!(json(&p)["type"], "left");
        assert_eq!(json(&pong(None)), serde_json::json!({"type":"pong"}));
        assert_eq!(json(&gap("r", 2, 9))["to"], 9);
        assert_eq!(json(&welcome(1, "u", 0, "n", 25))["heartbeat_ms"], 25);
        assert_eq!(json(&welcome(1, "u", 0, "n", 25))["protocol"], "1.1");
        assert_eq!(
            json(&ack_refresh(3, Some(1_767_225_600))),
            serde_json::json!({"type":"ack","id":3,"exp":1_767_225_600u64})
        );
        assert_eq!(
            json(&ack_refresh(3, None)),
            serde_json::json!({"type":"ack","id":3})
        );
    }
}
