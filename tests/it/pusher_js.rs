//! The Pusher endpoint against the real client libraries from npm:
//! pusher-js, laravel-echo and the `pusher` server SDK, in Node
//! (`tests/js/pusher`, run with `node --test`), on one node and on two
//! nodes of a cluster. `.ci/run` installs them with `npm ci`; here they are
//! installed the same way if missing.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardcast::Config;
use shardcast::config::PusherApp;

use crate::harness::*;

/// The test app.
pub(crate) const APP_ID: &str = "app1";
pub(crate) const APP_KEY: &str = "app-key";
pub(crate) const APP_SECRET: &str = "app-secret-for-tests";

/// How long one `node --test` run may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

/// Turn on the Pusher endpoint with the test app (client events on),
/// webhooks to `webhook_port` if given.
pub(crate) fn pusher_on(c: &mut Config, webhook_port: Option<u16>) {
    c.pusher.enabled = true;
    c.pusher.webhook_backoff_ms = 50;
    c.pusher.apps = vec![PusherApp {
        id: APP_ID.into(),
        key: APP_KEY.into(),
        secret: APP_SECRET.into(),
        secret_file: None,
        client_events: true,
        webhook_url: webhook_port
            .map(|p| format!("http://127.0.0.1:{p}/pusher/webhooks"))
            .unwrap_or_default(),
        webhook_ca_file: None,
    }];
}

/// A free loopback port (for the Node webhook receiver).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/pusher")
}

/// Run `program args` in the JS directory with `env`, at most `timeout`;
/// returns (success, output).
fn run(program: &str, args: &[&str], env: &[(&str, String)], timeout: Duration) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(js_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), output),
        None => (
            false,
            format!("{output}\n{program} timed out after {timeout:?}"),
        ),
    }
}

/// The npm packages, installed from the lock file if they are missing.
/// One test at a time: `npm ci` first deletes `node_modules`, so a second
/// one running beside it (the tests of this binary run in parallel) would
/// pull the packages from under the first's Node.
pub(crate) fn ensure_packages() {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if js_dir().join("node_modules/pusher-js").is_dir() {
        return;
    }
    let (ok, output) = run(
        "npm",
        &["ci", "--no-audit", "--no-fund"],
        &[],
        Duration::from_secs(300),
    );
    assert!(ok, "npm ci in tests/js/pusher failed:\n{output}");
}

/// Run the Node test file `file` against the brokers at `hosts`.
pub(crate) fn node_tests(file: &str, hosts: &[SocketAddr], webhook_port: u16) {
    ensure_packages();
    let hosts: Vec<String> = hosts.iter().map(|a| a.to_string()).collect();
    let env = [
        ("SHARDCAST_HOSTS", hosts.join(",")),
        ("PUSHER_APP_ID", APP_ID.to_string()),
        ("PUSHER_KEY", APP_KEY.to_string()),
        ("PUSHER_SECRET", APP_SECRET.to_string()),
        ("WEBHOOK_PORT", webhook_port.to_string()),
    ];
    let (ok, output) = run(
        "node",
        &["--test", "--test-reporter=spec", file],
        &env,
        NODE_TIMEOUT,
    );
    assert!(ok, "node --test {file} failed:\n{output}");
    // A run that ran nothing must not pass.
    assert!(
        output.contains("# pass") || output.contains("ℹ pass"),
        "{output}"
    );
    assert!(!output.contains("ℹ pass 0"), "no test ran:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_node),
    ignore = "node not found on PATH (Node 20 and npm run the pusher-js tests)"
)]
async fn pusher_js_laravel_echo_and_the_pusher_sdk_work_unchanged() {
    let webhook_port = free_port();
    let broker = TestBroker::new()
        .with(|c| pusher_on(c, Some(webhook_port)))
        .start();
    let addr = broker.addr;
    tokio::task::spawn_blocking(move || node_tests("single.test.mjs", &[addr], webhook_port))
        .await
        .expect("node tests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_node, has_redis)),
    ignore = "node or redis-server not found on PATH (the two-node pusher-js tests need both)"
)]
async fn pusher_js_across_two_nodes_of_a_cluster() {
    let redis = crate::redis::Redis::start();
    let webhook_port = free_port();
    let a = crate::redis::node(&redis, "node-a")
        .with(|c| pusher_on(c, Some(webhook_port)))
        .start();
    let b = crate::redis::node(&redis, "node-b")
        .with(|c| pusher_on(c, Some(webhook_port)))
        .start();
    let hosts = [a.addr, b.addr];
    tokio::task::spawn_blocking(move || node_tests("cluster.test.mjs", &hosts, webhook_port))
        .await
        .expect("node tests");
}
