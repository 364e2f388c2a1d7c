//! Fuzz target `resp_reader`: the subscriber connection's RESP2 reader
//! (`cluster::subscriber`), hand-written so that a node that falls behind
//! stops reading instead of growing; it reads whatever the socket brings.
//!
//! Input: byte 0 picks the bound on a payload (1 to 16,321 bytes), the rest
//! is what Redis (or whatever answers on its port) sends.
//!
//! Checks, besides "never panics" (and no allocation beyond the bound, which
//! libFuzzer's `-rss_limit_mb` would catch):
//! - every message payload is within the bound;
//! - writing each event back as Redis writes it, and reading that, gives the
//!   same events and ends only because the bytes end;
//! - reading the input cut short after any event gives a prefix of the
//!   events.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::internals::subscriber::{SubEvent, read_all};

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// An event as Redis writes it on a subscribed connection (a lost
/// connection is not something Redis writes).
fn write(event: &SubEvent, out: &mut Vec<u8>) -> bool {
    match event {
        SubEvent::Message { channel, payload } => {
            out.extend_from_slice(b"*3\r\n");
            bulk(out, b"message");
            bulk(out, channel.as_bytes());
            bulk(out, payload);
        }
        SubEvent::Subscribed(channel) | SubEvent::Unsubscribed(channel) => {
            let kind: &[u8] = if matches!(event, SubEvent::Subscribed(_)) {
                b"subscribe"
            } else {
                b"unsubscribe"
            };
            out.extend_from_slice(b"*3\r\n");
            bulk(out, kind);
            bulk(out, channel.as_bytes());
            out.extend_from_slice(b":1\r\n");
        }
        SubEvent::Pong => {
            out.extend_from_slice(b"*2\r\n");
            bulk(out, b"pong");
            bulk(out, b"");
        }
        SubEvent::Lost(_) => return false,
    }
    true
}

fn same(a: &SubEvent, b: &SubEvent) -> bool {
    match (a, b) {
        (
            SubEvent::Message { channel, payload },
            SubEvent::Message {
                channel: c,
                payload: p,
            },
        ) => channel == c && payload == p,
        (SubEvent::Subscribed(x), SubEvent::Subscribed(y))
        | (SubEvent::Unsubscribed(x), SubEvent::Unsubscribed(y)) => x == y,
        (SubEvent::Pong, SubEvent::Pong) => true,
        (SubEvent::Lost(x), SubEvent::Lost(y)) => x == y,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let [bound, bytes @ ..] = data else {
        return;
    };
    let max_payload = 1 + usize::from(*bound) * 64;
    let (events, end) = read_all(bytes, max_payload);
    assert!(!end.is_empty(), "a stream always ends with a reason");
    let mut again = Vec::new();
    let mut written = 0;
    for event in &events {
        if let SubEvent::Message { payload, .. } = event {
            assert!(payload.len() <= max_payload, "payload over the bound");
        }
        if !write(event, &mut again) {
            break;
        }
        written += 1;
    }
    // Written back, the fixed words ("unsubscribe": 11 bytes) must fit too.
    let (reread, reread_end) = read_all(&again, max_payload.max(16));
    assert_eq!(reread.len(), written, "written back: {reread:?} vs {events:?}");
    for (a, b) in events.iter().zip(&reread) {
        assert!(same(a, b), "{a:?} read back as {b:?}");
    }
    assert_eq!(reread_end, "Redis closed the subscriber connection");
    // A prefix of the input gives a prefix of the events.
    let cut = bytes.len() / 2;
    let (head, _) = read_all(&bytes[..cut], max_payload);
    assert!(head.len() <= events.len());
    for (a, b) in head.iter().zip(&events) {
        if !matches!(a, SubEvent::Lost(_)) {
            assert!(same(a, b), "prefix {a:?} vs {b:?}");
        }
    }
});
