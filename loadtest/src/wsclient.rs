//! A minimal WebSocket client for load: one read buffer per connection,
//! frames parsed in place, no allocation per message.
//!
//! It speaks just what a load generator needs: the upgrade (over TCP or
//! TLS), masked text frames out, unmasked frames in (inflated when
//! permessage-deflate was negotiated), pong for ping, close.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use flate2::{Decompress, FlushDecompress, Status};
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Largest HTTP response head accepted during the upgrade.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Read buffer of one connection.
const READ_BUF_BYTES: usize = 16 * 1024;
/// Largest frame accepted from the server (and largest inflated message).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// The permessage-deflate offer: no context takeover either way, so every
/// message stands alone (what shardcast answers, too).
const DEFLATE_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";
/// The four bytes a deflated message ends with, left off on the wire.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// TCP connect or I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered the upgrade with this HTTP status.
    #[error("HTTP {status}: {body}")]
    Refused {
        /// The status code.
        status: u16,
        /// The body, if any was read with the head.
        body: String,
    },
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// The server closed the connection (close code if any).
    #[error("closed by server ({0:?})")]
    Closed(Option<u16>),
}

/// `ws://host:port/path?query` split into parts.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Socket address.
    pub(crate) addr: SocketAddr,
    /// `Host` header value.
    pub(crate) host: String,
    /// Path and query.
    pub(crate) path: String,
    /// How connections prove who they are.
    pub(crate) credentials: Credentials,
    /// `wss://`: the TLS client and the name the certificate must carry.
    pub(crate) tls: Option<TlsTarget>,
    /// Offer permessage-deflate (`--compression`).
    pub(crate) deflate: bool,
}

/// A TLS client and the name the server's certificate must carry.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({:?})", self.name)
    }
}

/// Credentials for servers with `auth.mode = "jwt"`.
#[derive(Debug, Clone, Default)]
pub(crate) enum Credentials {
    /// `?user=` (servers without auth).
    #[default]
    DevUser,
    /// One token for every connection (`--token`).
    Token(String),
    /// Mint an HS256 token per user with this secret (`--token-secret`).
    Secret {
        /// The HMAC secret.
        secret: String,
        /// Token lifetime, seconds.
        ttl_secs: u64,
    },
}

impl Target {
    /// Parse a `ws://` or `wss://` URL whose host is an IP address or
    /// `localhost` (a `wss://` target needs [`Target::with_tls`] before use).
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("wss://"))
            .ok_or_else(|| format!("{url}: only ws:// and wss:// URLs are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let resolved = hostport.replace("localhost", "127.0.0.1");
        let addr: SocketAddr = resolved
            .parse()
            .map_err(|_| format!("{url}: host must be IP:port (or localhost:port)"))?;
        Ok(Target {
            addr,
            host: hostport.to_string(),
            path: path.to_string(),
            credentials: Credentials::default(),
            tls: None,
            deflate: false,
        })
    }

    /// Whether `url` asks for TLS.
    pub(crate) fn is_tls_url(url: &str) -> bool {
        url.starts_with("wss://")
    }

    /// Speak TLS to the target, trusting the CA certificates (PEM) in
    /// `ca_file`.
    pub(crate) fn with_tls(mut self, ca_file: &std::path::Path) -> Result<Target, String> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("--ca-file {}: {e}", ca_file.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--ca-file {}: no certificate", ca_file.display()));
        }
        let mut config = tokio_rustls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let host = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
        self.tls = Some(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        });
        Ok(self)
    }

    /// The target for a connection of `user`: `?user=`, or a token whose
    /// `sub` is `user` (minted per user with `--token-secret`).
    pub(crate) fn for_user(&self, user: &str) -> Target {
        match &self.credentials {
            Credentials::DevUser => self.with_query(&format!("user={user}")),
            Credentials::Token(token) => self.with_query(&format!("token={token}")),
            Credentials::Secret { secret, ttl_secs } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let claims = serde_json::json!({"sub": user, "iat": now, "exp": now + ttl_secs});
                let token = jsonwebtoken::encode(
                    &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                    &claims,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .unwrap_or_default();
                self.with_query(&format!("token={token}"))
            }
        }
    }

    /// The same target with `extra` appended to the query string.
    pub(crate) fn with_query(&self, extra: &str) -> Target {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        Target {
            path: format!("{}{sep}{extra}", self.path),
            ..self.clone()
        }
    }
}

/// A client connection's byte stream: TCP, or TLS over TCP.
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Inflating compressed server messages (permessage-deflate).
struct Inflater {
    raw: Decompress,
    out: Vec<u8>,
}

impl Inflater {
    fn new() -> Self {
        Inflater {
            raw: Decompress::new(false),
            out: Vec::new(),
        }
    }

    /// Inflate one message (no context takeover: each stands alone).
    fn inflate(&mut self, payload: &[u8]) -> Result<&[u8], ClientError> {
        self.raw.reset(false);
        self.out.clear();
        for input in [payload, &DEFLATE_TAIL[..]] {
            let mut input = input;
            loop {
                if self.out.len() == self.out.capacity() {
                    if self.out.len() >= MAX_FRAME_BYTES {
                        return Err(ClientError::Protocol("inflated message too large"));
                    }
                    self.out.reserve(input.len().max(4096) * 2);
                }
                let before = self.raw.total_in();
                let status = self
                    .raw
                    .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                    .map_err(|_| ClientError::Protocol("bad deflate data"))?;
                let used = (self.raw.total_in() - before) as usize;
                input = &input[used..];
                let full = self.out.len() == self.out.capacity();
                if status == Status::StreamEnd || (input.is_empty() && !full) {
                    break;
                }
            }
        }
        Ok(&self.out)
    }
}

/// An open WebSocket connection.
pub(crate) struct WsConn {
    stream: ClientStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    mask: [u8; 4],
    /// Queued messages and pongs owed to the server, written by
    /// [`WsConn::flush`].
    owed: Vec<u8>,
    /// Set when the server accepted permessage-deflate.
    inflater: Option<Inflater>,
    /// Bytes read from the server (after TLS), upgrade excluded.
    received: u64,
}

/// A frame from the server, borrowed from the read buffer.
pub(crate) enum Frame<'a> {
    /// A text frame.
    Text(&'a [u8]),
    /// A close frame (its code comes back as [`ClientError::Closed`]).
    Close,
    /// Anything else (ping answered already, pong, binary).
    Other,
}

impl WsConn {
    /// Connect and upgrade; `source` binds the local address (to spread
    /// ephemeral ports over several loopback addresses).
    pub(crate) async fn connect(
        target: &Target,
        source: Option<IpAddr>,
        seed: u32,
    ) -> Result<WsConn, ClientError> {
        Self::connect_with(target, source, seed, None, None).await
    }

    /// [`WsConn::connect`] with the socket's receive buffer set to
    /// `recv_buffer` bytes (the kernel doubles and clamps it) and the MSS it
    /// announces set to `mss` bytes. Small values make a client that stops
    /// reading back up into the server's queue quickly: on loopback the MSS
    /// is 64 KiB, and the server's send buffer grows with it to megabytes.
    pub(crate) async fn connect_with(
        target: &Target,
        source: Option<IpAddr>,
        seed: u32,
        recv_buffer: Option<u32>,
        mss: Option<u32>,
    ) -> Result<WsConn, ClientError> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes)?;
        }
        if let Some(mss) = mss {
            set_mss(&socket, mss)?;
        }
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream = match &target.tls {
            None => ClientStream::Plain(tcp),
            Some(tls) => {
                let session = tls.connector.connect(tls.name.clone(), tcp).await?;
                ClientStream::Tls(Box::new(session))
            }
        };
        let extensions = if target.deflate {
            format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
        } else {
            String::new()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c2hhcmRjYXN0LWxvYWR0ZXN0\r\nSec-WebSocket-Version: 13\r\n\
             {extensions}\r\n",
            target.path, target.host
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = vec![0u8; READ_BUF_BYTES];
        let mut end = 0;
        let head_end = loop {
            if let Some(i) = memmem::find(&buf[..end], b"\r\n\r\n") {
                break i + 4;
            }
            if end >= MAX_RESPONSE_HEAD {
                return Err(ClientError::Protocol("HTTP response head too long"));
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(ClientError::Protocol("connection closed during upgrade"));
            }
            end += n;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            let body = String::from_utf8_lossy(&buf[head_end..end]).to_string();
            return Err(ClientError::Refused { status, body });
        }
        let deflated = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("sec-websocket-extensions")
                    && v.contains("permessage-deflate")
            });
        let mask = seed.wrapping_mul(2_654_435_761).to_be_bytes();
        Ok(WsConn {
            stream,
            buf,
            start: head_end,
            end,
            mask,
            owed: Vec::new(),
            inflater: deflated.then(Inflater::new),
            received: 0,
        })
    }

    /// Whether the server accepted permessage-deflate.
    pub(crate) fn deflated(&self) -> bool {
        self.inflater.is_some()
    }

    /// Bytes read from the server so far (after TLS, upgrade excluded).
    pub(crate) fn bytes_received(&self) -> u64 {
        self.received
    }

    /// Queue one text message; [`WsConn::flush`] writes what is queued in
    /// one write.
    pub(crate) fn queue_text(&mut self, payload: &[u8]) {
        encode_masked(&mut self.owed, 0x81, payload, self.mask);
    }

    /// Write the queued messages and the pongs owed for pings received.
    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.owed.is_empty() {
            self.stream.write_all(&self.owed).await?;
            self.owed.clear();
        }
        Ok(())
    }

    /// Call `on_frame` for every frame the server sent, reading once from the
    /// socket if no complete frame is buffered (and then handling what that
    /// read brought). Pongs for pings are queued for [`WsConn::flush`].
    /// Cancel-safe: it only awaits a read.
    pub(crate) async fn read_frames(
        &mut self,
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<(), ClientError> {
        if self.handle_buffered(&mut on_frame)? {
            return Ok(());
        }
        // Make room, then read.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let want = match parse_header(&self.buf[..self.end])? {
                Some((h, len)) => h + len,
                None => self.buf.len() * 2,
            };
            self.buf.resize(want.max(self.buf.len() * 2), 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ClientError::Closed(None));
        }
        self.end += n;
        self.received += n as u64;
        // One wake-up, one pass: what the read brought is handled now.
        self.handle_buffered(&mut on_frame)?;
        Ok(())
    }

    /// Hand every complete buffered frame to `on_frame`; whether there was
    /// any.
    fn handle_buffered(
        &mut self,
        on_frame: &mut impl FnMut(Frame<'_>),
    ) -> Result<bool, ClientError> {
        let mut got_any = false;
        loop {
            let avail = &self.buf[self.start..self.end];
            let Some((header, len)) = parse_header(avail)? else {
                break;
            };
            if avail.len() < header + len {
                break;
            }
            let opcode = avail[0] & 0x0F;
            let compressed = avail[0] & 0x40 != 0;
            let payload = &avail[header..header + len];
            match opcode {
                0x1 if compressed => match self.inflater.as_mut() {
                    Some(inflater) => on_frame(Frame::Text(inflater.inflate(payload)?)),
                    None => return Err(ClientError::Protocol("compressed frame not negotiated")),
                },
                0x1 => on_frame(Frame::Text(payload)),
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    on_frame(Frame::Close);
                    return Err(ClientError::Closed(code));
                }
                0x9 => {
                    encode_masked(&mut self.owed, 0x8A, payload, self.mask);
                    on_frame(Frame::Other);
                }
                _ => on_frame(Frame::Other),
            }
            self.start += header + len;
            got_any = true;
        }
        Ok(got_any)
    }
}

/// Set `TCP_MAXSEG` before connecting: the MSS announced in the SYN.
fn set_mss(socket: &TcpSocket, mss: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(mss)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "MSS too large"))?;
    // SAFETY: the descriptor is open (owned by `socket` for the call) and
    // the option value is a live c_int whose size is passed.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Header length and payload length of the frame at the start of `b`.
fn parse_header(b: &[u8]) -> Result<Option<(usize, usize)>, ClientError> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[1] & 0x80 != 0 {
        return Err(ClientError::Protocol("server frames must not be masked"));
    }
    let (header, len) = match b[1] & 0x7F {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([b[2], b[3]]) as usize)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[2..10]);
            (10, u64::from_be_bytes(l) as usize)
        }
        n => (2, n as usize),
    };
    if len > MAX_FRAME_BYTES {
        return Err(ClientError::Protocol("server frame too large"));
    }
    Ok(Some((header, len)))
}

fn encode_masked(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(first);
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
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

/// A field's pattern in a JSON text (such as `"seq":`), with its searcher
/// built once. The generator reads a field or two of every frame it gets;
/// `memchr::memmem::find` builds a searcher per call, which was a third of
/// the generator's CPU in fanout at max rate.
pub(crate) struct Field(LazyLock<memmem::Finder<'static>>);

impl Field {
    /// Where the field's value starts in `text`.
    pub(crate) fn value_at(&self, text: &[u8]) -> Option<usize> {
        Some(self.0.find(text)? + self.0.needle().len())
    }
}

/// The fields the generator reads.
pub(crate) mod field {
    use super::Field;
    use memchr::memmem::Finder;
    use std::sync::LazyLock;

    macro_rules! fields {
        ($($(#[$doc:meta])* $name:ident = $pattern:literal;)*) => {
            $($(#[$doc])* pub(crate) static $name: Field = Field(LazyLock::new(|| Finder::new($pattern)));)*
        };
    }

    fields! {
        /// `"seq":`, a number.
        SEQ = br#""seq":"#;
        /// `"id":`, a number.
        ID = br#""id":"#;
        /// `"t":`, the send time the generator puts in its payloads.
        T = br#""t":"#;
        /// `"from":`, a gap's first seq.
        FROM = br#""from":"#;
        /// `"to":`, a gap's last seq.
        TO = br#""to":"#;
        /// `"code":"`, an error's code.
        CODE = br#""code":""#;
        /// `"from":"`, a message's sender.
        FROM_USER = br#""from":""#;
        /// `"room":"`.
        ROOM = br#""room":""#;
        /// `"data":`, a Pusher event's data.
        DATA = br#""data":"#;
        /// `"k":`, the publisher in a Pusher event's data (a JSON object).
        PUSHER_K = br#""k":"#;
        /// `"n":`, the publisher's counter in a Pusher event's data.
        PUSHER_N = br#""n":"#;
        /// `\"k\":`: [`PUSHER_K`] in data that is a JSON string.
        PUSHER_K_ESCAPED = br#"\"k\":"#;
        /// `\"n\":`: [`PUSHER_N`] in data that is a JSON string.
        PUSHER_N_ESCAPED = br#"\"n\":"#;
        /// `\"t\":`: [`T`] in data that is a JSON string.
        PUSHER_T_ESCAPED = br#"\"t\":"#;
    }

    /// Patterns only the tests look for.
    #[cfg(test)]
    pub(crate) mod absent {
        use super::*;
        fields! {
            NOPE = br#""nope":"#;
            NOPE_STR = br#""nope":""#;
        }
    }
}

/// The unsigned integer of `field` in a JSON text, found by scanning: the
/// generator checks only the fields it needs, without a JSON parse or an
/// allocation.
pub(crate) fn json_u64(text: &[u8], field: &Field) -> Option<u64> {
    let at = field.value_at(text)?;
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut n: u64 = 0;
    let mut any = false;
    for d in digits {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(n)
}

/// The string of `field` (a pattern such as `"code":"`) up to the next
/// quote, in a JSON text (for plain values such as error codes: no escapes).
pub(crate) fn json_str<'a>(text: &'a [u8], field: &Field) -> Option<&'a [u8]> {
    let at = field.value_at(text)?;
    let len = text[at..].iter().position(|&b| b == b'"')?;
    Some(&text[at..at + len])
}

/// Whether a JSON text frame has `"type":"<kind>"` first (the broker always
/// writes `type` first).
pub(crate) fn is_type(text: &[u8], kind: &[u8]) -> bool {
    text.starts_with(b"{\"type\":\"")
        && text[9..].starts_with(kind)
        && text.get(9 + kind.len()) == Some(&b'"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_fields() {
        let t = br#"{"type":"message","room":"r","seq":42,"from":"u","ts":1,"data":{"t":99}}"#;
        assert!(is_type(t, b"message"));
        assert!(!is_type(t, b"messag"));
        assert_eq!(json_u64(t, &field::SEQ), Some(42));
        assert_eq!(json_u64(t, &field::T), Some(99));
        assert_eq!(json_u64(t, &field::absent::NOPE), None);
        let e = br#"{"type":"error","id":3,"code":"not_member","message":"m"}"#;
        assert_eq!(json_str(e, &field::CODE), Some(&b"not_member"[..]));
        assert_eq!(json_str(e, &field::absent::NOPE_STR), None);
    }

    #[test]
    fn parses_targets() {
        let t = Target::parse("ws://localhost:8080/ws").expect("url");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.with_query("user=a").path, "/ws?user=a");
        assert!(Target::parse("http://x").is_err());
    }
}
