//! The error of every request ([`Error`]), with the server's stable error
//! code or the client's own.

use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server answered with an `error` frame (`forbidden`,
    /// `not_member`, `room_not_found`, `rate_limited`, ...).
    #[error("{code}: {message}")]
    Server {
        /// The protocol's stable error code.
        code: String,
        /// A human sentence.
        message: String,
    },
    /// No reply within the request timeout; the operation may still have
    /// taken effect.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The connection dropped while the request was in flight; it may or
    /// may not have taken effect (a publish is not resent).
    #[error("disconnected before the reply ({0})")]
    Disconnected(String),
    /// The client was closed, or stopped for good.
    #[error("the client is closed ({0})")]
    Closed(String),
    /// `max_pending_requests` requests already wait for a reply.
    #[error("{0} requests are already waiting for a reply")]
    QueueFull(usize),
    /// The server's reply lacked a field this client needs.
    #[error("unexpected reply: {0}")]
    BadReply(String),
    /// The data to send does not serialize to JSON.
    #[error("the data is not JSON: {0}")]
    InvalidData(String),
}

impl Error {
    /// The error code: the server's, or `timeout`, `disconnected`,
    /// `closed`, `queue_full` (the same codes as the JavaScript client),
    /// `bad_reply`, `invalid_data`.
    pub fn code(&self) -> &str {
        match self {
            Error::Server { code, .. } => code,
            Error::Timeout(_) => "timeout",
            Error::Disconnected(_) => "disconnected",
            Error::Closed(_) => "closed",
            Error::QueueFull(_) => "queue_full",
            Error::BadReply(_) => "bad_reply",
            Error::InvalidData(_) => "invalid_data",
        }
    }
}
