//! PROTOCOL.md v1 on the wire: client frames in ([`decode`]), server frames
//! out ([`encode`]), the name rules ([`names`]) and the bounds serde does not
//! enforce on client JSON ([`json`]).
//!
//! **Architecture Invariant:** decoding never panics and never allocates in
//! proportion to anything but the frame; a room message is encoded exactly
//! once, whatever its number of recipients.

pub mod decode;
pub mod encode;
pub mod json;
pub mod names;

pub use decode::{ClientFrame, DecodeError, decode_client_frame};
