//! Room namespaces: kinds of rooms by name prefix, and the options each
//! room takes from its kind (`[[room.namespaces]]`).
//!
//! A room belongs to the namespace with the longest prefix its name starts
//! with, or to none (a Pusher channel's room `#A#C` by its channel name `C`). Its [`Rules`] are that namespace's options, each one
//! the namespace leaves out taken from `[room]` (and `overflow` from
//! `limits.slow_consumer_policy`); a room outside every namespace has the
//! `[room]` defaults, as before namespaces existed.
//!
//! **Invariants** (unit and property tests below):
//!
//! * The namespace of a room is a function of its name alone: the longest
//!   configured prefix it starts with. Every back end asks this module, so a
//!   room has the same rules on every shard, every node and behind every
//!   front door.
//! * A room made in a namespace never has looser options than the
//!   namespace's: a `create` may only tighten them (a smaller
//!   `max_members`, a shorter `history`, `private` where the namespace is
//!   public), and a `join` makes a room with exactly the namespace's
//!   options. In a private namespace every room is private, however it is
//!   made.
//! * A join never makes a private room that the joiner may not enter: it is
//!   refused and the room is not made.
//!
//! Pure: no I/O. The back ends (the room table, the cluster backplane) and
//! the one route (the publish rules) read it.

use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, NamespaceConfig, OverflowPolicy, RoomConfig};
use crate::error::Refusal;
use crate::protocol::decode::RoomOptions;

/// Which namespace a room is in: an index into the configured list, or
/// `None` outside every namespace.
pub(crate) type NsId = Option<usize>;

/// What the rooms of a namespace (or outside every namespace) follow, every
/// option resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Rules {
    /// Rooms are private (whoever makes them).
    pub(crate) private: bool,
    /// Member cap: the default, and the most a `create` may ask for.
    pub(crate) max_members: u32,
    /// History length in messages: the default, and the most a `create`
    /// may ask for.
    pub(crate) history: usize,
    /// Messages of history in a `join` ack without `since`.
    pub(crate) history_on_join: usize,
    /// Overflow policy.
    pub(crate) overflow: OverflowPolicy,
    /// `joined` / `left` events.
    pub(crate) presence_events: bool,
    /// A `join` may make a missing room.
    pub(crate) auto_create: bool,
    /// Connections without `admin` may publish.
    pub(crate) client_publish: bool,
    /// The JSON Schema file publishes must match, as configured.
    pub(crate) schema: Option<Arc<str>>,
}

/// The options one room is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoomSettings {
    /// Private room.
    pub(crate) private: bool,
    /// Member cap.
    pub(crate) max_members: u32,
    /// History length in messages.
    pub(crate) history: usize,
    /// Overflow policy.
    pub(crate) overflow: OverflowPolicy,
}

/// One namespace.
#[derive(Debug, Clone)]
struct Namespace {
    prefix: Arc<str>,
    rules: Rules,
}

/// Every namespace of the configuration, and the rules outside them.
#[derive(Debug, Clone)]
pub(crate) struct Namespaces {
    /// In configuration order ([`NsId`] indexes this).
    list: Vec<Namespace>,
    /// Indexes into `list`, longest prefix first.
    longest_first: Vec<usize>,
    /// Rooms outside every namespace.
    outside: Rules,
}

impl Namespaces {
    /// The namespaces of `config` (validated: prefixes are valid, distinct
    /// names, and at most [`crate::limits::MAX_NAMESPACES`]).
    pub(crate) fn new(config: &Config) -> Self {
        Self::of(&config.room, config.limits.slow_consumer_policy)
    }

    /// The namespaces of `room`, whose rooms overflow with `overflow`
    /// unless a namespace says otherwise.
    pub(crate) fn of(room: &RoomConfig, overflow: OverflowPolicy) -> Self {
        let outside = Rules {
            private: false,
            max_members: room.default_max_members,
            history: room.history,
            history_on_join: room.history_on_join,
            overflow,
            presence_events: room.presence_events,
            auto_create: room.auto_create,
            client_publish: true,
            schema: None,
        };
        let list: Vec<Namespace> = room
            .namespaces
            .iter()
            .map(|ns| Namespace {
                prefix: Arc::from(ns.prefix.as_str()),
                rules: resolve(ns, &outside),
            })
            .collect();
        let mut longest_first: Vec<usize> = (0..list.len()).collect();
        longest_first.sort_by_key(|&i| std::cmp::Reverse(list[i].prefix.len()));
        Namespaces {
            list,
            longest_first,
            outside,
        }
    }

    /// How many namespaces there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The namespace of `room`: the longest prefix its name starts with.
    /// A Pusher channel's room `#A#C` is named by its channel `C` (a prefix
    /// cannot hold `#`, and no native room name can).
    #[inline]
    pub(crate) fn find(&self, room: &str) -> NsId {
        if self.list.is_empty() {
            return None;
        }
        let name = crate::pusher::names::channel_of(room).map_or(room, |(_, channel)| channel);
        self.longest_first
            .iter()
            .copied()
            .find(|&i| name.starts_with(&*self.list[i].prefix))
    }

    /// The rules of namespace `ns` (or outside every namespace).
    pub(crate) fn rules(&self, ns: NsId) -> &Rules {
        match ns.and_then(|i| self.list.get(i)) {
            Some(namespace) => &namespace.rules,
            None => &self.outside,
        }
    }

    /// The prefix of namespace `ns`.
    pub(crate) fn prefix(&self, ns: NsId) -> Option<&Arc<str>> {
        ns.and_then(|i| self.list.get(i)).map(|n| &n.prefix)
    }

    /// Every namespace, in configuration order: (prefix, rules).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Rules)> {
        self.list.iter().map(|n| (&n.prefix, &n.rules))
    }

    /// The options in effect of a room of `ns` made with `settings`
    /// (`GET /api/rooms/{room}`): the namespace's rules, with the room's
    /// own options where it has them.
    pub(crate) fn effective(&self, ns: NsId, settings: RoomSettings) -> Rules {
        Rules {
            private: settings.private,
            max_members: settings.max_members,
            history: settings.history,
            overflow: settings.overflow,
            ..self.rules(ns).clone()
        }
    }

    /// The options of `room`, in namespace `ns`, made by a `join`: exactly
    /// the namespace's.
    pub(crate) fn joined_settings(&self, ns: NsId) -> RoomSettings {
        let rules = self.rules(ns);
        RoomSettings {
            private: rules.private,
            max_members: rules.max_members,
            history: rules.history,
            overflow: rules.overflow,
        }
    }

    /// The options of `room`, in namespace `ns`, made by a `create` that
    /// asked for `options`: what it asked for where the namespace allows
    /// it, the namespace's elsewhere. Outside every namespace `options`
    /// are free (up to the protocol's ranges), as without namespaces.
    ///
    /// `forbidden` if `options` would loosen the namespace's: `private:
    /// false` in a private namespace, a larger `max_members` or `history`,
    /// another `overflow`.
    pub(crate) fn created_settings(
        &self,
        ns: NsId,
        room: &str,
        options: &RoomOptions,
    ) -> Result<RoomSettings, Refusal> {
        let rules = self.rules(ns);
        let asked = RoomSettings {
            private: options.private.unwrap_or(rules.private),
            max_members: options.max_members.unwrap_or(rules.max_members),
            history: options.history.unwrap_or(rules.history),
            overflow: options.overflow.unwrap_or(rules.overflow),
        };
        let Some(prefix) = self.prefix(ns) else {
            return Ok(asked);
        };
        let loosened = if rules.private && !asked.private {
            Some("`private: false` where the namespace's rooms are private".to_string())
        } else if asked.max_members > rules.max_members {
            Some(format!(
                "`max_members: {}` above its {}",
                asked.max_members, rules.max_members
            ))
        } else if asked.history > rules.history {
            Some(format!(
                "`history: {}` above its {}",
                asked.history, rules.history
            ))
        } else if asked.overflow != rules.overflow {
            Some(format!(
                "`overflow: \"{}\"` where its rooms overflow with \"{}\"",
                asked.overflow.as_str(),
                rules.overflow.as_str()
            ))
        } else {
            None
        };
        match loosened {
            Some(what) => Err(Refusal::loosens_namespace(room, prefix, &what)),
            None => Ok(asked),
        }
    }

    /// Whether a publisher may publish into a room of `ns`: anyone where
    /// `client_publish` is on, else only a `privileged` one (the HTTP API,
    /// a connection with `admin`). `forbidden` otherwise.
    pub(crate) fn may_publish(
        &self,
        ns: NsId,
        room: &str,
        privileged: bool,
    ) -> Result<(), Refusal> {
        if privileged || self.rules(ns).client_publish {
            return Ok(());
        }
        let prefix = self.prefix(ns).map_or("", |p| &**p);
        Err(Refusal::client_publish_off(room, prefix))
    }
}

/// The rules of namespace `ns`, each option it leaves out taken from
/// `outside`.
fn resolve(ns: &NamespaceConfig, outside: &Rules) -> Rules {
    Rules {
        private: ns.private.unwrap_or(false),
        max_members: ns.max_members.unwrap_or(outside.max_members),
        history: ns.history.unwrap_or(outside.history),
        history_on_join: ns.history_on_join.unwrap_or(outside.history_on_join),
        overflow: ns.overflow.unwrap_or(outside.overflow),
        presence_events: ns.presence_events.unwrap_or(outside.presence_events),
        auto_create: ns.auto_create.unwrap_or(outside.auto_create),
        client_publish: ns.client_publish.unwrap_or(true),
        schema: (!ns.schema_file.is_empty()).then(|| Arc::from(ns.schema_file.as_str())),
    }
}

/// `config`'s namespaces with every option written out (what `shardcast
/// config` prints).
pub(crate) fn resolved_config(config: &Config) -> Vec<NamespaceConfig> {
    Namespaces::new(config)
        .iter()
        .map(|(prefix, r)| NamespaceConfig {
            prefix: prefix.to_string(),
            private: Some(r.private),
            max_members: Some(r.max_members),
            history: Some(r.history),
            history_on_join: Some(r.history_on_join),
            overflow: Some(r.overflow),
            presence_events: Some(r.presence_events),
            auto_create: Some(r.auto_create),
            client_publish: Some(r.client_publish),
            schema_file: r.schema.as_deref().unwrap_or("").to_string(),
        })
        .collect()
}

#[cfg(test)]
#[path = "namespaces_tests.rs"]
mod tests;
