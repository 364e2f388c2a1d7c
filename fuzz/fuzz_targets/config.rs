//! Fuzz target `config`: bytes through the config loader
//! (`Config::load_from`: TOML file, `SHARDCAST_*` environment, defaults,
//! validation) and, for a config it accepts, through `Config::to_toml`
//! (what `shardcast config` prints).
//!
//! Input: the TOML file's contents, optionally followed by a NUL byte and
//! `NAME=value` lines taken as the process environment. The file is written
//! to a per-process temporary file (in `/dev/shm` if it exists), because `load_from` reads a path.
//!
//! Checks, besides "never panics":
//! - an accepted config renders, and the rendering parses back into a
//!   config that renders the same (the printed config is the effective one);
//! - the rendering loads again as the same config, unless it redacted a
//!   secret (an API key, `auth.secret`, the password in
//!   `cluster.redis_url`): then loading it fails and names the placeholder;
//! - the rendering never shows `auth.secret` or an API key.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shardcast::{Config, Overrides};

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // tmpfs when there is one: a file on disk costs a millisecond a run.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("shardcast-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = scratch();
    if std::fs::write(path, file).is_err() {
        return;
    }
    let Ok(config) = Config::load_from(Some(path), &env, &Overrides::default()) else {
        return;
    };
    let shown = config.to_toml();
    assert!(!shown.starts_with("# cannot render"), "{shown}");
    let back: Config = toml::from_str(&shown)
        .unwrap_or_else(|e| panic!("the rendered config does not parse: {e}\n{shown}"));
    assert_eq!(back.to_toml(), shown, "rendering is not stable");
    if !config.auth.secret.is_empty() {
        assert_eq!(back.auth.secret, "<redacted>", "secret shown");
    }
    assert!(
        back.api.keys.iter().all(|k| k == "<redacted>"),
        "API key shown"
    );
    let redacted = !config.api.keys.is_empty()
        || !config.auth.secret.is_empty()
        || config.cluster.redis_url_redacted() != config.cluster.redis_url;
    // What `shardcast config` prints loads as the same config, or says
    // which value is a placeholder.
    if std::fs::write(path, &shown).is_err() {
        return;
    }
    match Config::load_from(Some(path), &[], &Overrides::default()) {
        Ok(again) => {
            assert!(!redacted, "a redacted config loads\n{shown}");
            assert_eq!(again.to_toml(), shown, "reloading changes the config");
        }
        Err(e) if redacted => assert!(
            e.to_string().contains("the placeholder `shardcast config` prints"),
            "a redacted config fails without saying why: {e}\n{shown}"
        ),
        Err(e) => panic!("the rendered config does not load: {e}\n{shown}"),
    }
});
