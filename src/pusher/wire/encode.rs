//! Server events out: each encoder writes one Pusher event as one
//! WebSocket text frame, and [`from_native`] makes a native room frame's
//! Pusher form.
//!
//! **Invariant:** pure and panic-free; every encoder writes its frame in
//! one buffer, and strings go out JSON-escaped (a value that cannot be
//! written becomes `""`, never a broken frame).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::pusher::names::Kind;
use crate::ws::encode::{FrameBuf, text_payload};

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

    fn json(frame: &Bytes) -> serde_json::Value {
        serde_json::from_slice(&text_payload(frame)).expect("valid JSON")
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
