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
        Redis::with_port(free_port(), args)
    }

    /// One that answers on `port` once started with `args` (which may move
    /// it: `--port 0 --tls-port PORT`).
    pub(crate) fn with_port(port: u16, args: &[&str]) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            dir: None,
        };
        redis.spawn();
        redis
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Where it would write an RDB file: a replica's full sync writes one
    /// even with `--save ""`, and the tests' working directory is the
    /// source tree. One name per server, in the temp directory (`args` may
    /// name another directory).
    fn rdb_file(&self) -> PathBuf {
        std::env::temp_dir().join(format!("shardcast-redis-{}.rdb", self.port))
    }

    fn spawn(&mut self) {
        let rdb = self.rdb_file();
        let (dir, file) = (
            rdb.parent().unwrap_or(&rdb),
            rdb.file_name().unwrap_or_default(),
        );
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .arg("--dbfilename")
            .arg(file)
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
        let _ = std::fs::remove_file(self.rdb_file());
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

/// One Redis primary, replicas of it and three sentinels watching them as
/// `main` (quorum 2, down after 1 s), on loopback; killed on drop.
pub(crate) struct Sentinels {
    pub(crate) primary: Redis,
    /// Kept running (and killed on drop).
    replicas: Vec<Redis>,
    sentinels: Vec<Child>,
    pub(crate) ports: Vec<u16>,
    dir: PathBuf,
}

impl Sentinels {
    /// Start them, and wait until every sentinel knows the replica and the
    /// two other sentinels (so a failover can be agreed).
    pub(crate) fn start(replicas: usize) -> Sentinels {
        // Replicas sync at once (Redis 7 waits 5 s for more replicas by
        // default before a diskless sync).
        let primary = Redis::with_args(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let primary_port = primary.port.to_string();
        let replicas = (0..replicas)
            .map(|_| {
                Redis::with_args(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--replicaof",
                    "127.0.0.1",
                    &primary_port,
                ])
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("shardcast-sentinels-{}", primary.port));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("sentinel directory");
        let mut sentinels = Vec::new();
        let mut ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor main 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds main 1000\n\
                     sentinel failover-timeout main 5000\n\
                     sentinel parallel-syncs main 1\n",
                    dir.display()
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-sentinel")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-sentinel (not on PATH? .ci/run installs it)");
            sentinels.push(child);
            wait_for_port(port, "redis-sentinel");
            ports.push(port);
        }
        let s = Sentinels {
            primary,
            replicas,
            sentinels,
            ports,
            dir,
        };
        s.wait_until_ready();
        s
    }

    /// The URL nodes use: every sentinel, and the primary's name.
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/main", hosts.join(","))
    }

    fn wait_until_ready(&self) {
        let started = Instant::now();
        for replica in &self.replicas {
            let replica = redis::Client::open(replica.url()).expect("url");
            loop {
                let info: Option<String> = replica
                    .get_connection()
                    .ok()
                    .and_then(|mut con| redis::cmd("INFO").arg("replication").query(&mut con).ok());
                if info.is_some_and(|i| i.contains("master_link_status:up")) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "a replica never synced"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let replicas = self.replicas.len() as u32;
        for port in &self.ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
            loop {
                let known = client.get_connection().ok().and_then(|mut con| {
                    let master: Vec<String> = redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg("main")
                        .query(&mut con)
                        .ok()?;
                    let field = |name: &str| {
                        master
                            .iter()
                            .position(|f| f == name)
                            .and_then(|i| master.get(i + 1))
                            .and_then(|v| v.parse::<u32>().ok())
                    };
                    Some((field("num-slaves")?, field("num-other-sentinels")?))
                });
                if known == Some((replicas, 2)) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "sentinel {port} never saw the replica and the others: {known:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
