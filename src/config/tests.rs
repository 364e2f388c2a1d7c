//! Tests of loading, validating and printing the configuration.

use std::net::SocketAddr;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_validate() {
    let c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.limits.max_connections, 100_000);
    assert!(c.server.shards >= 1);
    assert!(c.server.node_id.starts_with("node-"));
    assert!(!c.cluster.enabled());
}

#[test]
fn cluster_url_is_checked_and_its_password_redacted() {
    let bad = env(&[("SHARDCAST_CLUSTER__REDIS_URL", "http://x")]);
    let err = Config::load_from(None, &bad, &Overrides::default()).expect_err("bad url");
    assert!(err.to_string().contains("cluster.redis_url"), "{err}");
    let overrides = Overrides {
        redis_url: Some("redis://app:hunter2@127.0.0.1:6379/0".into()),
        ..Overrides::default()
    };
    let c = Config::load_from(None, &[], &overrides).expect("cluster config");
    assert!(c.cluster.enabled());
    let shown = c.to_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("redis://app:<redacted>@127.0.0.1:6379/0"),
        "{shown}"
    );
    let zero = env(&[
        ("SHARDCAST_CLUSTER__REDIS_URL", "redis://127.0.0.1:1"),
        ("SHARDCAST_CLUSTER__COMMAND_QUEUE", "0"),
    ]);
    let err = Config::load_from(None, &zero, &Overrides::default()).expect_err("zero queue");
    assert!(err.to_string().contains("cluster.command_queue"), "{err}");
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = std::env::temp_dir().join(format!("shardcast-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:9000\"\n[limits]\nmax_connections = 10\n",
    )
    .expect("write");
    let e = env(&[
        ("SHARDCAST_LIMITS__MAX_CONNECTIONS", "5000"),
        ("SHARDCAST_ROOM__PRESENCE_EVENTS", "false"),
        ("SHARDCAST_LIMITS__SLOW_CONSUMER_POLICY", "drop"),
    ]);
    let o = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(3),
        ..Overrides::default()
    };
    let c = Config::load_from(Some(&path), &e, &o).expect("load");
    assert_eq!(c.limits.max_connections, 5000);
    assert!(!c.room.presence_events);
    assert_eq!(c.limits.slow_consumer_policy, OverflowPolicy::Drop);
    assert_eq!(c.server.listen, "127.0.0.1:0");
    assert_eq!(c.server.shards, 3);
}

#[test]
fn secrets_from_env_stay_text() {
    let e = env(&[
        ("SHARDCAST_AUTH__SECRET", "12345678901234567890123456789012"),
        (
            "SHARDCAST_API__KEYS",
            "key-aaaaaaaaaaaaaaaa,key-bbbbbbbbbbbbbbbb",
        ),
    ]);
    let c = Config::load_from(None, &e, &Overrides::default()).expect("load");
    assert_eq!(c.auth.secret, "12345678901234567890123456789012");
    assert_eq!(c.api.keys.len(), 2);
    let e = env(&[(
        "SHARDCAST_API__KEYS",
        r#"["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"]"#,
    )]);
    let c = Config::load_from(None, &e, &Overrides::default()).expect("load");
    assert_eq!(
        c.api.keys,
        vec!["key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb"]
    );
}

#[test]
fn listen_addr_has_no_fallback() {
    let mut c = Config::default();
    assert_eq!(
        c.listen_addr().expect("default address"),
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    c.server.listen = "localhost:8080".into();
    let err = c.listen_addr().expect_err("a host name is not an address");
    assert!(err.to_string().contains("server.listen"), "{err}");
    assert!(err.to_string().contains("localhost:8080"), "{err}");
}

/// What `shardcast config` prints for `env`, loaded back as a file.
fn printed_then_loaded(env_pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let c = Config::load_from(None, &env(env_pairs), &Overrides::default()).expect("load");
    let dir = std::env::temp_dir().join(format!("shardcast-redacted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let name = env_pairs.first().map_or("none", |(k, _)| *k);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, c.to_toml()).expect("write");
    let back = Config::load_from(Some(&path), &[], &Overrides::default());
    let _ = std::fs::remove_file(&path);
    back
}

#[test]
fn printed_config_loads_back_and_redacted_secrets_say_so() {
    let plain = printed_then_loaded(&[]).expect("a printed config without secrets loads");
    assert!(plain.api.keys.is_empty());
    for (pairs, key) in [
        (
            vec![("SHARDCAST_API__KEYS", "key-aaaaaaaaaaaaaaaa")],
            "api.keys",
        ),
        (
            vec![("SHARDCAST_AUTH__SECRET", "0123456789abcdef0123456789abcdef")],
            "auth.secret",
        ),
        (
            vec![(
                "SHARDCAST_CLUSTER__REDIS_URL",
                "redis://app:hunter2@127.0.0.1:6379",
            )],
            "cluster.redis_url",
        ),
    ] {
        let err = printed_then_loaded(&pairs).expect_err("a redacted secret is refused");
        let text = err.to_string();
        assert!(text.contains(key), "{text}");
        assert!(
            text.contains("\"<redacted>\", the placeholder `shardcast config` prints"),
            "{text}"
        );
    }
}

#[test]
fn node_id_from_env_is_taken_verbatim() {
    let e = env(&[("SHARDCAST_SERVER__NODE_ID", "42")]);
    let c = Config::load_from(None, &e, &Overrides::default()).expect("a bare number");
    assert_eq!(c.server.node_id, "42");
    // Text keys are not TOML-parsed, so quotes stay part of the value.
    let e = env(&[("SHARDCAST_SERVER__NODE_ID", "\"42\"")]);
    let err = Config::load_from(None, &e, &Overrides::default()).expect_err("quotes");
    let text = err.to_string();
    assert!(text.contains("server.node_id"), "{text}");
    assert!(text.contains(r#"not "\"42\"""#), "{text}");
}

#[test]
fn unknown_key_is_named() {
    let e = env(&[("SHARDCAST_LIMITS__MAX_CONECTIONS", "5")]);
    let err = Config::load_from(None, &e, &Overrides::default()).expect_err("typo");
    assert!(err.to_string().contains("max_conections"), "{err}");
}

#[test]
fn bad_value_is_named() {
    let e = env(&[("SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES", "0")]);
    let err = Config::load_from(None, &e, &Overrides::default()).expect_err("zero");
    assert!(
        err.to_string().contains("limits.outbound_queue_bytes"),
        "{err}"
    );
    let o = Overrides {
        shards: Some(65),
        ..Overrides::default()
    };
    let err = Config::load_from(None, &[], &o).expect_err("shards");
    assert!(err.to_string().contains("server.shards"), "{err}");
    let o = Overrides {
        listen: Some("nowhere".into()),
        ..Overrides::default()
    };
    let err = Config::load_from(None, &[], &o).expect_err("listen");
    assert!(err.to_string().contains("server.listen"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let e = env(&[("SHARDCAST_LIMITS__MAX_ROOMS", "lots")]);
    let err = Config::load_from(None, &e, &Overrides::default()).expect_err("type");
    assert!(err.to_string().contains("max_rooms"), "{err}");
}

#[test]
fn clamps_to_fd_limit() {
    let mut c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
    let clamped = c.clamp_to_fd_limit(20_000).expect("clamped");
    assert_eq!(clamped.0, 100_000);
    assert!(c.limits.max_connections < 20_000);
    assert!(c.clamp_to_fd_limit(20_000).is_none());
}

#[test]
fn toml_round_trips() {
    let c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
    let text = c.to_toml();
    let back: Config = toml::from_str(&text).expect("parse back");
    assert_eq!(back.limits.max_rooms, c.limits.max_rooms);
    assert_eq!(back.auth.default_perms, c.auth.default_perms);
}

fn pusher_app(id: &str, key: &str) -> PusherApp {
    PusherApp {
        id: id.into(),
        key: key.into(),
        secret: "s3cret-value".into(),
        ..PusherApp::default()
    }
}

#[test]
fn pusher_apps_are_checked_and_their_secrets_redacted() {
    let base = || {
        let mut c = Config::load_from(None, &[], &Overrides::default()).expect("defaults");
        c.pusher.enabled = true;
        c.pusher.apps = vec![pusher_app("1", "key-1")];
        c
    };
    let c = base();
    c.validate().expect("one app");
    let shown = c.to_toml();
    assert!(!shown.contains("s3cret-value"), "{shown}");
    assert!(shown.contains(r#"secret = "<redacted>""#), "{shown}");
    type Breaks = fn(&mut Config);
    let problems: [(&str, Breaks); 10] = [
        ("pusher.apps", |c| c.pusher.apps.clear()),
        ("pusher.apps.id", |c| {
            c.pusher.apps.push(pusher_app("1", "key-2"))
        }),
        ("pusher.apps.key", |c| {
            c.pusher.apps.push(pusher_app("2", "key-1"))
        }),
        ("pusher.apps.id", |c| c.pusher.apps[0].id = "a#b".into()),
        ("pusher.apps.key", |c| c.pusher.apps[0].key = "k/1".into()),
        ("pusher.apps.secret", |c| c.pusher.apps[0].secret.clear()),
        ("pusher.apps.secret_file", |c| {
            c.pusher.apps[0].secret_file = Some("/run/x".into())
        }),
        ("pusher.apps.webhook_url", |c| {
            c.pusher.apps[0].webhook_url = "ftp://hooks.example/".into()
        }),
        ("pusher.apps.webhook_ca_file", |c| {
            c.pusher.apps[0].webhook_url = "http://hooks.example/".into();
            c.pusher.apps[0].webhook_ca_file = Some("/etc/hooks-ca.pem".into());
        }),
        ("room.auto_create", |c| c.room.auto_create = false),
    ];
    for (key, break_it) in problems {
        let mut c = base();
        break_it(&mut c);
        let err = c.validate().expect_err(key);
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    // An https:// receiver with a CA file of its own: valid, and printed.
    let mut c = base();
    c.pusher.apps[0].webhook_url = "https://hooks.example/pusher".into();
    c.pusher.apps[0].webhook_ca_file = Some("/etc/hooks-ca.pem".into());
    c.validate().expect("https webhook");
    let shown = c.to_toml();
    assert!(
        shown.contains(r#"webhook_ca_file = "/etc/hooks-ca.pem""#),
        "{shown}"
    );
    // A printed config fed back says the secret was redacted.
    let mut c = base();
    c.pusher.apps[0].secret = REDACTED.into();
    let err = c.validate().expect_err("redacted");
    assert!(err.to_string().contains("pusher.apps.secret"), "{err}");
    // Off, an empty app list is fine.
    let mut c = base();
    c.pusher.enabled = false;
    c.pusher.apps.clear();
    c.validate().expect("disabled");
}
