//! A room frame as every member shard shares it ([`RoomFrame`]): the
//! native encoding its sequencer made, and each other form (compressed,
//! Pusher) made at most once, by whichever member shard needs it first.
//!
//! **Invariant:** a room message costs one serialization per protocol and
//! one compression, never one per recipient or per shard; cloning a
//! [`RoomFrame`] is a refcount.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

/// A frame for a room's members, shared by every recipient on every shard:
/// the native encoding its sequencer made, and the other forms each made at
/// most once, on first demand, by whichever member shard needs it first —
/// its permessage-deflate form (for members that negotiated compression)
/// and its Pusher form (for Pusher members). A room message costs one
/// serialization per protocol and one compression, never one per recipient
/// or per shard; members that need no other form never pay for one.
/// Cloning is a refcount.
#[derive(Debug, Clone)]
pub struct RoomFrame(Arc<SharedFrame>);

#[derive(Debug)]
struct SharedFrame {
    /// The native frame; empty when native members get nothing (a presence
    /// change with `room.presence_events` off).
    plain: Bytes,
    /// What a presence event is about, for protocols that say it in their
    /// own words.
    change: Option<PresenceChange>,
    deflated: OnceLock<Option<Bytes>>,
    /// The Pusher form (`None` inside: nothing for Pusher members).
    pusher: OnceLock<Option<Bytes>>,
}

impl RoomFrame {
    /// `plain`, an encoded text frame every protocol derives its form from
    /// (a message, a `gap`).
    pub fn new(plain: Bytes) -> Self {
        RoomFrame(Arc::new(SharedFrame {
            plain,
            change: None,
            deflated: OnceLock::new(),
            pusher: OnceLock::new(),
        }))
    }

    /// A presence event: `native` for native members (if they get one),
    /// and the change itself for the others.
    pub(crate) fn presence(native: Option<Bytes>, change: PresenceChange) -> Self {
        RoomFrame(Arc::new(SharedFrame {
            plain: native.unwrap_or_default(),
            change: Some(change),
            deflated: OnceLock::new(),
            pusher: OnceLock::new(),
        }))
    }

    /// The frame as encoded (empty when native members get nothing).
    pub fn plain(&self) -> &Bytes {
        &self.0.plain
    }

    /// The native frame, if native members get one.
    pub(crate) fn native_frame(&self) -> Option<&Bytes> {
        (!self.0.plain.is_empty()).then_some(&self.0.plain)
    }

    /// The compressed frame (window [`crate::ws::deflate::SHARED_WINDOW_BITS`]),
    /// or `None` when the payload is below `min_bytes` or does not shrink.
    /// The first call on any thread compresses; the others share it.
    pub fn deflated(&self, min_bytes: usize) -> Option<&Bytes> {
        self.0
            .deflated
            .get_or_init(|| {
                let payload = crate::ws::encode::text_payload(&self.0.plain);
                if payload.len() < min_bytes {
                    return None;
                }
                crate::ws::deflate::compressed_frame(
                    true,
                    &payload,
                    crate::ws::deflate::SHARED_WINDOW_BITS,
                )
            })
            .as_ref()
    }

    /// The presence change this frame is about, if it is one.
    pub(crate) fn change(&self) -> Option<&PresenceChange> {
        self.0.change.as_ref()
    }

    /// The Pusher form, made by `encode` the first time any shard asks.
    pub(crate) fn pusher_form(
        &self,
        encode: impl FnOnce(&RoomFrame) -> Option<Bytes>,
    ) -> Option<&Bytes> {
        self.0.pusher.get_or_init(|| encode(self)).as_ref()
    }

    /// Bytes it keeps alive (for inbox accounting).
    pub(crate) fn len(&self) -> usize {
        self.0.plain.len()
    }
}

/// A member joined or left: who, and whether that changed the room's
/// users (its first connection joined, or its last left).
#[derive(Debug, Clone)]
pub(crate) struct PresenceChange {
    /// Joined (else left).
    pub(crate) joined: bool,
    /// The member's user id.
    pub(crate) user: Arc<str>,
    /// Its `info` (raw JSON), if it gave one.
    pub(crate) info: Option<Arc<str>>,
    /// The user's first connection in the room joined, or its last left.
    pub(crate) user_changed: bool,
}
