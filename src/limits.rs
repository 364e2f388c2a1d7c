//! Hard limits that are not configurable, and the relations between them.
//!
//! Configurable limits live in [`crate::config::LimitsConfig`]; this module
//! holds the bounds that shape data structures (and so cannot change at run
//! time) plus the compile-time checks that tie them together.

/// Most shards a process may run: shard sets are `u64` bit masks.
pub const MAX_SHARDS: usize = 64;

/// Longest room name or user id, in bytes (PROTOCOL.md, "Room names").
pub const MAX_NAME_BYTES: usize = 128;

/// Longest display name (`?name=` in dev mode, `name` claim later), in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 256;

/// Largest `id` a client may attach to a frame: 2^53 - 1, so that it
/// survives a round trip through a JavaScript number.
pub const MAX_FRAME_ID: u64 = (1 << 53) - 1;

/// Longest history ring a room may ask for with `create { history }`.
pub const MAX_ROOM_HISTORY: usize = 10_000;

/// Most `[[room.namespaces]]` entries: the namespace of a room is found
/// by trying each prefix, longest first, on every join, create and publish.
pub const MAX_NAMESPACES: usize = 256;

/// Capacity of each shard's request inbox (publishes, joins, ... forwarded to
/// the room's home shard). A full inbox makes the sending connection wait:
/// this is where backpressure reaches the publisher's read loop.
pub const SHARD_REQUEST_INBOX: usize = 8_192;

/// Capacity of each shard's delivery inbox (frames fanned out by a home shard,
/// replies, direct messages). A full inbox makes the home shard wait.
pub const SHARD_DELIVERY_INBOX: usize = 16_384;

/// Bytes of payload (message data, encoded frames) one shard inbox may hold.
/// With the item bounds above this caps a shard's inbox memory however large
/// the messages are.
pub const SHARD_INBOX_BYTES: usize = 32 * 1024 * 1024;

/// How many inbox items a shard pump handles before yielding to the
/// connections of its runtime, so one busy inbox cannot starve sockets.
pub const SHARD_PUMP_BATCH: usize = 256;

/// Most frames the writer of one connection hands to one vectored write
/// (Linux takes up to 1,024 slices). A member of a busy room often has
/// hundreds of small frames queued: at 64 a flush took four system calls
/// where one does, and fanout 1x1000 at max rate spent its CPU on them.
pub const WRITE_BATCH_FRAMES: usize = 512;

/// Slots a connection's writer keeps once its queue is empty, and so the
/// slots of the deque it hands back to the queue: enough that a delivery to
/// a quiet connection (a message, or a message and its ack) allocates
/// nothing, few enough that an idle connection stays small.
pub const WRITER_IDLE_CAPACITY: usize = 2;

/// Frames of at most this many bytes are copied, with their small
/// neighbours, into the shard's write scratch and handed to the kernel as
/// one slice: each slice of a vectored write costs the kernel about 20 ns
/// of its own, more than copying a few hundred bytes. Larger frames go as
/// slices of their own, uncopied.
pub const COALESCE_FRAME_MAX_BYTES: usize = 512;

/// Bytes of the write scratch each shard thread keeps (one, allocated at
/// its first write of several frames): the most one write copies.
pub const WRITE_SCRATCH_BYTES: usize = 64 * 1024;

/// Bytes read from one socket before the reader yields to other tasks.
pub const READ_BYTES_PER_TURN: usize = 64 * 1024;

/// Size of one socket read: the read buffer grows to this much at a time and
/// is released when a connection goes idle, so idle connections hold none.
pub const READ_CHUNK_BYTES: usize = 4 * 1024;

/// Largest WebSocket frame header (2 + 8 bytes of length; server frames are
/// not masked).
pub const MAX_SERVER_FRAME_HEADER: usize = 10;

/// File descriptors kept back from `max_connections` for listeners, log files
/// and the HTTP side when clamping to the open-file limit.
pub const RESERVED_FDS: u64 = 64;

/// `Retry-After` (seconds) on a 503 `server_full`.
pub const RETRY_AFTER_SECS: u32 = 1;

/// How long a closing connection waits for its pending joins to be answered
/// by their home shards before leaving its rooms anyway.
pub const PENDING_JOIN_WAIT_MS: u64 = 5_000;

/// How long a new connection waits, before its `welcome`, for its node to
/// hear frames sent to its user from other nodes (cluster mode: the
/// subscription to the user's channel confirmed). Past it, it is welcomed
/// anyway; a single node never waits.
pub const USER_WATCH_WAIT_MS: u64 = 2_000;

/// How often a home shard looks for empty auto-created rooms whose
/// `room.empty_ttl_ms` has passed.
pub const ROOM_SWEEP_INTERVAL_MS: u64 = 1_000;

/// How often the process's resident memory is read against
/// `limits.memory_budget_bytes` ([`crate::memory`]).
pub const MEMORY_SAMPLE_INTERVAL_MS: u64 = 250;

/// When the history of a home shard's rooms is over its share of
/// `limits.max_history_bytes_total`, the oldest messages of its largest
/// rooms are dropped until it is back under this fraction of the share
/// (in 1/8ths), so one trimming pass serves many publishes.
pub const HISTORY_TRIM_TO_EIGHTHS: usize = 7;

/// Smallest `limits.max_http_head_bytes` (hyper's smallest read buffer).
pub const MIN_HTTP_HEAD_BYTES: usize = 8 * 1024;

/// Largest `limits.max_http_head_bytes`: each connection in its HTTP phase
/// may buffer this much.
pub const MAX_HTTP_HEAD_BYTES: usize = 1024 * 1024;

/// Longest `limits.lingering_close_ms`.
pub const MAX_LINGERING_CLOSE_MS: u64 = 60_000;

/// How often the TLS certificate and key files are checked for changes.
pub const TLS_RELOAD_POLL_MS: u64 = 1_000;

const _: () = assert!(MAX_SHARDS <= 64, "shard sets are u64 bit masks");
const _: () = assert!(HISTORY_TRIM_TO_EIGHTHS > 0 && HISTORY_TRIM_TO_EIGHTHS < 8);
const _: () = assert!(SHARD_PUMP_BATCH <= SHARD_REQUEST_INBOX);
const _: () = assert!(READ_CHUNK_BYTES <= READ_BYTES_PER_TURN);
const _: () = assert!(COALESCE_FRAME_MAX_BYTES <= WRITE_SCRATCH_BYTES);
const _: () = assert!(MAX_FRAME_ID < (1 << 53));
