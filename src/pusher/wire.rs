//! The Pusher Channels protocol 7 on the wire: client events in
//! ([`decode`], in `wire/decode.rs`), server events out and a room frame's
//! Pusher form ([`from_native`], in `wire/encode.rs`), and what both share:
//! the protocol's error codes ([`codes`]) and [`WireError`].
//!
//! Pure and panic-free (fuzzed): decoding allocates only in proportion to
//! the frame, and every encoder writes one WebSocket text frame in one
//! buffer.

mod decode;
mod encode;

pub(crate) use decode::{ClientEvent, decode};
pub(crate) use encode::{
    PresenceMember, connection_established, error, from_native, gap, member_added, member_removed,
    ping, pong, presence_subscribed, signin_success, subscribed, subscription_error,
};

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
