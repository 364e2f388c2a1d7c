//! Server frames: unmasked, unfragmented, written once.

use bytes::Bytes;

use crate::limits::MAX_SERVER_FRAME_HEADER;

/// Text frame opcode with FIN.
const FIN_TEXT: u8 = 0x81;
/// Binary frame opcode with FIN.
const FIN_BINARY: u8 = 0x82;
/// Close frame opcode with FIN.
const FIN_CLOSE: u8 = 0x88;
/// Ping frame opcode with FIN.
const FIN_PING: u8 = 0x89;
/// Pong frame opcode with FIN.
const FIN_PONG: u8 = 0x8A;

/// A buffer that leaves room for the frame header in front of the payload, so
/// a frame is built with one allocation and no copy: write the payload with
/// [`FrameBuf::payload`], then [`FrameBuf::finish_text`].
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// A buffer expecting about `payload_hint` bytes of payload.
    pub fn with_capacity(payload_hint: usize) -> Self {
        let mut buf = Vec::with_capacity(MAX_SERVER_FRAME_HEADER + payload_hint);
        buf.resize(MAX_SERVER_FRAME_HEADER, 0);
        FrameBuf { buf }
    }

    /// The payload being written.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Length of the payload written so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - MAX_SERVER_FRAME_HEADER
    }

    /// Finish as a text frame.
    pub fn finish_text(self) -> Bytes {
        self.finish(FIN_TEXT)
    }

    fn finish(mut self, first: u8) -> Bytes {
        let len = self.payload_len();
        let mut header = [0u8; MAX_SERVER_FRAME_HEADER];
        header[0] = first;
        let header_len = if len < 126 {
            header[1] = len as u8;
            2
        } else if len <= 0xFFFF {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        } else {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        let start = MAX_SERVER_FRAME_HEADER - header_len;
        self.buf[start..MAX_SERVER_FRAME_HEADER].copy_from_slice(&header[..header_len]);
        Bytes::from(self.buf).slice(start..)
    }
}

/// A frame from `buf`, whose first [`MAX_SERVER_FRAME_HEADER`] bytes are
/// room for the header and the rest the payload; `first` is the header's
/// first byte (FIN, RSV and opcode).
pub(crate) fn finish_frame(buf: Vec<u8>, first: u8) -> Bytes {
    debug_assert!(buf.len() >= MAX_SERVER_FRAME_HEADER);
    FrameBuf { buf }.finish(first)
}

/// A text (or binary) frame carrying `payload` as it is (the echo endpoint).
pub fn data_frame(text: bool, payload: &[u8]) -> Bytes {
    let mut f = FrameBuf::with_capacity(payload.len());
    f.payload().extend_from_slice(payload);
    f.finish(if text { FIN_TEXT } else { FIN_BINARY })
}

/// The payload of a server text frame built by [`FrameBuf`] (the frame
/// without its header).
pub fn text_payload(frame: &Bytes) -> Bytes {
    let header_len = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return Bytes::new(),
    };
    frame.slice(header_len.min(frame.len())..)
}

fn control(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len().min(125);
    let mut out = Vec::with_capacity(2 + len);
    out.push(first);
    out.push(len as u8);
    out.extend_from_slice(&payload[..len]);
    Bytes::from(out)
}

/// A close frame with `code` and a short `reason` (cut to fit 125 bytes at a
/// character boundary).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(FIN_CLOSE, &payload)
}

/// A WebSocket ping (heartbeat).
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[FIN_PING, 0])
}

/// A pong answering a ping with `payload`.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    control(FIN_PONG, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut f = FrameBuf::with_capacity(len);
            f.payload().resize(MAX_SERVER_FRAME_HEADER + len, b'a');
            let frame = f.finish_text();
            assert_eq!(frame.len(), header + len);
            assert_eq!(frame[0], FIN_TEXT);
            assert_eq!(text_payload(&frame).len(), len);
        }
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let f = close_frame(1000, &reason);
        assert!(f.len() <= 127);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        assert_eq!(&f[2..4], &1000u16.to_be_bytes());
    }
}
