//! Fuzz target `pusher_events`: the Pusher endpoint's pure parts on any
//! input, which must never panic:
//!
//! - a client event decodes, or gets a `pusher:error` in the 4300 range
//!   with a message; a decoded event's channel is a valid channel name;
//! - any bytes taken as a native server frame either have no Pusher form
//!   or one that is a WebSocket text frame holding a JSON object with a
//!   string `event`;
//! - an API request whose parameters come from the input is refused
//!   (nothing but a correct signature passes, and the input cannot know
//!   the secret) without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shardcast::internals::pusher;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match pusher::decode(&text) {
        Ok((_, Some(channel))) => assert!(pusher::is_valid_channel(&channel), "{channel:?}"),
        Ok((_, None)) => {}
        Err((code, message)) => {
            assert!((4300..4400).contains(&code), "code {code}");
            assert!(!message.is_empty());
        }
    }
    if let Some(frame) = pusher::from_native("presence-fuzz", data) {
        let header = match frame.get(1).map(|b| b & 0x7F) {
            Some(126) => 4,
            Some(127) => 10,
            _ => 2,
        };
        assert_eq!(frame[0], 0x81, "a text frame");
        let v: Value = serde_json::from_slice(&frame[header..]).expect("JSON");
        assert!(v.get("event").and_then(Value::as_str).is_some(), "{v}");
    }
    let params: Vec<(String, String)> = form_urlencoded_pairs(&text);
    let checked = pusher::check_request(
        "key",
        b"secret",
        ("POST", "/apps/1/events"),
        &params,
        data,
        1_700_000_000,
    );
    assert!(checked.is_err(), "a request without the secret passed");
});

/// `k=v&k=v` pairs of `text`, undecoded.
fn form_urlencoded_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
