//! The `shardcast` binary as a child process: drain on SIGTERM, memory
//! bound under a slow consumer.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// `shardcast serve ARGS` with `env`, through `wrapper` (a command and its
/// arguments that runs the rest of the line, e.g. `prlimit --nofile=N:N`);
/// stderr piped, the other streams null.
fn serve_command(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
    let broker = env!("CARGO_BIN_EXE_shardcast");
    let mut cmd = match wrapper.split_first() {
        Some((program, wrapper_args)) => {
            let mut cmd = Command::new(program);
            cmd.args(wrapper_args).arg(broker);
            cmd
        }
        None => Command::new(broker),
    };
    cmd.arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A broker child process; killed on drop if still running.
pub(crate) struct ChildBroker {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Its log lines (stderr), the first `MAX_LOG_LINES`.
    log: Arc<Mutex<Vec<String>>>,
}

/// Most log lines a [`ChildBroker`] keeps.
const MAX_LOG_LINES: usize = 100_000;

impl ChildBroker {
    pub(crate) fn spawn(env: &[(&str, &str)]) -> ChildBroker {
        Self::spawn_under(&[], env)
    }

    /// Spawn the broker through `wrapper` (a command and its arguments
    /// that runs the rest of the line, e.g. `prlimit --nofile=N:N`).
    pub(crate) fn spawn_under(wrapper: &[&str], env: &[(&str, &str)]) -> ChildBroker {
        let mut cmd = serve_command(wrapper, &["--listen", "127.0.0.1:0", "--shards", "2"], env);
        let mut child = cmd.spawn().expect("spawn shardcast");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        // The lines up to the listening one (start-up warnings) count too.
        let mut first = Vec::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("broker exited before listening")
                .expect("read stderr");
            let addr = line
                .split("addr=")
                .nth(1)
                .map(|rest| rest.split_whitespace().next().expect("addr").to_string());
            first.push(line);
            if let Some(addr) = addr {
                break addr.parse().expect("socket address");
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        let log = Arc::new(Mutex::new(first));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = keep.lock().expect("log");
                if log.len() < MAX_LOG_LINES {
                    log.push(line);
                }
            }
        });
        ChildBroker { child, addr, log }
    }

    /// Log lines so far that contain `needle`.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        let log = self.log.lock().expect("log");
        log.iter().filter(|l| l.contains(needle)).count()
    }

    /// Open file descriptors of the process.
    pub(crate) fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("proc fd")
            .count()
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub(crate) async fn user(&self, user: &str) -> Client {
        let mut c = Client::connect(&format!("ws://{}/ws?user={user}", self.addr)).await;
        assert_eq!(c.recv().await["type"], "welcome");
        c
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Invariant 6: SIGTERM drains: readyz 503, close 1001 to every client,
/// exit 0 within the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let mut broker = ChildBroker::spawn(&[("SHARDCAST_SERVER__DRAIN_TIMEOUT_MS", "5000")]);
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = broker.user(&format!("u{i}")).await;
        c.join("r").await;
        clients.push(c);
    }
    // A client that never reads keeps the drain busy for a moment, so
    // /readyz can be seen failing.
    let _mute = raw_ws(broker.addr, "?user=mute").await;
    broker.signal("TERM");
    for c in &mut clients {
        assert_eq!(c.close_code().await, Some(1001));
    }
    let (status, _) = http_get(broker.addr, "/readyz HTTP/1.1").await;
    assert_eq!(status, 503);
    let (status, text) = http_get(
        broker.addr,
        "/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    .await;
    assert_eq!(status, 503, "{text}");
    let exit = broker
        .wait_exit(Duration::from_secs(8))
        .expect("exited in time");
    assert!(exit.success(), "{exit:?}");
}

/// Invariant 1: a member that never reads, in a room with the drop policy,
/// cannot raise the server's memory beyond its queue bound, however much is
/// published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_cannot_grow_server_memory() {
    const MESSAGES: usize = 15_000;
    const PAYLOAD: usize = 2_000; // 30 MB in all
    let broker = ChildBroker::spawn(&[
        ("SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES", "262144"),
        ("SHARDCAST_LIMITS__SLOW_CONSUMER_POLICY", "drop"),
    ]);
    let mut publisher = broker.user("pub").await;
    publisher.join("big").await;
    let mut slow = broker.user("slow").await;
    slow.join("big").await;
    let payload = "z".repeat(PAYLOAD);
    // Warm up allocator pools with a first round, then measure.
    for _ in 0..500 {
        publisher
            .send(json!({"type":"publish","room":"big","data":payload,"exclude_self":true}))
            .await;
    }
    publisher
        .request(json!({"type":"publish","room":"big","data":0}))
        .await;
    let before = broker.rss_kib();
    for i in 0..MESSAGES {
        publisher
            .send(json!({"type":"publish","room":"big","data":payload,"exclude_self":true}))
            .await;
        if i % 250 == 249 {
            // Keep the publisher's own backlog (the home's request inbox,
            // bounded but 32 MiB) small: this test is about the reader.
            publisher
                .request(json!({"type":"publish","room":"big","data":0}))
                .await;
        }
    }
    let ack = publisher
        .request(json!({"type":"publish","room":"big","data":0}))
        .await;
    assert_eq!(ack["type"], "ack");
    let after = broker.rss_kib();
    let growth_kib = after.saturating_sub(before);
    let sent_kib = (MESSAGES * PAYLOAD / 1024) as u64;
    assert!(
        growth_kib < 16 * 1024,
        "RSS grew {growth_kib} KiB while {sent_kib} KiB went to a member that never reads"
    );
    // The slow member is still connected (drop policy) and learns of the loss.
    let mut saw_gap = false;
    for _ in 0..200_000 {
        let v = slow.recv().await;
        if v["type"] == "gap" {
            saw_gap = true;
            break;
        }
    }
    assert!(saw_gap);
}

#[test]
fn config_command_prints_effective_toml_and_names_bad_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["config", "--shards", "3"])
        .env("SHARDCAST_LIMITS__MAX_CONNECTIONS", "5000")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[limits]") && text.contains("max_connections = 5000"),
        "{text}"
    );
    assert!(text.contains("shards = 3"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["config"])
        .env("SHARDCAST_LIMITS__HEARTBEAT_TIMEOUT_MS", "0")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.heartbeat_timeout_ms"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["serve", "--config", "/nonexistent/shardcast.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn token_command_mints_a_token_the_broker_accepts() {
    use shardcast::auth::Authenticator;
    use shardcast::config::{AuthConfig, AuthMode};
    let secret = "cli-secret-0123456789abcdef0123456789";
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args([
            "token",
            "--secret-env",
            "TEST_SECRET",
            "--sub",
            "alice",
            "--name",
            "Alice",
        ])
        .args([
            "--rooms",
            "team-*,lobby",
            "--perms",
            "publish,send",
            "--ttl",
            "15m",
        ])
        .env("TEST_SECRET", secret)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let auth = Authenticator::from_config(&AuthConfig {
        mode: AuthMode::Jwt,
        secret: secret.into(),
        ..AuthConfig::default()
    })
    .expect("auth");
    let grant = auth.authenticate(Some(&token)).expect("valid token");
    assert_eq!(grant.user.as_deref(), Some("alice"));
    assert_eq!(grant.name.as_deref(), Some("Alice"));
    assert!(grant.rooms.allows("team-9") && grant.rooms.allows("lobby"));
    assert!(grant.perms.allows(shardcast::perms::Perm::Send));
    assert!(!grant.perms.allows(shardcast::perms::Perm::Create));
    let left = grant.expires_at.expect("exp") as i64
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
    // 15 minutes, plus the default 5 s leeway the expiry timer honours.
    assert!((850..=905).contains(&left), "{left}");
    // Errors: no secret, bad ttl, bad right.
    for (args, needle) in [
        (
            vec!["token", "--secret-env", "UNSET_VAR_X", "--sub", "a"],
            "UNSET_VAR_X",
        ),
        (
            vec![
                "token",
                "--secret-env",
                "TEST_SECRET",
                "--sub",
                "a",
                "--ttl",
                "forever",
            ],
            "--ttl",
        ),
        (
            vec![
                "token",
                "--secret-env",
                "TEST_SECRET",
                "--sub",
                "a",
                "--perms",
                "root",
            ],
            "root",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
            .args(&args)
            .env("TEST_SECRET", secret)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
    // `shardcast config` never prints the secret.
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["config"])
        .env("SHARDCAST_AUTH__SECRET", secret)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(secret) && text.contains("<redacted>"),
        "{text}"
    );
}

/// Run `shardcast serve ARGS` with `env` until it logs `shardcast
/// listening`, then kill it: its log lines up to that one (at most 10).
pub(crate) fn log_until_listening(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let mut child = serve_command(&[], args, env)
        .spawn()
        .expect("spawn shardcast");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take(10)
    {
        let done = line.contains("shardcast listening");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("shardcast listening")),
        "no `shardcast listening` line: {lines:?}"
    );
    lines
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let lines = log_until_listening(
        &[
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--log-format",
            "json",
        ],
        &[],
    );
    // Every line is a JSON object; the last says where it listens.
    let mut listening = None;
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        if v["fields"]["message"] == "shardcast listening" {
            listening = Some(v);
        }
    }
    let v = listening.expect("a `shardcast listening` line");
    assert!(
        v["fields"]["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:"))
    );
    assert_eq!(v["level"], "INFO");
}
