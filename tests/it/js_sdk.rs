//! The JavaScript client SDK (`clients/js`): the broker serves its committed
//! build at `/client.js`, that build matches the TypeScript sources, the
//! SDK's own fault tests (`node --test`) pass against this broker binary,
//! and the package `npm pack` makes works as its README says.
//!
//! Without `node` the Node-based tests are reported as ignored, with the
//! reason (build.rs's `has_node`); under CI they run and fail loudly
//! (`.ci/run` installs Node and the package's dependencies).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The SDK's folder.
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// The committed browser bundle, as the broker embeds it.
const BUNDLE: &str = include_str!("../../clients/js/dist/shardcast-client.js");

/// Longest run of the SDK's whole `node --test` suite.
const NODE_SUITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest `npm ci`, `npm pack` or install.
const NPM_TIMEOUT: Duration = Duration::from_secs(300);

/// Run `cmd` to completion within `limit`; returns (success, stdout+stderr).
/// The child is killed (by its own handle) if it overruns.
pub(crate) fn run(mut cmd: Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default()
    );
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}

/// `npm ci` in clients/js once per test run (when node_modules is missing
/// or older than package-lock.json).
pub(crate) fn npm_ci() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let dir = sdk_dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let lock = dir.join("package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&installed), modified(&lock)) {
        (Some(i), Some(l)) => i >= l,
        _ => false,
    };
    if !fresh {
        let mut cmd = Command::new("npm");
        cmd.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        let (ok, text) = run(cmd, NPM_TIMEOUT);
        assert!(ok, "npm ci in clients/js failed:\n{text}");
    }
    *done = true;
}

/// FNV-1a 64 over each `clients/js/src/*.ts`, sorted by name: name, NUL,
/// content, NUL. The same function as `sourceHash` in scripts/build.mjs.
fn source_hash(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("clients/js/src")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    names.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for name in names {
        feed(name.as_bytes());
        feed(&[0]);
        feed(&std::fs::read(dir.join(&name)).expect("read source"));
        feed(&[0]);
    }
    format!("{hash:016x}")
}

#[test]
fn committed_bundle_is_built_from_the_current_typescript_sources() {
    let hash = source_hash(&sdk_dir().join("src"));
    let first_line = BUNDLE.lines().next().unwrap_or("");
    assert!(
        first_line.contains(&format!("(source-hash {hash})")),
        "clients/js/dist is stale: the sources hash to {hash}, the bundle says {first_line:?}.\n\
         Rebuild: cd clients/js && npm ci && npm run build"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_js_is_served_as_a_cacheable_javascript_module() {
    let broker = TestBroker::new().start();
    let (status, text) = http_get(broker.addr, "/client.js HTTP/1.1").await;
    assert_eq!(status, 200, "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/javascript; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("cache-control: public, max-age=300"),
        "{head}"
    );
    assert_eq!(body, BUNDLE, "the served module is the committed bundle");
    assert!(
        body.contains("export {") && body.contains("Client"),
        "an ES module exporting Client"
    );
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an ETag")
        .to_string();
    let (status, _) = http_get(
        broker.addr,
        &format!("/client.js HTTP/1.1\r\nIf-None-Match: {etag}"),
    )
    .await;
    assert_eq!(status, 304, "revalidation with the ETag");
}

#[test]
#[cfg_attr(
    not(has_node),
    ignore = "node not found on PATH (apt-get install nodejs npm)"
)]
fn js_sdk_tests_pass_against_the_real_broker() {
    npm_ci();
    let dir = sdk_dir();
    let mut check = Command::new("node");
    check
        .args(["scripts/build.mjs", "--check"])
        .current_dir(&dir);
    let (ok, text) = run(check, NPM_TIMEOUT);
    assert!(
        ok,
        "clients/js/dist is stale against a fresh build:\n{text}"
    );

    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&dir)
        .env("SHARDCAST_BIN", env!("CARGO_BIN_EXE_shardcast"));
    let (ok, text) = run(cmd, NODE_SUITE_TIMEOUT);
    for line in text.lines().filter(|l| l.contains("MEASURE")) {
        eprintln!("{}", line.trim_start_matches("# "));
    }
    assert!(ok, "node --test failed:\n{text}");
    println!("{text}");
}

/// The first fenced `js` block of `readme` that imports `ws`: the Node example.
fn node_example(readme: &str) -> Option<String> {
    readme
        .split("```js\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(code, _)| code))
        .find(|code| code.contains("from \"ws\""))
        .map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_node),
    ignore = "node not found on PATH (apt-get install nodejs npm)"
)]
async fn npm_pack_makes_a_package_whose_readme_example_works() {
    tokio::task::spawn_blocking(npm_ci)
        .await
        .expect("npm ci task");
    let broker = TestBroker::new().start();
    let url = broker.url("");
    let out = tokio::task::spawn_blocking(move || {
        let work = std::env::temp_dir().join(format!("shardcast-npm-pack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("app")).expect("temp dir");
        let mut pack = Command::new("npm");
        pack.args(["pack", "--pack-destination"])
            .arg(&work)
            .current_dir(sdk_dir());
        let (ok, text) = run(pack, NPM_TIMEOUT);
        assert!(ok, "npm pack failed:\n{text}");
        let tarball = std::fs::read_dir(&work)
            .expect("pack output")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .expect("a .tgz");
        let app = work.join("app");
        std::fs::write(
            app.join("package.json"),
            r#"{"name":"app","private":true,"type":"module"}"#,
        )
        .expect("package.json");
        let mut install = Command::new("npm");
        install
            .args(["install", "--no-audit", "--no-fund", "--offline"])
            .arg(&tarball)
            .current_dir(&app);
        let (ok, text) = run(install, NPM_TIMEOUT);
        assert!(ok, "installing the packed tarball failed:\n{text}");
        // The example's one other import, ws, comes from the SDK's own devDependencies.
        std::os::unix::fs::symlink(
            sdk_dir().join("node_modules/ws"),
            app.join("node_modules/ws"),
        )
        .expect("link ws");
        let installed = app.join("node_modules/shardcast-client");
        for file in [
            "README.md",
            "dist/shardcast-client.js",
            "dist/types/index.d.ts",
        ] {
            assert!(installed.join(file).exists(), "the package lacks {file}");
        }
        assert!(
            !installed.join("src").exists() && !installed.join("tests").exists(),
            "the package ships only dist/ and the README"
        );
        let readme = std::fs::read_to_string(installed.join("README.md")).expect("README");
        let example = node_example(&readme).expect("a Node example in the README");
        assert!(example.contains("ws://127.0.0.1:8080/ws"), "{example}");
        std::fs::write(
            app.join("example.mjs"),
            example.replace("ws://127.0.0.1:8080/ws", &url),
        )
        .expect("example.mjs");
        let mut node = Command::new("node");
        node.arg("example.mjs").current_dir(&app);
        let result = run(node, Duration::from_secs(30));
        let _ = std::fs::remove_dir_all(&work);
        result
    })
    .await
    .expect("npm pack task");
    let (ok, text) = out;
    assert!(ok, "the README example failed:\n{text}");
    assert!(text.contains("state: connected"), "{text}");
    assert!(text.contains(r#"#1 alice: {"text":"hello"}"#), "{text}");
    assert!(text.contains("published as seq 1"), "{text}");
    assert!(text.contains("state: closed"), "{text}");
}
