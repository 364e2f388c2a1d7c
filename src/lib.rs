//! shardcast: a sharded, bounded WebSocket room broker.
//!
//! Start one with [`Broker::start`]; see `ARCHITECTURE.md` for the map of
//! the code and the flow of a message.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod epoch;
pub mod error;
pub mod index;
pub mod limits;
pub mod metrics;
pub mod perms;
pub mod protocol;
pub mod ratelimit;
pub mod router;
pub mod server;
pub mod shard;
pub mod shared;
pub mod ws;

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
    /// Cluster mode could not start (Redis unreachable, bad URL).
    #[error("{0}")]
    Cluster(#[from] cluster::ClusterError),
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shards: Vec<shard::ShardHandle>,
    backplane: Option<std::thread::JoinHandle<()>>,
}

impl Broker {
    /// Bind the listeners and start every shard.
    pub fn start(config: Config) -> Result<Broker, StartError> {
        let auth = auth::Authenticator::from_config(&config.auth)?;
        let addr = config.listen_addr();
        let shard_count = config.server.shards;
        let listeners = server::bind_listeners(addr, shard_count)
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(addr);
        let (cluster, ops) = if config.cluster.enabled() {
            let (cluster, ops) = cluster::channel(&config);
            (Some(cluster), Some(ops))
        } else {
            (None, None)
        };
        let shared = Shared::new(config, auth, cluster);
        // Redis must answer before the first connection is accepted.
        let backplane = match ops {
            Some(ops) => Some(cluster::backplane::spawn(shared.clone(), ops)?),
            None => None,
        };
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
