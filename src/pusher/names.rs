//! Pusher channel names, their kinds, and the rooms they are.
//!
//! A channel of app `A` named `C` is the room `#A#C`. The mapping is
//! injective: app ids are `[A-Za-z0-9_-]` (no `#`), so the first `#` after
//! the leading one ends the app id, and the rest is the channel. No native
//! room name can hold `#` (PROTOCOL.md, "Room names"), so native rooms and
//! Pusher channels never meet, and two apps' channels never meet either.
//! Internal room names may be longer than native ones (a channel is up to
//! [`MAX_CHANNEL_BYTES`]); only the native front doors apply the 128-byte
//! rule.

/// Longest channel name (the Pusher protocol's limit).
pub(crate) const MAX_CHANNEL_BYTES: usize = 164;

/// Longest event name (the Pusher HTTP API's limit).
pub(crate) const MAX_EVENT_NAME_BYTES: usize = 200;

/// Longest presence `user_id` accepted, bytes.
pub(crate) const MAX_USER_ID_BYTES: usize = 128;

/// What kind of channel a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Anyone may subscribe.
    Public,
    /// `private-`: a signed auth is needed.
    Private,
    /// `private-encrypted-`: private, and the data is end-to-end encrypted
    /// (the server passes it through).
    Encrypted,
    /// `presence-`: private, with members listed by user.
    Presence,
    /// `#server-to-user-<id>`: the events for signed-in user `id`
    /// (`sendToUser`); only that user's connections may subscribe.
    ServerToUser,
}

impl Kind {
    /// The kind of channel `name`.
    pub(crate) fn of(name: &str) -> Kind {
        if name.starts_with(SERVER_TO_USER) {
            Kind::ServerToUser
        } else if name.starts_with("private-encrypted-") {
            Kind::Encrypted
        } else if name.starts_with("private-") {
            Kind::Private
        } else if name.starts_with("presence-") {
            Kind::Presence
        } else {
            Kind::Public
        }
    }

    /// Whether subscribing needs a signature.
    pub(crate) fn needs_auth(self) -> bool {
        matches!(self, Kind::Private | Kind::Encrypted | Kind::Presence)
    }
}

/// The prefix of a signed-in user's own channel.
pub(crate) const SERVER_TO_USER: &str = "#server-to-user-";

/// Whether `name` is a valid channel name: 1-164 bytes of
/// `[A-Za-z0-9_\-=@,.;]`, or a user's own channel
/// (`#server-to-user-<user id>`).
pub(crate) fn is_valid_channel(name: &str) -> bool {
    if let Some(user) = name.strip_prefix(SERVER_TO_USER) {
        return is_valid_user_id(user);
    }
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
        })
}

/// Whether `name` is a valid event name: 1-200 bytes without control
/// characters.
pub(crate) fn is_valid_event(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_EVENT_NAME_BYTES && !name.chars().any(char::is_control)
}

/// Whether `id` is acceptable as a presence or signed-in `user_id`: 1-128
/// bytes without control characters (so it never breaks a line or a field
/// of the cluster's wire format).
pub(crate) fn is_valid_user_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_USER_ID_BYTES && !id.chars().any(char::is_control)
}

/// The room of channel `channel` of app `app`.
pub(crate) fn room_of(app: &str, channel: &str) -> String {
    let mut room = String::with_capacity(2 + app.len() + channel.len());
    room.push('#');
    room.push_str(app);
    room.push('#');
    room.push_str(channel);
    room
}

/// The prefix of every room of app `app` (`#A#`).
pub(crate) fn app_prefix(app: &str) -> String {
    format!("#{app}#")
}

/// The (app, channel) a room is, if it is a Pusher channel.
pub(crate) fn channel_of(room: &str) -> Option<(&str, &str)> {
    room.strip_prefix('#')?.split_once('#')
}

/// The channel part of a room of a known app (the room itself if it is not
/// a Pusher room).
pub(crate) fn channel_name(room: &str) -> &str {
    channel_of(room).map_or(room, |(_, channel)| channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_and_names() {
        assert_eq!(Kind::of("presence-room"), Kind::Presence);
        assert_eq!(Kind::of("private-encrypted-x"), Kind::Encrypted);
        assert_eq!(Kind::of("private-x"), Kind::Private);
        assert_eq!(Kind::of("news"), Kind::Public);
        assert!(!Kind::Public.needs_auth());
        assert!(is_valid_channel("a=b,c;d@e.f_g-h"));
        assert!(is_valid_channel(&"a".repeat(164)));
        assert!(!is_valid_channel(&"a".repeat(165)));
        assert!(!is_valid_channel("a b"));
        assert!(!is_valid_channel("a#b"));
        assert!(is_valid_channel("#server-to-user-42"));
        assert_eq!(Kind::of("#server-to-user-42"), Kind::ServerToUser);
        assert!(!is_valid_channel("#server-to-user-"));
        assert!(!is_valid_channel(""));
        assert!(is_valid_event("client-typing"));
        assert!(!is_valid_event("a\nb"));
        assert!(!is_valid_user_id("a\tb"));
        assert!(!crate::protocol::names::is_valid_name(&room_of(
            "1", "news"
        )));
    }

    proptest! {
        #[test]
        fn the_room_mapping_is_injective_and_reversible(
            app in "[A-Za-z0-9_-]{1,64}",
            channel in "[A-Za-z0-9_=@,.;-]{1,164}",
            other_app in "[A-Za-z0-9_-]{1,64}",
            other in "[A-Za-z0-9_=@,.;-]{1,164}",
        ) {
            let room = room_of(&app, &channel);
            prop_assert_eq!(channel_of(&room), Some((app.as_str(), channel.as_str())));
            prop_assert!(room.starts_with(&app_prefix(&app)));
            if (app.as_str(), channel.as_str()) != (other_app.as_str(), other.as_str()) {
                prop_assert_ne!(room, room_of(&other_app, &other));
            }
        }
    }
}
