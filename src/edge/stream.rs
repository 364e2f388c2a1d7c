//! What a connection reads and writes once the edge has accepted it: a
//! plain TCP socket or a TLS session over one ([`Stream`]), split into a
//! reader and a writer for the WebSocket loops ([`ReadHalf`],
//! [`WriteHalf`]), and the adapter hyper serves HTTP on ([`HttpIo`]).
//!
//! **Invariant:** the plain path is the TCP socket itself: a plain reader
//! waits for readiness and holds no buffer while idle, and writes are the
//! socket's vectored writes. TLS adds rustls's own buffers and one read
//! chunk ([`READ_CHUNK_BYTES`]) per connection, reserved while it waits.

use std::future::Future;
use std::io::{self, IoSlice, Read};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

use crate::limits::{READ_BYTES_PER_TURN, READ_CHUNK_BYTES};

/// A TLS session over TCP.
type Tls = TlsStream<TcpStream>;

/// An accepted connection's byte stream.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (boxed: the session is large, the plain variant is not).
    Tls(Box<Tls>),
}

impl Stream {
    /// Whether the connection speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// A reader and a writer that can be driven by two tasks.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Plain(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Stream::Tls(tls) => {
                let (r, w) = tokio::io::split(*tls);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new(&mut **$s);
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// The reading side of an upgraded connection.
pub(crate) enum ReadHalf {
    /// Plain TCP: readiness, then non-blocking reads.
    Plain(OwnedReadHalf),
    /// TLS: reads of decrypted bytes.
    Tls(tokio::io::ReadHalf<Tls>),
}

impl ReadHalf {
    /// Wait for bytes, then read what is there into `buf`, up to
    /// [`READ_BYTES_PER_TURN`]. Returns false on EOF or error (what was read
    /// before it stays in `buf`, to be handled). Cancel-safe: bytes read are
    /// in `buf` whenever this future is dropped.
    pub(crate) async fn read_burst(&mut self, buf: &mut BytesMut) -> bool {
        match self {
            // Readiness polled in place: a `readable()` future would add
            // its 168 bytes to every idle connection's reader.
            ReadHalf::Plain(read) => std::future::poll_fn(|cx| plain_poll(read, cx, buf)).await,
            ReadHalf::Tls(read) => std::future::poll_fn(|cx| tls_burst(read, cx, buf)).await,
        }
    }

    /// After the server's close frame went out: read and discard until the
    /// peer's close frame or EOF.
    pub(crate) async fn discard_until_eof(&mut self) {
        let mut scratch = [0u8; 1024];
        loop {
            let n = match self {
                ReadHalf::Plain(read) => {
                    if read.readable().await.is_err() {
                        return;
                    }
                    match read.try_read(&mut scratch) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        other => other,
                    }
                }
                ReadHalf::Tls(read) => tokio::io::AsyncReadExt::read(read, &mut scratch).await,
            };
            if !matches!(n, Ok(n) if n > 0) {
                return;
            }
        }
    }
}

/// One poll of a plain read burst: pending until the socket has bytes (or
/// EOF, or an error), then [`plain_burst`]. A readiness that turns out
/// spurious (nothing to read) is cleared by the burst, and the socket is
/// polled again, so this is pending exactly when nothing was read.
fn plain_poll(read: &OwnedReadHalf, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<bool> {
    let stream: &TcpStream = read.as_ref();
    loop {
        match stream.poll_read_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(false),
            Poll::Ready(Ok(())) => {}
        }
        let before = buf.len();
        let more = plain_burst(read, buf);
        if !more || buf.len() > before {
            return Poll::Ready(more);
        }
    }
}

/// Read what a plain socket has now, up to [`READ_BYTES_PER_TURN`].
///
/// A read that returns less than it asked for drained the socket: its
/// readiness is cleared then and there (tokio's `try_io` with a
/// `WouldBlock`), so the common case of a small client frame costs one
/// `recvfrom`, not a second one that only says `EAGAIN`. (A peer's FIN
/// is never lost this way: tokio keeps the read-closed bit.)
fn plain_burst(read: &OwnedReadHalf, buf: &mut BytesMut) -> bool {
    let stream: &TcpStream = read.as_ref();
    let mut total = 0;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        let start = buf.len();
        let want = (buf.capacity() - start).min(READ_BYTES_PER_TURN - total);
        // Zeroed rather than uninitialized space: no unsafe, and a memset
        // of a few KiB costs less than the syscall it saves.
        buf.resize(start + want, 0);
        let mut got = 0;
        let result = stream.try_io(Interest::READABLE, || {
            let n = (&*SockRef::from(stream)).read(&mut buf[start..])?;
            got = n;
            if n > 0 && n < want {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        buf.truncate(start + got);
        match result {
            Ok(0) => return false,
            Ok(n) => {
                total += n;
                if total >= READ_BYTES_PER_TURN {
                    return true; // more may wait: the next turn reads it
                }
            }
            // Drained (after `got` bytes), or nothing was there.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// One poll of a TLS read burst: pending only when nothing was read.
fn tls_burst(
    read: &mut tokio::io::ReadHalf<Tls>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<bool> {
    use tokio::io::AsyncReadExt;
    let mut total = 0;
    while total < READ_BYTES_PER_TURN {
        if buf.capacity() - buf.len() < READ_CHUNK_BYTES / 4 {
            buf.reserve(READ_CHUNK_BYTES);
        }
        // One poll of tokio's `read_buf` (which fills spare capacity
        // without zeroing it); the future holds no state across polls.
        let polled = {
            let read_once = read.read_buf(buf);
            tokio::pin!(read_once);
            read_once.poll(cx)
        };
        match polled {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(false),
            Poll::Ready(Ok(n)) => total += n,
            Poll::Pending if total == 0 => return Poll::Pending,
            Poll::Pending => break,
        }
    }
    Poll::Ready(true)
}

/// The writing side of an upgraded connection.
pub(crate) enum WriteHalf {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<Tls>),
}

impl WriteHalf {
    /// Write `bufs` now if the socket takes them without waiting: the
    /// bytes written, or `WouldBlock`. `None` over TLS, whose writes go
    /// through its session (the writer task does those).
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        match self {
            WriteHalf::Plain(tcp) => Some(tcp.try_write_vectored(bufs)),
            WriteHalf::Tls(_) => None,
        }
    }
}

macro_rules! delegate_write {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            WriteHalf::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            WriteHalf::Tls($s) => {
                let $s = Pin::new($s);
                $e
            }
        }
    };
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate_write!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate_write!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_write!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_write!(self, s => s.poll_shutdown(cx))
    }
}

/// Most reads a lingering close does in one poll before yielding.
const LINGER_READS_PER_POLL: usize = 64;

/// The stream hyper serves HTTP on: bytes already read by the edge (the
/// first request head) come first, and closing lingers: the write side is
/// shut, then what the client still sends is read and discarded for at most
/// `linger`, so a client that writes its whole request body before reading
/// (Python `requests`, Node `fetch`) sees the answer (a 413, say) instead of
/// a connection reset.
pub(crate) struct HttpIo {
    prefix: Bytes,
    stream: Stream,
    linger: Duration,
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpIo {
    /// `stream`, whose first bytes `prefix` were read from it already.
    pub(crate) fn new(stream: Stream, prefix: Bytes, linger: Duration) -> Self {
        HttpIo {
            prefix,
            stream,
            linger,
            lingering: None,
        }
    }

    /// The stream and the bytes of `prefix` hyper did not read (after an
    /// upgrade).
    pub(crate) fn into_parts(self) -> (Stream, Bytes) {
        (self.stream, self.prefix)
    }
}

impl AsyncRead for HttpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HttpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_linger_close(&mut this.stream, &mut this.lingering, this.linger, cx)
    }
}

/// Shut the write side of `stream`, then read and discard until EOF, an
/// error or `linger` has passed.
fn poll_linger_close(
    stream: &mut Stream,
    lingering: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    linger: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    if lingering.is_none() {
        ready!(Pin::new(&mut *stream).poll_shutdown(cx))?;
        *lingering = Some(Box::pin(tokio::time::sleep(linger)));
    }
    let Some(deadline) = lingering.as_mut() else {
        return Poll::Ready(Ok(()));
    };
    if deadline.as_mut().poll(cx).is_ready() {
        return Poll::Ready(Ok(()));
    }
    let mut scratch = [0u8; 2048];
    for _ in 0..LINGER_READS_PER_POLL {
        let mut rb = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
            Poll::Pending => return Poll::Pending,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Close `stream` the lingering way (see [`HttpIo`]), after an answer the
/// edge wrote itself.
pub(crate) async fn linger_close(mut stream: Stream, linger: Duration) {
    let mut lingering = None;
    let _ =
        std::future::poll_fn(|cx| poll_linger_close(&mut stream, &mut lingering, linger, cx)).await;
}
