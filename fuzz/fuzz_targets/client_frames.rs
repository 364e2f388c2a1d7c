//! Fuzz target `client_frames`: client bytes through the WebSocket frame
//! reader (`ws::MessageReader`) and every complete text message through the
//! protocol decoder (`protocol::decode_client_frame`).
//!
//! Input: byte 0 picks the reader's `max_message_bytes`, bytes 1-2 seed the
//! chunk sizes, the rest is what a client sends after the upgrade.
//!
//! Checks, besides "never panics":
//! - a message never exceeds the cap (data messages) or 125 bytes (control);
//!   text and close reasons are UTF-8;
//! - feeding the bytes in pseudo-random chunks gives the same messages, the
//!   same error and the same unconsumed bytes as feeding them in one piece;
//! - a decoded frame's names (and a join's `epoch`) are valid, its `id` is
//!   at most 2^53-1, its `data` is one JSON value borrowed from the
//!   message whose depth `protocol::json` measures in one pass exactly as a
//!   recursive parse does (the `limits.max_json_depth` check), a `refresh` token is a non-empty borrowed string; a refused frame
//!   has code `bad_request` or `unknown_type` and a message.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardcast::ErrorCode;
use shardcast::limits::MAX_FRAME_ID;
use shardcast::protocol::json;
use shardcast::protocol::names::is_valid_name;
use shardcast::protocol::{ClientFrame, decode_client_frame};
use shardcast::ws::{Message, MessageReader, WsError};

/// What a reader made of a byte stream.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<WsError>,
    /// Bytes left in the buffer (a partial frame), when there was no error.
    rest: Vec<u8>,
}

fn read(cap: usize, bytes: &[u8], chunks: impl Iterator<Item = usize>) -> Outcome {
    let mut reader = MessageReader::new(cap);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut at = 0;
    let mut chunks = chunks;
    loop {
        let n = chunks.next().unwrap_or(bytes.len()).min(bytes.len() - at);
        buf.extend_from_slice(&bytes[at..at + n]);
        at += n;
        loop {
            match reader.next(&mut buf) {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e),
                        rest: Vec::new(),
                    };
                }
            }
        }
        if at == bytes.len() {
            break;
        }
    }
    Outcome {
        messages,
        error: None,
        rest: buf.to_vec(),
    }
}

/// Chunk sizes from a 16-bit seed (xorshift): 1 to 64 bytes each.
fn chunk_sizes(seed: u16) -> impl Iterator<Item = usize> {
    let mut state = u32::from(seed) | 0x1_0000;
    std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Some((state % 64) as usize + 1)
    })
}

fn check_message(cap: usize, m: &Message) {
    match m {
        Message::Text(p) => {
            assert!(p.len() <= cap, "text of {} bytes over cap {cap}", p.len());
            let text = std::str::from_utf8(p).expect("text messages are UTF-8");
            check_decode(text);
        }
        Message::Binary(p) => assert!(p.len() <= cap, "binary over cap"),
        Message::Ping(p) => assert!(p.len() <= 125, "ping payload over 125 bytes"),
        Message::Pong => {}
        Message::Close(code, reason) => {
            assert!(reason.len() <= 123, "close reason over 123 bytes");
            assert!(code.is_some() || reason.is_empty());
            assert!(std::str::from_utf8(reason).is_ok(), "close reason is UTF-8");
            if let Some(code) = code {
                assert!(shardcast::ws::decode::is_valid_close_code(*code));
            }
        }
    }
}

fn borrowed_from(text: &str, part: &str) -> bool {
    let (start, end) = (text.as_ptr() as usize, text.as_ptr() as usize + text.len());
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

/// Nesting depth of a JSON value, by recursion (serde_json's `Value`
/// parser stops at 128 levels, so this never goes deeper).
fn value_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `data` is one JSON value, and the one-pass depth check (what the front
/// doors bound with `limits.max_json_depth`) agrees with a recursive parse.
fn check_depth_of(data: &str) {
    let depth = json::depth(data.as_bytes());
    for max in [0, 1, 2, 32, 64] {
        assert_eq!(json::check_depth(data.as_bytes(), max).is_ok(), depth <= max);
    }
    if depth < 127 {
        let value: serde_json::Value =
            serde_json::from_str(data).expect("data is one JSON value");
        assert_eq!(value_depth(&value), depth, "depth of {data}");
    } else {
        // Too deep for serde_json's recursion limit: what the bound is for.
        assert!(serde_json::from_str::<serde_json::Value>(data).is_err());
    }
}

fn check_decode(text: &str) {
    match decode_client_frame(text) {
        Ok(frame) => {
            assert!(frame.id().is_none_or(|id| id <= MAX_FRAME_ID));
            assert!(frame.kind_index() < shardcast::internals::FRAME_KINDS.len());
            let (names, data): (&[&str], Option<&str>) = match &frame {
                ClientFrame::Join {
                    room,
                    epoch: Some(epoch),
                    ..
                } => (&[room, epoch], None),
                ClientFrame::Join { room, .. }
                | ClientFrame::Leave { room, .. }
                | ClientFrame::Create { room, .. }
                | ClientFrame::Members { room, .. } => (&[room], None),
                ClientFrame::Publish { room, data, .. } => (&[room], Some(data)),
                ClientFrame::Send { to, data, .. } => (&[to], Some(data)),
                ClientFrame::Broadcast { data, .. } => (&[], Some(data)),
                ClientFrame::Ping { .. } => (&[], None),
                ClientFrame::Refresh { token, .. } => {
                    assert!(!token.is_empty() && borrowed_from(text, token));
                    (&[], None)
                }
            };
            for name in names {
                assert!(is_valid_name(name), "invalid name accepted: {name:?}");
                assert!(borrowed_from(text, name));
            }
            assert_eq!(frame.data(), data);
            if let Some(data) = data {
                assert!(borrowed_from(text, data), "data is not borrowed");
                check_depth_of(data);
            }
            if let ClientFrame::Create { options, .. } = &frame {
                assert_ne!(options.max_members, Some(0));
                assert!(
                    options
                        .history
                        .is_none_or(|h| h <= shardcast::limits::MAX_ROOM_HISTORY)
                );
            }
        }
        Err(e) => {
            assert!(
                matches!(
                    e.refusal.code,
                    ErrorCode::BadRequest | ErrorCode::UnknownType
                ),
                "unexpected code {:?}",
                e.refusal.code
            );
            assert!(!e.refusal.message.is_empty());
            assert!(e.id.is_none_or(|id| id <= MAX_FRAME_ID));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [cap_byte, s0, s1, bytes @ ..] = data else {
        return;
    };
    // 1..=16321 bytes: small caps make `TooBig` reachable within max_len.
    let cap = 1 + usize::from(*cap_byte) * 64;
    let whole = read(cap, bytes, std::iter::empty());
    if let Some(e) = &whole.error {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
        if let WsError::TooBig { limit } = e {
            assert_eq!(*limit, cap);
        }
    }
    for m in &whole.messages {
        check_message(cap, m);
    }
    let chunked = read(cap, bytes, chunk_sizes(u16::from_le_bytes([*s0, *s1])));
    assert_eq!(whole, chunked, "chunked input decodes differently");
});
