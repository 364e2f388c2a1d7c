//! Tells the tests which outside programs they can use, so that a test that
//! needs one this machine lacks is reported as `ignored` with the reason,
//! instead of passing in silence.
//!
//! - `has_redis`: `redis-server` is on `PATH` (the cluster tests).
//! - `has_redis_sentinel`: `redis-sentinel` is on `PATH` (the failover
//!   test; Debian packs it apart from `redis-server`).
//! - `has_chromium`: `$SHARDCAST_CHROMIUM` is set, or `chromium` or
//!   `chromium-browser` is on `PATH` (the status page test).
//! - `has_node`: `node` is on `PATH` (tests of the JavaScript client).
//! - `has_python3`: `python3` is on `PATH` (tests with Python's `urllib`
//!   and `ssl` as the client).
//!
//! Under `CI` (set and not `false`/`0`) every cfg is set, so a test whose
//! program is missing runs and fails loudly: `.ci/run` installs them.
//! A test uses one as
//! `#[cfg_attr(not(has_redis), ignore = "redis-server not found on PATH")]`.
//! After installing a program, `touch build.rs` (or change `PATH`) so the
//! tests see it.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["PATH", "CI", "SHARDCAST_CHROMIUM"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"));
    let chromium = std::env::var_os("SHARDCAST_CHROMIUM").is_some_and(|p| !p.is_empty())
        || on_path("chromium")
        || on_path("chromium-browser");
    for (cfg, found) in [
        ("has_redis", on_path("redis-server")),
        ("has_redis_sentinel", on_path("redis-sentinel")),
        ("has_chromium", chromium),
        ("has_node", on_path("node")),
        ("has_python3", on_path("python3")),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if found || ci {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// Whether an executable file named `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
