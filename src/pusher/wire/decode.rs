//! Client events in: one text message of a Pusher connection decoded into
//! a [`ClientEvent`], checked for shape (event names, channel names, the
//! depth of a client event's `data`).
//!
//! **Invariant:** pure and panic-free (fuzzed); it allocates only in
//! proportion to the frame, borrows from it where it can (a client event's
//! `data` is a slice of the message), and every refusal is a [`WireError`]
//! with code [`codes::GENERIC`] and a reason.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{WireError, codes};
use crate::protocol::json::shallow;
use crate::pusher::names::{is_valid_channel, is_valid_event};

/// A client event, decoded and checked for shape.
#[derive(Debug, PartialEq)]
pub(crate) enum ClientEvent<'a> {
    /// `pusher:ping`
    Ping,
    /// `pusher:pong`
    Pong,
    /// `pusher:subscribe`
    Subscribe {
        /// The channel (valid).
        channel: Cow<'a, str>,
        /// `key:signature`, for private and presence channels.
        auth: Option<Cow<'a, str>>,
        /// The presence member (a JSON string), signed with the auth.
        channel_data: Option<Cow<'a, str>>,
    },
    /// `pusher:unsubscribe`
    Unsubscribe {
        /// The channel (valid).
        channel: Cow<'a, str>,
    },
    /// `pusher:signin` (user authentication).
    Signin {
        /// `key:signature` over `socket_id::user::user_data`.
        auth: Cow<'a, str>,
        /// The user (a JSON string with `id`).
        user_data: Cow<'a, str>,
    },
    /// `client-*` on a channel.
    Client {
        /// The event name (valid, starts with `client-`).
        event: Cow<'a, str>,
        /// The channel (valid).
        channel: Cow<'a, str>,
        /// The raw JSON of `data` (a slice of the message), if given.
        data: Option<&'a str>,
    },
}

fn bad(message: impl Into<String>) -> WireError {
    WireError {
        code: codes::GENERIC,
        message: message.into(),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SubscribeData<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(borrow, default)]
    auth: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel_data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SigninData<'a> {
    #[serde(borrow)]
    auth: Cow<'a, str>,
    #[serde(borrow)]
    user_data: Cow<'a, str>,
}

/// `data` of a `pusher:*` event: an object, or a JSON string holding one
/// (some clients send it encoded).
fn object_data<'a, T: Deserialize<'a>>(
    data: Option<&'a RawValue>,
    event: &str,
) -> Result<T, WireError> {
    let Some(raw) = data else {
        return Err(bad(format!("{event} needs a `data` object")));
    };
    serde_json::from_str::<T>(raw.get()).map_err(|e| bad(format!("invalid `data` of {event}: {e}")))
}

/// Decode one client text message. A client event's `data` may nest at
/// most `max_depth` arrays and objects (`limits.max_json_depth`), as a
/// native frame's `data`: it is stored in the room's history and handed
/// to every member.
pub(crate) fn decode(text: &str, max_depth: usize) -> Result<ClientEvent<'_>, WireError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "not a Pusher event (a JSON object with `event`): {e}"
        ))
    })?;
    let event = envelope.event;
    match &*event {
        "pusher:ping" => Ok(ClientEvent::Ping),
        "pusher:pong" => Ok(ClientEvent::Pong),
        "pusher:subscribe" => {
            let data: SubscribeData<'_> = match envelope.data.map(|d| d.get()) {
                // Data sent as a string holding the object.
                Some(s) if s.starts_with('"') => {
                    return Err(bad("`data` of pusher:subscribe must be an object"));
                }
                _ => object_data(envelope.data, "pusher:subscribe")?,
            };
            valid_channel(&data.channel)?;
            Ok(ClientEvent::Subscribe {
                channel: data.channel,
                auth: data.auth,
                channel_data: data.channel_data,
            })
        }
        "pusher:unsubscribe" => {
            #[derive(Deserialize)]
            struct D<'a> {
                #[serde(borrow)]
                channel: Cow<'a, str>,
            }
            let data: D<'_> = object_data(envelope.data, "pusher:unsubscribe")?;
            valid_channel(&data.channel)?;
            Ok(ClientEvent::Unsubscribe {
                channel: data.channel,
            })
        }
        "pusher:signin" => {
            let data: SigninData<'_> = object_data(envelope.data, "pusher:signin")?;
            Ok(ClientEvent::Signin {
                auth: data.auth,
                user_data: data.user_data,
            })
        }
        name if name.starts_with("client-") => {
            if !is_valid_event(name) {
                return Err(bad(
                    "the event name must be 1-200 bytes without control characters",
                ));
            }
            let Some(channel) = envelope.channel else {
                return Err(bad("a client event needs a `channel`"));
            };
            valid_channel(&channel)?;
            let data = envelope.data.map(|d| d.get());
            if let Some(data) = data {
                shallow("data", data.as_bytes(), max_depth).map_err(|r| bad(r.message))?;
            }
            Ok(ClientEvent::Client {
                event,
                channel,
                data,
            })
        }
        other => Err(bad(format!(
            "unknown event {:?}: clients send pusher:ping, pusher:pong, pusher:subscribe, \
             pusher:unsubscribe, pusher:signin or client-* events",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

fn valid_channel(channel: &str) -> Result<(), WireError> {
    if is_valid_channel(channel) {
        Ok(())
    } else {
        Err(bad(
            "invalid channel name: 1-164 characters of [A-Za-z0-9_-=@,.;]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `limits.max_json_depth`'s default.
    const MAX_DEPTH: usize = 32;

    #[test]
    fn decodes_what_pusher_js_sends() {
        assert_eq!(
            decode(r#"{"event":"pusher:ping","data":{}}"#, MAX_DEPTH),
            Ok(ClientEvent::Ping)
        );
        let sub = decode(r#"{"event":"pusher:subscribe","data":{"auth":"k:s","channel":"presence-a","channel_data":"{\"user_id\":\"1\"}"}}"#, MAX_DEPTH)
        .expect("subscribe");
        assert_eq!(
            sub,
            ClientEvent::Subscribe {
                channel: "presence-a".into(),
                auth: Some("k:s".into()),
                channel_data: Some(r#"{"user_id":"1"}"#.into()),
            }
        );
        let client = decode(
            r#"{"event":"client-typing","channel":"private-a","data":{"x":1}}"#,
            MAX_DEPTH,
        )
        .expect("client event");
        assert!(matches!(
            client,
            ClientEvent::Client {
                data: Some(r#"{"x":1}"#),
                ..
            }
        ));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"data":{}}"#,
            r#"{"event":"pusher:subscribe"}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#,
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"x\"}"}"#,
            r#"{"event":"client-x","data":{}}"#,
            r#"{"event":"whatever","data":{}}"#,
        ] {
            let e = decode(bad, MAX_DEPTH).expect_err(bad);
            assert_eq!(e.code, codes::GENERIC);
            assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn client_event_data_nests_no_deeper_than_the_limit() {
        let event = |depth: usize| {
            let data = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            format!(r#"{{"event":"client-x","channel":"private-a","data":{data}}}"#)
        };
        assert!(decode(&event(MAX_DEPTH), MAX_DEPTH).is_ok());
        for depth in [MAX_DEPTH + 1, 30_000] {
            let e = decode(&event(depth), MAX_DEPTH).expect_err("too deep");
            assert_eq!(e.code, codes::GENERIC);
            assert!(e.message.contains("limits.max_json_depth"), "{e}");
        }
        // Only client events carry data for others.
        let deep_ping = format!(
            r#"{{"event":"pusher:ping","data":{{"x":{}}}}}"#,
            "[".repeat(40) + &"]".repeat(40)
        );
        assert_eq!(decode(&deep_ping, MAX_DEPTH), Ok(ClientEvent::Ping));
    }
}
