//! The status page in a real browser (headless Chromium): it must show live
//! figures read from /api/stats, and its live room view must round-trip a
//! message through the client SDK the broker serves at /client.js.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// Chromium's path: `$SHARDCAST_CHROMIUM`, or `chromium` or
/// `chromium-browser` on `PATH` (what `build.rs` looked for).
pub(crate) fn chromium() -> String {
    if let Some(path) = std::env::var_os("SHARDCAST_CHROMIUM").filter(|p| !p.is_empty()) {
        return path.to_string_lossy().into_owned();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("chromium"), dir.join("chromium-browser")])
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .expect("chromium is not on PATH (apt-get install chromium, or set SHARDCAST_CHROMIUM)")
}

/// Load `url` headless and return the DOM after scripts ran.
fn dump_dom(browser: &str, url: &str) -> String {
    dump_dom_with(browser, url, &[])
}

/// [`dump_dom`] with extra Chromium flags.
pub(crate) fn dump_dom_with(browser: &str, url: &str, extra: &[String]) -> String {
    // One profile per run: tests in this process may run Chromium at once.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile =
        std::env::temp_dir().join(format!("shardcast-chromium-{}-{run}", std::process::id()));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&profile);
    let output = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A headless Chromium showing one page until dropped (then killed).
///
/// For pages whose outcome depends on real network time (a TLS handshake
/// on a loaded machine): `--dump-dom` snapshots after a *virtual* time
/// budget that a WebSocket does not hold open, so such a page reports its
/// result to the test over HTTP instead, and the test waits in real time.
pub(crate) struct Headless {
    child: std::process::Child,
    profile: std::path::PathBuf,
}

impl Headless {
    pub(crate) fn open(browser: &str, url: &str, extra: &[String]) -> Headless {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let profile =
            std::env::temp_dir().join(format!("shardcast-headless-{}-{run}", std::process::id()));
        let child = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        Headless { child, profile }
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium not found on PATH (apt-get install chromium, or set SHARDCAST_CHROMIUM)"
)]
async fn status_page_shows_live_figures_in_chromium() {
    let browser = chromium();
    let broker = TestBroker::new().shards(2).start();
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = broker.user(&format!("viewer{i}")).await;
        c.join("watched").await;
        clients.push(c);
    }
    clients[0]
        .ok(json!({"type":"publish","room":"watched","data":1}))
        .await;
    let url = format!("http://{}/", broker.addr);
    let dom = tokio::task::spawn_blocking(move || dump_dom(&browser, &url))
        .await
        .expect("chromium task");
    assert!(
        dom.contains(r#"id="connections">3<"#),
        "connections not shown:\n{dom}"
    );
    assert!(dom.contains(r#"id="rooms">1<"#), "rooms not shown:\n{dom}");
    assert!(
        dom.contains(r#"id="state">ready<"#),
        "state not shown:\n{dom}"
    );
    assert_eq!(
        dom.matches("data-shard=").count(),
        2,
        "one row per shard:\n{dom}"
    );
    assert!(dom.contains("updated "), "no successful refresh:\n{dom}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium not found on PATH (apt-get install chromium, or set SHARDCAST_CHROMIUM)"
)]
async fn client_js_round_trips_a_message_in_chromium() {
    let browser = chromium();
    let broker = TestBroker::new().start();
    let mut rust = broker.user("rust").await;
    rust.join("browser-rt").await;
    // The status page's live view imports /client.js, joins the room and
    // publishes `say` once joined.
    let url = format!(
        "http://{}/?room=browser-rt&user=chromium&say=hello-from-chromium",
        broker.addr
    );
    let page = tokio::task::spawn_blocking(move || dump_dom(&browser, &url));
    let from_browser = rust.recv_type("message").await;
    assert_eq!(from_browser["from"], "chromium", "{from_browser}");
    assert_eq!(
        from_browser["data"], "hello-from-chromium",
        "{from_browser}"
    );
    rust.ok(json!({"type":"publish","room":"browser-rt","data":"hello-from-rust"}))
        .await;
    let dom = page.await.expect("chromium task");
    assert!(
        dom.contains("chromium: hello-from-chromium"),
        "the page shows its own message:\n{dom}"
    );
    assert!(
        dom.contains("rust: hello-from-rust"),
        "the page shows the reply:\n{dom}"
    );
    assert!(
        dom.contains(r#"id="live-state">connected<"#),
        "state:\n{dom}"
    );
}

/// The status page lists the namespaces, and `#room=NAME` shows that
/// room's namespace and options in effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_chromium),
    ignore = "chromium not found on PATH (apt-get install chromium, or set SHARDCAST_CHROMIUM)"
)]
async fn status_page_shows_namespaces_and_a_rooms_options_in_chromium() {
    use crate::namespaces::{chat_schema, namespace};
    let browser = chromium();
    let broker = TestBroker::new()
        .with(|c| {
            c.room.namespaces = vec![
                namespace("chat-", |n| {
                    n.schema_file = chat_schema();
                    n.history_on_join = Some(7);
                }),
                namespace("news-", |n| n.client_publish = Some(false)),
            ];
        })
        .start();
    let mut c = broker.user("viewer").await;
    c.join("chat-1").await;
    c.err(
        json!({"type":"publish","room":"chat-1","data":{"text":false}}),
        "invalid_data",
    )
    .await;
    let url = format!("http://{}/#room=chat-1", broker.addr);
    let dom = tokio::task::spawn_blocking(move || dump_dom(&browser, &url))
        .await
        .expect("chromium task");
    for prefix in ["chat-", "news-"] {
        assert!(
            dom.contains(&format!(r#"data-namespace="{prefix}""#)),
            "namespace {prefix} not listed:\n{dom}"
        );
    }
    assert!(
        dom.contains(r#"id="room-namespace">chat-<"#),
        "the room's namespace not shown:\n{dom}"
    );
    assert!(
        dom.contains(r#"data-option="history_on_join">7<"#),
        "the room's options not shown:\n{dom}"
    );
    assert!(
        dom.contains("examples/chat.schema.json</td>"),
        "the schema not shown:\n{dom}"
    );
    // The chat namespace's one invalid_data refusal, last in its row.
    assert!(
        dom.contains("<td>1</td></tr>"),
        "refusals not counted:\n{dom}"
    );
}
