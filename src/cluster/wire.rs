//! What travels on the cluster's Redis channels, and how a node reads it.
//!
//! Room channel `sc:{R}:c` (written only by the scripts of
//! [`super::scripts`], so in Redis' execution order):
//!
//! * `M <seq> <node> <skip conn>\n<message JSON>`: a room message; `skip
//!   conn` (0: none) is a connection of `node` that asked `exclude_self`.
//! * `J <node> <conn> <count> <users> <first> <member>`: a member joined;
//!   `users` is the room's distinct users after it, `first` (0/1) whether
//!   it is its user's first connection in the room.
//! * `L <node> <conn> <count> <users> <last> <member>`: a member left;
//!   `last` (0/1) whether it was its user's last connection.
//! * `<member>` is `user[\t<name>[\t<info>]]` (info: the raw JSON a
//!   Pusher presence member carries).
//! * `X`: the room was deleted.
//!
//! User channel `sc:u:<user>` and `sc:all`: `<node>\n<frame JSON>`, the
//! complete `direct`, `broadcast` or `notification` frame, or
//! `<node>\n!<reason>`: close the user's connections. The node that sent
//! it has delivered it locally already and skips it.
//!
//! Parsing never panics: anything malformed is `None` (and logged by the
//! caller), since another version of shardcast may share the Redis.

/// What a node can receive on a channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A room message.
    Message {
        /// Its seq.
        seq: u64,
        /// The node whose connection published it.
        node: &'a str,
        /// A connection of that node not to deliver to (0: none).
        skip: u64,
        /// The message JSON (the frame's payload).
        json: &'a [u8],
    },
    /// A member joined or left.
    Presence {
        /// True for joined.
        joined: bool,
        /// The member's node.
        node: &'a str,
        /// The member's connection on that node.
        conn: u64,
        /// Members after the change.
        count: u32,
        /// Distinct users after the change.
        users: u32,
        /// The member's user came (its first connection) or went (its
        /// last).
        user_changed: bool,
        /// The member's user id.
        user: &'a str,
        /// Its display name.
        name: Option<&'a str>,
        /// Its info (raw JSON).
        info: Option<&'a str>,
    },
    /// The room was deleted.
    Closed,
    /// A frame for a user or for everyone.
    Frame {
        /// The node that sent it.
        node: &'a str,
        /// The frame's JSON.
        json: &'a [u8],
    },
}

/// Read a room channel's payload.
pub fn parse_room(payload: &[u8]) -> Option<Event<'_>> {
    match payload.first()? {
        b'M' => {
            let newline = payload.iter().position(|&b| b == b'\n')?;
            let head = std::str::from_utf8(payload.get(2..newline)?).ok()?;
            let mut parts = head.split(' ');
            let seq = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            let skip = parts.next()?.parse().ok()?;
            Some(Event::Message {
                seq,
                node,
                skip,
                json: payload.get(newline + 1..)?,
            })
        }
        kind @ (b'J' | b'L') => {
            let text = std::str::from_utf8(payload.get(2..)?).ok()?;
            let mut parts = text.splitn(6, ' ');
            let node = parts.next()?;
            let conn = parts.next()?.parse().ok()?;
            let count = parts.next()?.parse().ok()?;
            let users = parts.next()?.parse().ok()?;
            let user_changed = match parts.next()? {
                "1" => true,
                "0" => false,
                _ => return None,
            };
            let (user, name, info) = parse_member(parts.next()?);
            Some(Event::Presence {
                joined: *kind == b'J',
                node,
                conn,
                count,
                users,
                user_changed,
                user,
                name,
                info,
            })
        }
        b'X' => Some(Event::Closed),
        _ => None,
    }
}

/// Read a user or broadcast channel's payload.
pub fn parse_frame(payload: &[u8]) -> Option<Event<'_>> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let node = std::str::from_utf8(payload.get(..newline)?).ok()?;
    Some(Event::Frame {
        node,
        json: payload.get(newline + 1..)?,
    })
}

/// What a publish says about the message (its seq comes from Redis).
pub(crate) struct Outgoing<'a> {
    /// The publisher's user id.
    pub(crate) from: &'a str,
    /// Raw JSON data.
    pub(crate) data: &'a [u8],
    /// Its event name, if any.
    pub(crate) event: Option<&'a str>,
}

/// The node field of a message whose skipped connection may be on any
/// node.
pub(crate) const ANY_NODE: &str = "*";

/// The payload of a close of a user's connections (`<node>\n!<reason>`).
pub(crate) fn close_payload(node: &str, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(node.len() + 2 + reason.len());
    out.extend_from_slice(node.as_bytes());
    out.extend_from_slice(b"\n!");
    out.extend_from_slice(reason.as_bytes());
    out
}

/// The payload [`parse_frame`] reads.
pub fn frame_payload(node: &str, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(node.len() + 1 + json.len());
    out.extend_from_slice(node.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json);
    out
}

/// A presence hash value: `user`, `user\tname` or `user\tname\tinfo`
/// (an empty name when only the info is given).
pub fn member_value(user: &str, name: Option<&str>, info: Option<&str>) -> String {
    match (name, info) {
        (name, Some(info)) => format!("{user}\t{}\t{info}", name.unwrap_or("")),
        (Some(name), None) => format!("{user}\t{name}"),
        (None, None) => user.to_string(),
    }
}

/// The (user, name, info) of a presence hash value.
pub fn parse_member(value: &str) -> (&str, Option<&str>, Option<&str>) {
    let mut parts = value.splitn(3, '\t');
    let user = parts.next().unwrap_or("");
    let name = parts.next().filter(|n| !n.is_empty());
    let info = parts.next().filter(|i| !i.is_empty());
    (user, name, info)
}

/// The room of a room channel name, `sc:{R}:c`.
pub fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("sc:{")?.strip_suffix("}:c")
}

/// The user of a user channel name, `sc:u:<user>`.
pub fn user_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("sc:u:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_scripts_write() {
        assert_eq!(
            parse_room(b"M 7 node-a 12\n{\"x\":1}"),
            Some(Event::Message {
                seq: 7,
                node: "node-a",
                skip: 12,
                json: b"{\"x\":1}"
            })
        );
        assert_eq!(
            parse_room(b"J node-b 3 2 1 1 alice\tAlice Liddell"),
            Some(Event::Presence {
                joined: true,
                node: "node-b",
                conn: 3,
                count: 2,
                users: 1,
                user_changed: true,
                user: "alice",
                name: Some("Alice Liddell"),
                info: None,
            })
        );
        assert!(matches!(
            parse_room(b"L n 1 0 0 1 bob"),
            Some(Event::Presence {
                joined: false,
                name: None,
                user_changed: true,
                ..
            })
        ));
        let value = member_value("u 1", None, Some(r#"{"a":1}"#));
        assert_eq!(parse_member(&value), ("u 1", None, Some(r#"{"a":1}"#)));
        let payload = format!("J n 1 1 1 0 {value}");
        assert!(matches!(
            parse_room(payload.as_bytes()),
            Some(Event::Presence {
                user: "u 1",
                info: Some(r#"{"a":1}"#),
                user_changed: false,
                ..
            })
        ));
        assert_eq!(parse_room(b"X"), Some(Event::Closed));
        let payload = frame_payload("n1", b"{}");
        assert_eq!(
            parse_frame(&payload),
            Some(Event::Frame {
                node: "n1",
                json: b"{}"
            })
        );
        assert_eq!(room_of_channel("sc:{a:b}:c"), Some("a:b"));
        assert_eq!(user_of_channel("sc:u:bob"), Some("bob"));
    }

    #[test]
    fn malformed_payloads_are_none() {
        for bad in [
            &b""[..],
            b"M",
            b"M 1 n\n{}",
            b"M x n 0\n{}",
            b"M 1 n 0",
            b"J n 1",
            b"J n x 1 u",
            b"J n 1 1 u",
            b"J n 1 1 1 2 u",
            b"Q",
            b"M 18446744073709551616 n 0\n{}",
        ] {
            assert_eq!(parse_room(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_frame(b"no newline"), None);
    }
}
