//! RESP2 as the subscriber connection needs it: commands written as
//! arrays of bulk strings, and values read one at a time, each bounded,
//! into the [`SubEvent`]s they stand for.
//!
//! **Invariant:** no value read here costs more than its bound: a header
//! line at most [`MAX_LINE`] bytes, a bulk string at most `max_payload`,
//! an array at most [`MAX_ARRAY`] elements and never nested; anything else
//! is an error, never a panic (fuzzed: `resp_reader`).

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::SubEvent;

/// Every event in `bytes`, read as the subscriber connection reads Redis
/// (bulk strings up to `max_payload`), and why the reading ended (an error
/// reply, bad bytes, or the end of the bytes), as the connection would
/// have. For the `resp_reader` fuzz target.
#[doc(hidden)]
pub fn read_all(bytes: &[u8], max_payload: usize) -> (Vec<SubEvent>, String) {
    use futures_util::FutureExt;
    let mut reader = BufReader::new(bytes);
    let mut events = Vec::new();
    loop {
        // A slice never makes a read wait.
        let Some(value) = read_value(&mut reader, max_payload).now_or_never() else {
            return (events, "a read of a slice waited".into());
        };
        match value.map(event_of) {
            Ok(Some(SubEvent::Lost(reason))) => return (events, reason),
            Ok(event) => events.extend(event),
            Err(e) => return (events, e),
        }
    }
}

/// A RESP2 value, as much of it as a subscriber needs.
#[derive(Debug)]
pub(super) enum Resp {
    Simple(String),
    Error(String),
    /// An integer (subscription counts; the value is not needed).
    Int,
    Bulk(Option<Bytes>),
    Array(Vec<Resp>),
}

pub(super) fn event_of(value: Resp) -> Option<SubEvent> {
    let Resp::Array(mut parts) = value else {
        return match value {
            Resp::Error(e) => Some(SubEvent::Lost(format!("Redis error: {e}"))),
            // A `PING` outside subscribed mode (after unsubscribing from
            // everything) is answered as a plain status.
            Resp::Simple(s) if s == "PONG" => Some(SubEvent::Pong),
            _ => None,
        };
    };
    if parts.is_empty() {
        return None;
    }
    let kind = match parts.remove(0) {
        Resp::Bulk(Some(k)) => k,
        _ => return None,
    };
    let text = |r: Resp| match r {
        Resp::Bulk(Some(b)) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    };
    match &kind[..] {
        b"message" if parts.len() == 2 => {
            let payload = match parts.pop()? {
                Resp::Bulk(Some(b)) => b,
                _ => return None,
            };
            Some(SubEvent::Message {
                channel: text(parts.pop()?)?,
                payload,
            })
        }
        b"subscribe" => Some(SubEvent::Subscribed(text(parts.into_iter().next()?)?)),
        b"unsubscribe" => Some(SubEvent::Unsubscribed(text(parts.into_iter().next()?)?)),
        b"pong" => Some(SubEvent::Pong),
        _ => None,
    }
}

/// Read one RESP2 value; bulk strings longer than `max_payload` and
/// arrays longer than a few elements end the connection.
pub(super) async fn read_value<R: AsyncBufReadExt + AsyncReadExt + Unpin>(
    reader: &mut R,
    max_payload: usize,
) -> Result<Resp, String> {
    let line = read_line(reader).await?;
    let Some((kind, rest)) = line.split_at_checked(1) else {
        return Err("malformed line from Redis".into());
    };
    match kind {
        "+" => Ok(Resp::Simple(rest.to_string())),
        "-" => Ok(Resp::Error(rest.to_string())),
        ":" => rest
            .parse::<i64>()
            .map(|_| Resp::Int)
            .map_err(|_| format!("bad integer {rest:?}")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| format!("bad length {rest:?}"))?;
            if len < 0 {
                return Ok(Resp::Bulk(None));
            }
            let len = len as usize;
            if len > max_payload {
                return Err(format!(
                    "a message of {len} bytes is over the {max_payload}-byte bound"
                ));
            }
            let mut buf = vec![0u8; len + 2];
            reader
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            buf.truncate(len);
            Ok(Resp::Bulk(Some(Bytes::from(buf))))
        }
        "*" => {
            let n: i64 = rest
                .parse()
                .map_err(|_| format!("bad array length {rest:?}"))?;
            if n > MAX_ARRAY {
                return Err(format!(
                    "an array of {n} elements on the subscriber connection"
                ));
            }
            let mut parts = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                parts.push(Box::pin(read_scalar(reader, max_payload)).await?);
            }
            Ok(Resp::Array(parts))
        }
        other => Err(format!("unexpected RESP type {other:?}")),
    }
}

/// Pub/sub frames are flat arrays of at most four elements.
const MAX_ARRAY: i64 = 8;

/// A value inside an array: never itself an array on this connection.
async fn read_scalar<R: AsyncBufReadExt + AsyncReadExt + Unpin>(
    reader: &mut R,
    max_payload: usize,
) -> Result<Resp, String> {
    match read_value(reader, max_payload).await? {
        Resp::Array(_) => Err("nested array on the subscriber connection".into()),
        scalar => Ok(scalar),
    }
}

/// Longest header line (type byte, number or short status, CRLF).
const MAX_LINE: usize = 1024;

async fn read_line<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> Result<String, String> {
    let mut line = Vec::with_capacity(32);
    let mut limited = reader.take(MAX_LINE as u64);
    let n = limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("Redis closed the subscriber connection".into());
    }
    if !line.ends_with(b"\r\n") || line.len() < 3 {
        return Err("malformed line from Redis".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "non-UTF-8 header line from Redis".into())
}

/// A command as a RESP array of bulk strings.
pub(super) fn push_command<'a>(
    out: &mut Vec<u8>,
    name: &str,
    args: impl ExactSizeIterator<Item = &'a [u8]>,
) {
    out.extend_from_slice(
        format!("*{}\r\n${}\r\n{name}\r\n", args.len() + 1, name.len()).as_bytes(),
    );
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
#[path = "resp_tests.rs"]
mod tests;
