//! Redis for the cluster tests: a `redis-server` (or `redis-sentinel`) of
//! each test's own on free loopback ports, killed on drop, and a node
//! builder pointed at it. The tests that use them are ignored where
//! `build.rs` found no `redis-server` on `PATH`, and run (and fail here)
//! under CI.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::TestBroker;

/// A free loopback port (free when asked: the caller binds it at once).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` of this test's own; killed on drop (and its directory,
/// if it keeps one, removed).
pub(crate) struct Redis {
    child: Option<Child>,
    pub(crate) port: u16,
    args: Vec<String>,
    dir: Option<PathBuf>,
}

impl Redis {
    /// One that keeps nothing on disk.
    pub(crate) fn start() -> Redis {
        Redis::with_args(&["--save", "", "--appendonly", "no"])
    }

    /// One with an append-only file fsynced before every reply
    /// (`appendfsync always`) in a directory of its own: what it
    /// acknowledged survives a kill and a restart.
    pub(crate) fn durable() -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("shardcast-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis directory");
        let dir_arg = dir.display().to_string();
        let mut redis = Redis {
            child: None,
            port,
            args: [
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir_arg,
            ]
            .map(String::from)
            .to_vec(),
            dir: Some(dir),
        };
        redis.spawn();
        redis
    }

    /// One started with `args` (besides port and bind address).
    pub(crate) fn with_args(args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: None,
        };
        redis.spawn();
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (not on PATH? .ci/run installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "redis-server");
    }

    /// Kill it (SIGKILL) and start it again on the same port after `down`;
    /// without an append-only file all its data is lost.
    pub(crate) fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.spawn();
    }

    /// Send signal `name` (`STOP`, `CONT`, ...) to the server.
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Wait until something accepts on loopback `port` (at most 10 s).
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A cluster node on `redis`, named `name`, with short timeouts.
pub(crate) fn node(redis: &Redis, name: &str) -> TestBroker {
    node_at(&redis.url(), name)
}

/// A cluster node on the Redis of `url`, named `name`, with short timeouts.
pub(crate) fn node_at(url: &str, name: &str) -> TestBroker {
    let url = url.to_string();
    let name = name.to_string();
    TestBroker::new().with(move |c| {
        c.cluster.redis_url = url;
        c.server.node_id = name;
        c.cluster.node_ttl_ms = 1_500;
        c.cluster.command_timeout_ms = 1_000;
        c.cluster.reconnect_max_backoff_ms = 200;
        c.auth.default_perms.push(shardcast::perms::Perm::Broadcast);
    })
}
