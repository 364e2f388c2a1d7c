//! The first request head of a connection, read before hyper sees it, so
//! that a head over `limits.max_http_head_bytes` gets a 431 with the JSON
//! error body every other refusal has (hyper's own 431 has no body).
//!
//! **Invariant:** at most `limit` bytes plus one read chunk are buffered;
//! what was read is handed to hyper in front of the stream
//! ([`super::stream::HttpIo`]), so hyper parses exactly what the client
//! sent.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::stream::Stream;
use crate::limits::READ_CHUNK_BYTES;

/// Why no head was read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// The head is longer than the limit.
    TooLarge,
    /// The connection closed, failed or ran out of time first.
    Closed,
}

/// Read until the end of the first request head (`\r\n\r\n`); returns every
/// byte read (the head and whatever followed it in the same reads).
pub(crate) async fn read_first_head(
    stream: &mut Stream,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, HeadError> {
    let mut buf = BytesMut::new();
    loop {
        let searched = buf.len().saturating_sub(3);
        buf.reserve(READ_CHUNK_BYTES);
        let n = match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Err(HeadError::Closed),
        };
        let _ = n;
        if let Some(at) = find_end(&buf[searched..]) {
            if searched + at > limit {
                return Err(HeadError::TooLarge);
            }
            return Ok(buf.freeze());
        }
        if buf.len() > limit {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends in `bytes` (the index after `\r\n\r\n`).
fn find_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

#[cfg(test)]
mod tests {
    use super::find_end;

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(find_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
