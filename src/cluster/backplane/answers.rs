//! Reading what Redis answered: values, stream entries, room details, and
//! the refusal a script's status stands for.

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use crate::cluster::scripts::Status;
use crate::config::OverflowPolicy;
use crate::delivery::{MemberInfo, RoomDetails};
use crate::error::{ErrorCode, Refusal};
use crate::room::namespaces::{Namespaces, RoomSettings};

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
    /// Its `history` option (the most messages its stream keeps).
    pub(super) history_len: usize,
    /// Distinct users.
    pub(super) users: usize,
    pub(super) members: Vec<ListedMember>,
}

impl Details {
    pub(super) fn read(items: &[Value]) -> Details {
        let mut members = Vec::new();
        let mut rest = items.iter().skip(11);
        while let (Some(field), Some(value)) = (rest.next(), rest.next()) {
            let (Some(field), Some(value)) = (text(field), text(value)) else {
                continue;
            };
            let Some((node, conn)) = field.rsplit_once('/') else {
                continue;
            };
            let (user, name, _) = crate::cluster::wire::parse_member(value);
            let (user, name) = (user.to_string(), name.map(String::from));
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
            history_len: items.get(9).and_then(int).unwrap_or(0).max(0) as usize,
            users: items.get(10).and_then(int).unwrap_or(0).max(0) as usize,
            members,
        }
    }
}

/// The refusal a script's status stands for.
pub(super) fn refusal_of(status: Status, room: &str, items: &[Value]) -> Refusal {
    match status {
        Status::NotFound => Refusal::room_not_found(room),
        Status::NotMember => Refusal::not_member(room),
        Status::MayNotCreate => Refusal::may_not_create(room),
        Status::Private => Refusal::private_room(room),
        Status::Full => {
            let max = items
                .get(1)
                .and_then(int)
                .unwrap_or(0)
                .clamp(0, i64::from(u32::MAX));
            Refusal::room_full(room, max as u32)
        }
        Status::Exists => Refusal::room_exists(room),
        Status::PrivateMembers => Refusal::private_members(room),
        Status::Quota => {
            let max = items
                .get(1)
                .and_then(int)
                .unwrap_or(0)
                .clamp(0, i64::from(u32::MAX));
            let who = match items.get(2).and_then(text) {
                Some("connection") => "connection",
                _ => "user",
            };
            Refusal::too_many_rooms_created(who, max as u32)
        }
        Status::OverMemory => Refusal::over_memory_budget(),
        Status::Ok | Status::OtherNamespaces | Status::Unknown(_) => Refusal::new(
            ErrorCode::Internal,
            format!("unexpected answer from the cluster backplane for room {room}"),
        ),
    }
}

impl Details {
    /// The members listed, as the protocol shows them.
    pub(super) fn member_infos(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|m| MemberInfo {
                conn: m.conn,
                node: Some(Arc::from(m.node.as_str())),
                user: Arc::from(m.user.as_str()),
                name: m.name.as_deref().map(Arc::from),
            })
            .collect()
    }

    /// The API's details of `room`, whose namespace rules are in
    /// `namespaces`.
    pub(super) fn into_room_details(self, room: &Arc<str>, namespaces: &Namespaces) -> RoomDetails {
        let member_list = self.member_infos();
        let overflow = if self.overflow == "drop" {
            OverflowPolicy::Drop
        } else {
            OverflowPolicy::Disconnect
        };
        let ns = namespaces.find(room);
        let settings = RoomSettings {
            private: self.private,
            max_members: self.max_members,
            history: self.history_len,
            overflow,
        };
        RoomDetails {
            room: room.clone(),
            members: self.total,
            users: self.users,
            seq: self.seq,
            epoch: self.epoch,
            private: self.private,
            max_members: self.max_members,
            overflow: overflow.as_str(),
            explicit: self.explicit,
            history: self.history,
            home_shard: None,
            namespace: namespaces.prefix(ns).cloned(),
            options: namespaces.effective(ns, settings),
            member_list,
        }
    }
}
