//! shardcast: a sharded, bounded WebSocket room broker.
//!
//! Start one with [`Broker::start`]; see `ARCHITECTURE.md` for the map of
//! the code and the flow of a message.
//!
//! # The library's API
//!
//! What the `shardcast` binary, the integration tests and the load
//! generator (`shardcast-loadtest`) use, and nothing more:
//!
//! * [`Broker`] and [`StartError`]: start a broker, ask for its address and
//!   figures, drain it.
//! * [`config`]: [`Config`] (file, environment, flags, validation),
//!   [`ConfigError`], [`Overrides`] and the section types.
//! * [`error`]: the stable [`ErrorCode`]s, [`Refusal`] and close codes.
//! * [`auth`], [`perms`]: checking and minting tokens (the `token`
//!   subcommand), rights.
//! * [`protocol`], [`ws`]: the wire codecs (the fuzz targets drive them).
//! * [`limits`]: the fixed bounds; [`SYSTEM_USER`].
//!
//! Everything else is private to the crate. The benchmarks and fuzz targets
//! reach a few internals through the hidden `internals` module, which makes
//! no promise of stability.

mod api;
pub mod auth;
mod backend;
mod cluster;
pub mod config;
mod delivery;
mod edge;
mod epoch;
pub mod error;
mod inbox;
mod index;
pub mod limits;
mod memory;
mod metrics;
mod observe;
mod op;
pub mod perms;
mod placement;
pub mod protocol;
mod pusher;
mod ratelimit;
mod room;
mod schema;
mod server;
mod shard;
mod shared;
mod tls_client;
pub mod ws;

pub use cluster::ClusterError;
pub use edge::tls::TlsError;
pub use schema::SchemaError;
pub use server::SYSTEM_USER;

/// Internals the benchmarks, fuzz targets and a few tests measure. Not part
/// of the API: no stability promise.
#[doc(hidden)]
pub mod internals {
    pub use crate::cluster::{subscriber, wire};
    pub use crate::delivery::RoomFrame;
    pub use crate::index::{ConnCaps, CreationCaps, Creator, RoomIndex, RoomMeta, UserIndex};
    pub use crate::metrics::FRAME_KINDS;
    pub use crate::shard::outbound::{OutQueue, Pushed};

    /// The Pusher endpoint's pure parts (the `pusher_events` fuzz target,
    /// the no-allocation fan-out test, the `fanout` benches).
    pub mod pusher {
        use bytes::Bytes;

        use crate::delivery::RoomFrame;

        /// A room message as a sequencer hands it to member shards: its
        /// native frame, and its Pusher form made on first demand.
        #[derive(Clone)]
        pub struct SharedFrame(RoomFrame);

        impl SharedFrame {
            /// Message `seq` of `room`, published as `event`.
            pub fn message(room: &str, seq: u64, data: &[u8], event: &str) -> Self {
                let frame =
                    crate::protocol::encode::message_event(room, seq, "u1", 1, data, Some(event));
                SharedFrame(RoomFrame::new(frame))
            }

            /// The native frame.
            pub fn native(&self) -> Option<&Bytes> {
                self.0.native_frame()
            }

            /// The Pusher form, as a Pusher member of `room` takes it (made
            /// once, by the first caller).
            pub fn pusher(&self, room: &str) -> Option<&Bytes> {
                self.0
                    .pusher_form(|f| crate::shard::conn::pusher::room_form(room, f))
            }
        }

        /// Decode a client event (under the default
        /// `limits.max_json_depth`): its kind and channel (if it names
        /// one), or the `pusher:error` code and message it gets.
        pub fn decode(text: &str) -> Result<(String, Option<String>), (u16, String)> {
            use crate::pusher::wire::ClientEvent;
            let max_depth = crate::config::LimitsConfig::default().max_json_depth;
            match crate::pusher::wire::decode(text, max_depth) {
                Ok(ClientEvent::Ping) => Ok(("ping".into(), None)),
                Ok(ClientEvent::Pong) => Ok(("pong".into(), None)),
                Ok(ClientEvent::Subscribe { channel, .. }) => {
                    Ok(("subscribe".into(), Some(channel.into_owned())))
                }
                Ok(ClientEvent::Unsubscribe { channel }) => {
                    Ok(("unsubscribe".into(), Some(channel.into_owned())))
                }
                Ok(ClientEvent::Signin { .. }) => Ok(("signin".into(), None)),
                Ok(ClientEvent::Client { event, channel, .. }) => {
                    Ok((event.into_owned(), Some(channel.into_owned())))
                }
                Err(e) => Err((e.code, e.message)),
            }
        }

        /// Whether `name` is a valid channel name.
        pub fn is_valid_channel(name: &str) -> bool {
            crate::pusher::names::is_valid_channel(name)
        }

        /// The Pusher form of a native server frame of `channel`.
        pub fn from_native(channel: &str, frame: &[u8]) -> Option<Bytes> {
            crate::pusher::wire::from_native(channel, &Bytes::copy_from_slice(frame))
        }

        /// Check an HTTP API request's signature (key `key`, secret
        /// `secret`, the server's clock `now_s`).
        pub fn check_request(
            key: &str,
            secret: &[u8],
            (method, path): (&str, &str),
            params: &[(String, String)],
            body: &[u8],
            now_s: u64,
        ) -> Result<(), String> {
            crate::pusher::sign::check_request(key, secret, method, path, params, body, now_s)
                .map_err(|e| e.to_string())
        }
    }

    use std::sync::Arc;

    use bytes::Bytes;
    use futures_util::FutureExt;

    use crate::delivery::Delivery;
    use crate::inbox::ShardLink;

    /// A publish and the namespace rules of a configuration: the
    /// `publish_rules/*` benches (what [`crate::shard::Shard::route`] checks
    /// before any back end).
    pub struct PublishRules {
        namespaces: crate::room::namespaces::Namespaces,
        schemas: crate::schema::Schemas,
        publish: crate::op::Publish,
    }

    impl PublishRules {
        /// The rules of `config`'s namespaces (schemas read and compiled),
        /// and a connection's publish of `data` into `room`.
        pub fn new(
            config: &crate::Config,
            room: &str,
            data: Bytes,
        ) -> Result<Self, crate::SchemaError> {
            let namespaces = crate::room::namespaces::Namespaces::new(config);
            let schemas = crate::schema::Schemas::load(&namespaces)?;
            let origin = crate::op::Origin { conn: 1, id: None };
            let publish = crate::op::Publish {
                room: Arc::from(room),
                from: Arc::from("u"),
                data,
                event: None,
                exclude: None,
                privileged: false,
                reply: crate::op::Reply::Conn(origin),
            };
            Ok(PublishRules {
                namespaces,
                schemas,
                publish,
            })
        }

        /// Check the publish as the route does.
        pub fn admit(&self) -> Result<(), crate::Refusal> {
            crate::schema::admit_publish(&self.namespaces, &self.schemas, &self.publish)
        }
    }

    /// A shard's delivery inbox and room frames to put through it: the
    /// `inbox/send_drain` bench.
    pub struct DeliveryInbox {
        link: Arc<ShardLink>,
        room: Arc<str>,
        frame: RoomFrame,
        seq: u64,
        out: Vec<Delivery>,
    }

    impl DeliveryInbox {
        /// An empty inbox; `frame` is the room message sent each time.
        pub fn new(room: &str, frame: Bytes) -> Self {
            DeliveryInbox {
                link: ShardLink::new(),
                room: Arc::from(room),
                frame: RoomFrame::new(frame),
                seq: 0,
                out: Vec::new(),
            }
        }

        /// Send `n` room deliveries (never more than fit), then drain them;
        /// returns how many were drained.
        pub fn send_and_drain(&mut self, n: usize) -> usize {
            for _ in 0..n {
                self.seq += 1;
                let delivery = Delivery::Room {
                    room: self.room.clone(),
                    seq: self.seq,
                    frame: self.frame.clone(),
                    exclude: None,
                    stamp_us: 1,
                };
                // Ready at once while the inbox has space.
                match self.link.deliveries.send(delivery).now_or_never() {
                    Some(Ok(())) => {}
                    _ => break,
                }
            }
            let taken = self.link.deliveries.drain(&mut self.out, n);
            self.out.clear();
            taken
        }
    }
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::{Config, ConfigError, Overrides};
pub use error::{ErrorCode, Refusal};
use shared::Shared;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `[auth]` section could not be turned into a working checker
    /// (missing or unreadable key, algorithms that do not fit it).
    #[error("{0}")]
    Auth(#[from] ConfigError),
    /// A shard thread could not be started.
    #[error("cannot start shard thread: {0}")]
    Thread(std::io::Error),
    /// The configuration does not pass [`Config::validate`] (such as
    /// `Config::default()`, whose `shards = 0` and empty `node_id` only
    /// [`Config::load`] resolves).
    #[error("{0}")]
    Config(ConfigError),
    /// Cluster mode could not start (Redis unreachable, bad URL, another
    /// node with other namespaces).
    #[error("{0}")]
    Cluster(#[from] cluster::ClusterError),
    /// The TLS certificate or key cannot be used (unreadable, mismatched,
    /// expired).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// A namespace's `schema_file` could not be read or compiled.
    #[error("{0}")]
    Schema(#[from] SchemaError),
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shards: Vec<shard::ShardHandle>,
    backplane: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    /// Validate `config`, bind the listeners and start every shard.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        config.validate().map_err(StartError::Config)?;
        let addr = config.listen_addr().map_err(StartError::Config)?;
        let auth = auth::Authenticator::from_config(&config.auth)?;
        let edge = edge::Edge::new(&config)?;
        let schemas = schema::Schemas::load(&room::namespaces::Namespaces::new(&config))?;
        let shard_count = config.server.shards;
        let listeners = server::bind_listeners(addr, shard_count)
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(addr);
        let (backend, ops) = if config.cluster.enabled() {
            let (remote, ops) = cluster::channel(&config);
            (backend::Backend::Remote(Box::new(remote)), Some(ops))
        } else {
            (backend::Backend::Local, None)
        };
        let watchers = if config.pusher.enabled {
            let (pusher, observer) =
                pusher::Pusher::start(&config.pusher).map_err(StartError::Config)?;
            (observer, Some(pusher))
        } else {
            (observe::Observer::none(), None)
        };
        let shared = Shared::new(config, auth, edge, backend, (schemas, watchers));
        // Redis must answer before the first connection is accepted.
        let backplane = match ops {
            Some(ops) => Some(cluster::backplane::spawn(shared.clone(), ops)?),
            None => None,
        };
        if let Some(tls) = shared.edge.tls.clone() {
            spawn_tls_watcher(shared.clone(), tls).map_err(StartError::Thread)?;
        }
        let mut shards = Vec::with_capacity(shard_count);
        for (index, listener) in listeners.into_iter().enumerate() {
            shards.push(shard::spawn(index, shared.clone(), listener).map_err(StartError::Thread)?);
        }
        Ok(Broker {
            shared,
            addr: bound,
            shards,
            backplane,
        })
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Load the TLS certificate and key files again (what SIGHUP does).
    /// On error the pair in use stays, and the error says why. Without TLS
    /// there is nothing to do.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.shared.edge.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Whether the listeners speak TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.edge.tls.is_some()
    }

    /// Connections open now.
    pub fn connections(&self) -> u64 {
        self.shared.caps.total()
    }

    /// Rooms that exist now.
    pub fn rooms(&self) -> u64 {
        self.shared.rooms.len()
    }

    /// Drain: refuse new connections, close every connection with 1001, and
    /// wait for the shards to finish, at most `server.drain_timeout_ms`
    /// (shards drop what is left a little before). Returns whether every
    /// shard finished its drain cleanly.
    pub fn shutdown(self) -> bool {
        self.shared.start_drain();
        let limit = Duration::from_millis(self.shared.config.server.drain_timeout_ms);
        let started = Instant::now();
        let mut clean = true;
        for shard in self.shards {
            while !shard.thread.is_finished() && started.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(5));
            }
            if shard.thread.is_finished() {
                clean &= shard.thread.join().is_ok();
            } else {
                clean = false;
            }
        }
        if let Some(backplane) = self.backplane {
            // It removes this node's members from Redis, then ends.
            while !backplane.is_finished() && started.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(5));
            }
            if backplane.is_finished() {
                clean &= backplane.join().is_ok();
            }
        }
        clean
    }
}

/// Reload the TLS pair when its files change (checked every
/// [`limits::TLS_RELOAD_POLL_MS`]), until the broker drains.
fn spawn_tls_watcher(shared: Arc<Shared>, tls: Arc<edge::tls::TlsCerts>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            while !shared.is_draining() {
                std::thread::sleep(Duration::from_millis(limits::TLS_RELOAD_POLL_MS));
                tls.reload_if_changed();
            }
        })
        .map(|_| ())
}
