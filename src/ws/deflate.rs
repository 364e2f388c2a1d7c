//! permessage-deflate (RFC 7692): negotiating it, compressing a server
//! message, inflating a client's.
//!
//! **Invariants:**
//! * The server always answers with `server_no_context_takeover` and
//!   `client_no_context_takeover`, so every message stands alone: a room
//!   message is compressed once for every member that negotiated the
//!   extension ([`crate::delivery::RoomFrame`]), and no connection holds
//!   compression or inflate state. Both live once per shard thread, reset
//!   for each message.
//! * Inflating never produces more than the reader's limit
//!   (`limits.max_message_bytes`): a decompression bomb is refused with
//!   [`WsError::TooBig`] (close 1009) before more is allocated.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::decode::WsError;
use crate::limits::MAX_SERVER_FRAME_HEADER;

/// The window of the shared compressed form of room messages (the
/// largest: every client can read it unless it asked for less).
pub const SHARED_WINDOW_BITS: u8 = 15;

/// Smallest window zlib compresses with (an offer of 8 is accepted, and
/// that connection gets its messages uncompressed).
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// The four bytes every deflated message ends with, left off on the wire
/// (RFC 7692 section 7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced in steps of this many bytes while inflating.
const INFLATE_STEP: usize = 16 * 1024;

/// What a connection negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// The largest window the server may compress with (its
    /// `server_max_window_bits`, 15 when it named none).
    pub server_window_bits: u8,
}

impl Deflate {
    /// Whether this connection reads the shared compressed form of room
    /// messages (made with [`SHARED_WINDOW_BITS`]).
    pub fn reads_shared(self) -> bool {
        self.server_window_bits >= SHARED_WINDOW_BITS
    }
}

/// Pick the first permessage-deflate offer of `Sec-WebSocket-Extensions`
/// header values the server can accept; returns what was agreed and the
/// response header value. `None`: no offer acceptable (no extension).
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<(Deflate, String)> {
    offers
        .into_iter()
        .flat_map(|line| line.split(','))
        .find_map(accept_offer)
}

/// One offer (`permessage-deflate; param; param=value`), if acceptable.
fn accept_offer(offer: &str) -> Option<(Deflate, String)> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut server_bits: Option<u8> = None;
    let mut seen = [false; 4];
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        // RFC 7692 section 7: an unknown or repeated parameter, or a bad
        // value, makes the offer unacceptable.
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                server_bits = Some(window_bits(value?)?);
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    let mut response =
        String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some((
        Deflate {
            server_window_bits: server_bits.unwrap_or(SHARED_WINDOW_BITS),
        },
        response,
    ))
}

/// A window size parameter: 8 to 15, decimal, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.len() > 2 || value.starts_with('0') {
        return None;
    }
    value.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

thread_local! {
    /// This thread's compressors, by window bits 9..=15 (made on first use).
    static COMPRESSORS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([None, None, None, None, None, None, None]) };
    /// This thread's inflater.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// A compressed text (or binary) frame carrying `payload`, made with a
/// window of at most `window_bits`; `None` when that would not be smaller
/// (or the window is below what zlib makes), so the plain frame goes.
pub fn compressed_frame(text: bool, payload: &[u8], window_bits: u8) -> Option<Bytes> {
    if window_bits < MIN_COMPRESS_WINDOW_BITS {
        return None;
    }
    let bits = window_bits.min(SHARED_WINDOW_BITS);
    COMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        let compressor =
            all[usize::from(bits - MIN_COMPRESS_WINDOW_BITS)].get_or_insert_with(|| {
                Compress::new_with_window_bits(Compression::fast(), false, bits)
            });
        compressor.reset();
        // Room for the worst case (stored blocks: 5 bytes per 16 KiB or
        // so, plus the sync flush); more is reserved if zlib fills it.
        let mut out =
            Vec::with_capacity(MAX_SERVER_FRAME_HEADER + payload.len() + payload.len() / 1000 + 64);
        out.resize(MAX_SERVER_FRAME_HEADER, 0);
        loop {
            let consumed = compressor.total_in() as usize;
            compressor
                .compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            // Done when all input is in and zlib left output space (it
            // fills the space it is given when it has more to say).
            if compressor.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(4096);
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        let body = out.len() - MAX_SERVER_FRAME_HEADER;
        if body >= payload.len() {
            return None;
        }
        // FIN + RSV1 + opcode.
        let first = if text { 0xC1 } else { 0xC2 };
        Some(super::encode::finish_frame(out, first))
    })
}

/// Inflate one client message's `compressed` payload (without its tail),
/// producing at most `limit` bytes.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, WsError> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater =
            slot.get_or_insert_with(|| Decompress::new_with_window_bits(false, SHARED_WINDOW_BITS));
        inflater.reset(false);
        let mut out: Vec<u8> = Vec::new();
        for input in [compressed, &TAIL[..]] {
            let start = inflater.total_in();
            loop {
                if out.len() == out.capacity() {
                    if out.len() > limit {
                        return Err(WsError::TooBig { limit });
                    }
                    // Never more room than one byte past the limit.
                    out.reserve_exact(INFLATE_STEP.min(limit + 1 - out.len()));
                }
                let used = (inflater.total_in() - start) as usize;
                let status = inflater
                    .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| {
                        WsError::Protocol("invalid deflate data in a compressed message")
                    })?;
                if out.len() > limit {
                    return Err(WsError::TooBig { limit });
                }
                let used = (inflater.total_in() - start) as usize;
                // Done with this input when it is all in and inflate left
                // output space (or the stream ended).
                if matches!(status, Status::StreamEnd)
                    || (used == input.len() && out.len() < out.capacity())
                {
                    break;
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::text_payload;

    #[test]
    fn accepts_the_first_acceptable_offer() {
        let (d, resp) = negotiate(["permessage-deflate; client_max_window_bits"]).expect("chrome");
        assert_eq!(d.server_window_bits, 15);
        assert_eq!(
            resp,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let (d, resp) = negotiate([
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9; unknown, \
             permessage-deflate; server_max_window_bits=10",
        ])
        .expect("second offer");
        assert_eq!(d.server_window_bits, 10);
        assert!(!d.reads_shared());
        assert!(resp.ends_with("; server_max_window_bits=10"));
        for bad in [
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=07",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "deflate-frame",
        ] {
            assert!(negotiate([bad]).is_none(), "{bad}");
        }
    }

    #[test]
    fn compressed_frames_inflate_back() {
        let payload =
            br#"{"type":"message","data":"hello hello hello hello hello hello hello"}"#.repeat(20);
        for bits in 9..=15 {
            let frame = compressed_frame(true, &payload, bits).expect("smaller");
            assert_eq!(frame[0], 0xC1);
            let body = text_payload(&frame);
            assert!(body.len() < payload.len() / 4);
            assert_eq!(inflate(&body, 1 << 20).expect("inflate"), payload);
        }
        assert!(compressed_frame(true, b"{}", 15).is_none(), "not smaller");
        assert!(
            compressed_frame(true, &payload, 8).is_none(),
            "window 8: plain"
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        let frame = compressed_frame(false, &zeros, 15).expect("compresses");
        let body = text_payload(&frame);
        assert!(body.len() < 64 * 1024, "{}", body.len());
        assert_eq!(
            inflate(&body, 64 * 1024),
            Err(WsError::TooBig { limit: 64 * 1024 })
        );
        assert_eq!(inflate(&body, 4 << 20).map(|v| v.len()), Ok(4 << 20));
        assert!(inflate(b"\xff\xff\xff garbage", 1024).is_err());
        assert_eq!(
            inflate(&[0x02, 0x00], 16).map(|v| v.len()),
            Ok(0),
            "empty message"
        );
    }
}
