//! RFC 6455 framing, without I/O.
//!
//! [`MessageReader`] turns bytes from a client socket into whole messages and
//! control frames, enforcing every rule a server must (masking, reserved
//! bits and opcodes, control-frame size, fragmentation order, UTF-8,
//! `limits.max_message_bytes` on the *assembled* message). [`encode`] builds
//! unmasked server frames.
//!
//! **Architecture Invariant:** nothing here does I/O or allocates more than
//! the bytes of one message plus one frame header; all limits are checked
//! before memory is reserved for a payload.
//!
//! fastwebsockets (used for the HTTP upgrade) also has a frame reader, but it
//! neither rejects unmasked client frames nor caps fragmented messages, and it
//! keeps an 8 KiB buffer per connection; this reader does all three right and
//! is a pure function of its input, so it can be fuzzed.

pub mod decode;
pub mod deflate;
pub mod encode;

pub use decode::{Message, MessageReader, WsError};
