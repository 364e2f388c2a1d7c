//! Decoding client frames and reassembling fragmented messages.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::close;

/// Frame opcodes (RFC 6455 section 5.2).
mod opcode {
    pub(super) const CONTINUATION: u8 = 0x0;
    pub(super) const TEXT: u8 = 0x1;
    pub(super) const BINARY: u8 = 0x2;
    pub(super) const CLOSE: u8 = 0x8;
    pub(super) const PING: u8 = 0x9;
    pub(super) const PONG: u8 = 0xA;
}

/// Largest payload of a control frame.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Why a connection must be closed; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A framing rule was broken (close 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not UTF-8 (close 1007).
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A message is larger than `limits.max_message_bytes` (close 1009).
    #[error("message larger than {limit} bytes")]
    TooBig {
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl WsError {
    /// The close code this error ends the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close::PROTOCOL_ERROR,
            WsError::InvalidUtf8 => close::INVALID_PAYLOAD,
            WsError::TooBig { .. } => close::TOO_BIG,
        }
    }
}

/// What the reader produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A whole text message, valid UTF-8.
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame: its code (if any) and reason (valid UTF-8).
    Close(Option<u16>, Bytes),
}

/// One decoded frame.
struct Frame {
    fin: bool,
    /// RSV1: the message is compressed (permessage-deflate).
    compressed: bool,
    opcode: u8,
    payload: Bytes,
}

/// A message being reassembled from fragments.
struct Partial {
    text: bool,
    /// Compressed (permessage-deflate): inflated and checked when whole.
    compressed: bool,
    data: BytesMut,
    /// Bytes at the front of `data` known to be valid UTF-8 (text only), so
    /// that invalid UTF-8 fails as soon as it arrives.
    utf8_checked: usize,
}

/// Turns client bytes into messages. Feed it with [`MessageReader::next`]
/// after each read; it consumes whole frames from the buffer and leaves a
/// partial frame in place.
pub struct MessageReader {
    max_message_bytes: usize,
    deflate: bool,
    partial: Option<Partial>,
}

impl MessageReader {
    /// A reader that refuses messages larger than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        MessageReader {
            max_message_bytes,
            deflate: false,
            partial: None,
        }
    }

    /// Accept compressed messages (permessage-deflate was negotiated):
    /// RSV1 on a message's first frame; the whole message is inflated,
    /// at most `max_message_bytes` of it.
    pub fn with_deflate(mut self, deflate: bool) -> Self {
        self.deflate = deflate;
        self
    }

    /// The next message or control frame from `buf`, `Ok(None)` when `buf`
    /// holds no complete one yet.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some(frame) = decode_frame(buf, self.max_message_bytes, self.deflate)? else {
                return Ok(None);
            };
            if let Some(message) = self.assemble(frame)? {
                return Ok(Some(message));
            }
        }
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Message>, WsError> {
        match frame.opcode {
            opcode::PING => Ok(Some(Message::Ping(frame.payload))),
            opcode::PONG => Ok(Some(Message::Pong)),
            opcode::CLOSE => decode_close(frame.payload).map(Some),
            opcode::TEXT | opcode::BINARY => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol(
                        "new data frame while a fragmented message is incomplete",
                    ));
                }
                let text = frame.opcode == opcode::TEXT;
                if frame.fin {
                    return self.finish(text, frame.compressed, frame.payload).map(Some);
                }
                let mut partial = Partial {
                    text,
                    compressed: frame.compressed,
                    data: BytesMut::with_capacity(frame.payload.len()),
                    utf8_checked: 0,
                };
                partial.data.extend_from_slice(&frame.payload);
                check_partial_utf8(&mut partial)?;
                self.partial = Some(partial);
                Ok(None)
            }
            opcode::CONTINUATION => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol("continuation frame without a message"));
                };
                if partial.data.len() + frame.payload.len() > self.max_message_bytes {
                    return Err(WsError::TooBig {
                        limit: self.max_message_bytes,
                    });
                }
                partial.data.extend_from_slice(&frame.payload);
                check_partial_utf8(partial)?;
                if !frame.fin {
                    return Ok(None);
                }
                let Some(partial) = self.partial.take() else {
                    return Err(WsError::Protocol("continuation frame without a message"));
                };
                self.finish(partial.text, partial.compressed, partial.data.freeze())
                    .map(Some)
            }
            _ => Err(WsError::Protocol("reserved opcode")),
        }
    }

    /// A whole message's payload, inflated if it was compressed.
    fn finish(&self, text: bool, compressed: bool, payload: Bytes) -> Result<Message, WsError> {
        if !compressed {
            return whole_message(text, payload);
        }
        let inflated = super::deflate::inflate(&payload, self.max_message_bytes)?;
        whole_message(text, Bytes::from(inflated))
    }
}

fn whole_message(text: bool, payload: Bytes) -> Result<Message, WsError> {
    if !text {
        return Ok(Message::Binary(payload));
    }
    if simdutf8::basic::from_utf8(&payload).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(Message::Text(payload))
}

/// Validate the new bytes of a text fragment; an incomplete code point at
/// the end is fine, anything else invalid closes at once.
fn check_partial_utf8(partial: &mut Partial) -> Result<(), WsError> {
    if !partial.text || partial.compressed {
        return Ok(());
    }
    let unchecked = &partial.data[partial.utf8_checked..];
    match simdutf8::compat::from_utf8(unchecked) {
        Ok(_) => partial.utf8_checked = partial.data.len(),
        Err(e) if e.error_len().is_none() => partial.utf8_checked += e.valid_up_to(),
        Err(_) => return Err(WsError::InvalidUtf8),
    }
    Ok(())
}

fn decode_close(payload: Bytes) -> Result<Message, WsError> {
    match payload.len() {
        0 => Ok(Message::Close(None, Bytes::new())),
        1 => Err(WsError::Protocol("close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = payload.slice(2..);
            if simdutf8::basic::from_utf8(&reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(Message::Close(Some(code), reason))
        }
    }
}

/// Close codes a peer may send (RFC 6455 section 7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Decode one frame from the front of `buf`, or `Ok(None)` if it is not all
/// there yet. Limits are checked on the header, before the payload arrives.
fn decode_frame(
    buf: &mut BytesMut,
    max_message_bytes: usize,
    deflate: bool,
) -> Result<Option<Frame>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let op = b0 & 0x0F;
    let compressed = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 || (compressed && !deflate) {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    if compressed && !matches!(op, opcode::TEXT | opcode::BINARY) {
        return Err(WsError::Protocol("RSV1 on a control or continuation frame"));
    }
    let control = op & 0x08 != 0;
    if !matches!(
        op,
        opcode::CONTINUATION
            | opcode::TEXT
            | opcode::BINARY
            | opcode::CLOSE
            | opcode::PING
            | opcode::PONG
    ) {
        return Err(WsError::Protocol("reserved opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("client frames must be masked"));
    }
    let len_code = b1 & 0x7F;
    if control && (!fin || len_code as usize > MAX_CONTROL_PAYLOAD) {
        return Err(WsError::Protocol(
            "control frames must be unfragmented and at most 125 bytes",
        ));
    }
    let extra = match len_code {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + extra + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let payload_len: u64 = match extra {
        0 => u64::from(len_code),
        2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(WsError::Protocol(
                    "64-bit frame length with the top bit set",
                ));
            }
            len
        }
    };
    if payload_len > max_message_bytes as u64 {
        return Err(WsError::TooBig {
            limit: max_message_bytes,
        });
    }
    let payload_len = payload_len as usize;
    if buf.len() < header_len + payload_len {
        buf.reserve(header_len + payload_len - buf.len());
        return Ok(None);
    }
    let mask = [
        buf[header_len - 4],
        buf[header_len - 3],
        buf[header_len - 2],
        buf[header_len - 1],
    ];
    buf.advance(header_len);
    let mut payload = buf.split_to(payload_len);
    fastwebsockets::unmask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        compressed,
        opcode: op,
        payload: payload.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    pub(crate) fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | op];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn read_all(reader: &mut MessageReader, bytes: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = reader.next(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn text_message_roundtrip_and_partial_input() {
        let bytes = client_frame(true, opcode::TEXT, b"{\"type\":\"ping\"}");
        let mut reader = MessageReader::new(1024);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = reader.next(&mut buf).expect("valid");
            if i + 1 < bytes.len() {
                assert!(got.is_none());
            } else {
                assert_eq!(
                    got,
                    Some(Message::Text(Bytes::from_static(b"{\"type\":\"ping\"}")))
                );
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn fragments_reassemble_with_interleaved_ping() {
        let mut bytes = client_frame(false, opcode::TEXT, b"hel");
        bytes.extend(client_frame(true, opcode::PING, b"p"));
        bytes.extend(client_frame(true, opcode::CONTINUATION, b"lo"));
        let got = read_all(&mut MessageReader::new(1024), &bytes).expect("valid");
        assert_eq!(
            got,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from_static(b"hello"))
            ]
        );
    }

    #[test]
    fn assembled_size_is_capped_across_many_small_fragments() {
        let mut bytes = client_frame(false, opcode::TEXT, b"aaaa");
        for _ in 0..100 {
            bytes.extend(client_frame(false, opcode::CONTINUATION, b"aaaa"));
        }
        let err = read_all(&mut MessageReader::new(64), &bytes).expect_err("too big");
        assert_eq!(err.close_code(), close::TOO_BIG);
    }

    #[test]
    fn oversize_frame_is_refused_from_its_header() {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]);
        let err = read_all(&mut MessageReader::new(64), &header).expect_err("too big");
        assert_eq!(err, WsError::TooBig { limit: 64 });
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 63).to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]);
        let err = read_all(&mut MessageReader::new(64), &header).expect_err("top bit");
        assert_eq!(err.close_code(), close::PROTOCOL_ERROR);
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0x81, 0x02, b'h', b'i'],                     // unmasked
            client_frame(true, 0x3, b""),                     // reserved opcode
            client_frame(true, 0xB, b""),                     // reserved control opcode
            client_frame(true, opcode::CONTINUATION, b""),    // nothing to continue
            client_frame(false, opcode::PING, b""),           // fragmented control
            client_frame(true, opcode::PING, &[0; 126]),      // control too long
            client_frame(true, opcode::CLOSE, &[3]),          // one-byte close
            client_frame(true, opcode::CLOSE, &[0x03, 0xED]), // code 1005
            {
                let mut f = client_frame(true, opcode::TEXT, b"x");
                f[0] |= 0x40; // RSV1
                f
            },
            {
                let mut f = client_frame(false, opcode::TEXT, b"a");
                f.extend(client_frame(true, opcode::TEXT, b"b")); // new message mid-fragment
                f
            },
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let err = read_all(&mut MessageReader::new(1024), bytes).expect_err("protocol error");
            assert_eq!(err.close_code(), close::PROTOCOL_ERROR, "case {i}: {err}");
        }
    }

    #[test]
    fn invalid_utf8_fails_fast_in_fragments_and_close_reasons() {
        let bytes = client_frame(false, opcode::TEXT, &[0xCE, 0xBA, 0xFF]);
        let err = read_all(&mut MessageReader::new(1024), &bytes).expect_err("invalid");
        assert_eq!(err, WsError::InvalidUtf8);
        // A code point split across fragments is fine.
        let mut bytes = client_frame(false, opcode::TEXT, &[0xCE]);
        bytes.extend(client_frame(true, opcode::CONTINUATION, &[0xBA]));
        let got = read_all(&mut MessageReader::new(1024), &bytes).expect("valid");
        assert_eq!(got, vec![Message::Text(Bytes::from_static("κ".as_bytes()))]);
        // ... unless the message ends inside it.
        let bytes = client_frame(true, opcode::TEXT, &[0xCE]);
        assert!(read_all(&mut MessageReader::new(1024), &bytes).is_err());
        let bytes = client_frame(true, opcode::CLOSE, &[0x03, 0xE8, 0xFF]);
        let err = read_all(&mut MessageReader::new(1024), &bytes).expect_err("reason");
        assert_eq!(err.close_code(), close::INVALID_PAYLOAD);
    }

    #[test]
    fn close_and_binary() {
        let mut bytes = client_frame(true, opcode::BINARY, &[1, 2]);
        bytes.extend(client_frame(true, opcode::CLOSE, &[0x03, 0xE8, b'o', b'k']));
        let got = read_all(&mut MessageReader::new(1024), &bytes).expect("valid");
        assert_eq!(
            got,
            vec![
                Message::Binary(Bytes::from_static(&[1, 2])),
                Message::Close(Some(1000), Bytes::from_static(b"ok"))
            ]
        );
    }
}
