//! The first pass over a client frame: every field any frame may carry,
//! kept as raw JSON slices of the received text, plus the first key that
//! is unknown or repeated. Which fields a frame's `type` allows, and their
//! values, are checked by the caller ([`super::decode_client_frame`]).
//!
//! **Invariant:** the fields are slices of the received text, never
//! copies; only the first unknown key is kept, cut to 64 characters, for
//! the error message.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Every field any client frame may carry, as raw JSON.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub(super) kind: Option<&'a RawValue>,
    pub(super) id: Option<&'a RawValue>,
    pub(super) room: Option<&'a RawValue>,
    pub(super) since: Option<&'a RawValue>,
    pub(super) create: Option<&'a RawValue>,
    pub(super) max_members: Option<&'a RawValue>,
    pub(super) private: Option<&'a RawValue>,
    pub(super) history: Option<&'a RawValue>,
    pub(super) overflow: Option<&'a RawValue>,
    pub(super) data: Option<&'a RawValue>,
    pub(super) exclude_self: Option<&'a RawValue>,
    pub(super) to: Option<&'a RawValue>,
    pub(super) epoch: Option<&'a RawValue>,
    pub(super) token: Option<&'a RawValue>,
    /// The first key that is no field of any frame, or a repeated key.
    pub(super) stray: Option<Stray>,
}

pub(super) enum Stray {
    Unknown(String),
    Duplicate(&'static str),
}

const ALL_FIELDS: [&str; 14] = [
    "type",
    "id",
    "room",
    "since",
    "create",
    "max_members",
    "private",
    "history",
    "overflow",
    "data",
    "exclude_self",
    "to",
    "epoch",
    "token",
];

impl<'a> Fields<'a> {
    fn slot(&mut self, key: &str) -> Option<(&'static str, &mut Option<&'a RawValue>)> {
        let slot = match key {
            "type" => ("type", &mut self.kind),
            "id" => ("id", &mut self.id),
            "room" => ("room", &mut self.room),
            "since" => ("since", &mut self.since),
            "create" => ("create", &mut self.create),
            "max_members" => ("max_members", &mut self.max_members),
            "private" => ("private", &mut self.private),
            "history" => ("history", &mut self.history),
            "overflow" => ("overflow", &mut self.overflow),
            "data" => ("data", &mut self.data),
            "exclude_self" => ("exclude_self", &mut self.exclude_self),
            "to" => ("to", &mut self.to),
            "epoch" => ("epoch", &mut self.epoch),
            "token" => ("token", &mut self.token),
            _ => return None,
        };
        Some(slot)
    }

    /// The fields present, by name.
    pub(super) fn present(&self) -> impl Iterator<Item = &'static str> + '_ {
        let values = [
            self.kind,
            self.id,
            self.room,
            self.since,
            self.create,
            self.max_members,
            self.private,
            self.history,
            self.overflow,
            self.data,
            self.exclude_self,
            self.to,
            self.epoch,
            self.token,
        ];
        ALL_FIELDS
            .into_iter()
            .zip(values)
            .filter_map(|(name, v)| v.map(|_| name))
    }
}

impl<'de> de::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let known = match key {
                        Key::Known(name) => fields.slot(name),
                        Key::Unknown(_) => None,
                    };
                    match known {
                        Some((name, slot)) => {
                            let value: &'de RawValue = map.next_value()?;
                            if slot.replace(value).is_some() && fields.stray.is_none() {
                                fields.stray = Some(Stray::Duplicate(name));
                            }
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            if let (None, Key::Unknown(name)) = (&fields.stray, key) {
                                fields.stray = Some(Stray::Unknown(name));
                            }
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// An object key: one of [`ALL_FIELDS`] (matched without allocating, also
/// when the key is written with escapes), or an unknown key kept for the
/// error message.
enum Key {
    Known(&'static str),
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match ALL_FIELDS.iter().find(|f| **f == key) {
                    Some(name) => Key::Known(name),
                    None => Key::Unknown(key.chars().take(64).collect()),
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
