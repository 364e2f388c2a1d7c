//! Redis high availability and security for cluster mode (issue 15, item
//! 6): a Sentinel failover under load, and TLS (`rediss://`, with a client
//! certificate) and an ACL user keep working.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::redis::{Redis, Sentinels, node_at};
use crate::tls::TestCa;

/// The member's frames other than messages that a failure message shows:
/// the first ones (a `gap`, an error, a close) tell what happened.
const OTHER_FRAMES_KEPT: usize = 20;

/// Publish into `room` from `c` until `until`, one at a time: the seqs
/// acknowledged, and the longest time between two acks (the window in which
/// publishing was unavailable).
async fn publish_until(c: &mut Client, room: &str, until: Instant) -> (Vec<u64>, Duration) {
    let mut acked = Vec::new();
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let reply = c
            .request(json!({"type": "publish", "room": room, "data": n}))
            .await;
        if reply["type"] == "ack" {
            acked.push(reply["seq"].as_u64().expect("seq"));
            longest = longest.max(last.elapsed());
            last = Instant::now();
        } else {
            assert_eq!(reply["code"], "unavailable", "{reply}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (acked, longest)
}

/// What [`failover`] saw.
struct Failover {
    /// Publishes acknowledged.
    acked: usize,
    /// Seqs acknowledged that the member never got.
    lost: Vec<u64>,
    /// The longest time without an ack.
    window: Duration,
    /// What a reader of a failure needs: the seqs acknowledged on each side
    /// of the kill, any seq acknowledged twice, and the first
    /// [`OTHER_FRAMES_KEPT`] frames the member got that were not messages.
    diagnostics: String,
}

impl Failover {
    /// One line for the test's output.
    fn summary(&self, setup: &str) -> String {
        format!(
            "sentinel failover, {setup}: {} acknowledged, {} lost, no ack for {:?}; {}",
            self.acked,
            self.lost.len(),
            self.window,
            self.diagnostics
        )
    }
}

/// A failover under load: publisher on node A, member on node B, the
/// primary SIGKILLed.
async fn failover(replicas: usize, wait_replicas: u32) -> Failover {
    let mut redis = Sentinels::start(replicas);
    let url = redis.url();
    let wait = |c: &mut shardcast::Config| c.cluster.wait_replicas = wait_replicas;
    let a = node_at(&url, "node-a").with(wait).start();
    let b = node_at(&url, "node-b").with(wait).start();
    let mut member = b.user("member").await;
    member.join("ha").await;
    let mut publisher = a.user("publisher").await;
    publisher.join("ha").await;
    let second = Instant::now() + Duration::from_secs(1);
    let (before, _) = publish_until(&mut publisher, "ha", second).await;
    assert!(!before.is_empty(), "publishing works through the sentinels");
    redis.primary.stop();
    let (after, window) = publish_until(
        &mut publisher,
        "ha",
        Instant::now() + Duration::from_secs(12),
    )
    .await;
    assert!(
        !after.is_empty(),
        "publishing never resumed after the failover"
    );
    let acked: BTreeSet<u64> = before.iter().chain(&after).copied().collect();
    let last = *acked.last().expect("acks");
    let mut seen = BTreeSet::new();
    let mut others = Vec::new();
    let started = Instant::now();
    while !seen.contains(&last) {
        assert!(
            started.elapsed() < RECV_TIMEOUT,
            "the member never got {last}"
        );
        let frame = member.recv().await;
        if frame["type"] == "message" {
            seen.insert(frame["seq"].as_u64().expect("seq"));
        } else if others.len() < OTHER_FRAMES_KEPT {
            others.push(frame.to_string());
        }
    }
    // The new primary serves both nodes.
    let mut late = a.user("late").await;
    late.join("ha").await;
    let lost: Vec<u64> = acked.difference(&seen).copied().collect();
    let before_set: BTreeSet<u64> = before.iter().copied().collect();
    let twice: Vec<u64> = after
        .iter()
        .filter(|seq| before_set.contains(seq))
        .copied()
        .collect();
    let diagnostics = format!(
        "acknowledged before the kill {:?}..{:?}, after it {:?}..{:?}; \
         acknowledged twice {twice:?}; the member's other frames {others:?}",
        before.first(),
        before.last(),
        after.first(),
        after.last()
    );
    Failover {
        acked: acked.len(),
        lost,
        window,
        diagnostics,
    }
}

/// Sentinel failover (primary SIGKILLed, a replica promoted) under load:
/// both nodes follow the new primary, publishing resumes, and with
/// `cluster.wait_replicas = 1` (an ack waits for a replica; two replicas,
/// so one is left to wait for after the failover) no acknowledged publish
/// is lost. Asserted: publishing resumes within the 12 s watched
/// (sentinels decide after `down-after-milliseconds` 1 s and an election).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis_sentinel), ignore = "redis-sentinel not found on PATH")]
async fn a_sentinel_failover_loses_nothing_acknowledged() {
    let seen = failover(2, 1).await;
    eprintln!("{}", seen.summary("wait_replicas 1, 2 replicas"));
    assert!(
        seen.lost.is_empty(),
        "acknowledged and lost: {:?} ({})",
        seen.lost,
        seen.diagnostics
    );
}

/// The same with one replica and `wait_replicas = 0` (the default:
/// replication is asynchronous, as Redis' own). Publishing resumes; what
/// an ack does not wait for may be lost with the primary. Measured, not
/// bounded by the broker: the count is printed (docs/RELIABILITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis_sentinel), ignore = "redis-sentinel not found on PATH")]
async fn a_sentinel_failover_without_wait_resumes() {
    let seen = failover(1, 0).await;
    eprintln!("{}", seen.summary("wait_replicas 0, 1 replica"));
}

/// `rediss://` with a CA of the operator's (`cluster.tls_ca_file`) and a
/// client certificate (`tls_cert_file`, `tls_key_file`) for a Redis that
/// demands one: both connections of both nodes work over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn rediss_with_a_client_certificate_works() {
    let ca = TestCa::new("redis");
    let (cert, key, _) = ca.write_leaf(1);
    let ca_file = ca.dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("ca file");
    // A second pair, for the nodes (Redis checks it against the same CA).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (client_cert, client_key, _) = ca.leaf(2, now - 3600, now + 86_400);
    let (client_cert_file, client_key_file) =
        (ca.dir.join("client.pem"), ca.dir.join("client.key"));
    std::fs::write(&client_cert_file, client_cert).expect("client cert");
    std::fs::write(&client_key_file, client_key).expect("client key");
    let port = crate::redis::free_port();
    let port_arg = port.to_string();
    let (cert, key, ca_path) = (
        cert.display().to_string(),
        key.display().to_string(),
        ca_file.display().to_string(),
    );
    let _redis = Redis::with_port(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_arg,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca_path,
            "--tls-auth-clients",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
    );
    let url = format!("rediss://127.0.0.1:{port}");
    let files = |c: &mut shardcast::Config| {
        c.cluster.tls_ca_file = Some(ca_path.clone());
        c.cluster.tls_cert_file = Some(client_cert_file.display().to_string());
        c.cluster.tls_key_file = Some(client_key_file.display().to_string());
    };
    let a = node_at(&url, "node-a").with(files).start();
    let b = node_at(&url, "node-b").with(files).start();
    let mut alice = a.user("alice").await;
    alice.join("secure").await;
    let mut bob = b.user("bob").await;
    bob.join("secure").await;
    alice
        .ok(json!({"type": "publish", "room": "secure", "data": "over TLS"}))
        .await;
    assert_eq!(bob.recv_type("message").await["data"], "over TLS");
    // Without the client certificate Redis refuses the handshake: the
    // node does not start, and says why without secrets.
    let config = node_at(&url, "node-c").with(|c| {
        c.cluster.tls_ca_file = Some(ca_path.clone());
        c.cluster.connect_timeout_ms = 1_000;
    });
    let err = config.start_err();
    assert!(err.contains("cannot reach Redis"), "{err}");
}

/// An ACL user with only the rights the cluster needs (`~sc:*`, `&*`) and
/// the default user off: both nodes work with `redis://user:password@`, and
/// a wrong password stops the node with a message that hides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]
async fn an_acl_user_works_and_a_wrong_password_is_a_clear_error() {
    let redis = Redis::with_args(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        "shardcast",
        "on",
        ">s3cret-pass",
        "~sc:*",
        "&*",
        "+@all",
    ]);
    let url = format!("redis://shardcast:s3cret-pass@127.0.0.1:{}", redis.port);
    let a = node_at(&url, "node-a").start();
    let b = node_at(&url, "node-b").start();
    let mut alice = a.user("alice").await;
    alice.join("acl").await;
    let mut bob = b.user("bob").await;
    bob.join("acl").await;
    alice
        .ok(json!({"type": "publish", "room": "acl", "data": "as shardcast"}))
        .await;
    assert_eq!(bob.recv_type("message").await["data"], "as shardcast");
    let wrong = format!("redis://shardcast:not-it@127.0.0.1:{}", redis.port);
    let err = node_at(&wrong, "node-c").start_err();
    assert!(err.contains("cannot reach Redis"), "{err}");
    assert!(!err.contains("not-it"), "the password is not shown: {err}");
}
