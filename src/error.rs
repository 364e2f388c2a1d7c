//! The stable error and close codes of PROTOCOL.md, and the one place that
//! turns a refusal into a wire value.

use std::fmt;

/// Error codes carried by `error` frames and HTTP refusals. The string form
/// is the stable contract; the message beside it is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not JSON, wrong shape, unknown field, bad name, binary frame.
    BadRequest,
    /// The frame's `type` is not one of PROTOCOL.md's client frames.
    UnknownType,
    /// Credentials missing or invalid.
    Unauthorized,
    /// The connection lacks the right the frame needs.
    Forbidden,
    /// The room does not exist.
    RoomNotFound,
    /// `create` of a room that exists.
    RoomExists,
    /// The room is at `max_members`.
    RoomFull,
    /// The connection is not a member of the room.
    NotMember,
    /// `limits.max_rooms` or `limits.max_rooms_per_connection` reached.
    TooManyRooms,
    /// The publish rate limit is exhausted.
    RateLimited,
    /// Per-IP or per-user connection cap (HTTP 429).
    TooManyConnections,
    /// Global or shard connection cap, or draining (HTTP 503).
    ServerFull,
    /// A bug or an unexpected condition inside the server.
    Internal,
    /// Cluster mode: the backplane (Redis) is unreachable; retry later.
    Unavailable,
    /// HTTP only: no such path or resource (404).
    NotFound,
    /// HTTP only: the request body is larger than `api.max_body_bytes` (413).
    PayloadTooLarge,
    /// HTTP only: the request body is not `application/json` (415).
    UnsupportedMediaType,
    /// The user or connection made its maximum of rooms that still exist
    /// (`limits.max_rooms_created_per_user`, `..._per_connection`).
    TooManyRoomsCreated,
    /// The process is over `limits.memory_budget_bytes`: no new room now.
    OverMemoryBudget,
    /// HTTP only: the request head is larger than
    /// `limits.max_http_head_bytes` (431).
    HeadTooLarge,
    /// A publish's `data` does not match its room's JSON Schema (HTTP 422).
    InvalidData,
}

impl ErrorCode {
    /// Every code, in declaration order ([`ErrorCode::index`]).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RoomNotFound,
        ErrorCode::RoomExists,
        ErrorCode::RoomFull,
        ErrorCode::NotMember,
        ErrorCode::TooManyRooms,
        ErrorCode::RateLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::ServerFull,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::NotFound,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyRoomsCreated,
        ErrorCode::OverMemoryBudget,
        ErrorCode::HeadTooLarge,
        ErrorCode::InvalidData,
    ];

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::TooManyRoomsCreated => "too_many_rooms_created",
            ErrorCode::OverMemoryBudget => "over_memory_budget",
            ErrorCode::HeadTooLarge => "head_too_large",
            ErrorCode::InvalidData => "invalid_data",
        }
    }

    /// The HTTP status of this code when it refuses a request.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownType => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::RoomNotFound | ErrorCode::NotMember | ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::HeadTooLarge => 431,
            ErrorCode::InvalidData => 422,
            ErrorCode::RoomExists => 409,
            ErrorCode::TooManyConnections
            | ErrorCode::RateLimited
            | ErrorCode::TooManyRoomsCreated => 429,
            ErrorCode::RoomFull | ErrorCode::TooManyRooms => 409,
            ErrorCode::ServerFull | ErrorCode::Unavailable | ErrorCode::OverMemoryBudget => 503,
            ErrorCode::Internal => 500,
        }
    }
}

const _: () = {
    let mut i = 0;
    while i < ErrorCode::ALL.len() {
        assert!(
            ErrorCode::ALL[i] as usize == i,
            "ErrorCode::ALL is in declaration order"
        );
        i += 1;
    }
};

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: a stable code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence that says why, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// `room_not_found`: the room does not exist.
    pub fn room_not_found(room: &str) -> Self {
        Refusal::new(
            ErrorCode::RoomNotFound,
            format!("room {room} does not exist"),
        )
    }

    /// `not_member`: the connection is not a member of the room.
    pub fn not_member(room: &str) -> Self {
        Refusal::new(ErrorCode::NotMember, format!("not a member of room {room}"))
    }

    /// `room_exists`: `create` of a room that exists.
    pub fn room_exists(room: &str) -> Self {
        Refusal::new(ErrorCode::RoomExists, format!("room {room} already exists"))
    }

    /// `room_full`: the room is at its member cap.
    pub fn room_full(room: &str, max_members: u32) -> Self {
        Refusal::new(
            ErrorCode::RoomFull,
            format!("room {room} is full ({max_members} members)"),
        )
    }

    /// `forbidden`: joining a missing room would create it, and the
    /// connection lacks the `create` right.
    pub fn may_not_create(room: &str) -> Self {
        Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} does not exist and this connection lacks the `create` right"),
        )
    }

    /// `forbidden`: a private room the connection's grants do not cover.
    pub fn private_room(room: &str) -> Self {
        Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} is private and this connection's rooms do not include it"),
        )
    }

    /// `forbidden`: a `create` whose options would loosen those of the
    /// room's namespace (`what` says which).
    pub fn loosens_namespace(room: &str, prefix: &str, what: &str) -> Self {
        Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "room {room} is in namespace {prefix}, whose options a create may only \
                 tighten: {what}"
            ),
        )
    }

    /// `forbidden`: a connection without `admin` publishing into a room of
    /// a namespace with `client_publish = false`.
    pub fn client_publish_off(room: &str, prefix: &str) -> Self {
        Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "room {room} is in namespace {prefix}, where only the HTTP API and `admin` \
                 connections publish"
            ),
        )
    }

    /// `invalid_data`: a publish's `data` does not match the JSON Schema of
    /// the room's namespace; `at` is the JSON pointer of the first failing
    /// value (`(root)` for `data` itself), `rule` what it fails.
    pub fn invalid_data(prefix: &str, at: &str, rule: &str) -> Self {
        Refusal::new(
            ErrorCode::InvalidData,
            format!("`data` does not match the schema of namespace {prefix}: {at}: {rule}"),
        )
    }

    /// `forbidden`: listing the members of a private room from outside it.
    pub fn private_members(room: &str) -> Self {
        Refusal::new(
            ErrorCode::Forbidden,
            format!("room {room} is private: only its members may list them"),
        )
    }

    /// `too_many_rooms`: the connection is in (or joining) its maximum.
    pub fn too_many_rooms_per_connection(max: usize) -> Self {
        Refusal::new(
            ErrorCode::TooManyRooms,
            format!("a connection may be in at most {max} rooms"),
        )
    }

    /// `rate_limited`: the connection's publish rate limit is spent.
    pub fn rate_limited() -> Self {
        Refusal::new(
            ErrorCode::RateLimited,
            "publish rate limit exceeded; slow down",
        )
    }

    /// `bad_request`: a JSON value (`field`) nests deeper than
    /// `limits.max_json_depth`.
    pub fn json_too_deep(field: &str, max: usize) -> Self {
        Refusal::new(
            ErrorCode::BadRequest,
            format!(
                "`{field}` nests arrays and objects more than {max} deep (limits.max_json_depth)"
            ),
        )
    }

    /// `too_many_rooms_created`: `who` (a user or a connection) made `max`
    /// rooms that still exist.
    pub fn too_many_rooms_created(who: &str, max: u32) -> Self {
        Refusal::new(
            ErrorCode::TooManyRoomsCreated,
            format!(
                "this {who} made {max} rooms that still exist, its maximum \
                 (limits.max_rooms_created_per_{who}); delete one or let it expire"
            ),
        )
    }

    /// `over_memory_budget`: the process is over its memory budget, so no
    /// room is made now.
    pub fn over_memory_budget() -> Self {
        Refusal::new(
            ErrorCode::OverMemoryBudget,
            "the server is over its memory budget (limits.memory_budget_bytes) and makes no new \
             room now; try again later",
        )
    }

    /// `server_full`: the process is over its memory budget, so it takes no
    /// new connection now.
    pub fn memory_full() -> Self {
        Refusal::new(
            ErrorCode::ServerFull,
            "the server is over its memory budget (limits.memory_budget_bytes); try again later",
        )
    }

    /// `internal`: the broker is draining and runs no new operation.
    pub fn shutting_down() -> Self {
        Refusal::new(
            ErrorCode::Internal,
            "the server is shutting down; the operation did not run",
        )
    }

    /// `unavailable`: a publish Redis took but `replicas` replicas did not
    /// confirm in time (`cluster.wait_replicas`).
    pub fn not_replicated(replicas: u32) -> Self {
        Refusal::new(
            ErrorCode::Unavailable,
            format!(
                "the message was not confirmed by {replicas} Redis replica(s) in time \
                 (cluster.wait_replicas); it may or may not have been delivered; try again"
            ),
        )
    }

    /// `head_too_large`: an HTTP request head over the limit.
    pub fn head_too_large(limit: usize) -> Self {
        Refusal::new(
            ErrorCode::HeadTooLarge,
            format!(
                "the request line and headers are larger than limits.max_http_head_bytes \
                 ({limit} bytes)"
            ),
        )
    }

    /// `unavailable`: the back end that sequences rooms cannot be reached.
    pub fn unavailable() -> Self {
        Refusal::new(
            ErrorCode::Unavailable,
            "the cluster backplane (Redis) is unreachable; try again",
        )
    }
}

/// WebSocket close codes used by the broker (PROTOCOL.md, "Close codes").
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Server shutting down, or client going away.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error (unmasked frame, bad opcode, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Invalid UTF-8 in a text message or close reason.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy: token expired, kicked.
    pub const POLICY: u16 = 1008;
    /// Message larger than `limits.max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
    /// Slow consumer: the outbound queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// No pong within `limits.heartbeat_timeout_ms`.
    pub const HEARTBEAT_TIMEOUT: u16 = 4001;
}
