//! Starting the backplane, and keeping its Redis connections: connect,
//! load the scripts, reconnect with backoff, heartbeat, and put this node's
//! presence back after Redis lost it.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Value};
use tokio::sync::mpsc;

use super::answers::{int, text};
use super::{Backplane, BoxFuture, FIRST_BACKOFF_MS, Link, Prepared, Then};
use crate::cluster::ClusterError;
use crate::cluster::scripts::{self, Status};
use crate::cluster::subscriber::{self, Bounds, Endpoint, SubReceiver, Subscriber};
use crate::cluster::target::{Resolved, Target};
use crate::config::ClusterConfig;
use crate::epoch::Epoch;
use crate::op::Op;
use crate::shared::Shared;

/// Start the backplane thread for `shared` (whose `cluster` is set), once
/// both Redis connections work.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    ops: mpsc::Receiver<Op>,
) -> Result<std::thread::JoinHandle<()>, ClusterError> {
    let cfg = shared.config.cluster.clone();
    let shown_url = crate::config::redact_url_password(&cfg.redis_url);
    let target = Arc::new(Target::from_config(&cfg)?);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), ClusterError>>();
    let unreachable = {
        let url = shown_url.clone();
        move |reason: String| ClusterError::Unreachable {
            url: url.clone(),
            reason,
        }
    };
    let thread = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ =
                        ready_tx.send(Err(unreachable(format!("cannot start its runtime: {e}"))));
                    return;
                }
            };
            runtime.block_on(async move {
                let setup = subscriber_setup(&shared);
                let commands = connect_commands(&target, &cfg).await;
                let pubsub = connect_subscriber(&target, &setup).await;
                match (commands, pubsub) {
                    (Ok(cmd), Ok(pubsub)) => {
                        let mut backplane = Backplane::new(shared, target, cfg, cmd, pubsub, setup);
                        // A node restarted under the same id before its
                        // heartbeat ran out: what Redis still lists for it
                        // is stale (it has no members yet).
                        if let Err(e) = backplane.remove_this_node().await {
                            let reason = format!("clearing this node's old entries: {e}");
                            let _ = ready_tx.send(Err(unreachable(reason)));
                            return;
                        }
                        // Every node must follow the same namespaces.
                        if let Err(e) = backplane.join_cluster(&unreachable).await {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                        let _ = ready_tx.send(Ok(()));
                        backplane.run(ops).await;
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(unreachable(e)));
                    }
                }
            });
        })
        .map_err(ClusterError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClusterError::Unreachable {
            url: shown_url,
            reason: "the cluster thread ended".into(),
        }),
    }
}

/// Resolve the target (the primary, with Sentinel) within
/// `cluster.connect_timeout_ms`.
async fn resolve(target: &Target, cfg: &ClusterConfig) -> Result<Resolved, String> {
    let limit = Duration::from_millis(cfg.connect_timeout_ms);
    match tokio::time::timeout(limit, target.resolve()).await {
        Ok(resolved) => resolved,
        Err(_) => Err(format!("no Redis named within {} ms", limit.as_millis())),
    }
}

/// Connect the command connection to the Redis `target` names now, and
/// load the scripts.
async fn connect_commands(
    target: &Target,
    cfg: &ClusterConfig,
) -> Result<MultiplexedConnection, String> {
    let client = resolve(target, cfg).await?.client;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)))
        .set_response_timeout(Some(Duration::from_millis(cfg.command_timeout_ms)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for script in scripts::ALL {
        pipe.cmd("SCRIPT").arg("LOAD").arg(script);
    }
    let _: Vec<String> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("loading scripts: {e}"))?;
    Ok(conn)
}

/// Connect the subscriber connection to the Redis `target` names now.
pub(super) async fn connect_subscriber(
    target: &Target,
    setup: &SubscriberSetup,
) -> Result<(Subscriber, SubReceiver), String> {
    let limit = setup.bounds.connect_timeout;
    let resolved = match tokio::time::timeout(limit, target.resolve()).await {
        Ok(resolved) => resolved?,
        Err(_) => return Err(format!("no Redis named within {} ms", limit.as_millis())),
    };
    let endpoint = Endpoint::at(resolved.addr).named(&setup.name);
    subscriber::connect(&endpoint, setup.bounds).await
}

/// What the subscriber connection is made with.
pub(super) struct SubscriberSetup {
    /// Its `CLIENT SETNAME`.
    pub(super) name: String,
    pub(super) bounds: Bounds,
}

/// The subscriber connection's name and bounds for `shared`'s config.
fn subscriber_setup(shared: &Shared) -> SubscriberSetup {
    let config = &shared.config;
    let name = format!("shardcast:{}:subscriber", config.server.node_id);
    // A room message is its data plus an envelope; API publishes are
    // bounded by the API's body limit.
    let largest_data = config
        .limits
        .max_message_bytes
        .max(config.api.max_body_bytes);
    let bounds = Bounds {
        queue: config.cluster.subscriber_queue,
        queue_bytes: config.cluster.subscriber_queue_bytes,
        max_payload: largest_data + MESSAGE_ENVELOPE_BYTES,
        connect_timeout: Duration::from_millis(config.cluster.connect_timeout_ms),
    };
    SubscriberSetup { name, bounds }
}

/// Room and user names, ids and timestamps around a message's data.
const MESSAGE_ENVELOPE_BYTES: usize = 4 * 1024;

/// The SHA1 of a script, as EVALSHA wants it.
fn sha(source: &str) -> String {
    redis::Script::new(source).get_hash().to_string()
}

/// Script hashes, computed once.
pub(super) struct Shas {
    pub(super) join: String,
    pub(super) leave: String,
    pub(super) publish: String,
    pub(super) create: String,
    pub(super) delete: String,
    pub(super) details: String,
    pub(super) rooms: String,
    heartbeat: String,
    restore: String,
    namespaces: String,
}

impl Shas {
    pub(super) fn new() -> Self {
        Shas {
            join: sha(scripts::JOIN),
            leave: sha(scripts::LEAVE),
            publish: sha(scripts::PUBLISH),
            create: sha(scripts::CREATE),
            delete: sha(scripts::DELETE),
            details: sha(scripts::DETAILS),
            rooms: sha(scripts::ROOMS),
            heartbeat: sha(scripts::HEARTBEAT),
            restore: sha(scripts::RESTORE),
            namespaces: sha(scripts::NAMESPACES),
        }
    }
}

pub(super) fn evalsha(sha: &str, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd
}

impl Backplane {
    pub(super) fn reconnect_commands(
        &mut self,
    ) -> BoxFuture<Result<MultiplexedConnection, String>> {
        let wait = Duration::from_millis(self.cmd_backoff);
        self.cmd_backoff = (self.cmd_backoff * 2).min(self.cfg.reconnect_max_backoff_ms);
        let (target, cfg) = (self.target.clone(), self.cfg.clone());
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            connect_commands(&target, &cfg).await
        })
    }

    pub(super) fn commands_back(&mut self, result: Result<MultiplexedConnection, String>) {
        match result {
            Ok(conn) => {
                tracing::info!("cluster: Redis command connection back");
                self.connection_changed(Link::Commands, true);
                self.cmd = Some(conn);
                self.cmd_backoff = FIRST_BACKOFF_MS;
                self.restore_all();
                self.heartbeat(self.cfg.node_ttl_ms as i64);
                self.send_waiting_repairs();
            }
            Err(reason) => tracing::debug!(%reason, "cluster: reconnect failed"),
        }
    }

    /// The rooms whose repair waited for the command connection (heard
    /// again, or a hole found, while it was down; or a read that failed):
    /// read what they missed now.
    fn send_waiting_repairs(&mut self) {
        let due: Vec<Arc<str>> = self
            .rooms
            .iter()
            .filter(|(_, state)| state.order.repair_unsent())
            .map(|(room, _)| room.clone())
            .collect();
        for room in due {
            let Some(state) = self.rooms.get_mut(&room) else {
                continue;
            };
            let mut steps = Vec::new();
            state.order.send_repair(&mut self.repair_ids, &mut steps);
            self.carry_out(&room, steps);
        }
    }

    /// Put back this node's members and counters in every room it is in.
    fn restore_all(&mut self) {
        let node = self.node.clone();
        let mut restores = Vec::new();
        for (room, state) in &self.rooms {
            let Some(facts) = state.facts else {
                continue;
            };
            let (meta, pres) = (scripts::meta_key(room), scripts::presence_key(room));
            let noderooms = scripts::node_rooms_key(&node);
            let users = scripts::users_key(room);
            let mut cmd = evalsha(&self.shas.restore, &[&meta, &pres, &noderooms, &users]);
            cmd.arg(&**room)
                .arg(state.order.delivered().unwrap_or(0))
                .arg(u8::from(facts.room.private))
                .arg(facts.room.max_members)
                .arg(facts.room.overflow.as_str())
                .arg(u8::from(facts.explicit))
                .arg(facts.room.history)
                .arg(&*node)
                .arg(Epoch::new().as_str());
            for (conn, value) in &state.members {
                cmd.arg(scripts::member_field(&node, *conn)).arg(value);
            }
            restores.push(Prepared {
                cmd,
                then: Then::Nothing,
            });
        }
        // Before anything queued since: the room counters must not go back.
        for prepared in restores.into_iter().rev() {
            self.ready.push_front(prepared);
        }
    }

    pub(super) fn heartbeat(&mut self, ttl_ms: i64) {
        if self.cmd.is_none() {
            return;
        }
        let cmd = self.heartbeat_cmd(ttl_ms);
        self.ready.push_back(Prepared {
            cmd,
            then: Then::Swept,
        });
    }

    /// Run the dead-node sweep with this node's heartbeat already expired:
    /// its presence entries go (with `left` events) and its heartbeat too.
    pub(super) async fn remove_this_node(&mut self) -> Result<(), String> {
        let Some(mut conn) = self.cmd.clone() else {
            return Err("no command connection".into());
        };
        let cmd = self.heartbeat_cmd(-1);
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        match tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await {
            Ok(Ok(answer)) => {
                self.swept(answer);
                Ok(())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    /// The heartbeat of this node, due again within `ttl_ms` (-1: removes
    /// it now, with its members).
    fn heartbeat_cmd(&self, ttl_ms: i64) -> Cmd {
        let nodes_rooms = scripts::node_rooms_key(&self.node);
        let keys = [scripts::NODES_KEY, &nodes_rooms, scripts::NAMESPACES_KEY];
        let mut cmd = evalsha(&self.shas.heartbeat, &keys);
        cmd.arg(&*self.node)
            .arg(ttl_ms)
            .arg(self.shared.config.room.empty_ttl_ms)
            .arg(&self.fingerprint);
        cmd
    }

    /// Join the cluster: refused (the node does not start) if a live node
    /// has another namespace fingerprint; `unreachable` makes the error of
    /// a failed command.
    pub(super) async fn join_cluster(
        &mut self,
        unreachable: &impl Fn(String) -> ClusterError,
    ) -> Result<(), ClusterError> {
        let Some(mut conn) = self.cmd.clone() else {
            return Err(unreachable("no command connection".into()));
        };
        let keys = [scripts::NODES_KEY, scripts::NAMESPACES_KEY];
        let mut cmd = evalsha(&self.shas.namespaces, &keys);
        cmd.arg(&*self.node)
            .arg(&self.fingerprint)
            .arg(self.cfg.node_ttl_ms);
        let timeout = Duration::from_millis(self.cfg.command_timeout_ms);
        let answer = match tokio::time::timeout(timeout, cmd.query_async::<Value>(&mut conn)).await
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(unreachable(format!("comparing namespaces: {e}"))),
            Err(_) => {
                let reason = format!(
                    "comparing namespaces: no answer within {} ms",
                    timeout.as_millis()
                );
                return Err(unreachable(reason));
            }
        };
        let items = match answer {
            Value::Array(items) => items,
            other => vec![other],
        };
        match Status::from_code(items.first().and_then(int).unwrap_or(i64::MIN)) {
            Status::Ok => Ok(()),
            Status::OtherNamespaces => Err(ClusterError::OtherNamespaces {
                node: items.get(1).and_then(text).unwrap_or("?").to_string(),
                theirs: items.get(2).and_then(text).unwrap_or("?").to_string(),
                ours: self.fingerprint.clone(),
            }),
            other => Err(unreachable(format!(
                "comparing namespaces: unexpected answer {other:?}"
            ))),
        }
    }
}
