//! Client options: every limit is named here, with its default.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Default first backoff window.
pub const DEFAULT_MIN_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Default largest backoff window.
pub const DEFAULT_MAX_RECONNECT_DELAY: Duration = Duration::from_secs(20);
/// Default time a request waits for its reply.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on application requests waiting for a reply (sent, or
/// queued while disconnected).
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 1000;
/// Default bound on live messages held per room while its join is in flight.
pub const DEFAULT_MAX_BUFFERED_MESSAGES: usize = 1000;
/// Default time from opening the TCP connection to the `welcome` frame.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default silence tolerated beyond the server's `heartbeat_ms`.
pub const DEFAULT_HEARTBEAT_MARGIN: Duration = Duration::from_secs(10);
/// Default lead of a token refresh before the token's `exp` (at most half
/// its remaining life).
pub const DEFAULT_REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// Default capacity of the [`Events`](crate::Events) channel.
pub const DEFAULT_EVENT_BUFFER: usize = 4096;
/// Default capacity of the channel from handles to the connection task.
pub const DEFAULT_COMMAND_BUFFER: usize = 1024;

/// A source of tokens: called before every connection attempt, and before
/// the token's `exp` to refresh it.
pub type TokenSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// How to connect, and the client's limits. Built with [`Options::new`] and
/// the builder methods.
#[derive(Clone)]
pub struct Options {
    pub(crate) url: String,
    pub(crate) user: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) token_source: Option<TokenSource>,
    pub(crate) min_reconnect_delay: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_pending_requests: usize,
    pub(crate) max_buffered_messages: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat_margin: Duration,
    pub(crate) refresh_before_expiry: Duration,
    pub(crate) event_buffer: usize,
}

impl Options {
    /// Options for the WebSocket endpoint `url` (`ws://host:port/ws`), with
    /// every default.
    pub fn new(url: impl Into<String>) -> Self {
        Options {
            url: url.into(),
            user: None,
            name: None,
            token_source: None,
            min_reconnect_delay: DEFAULT_MIN_RECONNECT_DELAY,
            max_reconnect_delay: DEFAULT_MAX_RECONNECT_DELAY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_pending_requests: DEFAULT_MAX_PENDING_REQUESTS,
            max_buffered_messages: DEFAULT_MAX_BUFFERED_MESSAGES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            heartbeat_margin: DEFAULT_HEARTBEAT_MARGIN,
            refresh_before_expiry: DEFAULT_REFRESH_BEFORE_EXPIRY,
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }

    /// Dev mode (`auth.mode = "none"`): the user id (`?user=`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Dev mode: the display name (`?name=`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// JWT mode: where tokens come from.
    pub fn token_source<F, Fut>(mut self, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.token_source = Some(Arc::new(move || Box::pin(source())));
        self
    }

    /// Backoff windows: the first retry waits up to `min`, doubling up to `max`.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_reconnect_delay = min;
        self.max_reconnect_delay = max.max(min);
        self
    }

    /// How long a request waits for its reply.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bound on application requests waiting for a reply.
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending_requests = n;
        self
    }

    /// Bound on live messages held per room while its join is in flight.
    pub fn max_buffered_messages(mut self, n: usize) -> Self {
        self.max_buffered_messages = n;
        self
    }

    /// Time from connecting to the `welcome` frame.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Silence tolerated beyond the server's `heartbeat_ms` before the
    /// connection counts as dead.
    pub fn heartbeat_margin(mut self, margin: Duration) -> Self {
        self.heartbeat_margin = margin;
        self
    }

    /// Refresh tokens this long before their `exp`.
    pub fn refresh_before_expiry(mut self, lead: Duration) -> Self {
        self.refresh_before_expiry = lead;
        self
    }

    /// Capacity of the events channel (at least 1).
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.event_buffer = n.max(1);
        self
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("token_source", &self.token_source.is_some())
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}
