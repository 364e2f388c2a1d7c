//! Fuzz target `cluster_wire`: what a node reads on the cluster's Redis
//! channels (`cluster::wire`), which another version of shardcast (or
//! anything else with access to the Redis) may have written.
//!
//! Input: byte 0 picks how the rest is read (a room channel's payload, a
//! user channel's payload, or a channel name), the rest is the payload.
//!
//! Checks, besides "never panics":
//! - what a room payload parses to is made of slices of it, and writing it
//!   back in the documented format parses to the same event;
//! - a user or broadcast payload splits at its first newline, and
//!   `frame_payload` of its parts gives the same bytes back;
//! - a channel name is a room or a user channel only in the documented
//!   forms, and the room or user is the part between the markers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::internals::wire::{
    self, Event, frame_payload, member_value, parse_frame, parse_room,
};

fn borrowed_from(whole: &[u8], part: &[u8]) -> bool {
    let (start, end) = (
        whole.as_ptr() as usize,
        whole.as_ptr() as usize + whole.len(),
    );
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= end
}

/// A room event written as the scripts write it.
fn write_room(event: &Event<'_>) -> Vec<u8> {
    match event {
        Event::Message {
            seq,
            node,
            skip,
            json,
        } => {
            let mut out = format!("M {seq} {node} {skip}\n").into_bytes();
            out.extend_from_slice(json);
            out
        }
        Event::Presence {
            joined,
            node,
            conn,
            count,
            users,
            user_changed,
            user,
            name,
            info,
        } => {
            let kind = if *joined { 'J' } else { 'L' };
            let changed = u8::from(*user_changed);
            let member = member_value(user, *name, *info);
            format!("{kind} {node} {conn} {count} {users} {changed} {member}").into_bytes()
        }
        Event::Closed => b"X".to_vec(),
        Event::Frame { .. } => unreachable!("not a room event"),
    }
}

fn check_room(payload: &[u8]) {
    let Some(event) = parse_room(payload) else {
        return;
    };
    match &event {
        Event::Message { node, json, .. } => {
            assert!(borrowed_from(payload, node.as_bytes()));
            assert!(borrowed_from(payload, json));
            assert!(!node.contains(' '), "a node id has no space: {node:?}");
        }
        Event::Presence {
            node,
            user,
            name,
            info,
            ..
        } => {
            for part in [Some(*node), Some(*user), *name, *info]
                .into_iter()
                .flatten()
            {
                assert!(borrowed_from(payload, part.as_bytes()));
            }
            assert!(!node.contains(' ') && !user.contains('\t'));
        }
        Event::Closed => assert_eq!(payload.first(), Some(&b'X')),
        Event::Frame { .. } => panic!("a room payload parsed as a user frame"),
    }
    let written = write_room(&event);
    assert_eq!(
        parse_room(&written).as_ref(),
        Some(&event),
        "{:?} written back as {:?}",
        String::from_utf8_lossy(payload),
        String::from_utf8_lossy(&written)
    );
}

fn check_frame(payload: &[u8]) {
    match parse_frame(payload) {
        Some(Event::Frame { node, json }) => {
            assert!(!node.contains('\n'));
            assert_eq!(frame_payload(node, json), payload);
        }
        Some(other) => panic!("a frame payload parsed as {other:?}"),
        None => assert!(
            !payload.contains(&b'\n') || std::str::from_utf8(payload).is_err(),
            "a payload with a newline and a UTF-8 head was refused"
        ),
    }
}

fn check_channel(name: &str) {
    if let Some(room) = wire::room_of_channel(name) {
        assert_eq!(format!("sc:{{{room}}}:c"), name);
    }
    if let Some(user) = wire::user_of_channel(name) {
        assert_eq!(format!("sc:u:{user}"), name);
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, payload @ ..] = data else {
        return;
    };
    match mode % 3 {
        0 => check_room(payload),
        1 => check_frame(payload),
        _ => {
            if let Ok(name) = std::str::from_utf8(payload) {
                check_channel(name);
            }
        }
    }
});
