//! Reading what Redis answered: values, stream entries, room details, and
//! the refusal a script's status stands for.

use bytes::Bytes;
use redis::Value;

use crate::cluster::scripts::Status;
use crate::error::{ErrorCode, Refusal};
use crate::router::ApiOp;

pub(super) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

pub(super) fn bytes_of(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// `[id, [field, value]]` of an XRANGE answer, as (seq, message JSON).
pub(super) fn stream_entry(entry: Value) -> Option<(u64, Bytes)> {
    let Value::Array(mut parts) = entry else {
        return None;
    };
    let fields = parts.pop()?;
    let id = text(parts.first()?)?;
    let seq = id.split('-').next()?.parse().ok()?;
    let Value::Array(mut fields) = fields else {
        return None;
    };
    let Value::BulkString(json) = fields.pop()? else {
        return None;
    };
    Some((seq, Bytes::from(json)))
}

/// A member entry of a DETAILS answer.
pub(super) struct ListedMember {
    pub(super) conn: u64,
    pub(super) node: String,
    pub(super) user: String,
    pub(super) name: Option<String>,
}

/// A DETAILS answer.
pub(super) struct Details {
    pub(super) total: usize,
    pub(super) seq: u64,
    pub(super) private: bool,
    pub(super) max_members: u32,
    pub(super) overflow: String,
    pub(super) explicit: bool,
    pub(super) history: u64,
    /// The room's epoch (empty if it has none yet).
    pub(super) epoch: String,
    pub(super) members: Vec<ListedMember>,
}

impl Details {
    pub(super) fn read(items: &[Value]) -> Details {
        let mut members = Vec::new();
        let mut rest = items.iter().skip(9);
        while let (Some(field), Some(value)) = (rest.next(), rest.next()) {
            let (Some(field), Some(value)) = (text(field), text(value)) else {
                continue;
            };
            let Some((node, conn)) = field.rsplit_once('/') else {
                continue;
            };
            let (user, name) = match value.split_once('\t') {
                Some((u, n)) => (u.to_string(), Some(n.to_string())),
                None => (value.to_string(), None),
            };
            members.push(ListedMember {
                conn: conn.parse().unwrap_or(0),
                node: node.to_string(),
                user,
                name,
            });
        }
        Details {
            total: items.get(1).and_then(int).unwrap_or(0).max(0) as usize,
            seq: items.get(2).and_then(int).unwrap_or(0).max(0) as u64,
            private: items.get(3).and_then(int) == Some(1),
            max_members: items.get(4).and_then(int).unwrap_or(0).max(0) as u32,
            overflow: items
                .get(5)
                .and_then(text)
                .unwrap_or("disconnect")
                .to_string(),
            explicit: items.get(6).and_then(int) == Some(1),
            history: items.get(7).and_then(int).unwrap_or(0).max(0) as u64,
            epoch: items.get(8).and_then(text).unwrap_or("").to_string(),
            members,
        }
    }
}

/// The refusal a script's status stands for.
pub(super) fn refusal_of(status: Status, room: &str, items: &[Value]) -> Refusal {
    match status {
        Status::NotFound => Refusal::new(
            ErrorCode::RoomNotFound,
            format!("room {room} does not exist"),
        ),
        Status::NotMember => {
            Refusal::new(ErrorCode::NotMember, format!("not a member of room {room}"))
        }
        Status::MayNotCreate => Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} does not exist and this connection lacks the `create` right"),
        ),
        Status::Private => crate::shard::conn::private_room_refusal(room),
        Status::Full => {
            let max = items.get(1).and_then(int).unwrap_or(0);
            Refusal::new(
                ErrorCode::RoomFull,
                format!("room {room} is full ({max} members)"),
            )
        }
        Status::Exists => {
            Refusal::new(ErrorCode::RoomExists, format!("room {room} already exists"))
        }
        Status::PrivateMembers => Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} is private: only its members may list them"),
        ),
        Status::Ok | Status::Unknown(_) => Refusal::new(
            ErrorCode::Internal,
            format!("unexpected answer from the cluster backplane for room {room}"),
        ),
    }
}

pub(super) fn call_failed(call: ApiOp, refusal: Refusal) {
    match call {
        ApiOp::Create { reply, .. } | ApiOp::Delete { reply } => {
            let _ = reply.send(Err(refusal));
        }
        ApiOp::Publish { reply, .. } => {
            let _ = reply.send(Err(refusal));
        }
        ApiOp::Details { reply } => {
            let _ = reply.send(Err(refusal));
        }
    }
}

pub(super) fn api_answered(call: ApiOp, room: &str, status: Status, items: &[Value]) {
    if status != Status::Ok {
        return call_failed(call, refusal_of(status, room, items));
    }
    match call {
        ApiOp::Create { reply, .. } | ApiOp::Delete { reply } => {
            let _ = reply.send(Ok(()));
        }
        ApiOp::Publish { reply, .. } => {
            let seq = items.get(1).and_then(int).unwrap_or(0).max(0) as u64;
            let _ = reply.send(Ok(seq));
        }
        ApiOp::Details { reply } => {
            let d = Details::read(items);
            let members: Vec<serde_json::Value> = d
                .members
                .iter()
                .map(|m| serde_json::json!({"conn": m.conn, "node": m.node, "user": m.user, "name": m.name}))
                .collect();
            let _ = reply.send(Ok(serde_json::json!({
                "room": room,
                "members": d.total,
                "seq": d.seq,
                "epoch": d.epoch,
                "private": d.private,
                "max_members": d.max_members,
                "overflow": d.overflow,
                "explicit": d.explicit,
                "history": d.history,
                "member_list": members,
            })));
        }
    }
}
