//! The Pusher Channels protocol 7 on the wire: client events in
//! ([`decode`]), server events out (the encoders below), and a room
//! frame's Pusher form ([`from_native`]).
//!
//! Pure and panic-free (fuzzed): decoding allocates only in proportion to
//! the frame, and every encoder writes one WebSocket text frame in one
//! buffer.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::names::{Kind, is_valid_channel, is_valid_event};
use crate::protocol::json::shallow;
use crate::ws::encode::{FrameBuf, text_payload};

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

/// Why a client event was refused: `pusher:error` with this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct WireError {
    /// The Pusher error code.
    pub(crate) code: u16,
    /// Why, for people.
    pub(crate) message: String,
}

/// Pusher error codes (the protocol's, and this server's in 4300-4399).
pub(crate) mod codes {
    /// Close: the app key is unknown (do not reconnect).
    pub(crate) const APP_UNKNOWN: u16 = 4001;
    /// Close: the path is not `/app/{key}` (do not reconnect).
    pub(crate) const PATH_NOT_FOUND: u16 = 4005;
    /// Close: the `protocol` query parameter is not a number.
    pub(crate) const INVALID_VERSION: u16 = 4006;
    /// Close: protocol version below 7.
    pub(crate) const UNSUPPORTED_VERSION: u16 = 4007;
    /// Close: no `protocol` query parameter.
    pub(crate) const NO_VERSION: u16 = 4008;
    /// Close: over capacity (reconnect with backoff).
    pub(crate) const OVER_CAPACITY: u16 = 4100;
    /// Close: slow consumer, the outbound queue overflowed (reconnect
    /// with backoff).
    pub(crate) const SLOW_CONSUMER: u16 = 4100;
    /// Close: reconnect now (the server is shutting down).
    pub(crate) const RECONNECT: u16 = 4200;
    /// Close: no pong in time (reconnect now).
    pub(crate) const PONG_TIMEOUT: u16 = 4201;
    /// Close: a policy decision of the server (kicked, terminated).
    pub(crate) const POLICY: u16 = 4009;
    /// Error: a malformed or unknown event, or a refused operation.
    pub(crate) const GENERIC: u16 = 4300;
    /// Error: client events over the per-connection rate.
    pub(crate) const CLIENT_RATE: u16 = 4301;
    /// Error: an event larger than `pusher.max_event_bytes`.
    pub(crate) const TOO_LARGE: u16 = 4302;
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

// ---- server events ------------------------------------------------------

/// Writes one `{"event":...}` object into a WebSocket frame.
struct Event {
    frame: FrameBuf,
}

impl Event {
    fn new(event: &str, hint: usize) -> Event {
        let mut frame = FrameBuf::with_capacity(hint + 48 + event.len());
        let out = frame.payload();
        out.extend_from_slice(b"{\"event\":");
        string(out, event);
        Event { frame }
    }

    fn channel(mut self, channel: &str) -> Event {
        let out = self.frame.payload();
        out.extend_from_slice(b",\"channel\":");
        string(out, channel);
        self
    }

    /// `"data":` followed by raw JSON.
    fn raw_data(mut self, json: &[u8]) -> Event {
        let out = self.frame.payload();
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(json);
        self
    }

    /// `"data":` followed by `json` as a JSON string (the protocol's
    /// encoding of most server events).
    fn string_data(mut self, json: &[u8]) -> Event {
        let out = self.frame.payload();
        out.extend_from_slice(b",\"data\":");
        string(out, &String::from_utf8_lossy(json));
        self
    }

    fn user_id(mut self, user: &str) -> Event {
        let out = self.frame.payload();
        out.extend_from_slice(b",\"user_id\":");
        string(out, user);
        self
    }

    fn finish(mut self) -> Bytes {
        self.frame.payload().push(b'}');
        self.frame.finish_text()
    }
}

/// Append `value` as a JSON string.
fn string(out: &mut Vec<u8>, value: &str) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// `pusher:connection_established`
pub(crate) fn connection_established(socket_id: &str, activity_timeout_s: u64) -> Bytes {
    let inner = format!(r#"{{"socket_id":"{socket_id}","activity_timeout":{activity_timeout_s}}}"#);
    Event::new("pusher:connection_established", 64)
        .string_data(inner.as_bytes())
        .finish()
}

/// `pusher:error` (with a code unless `None`).
pub(crate) fn error(code: Option<u16>, message: &str) -> Bytes {
    let mut data = Vec::with_capacity(48 + message.len());
    data.extend_from_slice(b"{\"code\":");
    match code {
        Some(code) => data.extend_from_slice(code.to_string().as_bytes()),
        None => data.extend_from_slice(b"null"),
    }
    data.extend_from_slice(b",\"message\":");
    string(&mut data, message);
    data.push(b'}');
    Event::new("pusher:error", data.len())
        .raw_data(&data)
        .finish()
}

/// `pusher:pong`
pub(crate) fn pong() -> Bytes {
    Event::new("pusher:pong", 8).raw_data(b"{}").finish()
}

/// `pusher:ping`: the server's heartbeat on a Pusher connection (its
/// clients answer `pusher:pong`; browsers do not let a page see WebSocket
/// pings).
pub(crate) fn ping() -> Bytes {
    Event::new("pusher:ping", 8).raw_data(b"{}").finish()
}

/// `pusher_internal:subscription_succeeded` of a channel that is not a
/// presence channel.
pub(crate) fn subscribed(channel: &str) -> Bytes {
    Event::new("pusher_internal:subscription_succeeded", channel.len())
        .channel(channel)
        .string_data(b"{}")
        .finish()
}

/// A presence channel's member, for `subscription_succeeded`.
pub(crate) struct PresenceMember<'a> {
    /// The user id.
    pub(crate) user: &'a str,
    /// Raw JSON of its `user_info`, if any.
    pub(crate) info: Option<&'a str>,
}

/// `pusher_internal:subscription_succeeded` of a presence channel: `ids`,
/// `hash` (user id → user_info) and `count` of its users.
pub(crate) fn presence_subscribed<'m>(
    channel: &str,
    members: impl Iterator<Item = PresenceMember<'m>> + Clone,
    count: usize,
) -> Bytes {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(b"{\"presence\":{\"ids\":[");
    for (i, m) in members.clone().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        string(&mut data, m.user);
    }
    data.extend_from_slice(b"],\"hash\":{");
    for (i, m) in members.enumerate() {
        if i > 0 {
            data.push(b',');
        }
        string(&mut data, m.user);
        data.push(b':');
        data.extend_from_slice(m.info.unwrap_or("null").as_bytes());
    }
    data.extend_from_slice(b"},\"count\":");
    data.extend_from_slice(count.to_string().as_bytes());
    data.extend_from_slice(b"}}");
    Event::new(
        "pusher_internal:subscription_succeeded",
        channel.len() + 2 * data.len(),
    )
    .channel(channel)
    .string_data(&data)
    .finish()
}

/// `pusher:subscription_error` for `channel`: `kind` (`AuthError`, ...),
/// why, and the HTTP-like status.
pub(crate) fn subscription_error(channel: &str, kind: &str, why: &str, status: u16) -> Bytes {
    let mut data = Vec::with_capacity(64 + why.len());
    data.extend_from_slice(b"{\"type\":");
    string(&mut data, kind);
    data.extend_from_slice(b",\"error\":");
    string(&mut data, why);
    data.extend_from_slice(b",\"status\":");
    data.extend_from_slice(status.to_string().as_bytes());
    data.push(b'}');
    Event::new("pusher:subscription_error", channel.len() + data.len())
        .channel(channel)
        .raw_data(&data)
        .finish()
}

/// `pusher_internal:member_added`
pub(crate) fn member_added(channel: &str, user: &str, info: Option<&str>) -> Bytes {
    let mut data = Vec::with_capacity(32 + user.len());
    data.extend_from_slice(b"{\"user_id\":");
    string(&mut data, user);
    data.extend_from_slice(b",\"user_info\":");
    data.extend_from_slice(info.unwrap_or("null").as_bytes());
    data.push(b'}');
    Event::new(
        "pusher_internal:member_added",
        channel.len() + 2 * data.len(),
    )
    .channel(channel)
    .string_data(&data)
    .finish()
}

/// `pusher_internal:member_removed`
pub(crate) fn member_removed(channel: &str, user: &str) -> Bytes {
    let mut data = Vec::with_capacity(16 + user.len());
    data.extend_from_slice(b"{\"user_id\":");
    string(&mut data, user);
    data.push(b'}');
    Event::new(
        "pusher_internal:member_removed",
        channel.len() + 2 * data.len(),
    )
    .channel(channel)
    .string_data(&data)
    .finish()
}

/// `pusher:signin_success`
pub(crate) fn signin_success(user_data: &str) -> Bytes {
    let mut data = Vec::with_capacity(16 + user_data.len());
    data.extend_from_slice(b"{\"user_data\":");
    string(&mut data, user_data);
    data.push(b'}');
    Event::new("pusher:signin_success", data.len())
        .raw_data(&data)
        .finish()
}

/// `pusher:gap` (a shardcast extension, emitted on the channel): events
/// `from..=to` were dropped for this slow connection by the channel's
/// `drop` overflow policy.
pub(crate) fn gap(channel: &str, from: u64, to: u64) -> Bytes {
    let data = format!(r#"{{"from":{from},"to":{to}}}"#);
    Event::new("pusher:gap", channel.len() + 2 * data.len())
        .channel(channel)
        .string_data(data.as_bytes())
        .finish()
}

/// An event on a channel: `data` is raw JSON (a string for events from
/// the HTTP API, anything for client events), `user_id` is added for
/// client events on presence channels.
pub(crate) fn channel_event(channel: &str, event: &str, data: &[u8], user: Option<&str>) -> Bytes {
    let hint = channel.len() + data.len() + user.map_or(0, str::len) + 16;
    let e = Event::new(event, hint).channel(channel).raw_data(data);
    match user {
        Some(user) => e.user_id(user).finish(),
        None => e.finish(),
    }
}

/// The native frame fields a Pusher event is made from.
#[derive(Deserialize)]
struct Native<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    from: Option<&'a RawValue>,
    #[serde(default)]
    to: Option<u64>,
}

/// The Pusher form of a native room frame of `channel`: a `message`
/// becomes the channel event it was published as (`event`, `data`, and
/// `user_id` for client events on presence channels), a `gap` becomes
/// `pusher:gap`; any other frame has no Pusher form.
pub(crate) fn from_native(channel: &str, native: &Bytes) -> Option<Bytes> {
    let payload = text_payload(native);
    let frame: Native<'_> = serde_json::from_slice(&payload).ok()?;
    match &*frame.kind {
        "message" => {
            let event = frame.event.unwrap_or(Cow::Borrowed("message"));
            let data = frame.data.map_or("null", |d| d.get());
            let user = if Kind::of(channel) == Kind::Presence && event.starts_with("client-") {
                frame
                    .from
                    .and_then(|f| serde_json::from_str::<Cow<'_, str>>(f.get()).ok())
            } else {
                None
            };
            Some(channel_event(
                channel,
                &event,
                data.as_bytes(),
                user.as_deref(),
            ))
        }
        "gap" => {
            let from = frame.from.and_then(|f| f.get().parse().ok())?;
            Some(gap(channel, from, frame.to?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    /// `limits.max_json_depth`'s default.
    const MAX_DEPTH: usize = 32;

    fn json(frame: &Bytes) -> serde_json::Value {
        serde_json::from_slice(&text_payload(frame)).expect("valid JSON")
    }

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

    #[test]
    fn server_events_are_what_pusher_js_reads() {
        let ce = json(&connection_established("1.2", 120));
        let inner: serde_json::Value =
            serde_json::from_str(ce["data"].as_str().expect("string data")).expect("inner");
        assert_eq!(inner["socket_id"], "1.2");
        assert_eq!(inner["activity_timeout"], 120);
        let e = json(&error(Some(4001), "no app \"x\""));
        assert_eq!(e["data"]["code"], 4001);
        let p = json(&presence_subscribed(
            "presence-a",
            [("1", Some(r#"{"n":"a"}"#))]
                .iter()
                .map(|(user, info)| PresenceMember { user, info: *info }),
            1,
        ));
        let inner: serde_json::Value =
            serde_json::from_str(p["data"].as_str().expect("string")).expect("inner");
        assert_eq!(inner["presence"]["hash"]["1"]["n"], "a");
        assert_eq!(inner["presence"]["count"], 1);
        let added = json(&member_added("presence-a", "7", None));
        assert_eq!(added["event"], "pusher_internal:member_added");
    }

    #[test]
    fn native_messages_become_channel_events() {
        let native =
            encode::message_event("#1#presence-a", 3, "u1", 9, br#"{"x":1}"#, Some("client-x"));
        let v = json(&from_native("presence-a", &native).expect("pusher form"));
        assert_eq!(v["event"], "client-x");
        assert_eq!(v["channel"], "presence-a");
        assert_eq!(v["data"]["x"], 1);
        assert_eq!(v["user_id"], "u1");
        let api = encode::message_event("#1#news", 4, "system", 9, br#""hi""#, Some("ev"));
        let v = json(&from_native("news", &api).expect("pusher form"));
        assert_eq!(
            (v["event"].clone(), v["data"].clone()),
            ("ev".into(), "hi".into())
        );
        assert!(v.get("user_id").is_none());
        let gap = json(&from_native("news", &encode::gap("#1#news", 2, 5)).expect("gap"));
        assert_eq!(gap["event"], "pusher:gap");
        assert!(from_native("news", &encode::pong(None)).is_none());
    }
}
