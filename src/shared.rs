//! State every shard can see: the configuration, the lock-free indexes and
//! the shard inboxes. Nothing else is shared between shards.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::backend::Backend;
use crate::config::Config;
use crate::edge::Edge;
use crate::error::{ErrorCode, Refusal};
use crate::inbox::ShardLink;
use crate::index::{ConnCaps, CreationCaps, RoomIndex, UserIndex};
use crate::memory::MemoryGuard;
use crate::observe::Observer;
use crate::pusher::Pusher;
use crate::room::namespaces::Namespaces;
use crate::schema::Schemas;

/// Shared broker state (one per process).
pub(crate) struct Shared {
    /// The validated configuration.
    pub(crate) config: Config,
    /// Checks credentials of new connections.
    pub(crate) auth: Authenticator,
    /// Rooms.
    pub(crate) rooms: RoomIndex,
    /// The memory budget and its last reading.
    pub(crate) memory: Arc<MemoryGuard>,
    /// Users and their shards.
    pub(crate) users: UserIndex,
    /// Connection caps.
    pub(crate) caps: ConnCaps,
    /// Inboxes, by shard index.
    pub(crate) links: Vec<Arc<ShardLink>>,
    /// TLS, PROXY protocol, trusted proxies, origins.
    pub(crate) edge: Edge,
    /// Who sequences rooms (see [`crate::backend`]).
    pub(crate) backend: Backend,
    /// The room namespaces of the configuration.
    pub(crate) namespaces: Namespaces,
    /// Their message schemas, compiled, and `invalid_data` counts.
    pub(crate) schemas: Schemas,
    /// Where back ends report room changes (the Pusher webhooks).
    pub(crate) observer: Observer,
    /// The Pusher endpoint's apps, when `[pusher]` is enabled.
    pub(crate) pusher: Option<Arc<Pusher>>,
    /// Where this node's connection ids start: 0 with the local back end;
    /// with a remote one (several nodes) a multiple of the shard count
    /// picked by the node id, so ids of different nodes do not meet (see
    /// [`conn_id_base`]).
    pub(crate) conn_base: u64,
    draining: AtomicBool,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// State for `config` (validated, `shards` resolved).
    pub(crate) fn new(
        config: Config,
        auth: Authenticator,
        edge: Edge,
        backend: Backend,
        (schemas, (observer, pusher)): (Schemas, (Observer, Option<Arc<Pusher>>)),
    ) -> Arc<Self> {
        let shards = config.server.shards;
        let l = &config.limits;
        let memory = Arc::new(MemoryGuard::new(l.memory_budget_bytes));
        let creation = CreationCaps {
            per_user: l.max_rooms_created_per_user,
            per_conn: l.max_rooms_created_per_connection,
        };
        Arc::new(Shared {
            rooms: RoomIndex::with_caps(l.max_rooms, creation).with_memory(memory.clone()),
            memory,
            users: UserIndex::new(),
            caps: ConnCaps::new(
                shards,
                l.max_connections,
                l.max_connections_per_shard,
                l.max_connections_per_ip,
            ),
            links: (0..shards).map(|_| ShardLink::new()).collect(),
            conn_base: match backend {
                Backend::Local => 0,
                Backend::Remote(_) => conn_id_base(&config.server.node_id, shards),
            },
            backend,
            edge,
            namespaces: Namespaces::new(&config),
            schemas,
            observer,
            pusher,
            draining: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            auth,
            config,
        })
    }

    /// Number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.links.len()
    }

    /// Whether the broker is draining (refusing new connections).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Start draining: refuse new connections and tell every shard to close
    /// its connections with 1001.
    pub(crate) fn start_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
    }

    /// A receiver that turns true when draining starts.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Admit a TLS handshake from `ip` (see [`ConnCaps::try_handshake`]).
    pub(crate) fn try_handshake(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakeSlot, Refusal> {
        if self.is_draining() {
            return Err(Refusal::new(
                ErrorCode::ServerFull,
                "the server is shutting down",
            ));
        }
        self.caps.try_handshake(ip)?;
        Ok(HandshakeSlot {
            shared: self.clone(),
            ip,
        })
    }

    /// Admit a connection of `user` from `ip` on `shard`, or say why not.
    /// The returned permit gives the slots back when dropped.
    pub(crate) fn admit(
        self: &Arc<Self>,
        shard: usize,
        ip: IpAddr,
        user: &Arc<str>,
    ) -> Result<Permit, Refusal> {
        if self.is_draining() {
            return Err(Refusal::new(
                ErrorCode::ServerFull,
                "the server is shutting down",
            ));
        }
        if self.memory.over() {
            self.memory.refused_connection();
            return Err(Refusal::memory_full());
        }
        self.caps.try_acquire(shard, ip)?;
        let cap = self.config.limits.max_connections_per_user;
        if !self.users.try_connect(user, cap) {
            self.caps.release(shard, ip);
            return Err(Refusal::new(
                ErrorCode::TooManyConnections,
                format!("user {user} holds its maximum of {cap} connections"),
            ));
        }
        Ok(Permit {
            shared: self.clone(),
            shard,
            ip,
            user: user.clone(),
        })
    }
}

/// A TLS handshake's place in the caps; released on drop.
pub(crate) struct HandshakeSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.shared.caps.end_handshake(self.ip);
    }
}

/// A connection's slots in the caps; released on drop.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    shard: usize,
    ip: IpAddr,
    user: Arc<str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.shared.caps.release(self.shard, self.ip);
        self.shared.users.disconnect(&self.user);
    }
}

/// The first connection id of node `node_id` in a cluster: one of 2^20
/// ranges of 2^32 ids picked by a hash of the id, rounded down to a
/// multiple of `shards` (so `conn % shards` is still the connection's
/// shard). Ids stay below 2^53, exact in JavaScript numbers; two nodes
/// share a range with probability about 1 in a million.
pub(crate) fn conn_id_base(node_id: &str, shards: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let base = (h % (1 << 20)) << 32;
    let shards = shards.max(1) as u64;
    base / shards * shards
}

#[cfg(test)]
mod tests {
    use super::conn_id_base;

    #[test]
    fn node_id_bases_keep_the_shard_and_stay_exact_in_javascript() {
        for shards in [1, 2, 3, 7, 64] {
            for node in ["node-a", "node-b", "n1", "node-0042abcd"] {
                let base = conn_id_base(node, shards);
                assert_eq!(base % shards as u64, 0);
                assert!(base + (1 << 32) < (1 << 53));
            }
        }
        assert_ne!(conn_id_base("node-a", 2), conn_id_base("node-b", 2));
    }
}
