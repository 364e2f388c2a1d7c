//! The wire frames (protocol v1 with the v1.1 additions), typed. Server
//! frames tolerate unknown fields, and an unknown frame type is skipped,
//! so a newer server does not break this client.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Welcome {
    /// The connection id.
    pub conn: u64,
    /// The user id of the connection.
    pub user: String,
    /// The shard that serves the connection.
    pub shard: u64,
    /// The node's id.
    pub node: String,
    /// The server's WebSocket ping interval.
    pub heartbeat_ms: u64,
    /// `"1.1"` on servers with room epochs and `refresh`; `None` on v1.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl Welcome {
    /// True if the server speaks protocol 1.1 or later.
    pub fn speaks_v1_1(&self) -> bool {
        let version = self.protocol.as_deref().unwrap_or("1");
        let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
        let major = parts.next().unwrap_or(1);
        let minor = parts.next().unwrap_or(0);
        major > 1 || (major == 1 && minor >= 1)
    }
}

/// A message of a room.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Message {
    /// The room.
    pub room: String,
    /// Its position in the room: consecutive from 1 within one epoch.
    pub seq: u64,
    /// The publisher's user id, or `system`.
    pub from: String,
    /// When the server sequenced it (ms since the Unix epoch).
    pub ts: u64,
    /// The published JSON value.
    pub data: Value,
}

/// A `direct` (a `send` to this user) or `broadcast` frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Direct {
    /// The sender.
    pub from: String,
    /// Server time (ms since the Unix epoch).
    pub ts: u64,
    /// The JSON value sent.
    pub data: Value,
}

/// A `notification` pushed by the server's HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Notification {
    /// Server time (ms since the Unix epoch).
    pub ts: u64,
    /// The JSON value pushed.
    pub data: Value,
}

/// Another member joined or left a room.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Presence {
    /// The room.
    pub room: String,
    /// The member's user id.
    pub user: String,
    /// The member's display name, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// Member count after the change.
    pub members: u64,
}

/// An `error` frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerError {
    /// The request it answers, if any.
    #[serde(default)]
    pub id: Option<u64>,
    /// The stable error code.
    pub code: String,
    /// A human sentence.
    pub message: String,
}

/// One entry of a `members` reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Member {
    /// The member's connection id.
    pub conn: u64,
    /// Its user id.
    pub user: String,
    /// Its display name, if any.
    #[serde(default)]
    pub name: Option<String>,
}

/// The reply to `members`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Members {
    /// At most the server's `max_presence_list` entries.
    pub members: Vec<Member>,
    /// The exact member count.
    pub total: u64,
}

/// The ack of a `join`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct JoinAck {
    pub(crate) seq: u64,
    pub(crate) members: u64,
    #[serde(default)]
    pub(crate) history: Vec<Message>,
    #[serde(default)]
    pub(crate) recovered: Option<bool>,
    #[serde(default)]
    pub(crate) epoch: Option<String>,
}

/// Every frame a server sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ServerFrame {
    Welcome(Welcome),
    Ack {
        id: u64,
        #[serde(flatten)]
        fields: Map<String, Value>,
    },
    Error(ServerError),
    Message(Message),
    Direct(Direct),
    Broadcast(Direct),
    Notification(Notification),
    Joined(Presence),
    Left(Presence),
    Gap {
        room: String,
        from: u64,
        to: u64,
    },
    RoomClosed {
        room: String,
        reason: String,
    },
    Pong {
        #[serde(default)]
        id: Option<u64>,
    },
    /// A frame type of a later protocol version.
    #[serde(other)]
    Unknown,
}

/// Every frame this client sends (the `id` is added on the wire).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ClientFrame {
    Join {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        create: Option<bool>,
    },
    Leave {
        room: String,
    },
    Publish {
        room: String,
        data: Value,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        exclude_self: bool,
    },
    Send {
        to: String,
        data: Value,
    },
    Broadcast {
        data: Value,
    },
    Members {
        room: String,
    },
    Refresh {
        token: String,
    },
    Ping {},
}

#[derive(Serialize)]
struct Outgoing<'a> {
    #[serde(flatten)]
    frame: &'a ClientFrame,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
}

impl ClientFrame {
    /// The wire text of this frame with `id`.
    pub(crate) fn encode(&self, id: Option<u64>) -> String {
        serde_json::to_string(&Outgoing { frame: self, id })
            .unwrap_or_else(|e| format!(r#"{{"type":"invalid","error":"{e}"}}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_encode_as_the_protocol_says() {
        let join = ClientFrame::Join {
            room: "r".into(),
            since: Some(3),
            epoch: Some("e".into()),
            create: None,
        };
        let v: Value = serde_json::from_str(&join.encode(Some(7))).expect("json");
        assert_eq!(
            v,
            json!({"type":"join","room":"r","since":3,"epoch":"e","id":7})
        );
        let publish = ClientFrame::Publish {
            room: "r".into(),
            data: json!(1),
            exclude_self: false,
        };
        let v: Value = serde_json::from_str(&publish.encode(None)).expect("json");
        assert_eq!(v, json!({"type":"publish","room":"r","data":1}));
        let v: Value = serde_json::from_str(&ClientFrame::Ping {}.encode(Some(1))).expect("json");
        assert_eq!(v, json!({"type":"ping","id":1}));
    }

    #[test]
    fn server_frames_tolerate_unknown_fields_and_types() {
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"welcome","conn":1,"user":"u","shard":0,"node":"n","heartbeat_ms":5,"new":1}"#)
                .expect("welcome");
        assert!(matches!(f, ServerFrame::Welcome(w) if !w.speaks_v1_1()));
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"later_thing","x":1}"#).expect("unknown");
        assert_eq!(f, ServerFrame::Unknown);
        let f: ServerFrame =
            serde_json::from_str(r#"{"type":"ack","id":2,"room":"r","seq":4}"#).expect("ack");
        let ServerFrame::Ack { id, fields } = f else {
            panic!("ack")
        };
        assert_eq!((id, fields.get("seq")), (2, Some(&json!(4))));
    }
}
