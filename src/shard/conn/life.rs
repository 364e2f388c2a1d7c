//! A connection's life, from the upgrade to its teardown: [`serve`] builds
//! its state, registers it (and, where nodes relay users, waits until this
//! node hears its user), greets it, runs its reader and writer, lets the
//! closing handshake finish within a grace, and tears it down.
//!
//! **Invariant:** the future an idle connection keeps is the size of its
//! read loop: registration, the closing handshake and teardown wait in
//! boxes. Before its task ends a connection is out of the shard's tables
//! and of every room's local members (after its joins in flight settled,
//! within a bound), and, unless the whole broker is draining, the back end
//! has been asked to remove it from each room.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::io::{self, ReadEnd};
use super::{Conn, Identity, Protocol};
use crate::edge::stream::{ReadHalf, Stream};
use crate::error::close;
use crate::limits::{PENDING_JOIN_WAIT_MS, USER_WATCH_WAIT_MS};
use crate::op::{Op, Origin};
use crate::protocol::encode;
use crate::shard::Shard;
use crate::shared::Permit;

/// How long the server waits for the peer's answer to a close it sent for a
/// reason other than a slow consumer (the client reads; it should answer
/// promptly).
const CLOSE_HANDSHAKE_MS: u64 = 2_000;

/// Serve an upgraded connection until it closes: spawn the future this
/// returns as the connection's task.
///
/// The connection's state is built here, outside the future, and the
/// rare long steps (user registration, the closing handshake, teardown)
/// wait in boxes: the future every idle connection keeps is the size of
/// its read loop, not of its largest step.
pub(crate) fn serve(
    shard: Rc<Shard>,
    identity: Identity,
    stream: Stream,
    prefix: Bytes,
    permit: Permit,
) -> impl std::future::Future<Output = ()> {
    let conn = Conn::new(identity, stream.is_tls(), &shard);
    let mut buf = io::first_read_buffer(prefix);
    async move {
        if shard.register(&conn) {
            Box::pin(watch_user(&shard, &conn)).await;
        }
        shard
            .counters
            .connects
            .set(shard.counters.connects.get() + 1);
        greet(&shard, &conn);
        let (mut read, write) = stream.into_split();
        let writer = tokio::task::spawn_local(io::write_loop(conn.clone(), write));
        let end = io::read_loop(&shard, &conn, &mut read, &mut buf).await;
        // What the reader routed last goes before the connection's leaves.
        shard.ring_requests();
        drop(buf);
        Box::pin(finish(&shard, &conn, end, read, writer)).await;
        drop(permit);
    }
}

/// Tell the nodes that relay users that this connection's user is here,
/// and wait (bounded) until this node hears it, so that a frame sent to
/// the user right after the welcome reaches it.
async fn watch_user(shard: &Shard, conn: &Conn) {
    let (heard, heard_rx) = tokio::sync::oneshot::channel();
    let watch = Op::WatchUser {
        user: conn.user(),
        watch: true,
        heard: Some(heard),
    };
    shard.route_boxed(watch).await;
    // Dropped at once where nothing relays users between nodes.
    let wait = Duration::from_millis(USER_WATCH_WAIT_MS);
    let _ = tokio::time::timeout(wait, heard_rx).await;
}

/// The connection's first frame: `welcome`, or Pusher's
/// `connection_established` (echo connections get none).
fn greet(shard: &Shard, conn: &Conn) {
    let limits = &shard.shared.config.limits;
    match &conn.protocol {
        Protocol::Pusher(p) => conn.reply(p.established(&shard.shared.config.pusher)),
        Protocol::Native if !conn.echo => conn.reply(encode::welcome(
            conn.id,
            &conn.user(),
            shard.index,
            &shard.shared.config.server.node_id,
            limits.heartbeat_interval_ms,
        )),
        Protocol::Native => {}
    }
}

/// After the read loop: count the disconnect, let the close frame out and
/// the peer answer it (within a grace), stop the writer, and tear down.
async fn finish(
    shard: &Shard,
    conn: &Rc<Conn>,
    end: ReadEnd,
    mut read: ReadHalf,
    mut writer: tokio::task::JoinHandle<()>,
) {
    let limits = &shard.shared.config.limits;
    let close_code = match end {
        ReadEnd::Eof => None,
        ReadEnd::PeerClose(code) => Some(code.unwrap_or(close::NORMAL)),
        ReadEnd::ServerClose => conn.close_code.get(),
    };
    shard.counters.disconnected(close_code);
    let grace = match end {
        ReadEnd::Eof => Duration::ZERO,
        ReadEnd::PeerClose(code) => {
            let code = code.unwrap_or(close::NORMAL);
            conn.close_with(code, "", false);
            Duration::from_millis(CLOSE_HANDSHAKE_MS)
        }
        ReadEnd::ServerClose => match conn.close_code.get() {
            Some(close::SLOW_CONSUMER) => Duration::from_millis(limits.slow_close_grace_ms),
            _ => Duration::from_millis(CLOSE_HANDSHAKE_MS),
        },
    };
    conn.dead.set(true);
    if !grace.is_zero() {
        let deadline = Instant::now() + grace;
        // The writer ends once the close frame is out; then wait for the
        // peer's close (or EOF) so it can read ours, up to the grace.
        if tokio::time::timeout_at(deadline, &mut writer).await.is_ok()
            && matches!(end, ReadEnd::ServerClose)
        {
            let _ = tokio::time::timeout_at(deadline, read.discard_until_eof()).await;
        }
    }
    writer.abort();
    // The socket closes with its read half (dropped with this task) and its
    // write half, which the writer may have left with the connection.
    conn.write.borrow_mut().take();
    teardown(shard, conn).await;
}

/// Leave every room and drop the connection from the shard's tables.
async fn teardown(shard: &Shard, conn: &Rc<Conn>) {
    // Joins in flight must settle first, or their rooms would keep a member
    // that is gone.
    let deadline = Instant::now() + Duration::from_millis(PENDING_JOIN_WAIT_MS);
    while !conn.joining.borrow().is_empty() {
        if tokio::time::timeout_at(deadline, conn.reader_wake.wait())
            .await
            .is_err()
        {
            break;
        }
    }
    let rooms: Vec<Arc<str>> = conn.rooms.borrow_mut().drain().collect();
    for room in &rooms {
        shard.remove_member(room, conn.id);
    }
    let dropped = conn.queue.borrow().dropped();
    shard
        .counters
        .dropped_closed
        .set(shard.counters.dropped_closed.get() + dropped);
    let last_of_user = shard.unregister(conn);
    if conn.renamed.get() {
        // Its permit gives back the id it connected with; this one is
        // given back here.
        shard.shared.users.disconnect(&conn.user());
    }
    if shard.shared.is_draining() {
        return; // the whole broker is going; rooms go with it
    }
    if last_of_user {
        let watch = Op::WatchUser {
            user: conn.user(),
            watch: false,
            heard: None,
        };
        shard.route_boxed(watch).await;
    }
    for room in rooms {
        let origin = Origin {
            conn: conn.id,
            id: None,
        };
        shard.route_boxed(Op::Leave { origin, room }).await;
    }
}
