//! Room namespaces and message schemas on one node (README, "Room
//! namespaces"): the longest prefix decides, a create only tightens, room
//! squatting is closed, `client_publish`, schemas on the WebSocket and API
//! paths, startup errors, and the README's example config as written.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shardcast::config::{NamespaceConfig, OverflowPolicy};
use shardcast::{Broker, Config, Overrides, StartError};

use crate::harness::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The chat schema the repository ships.
pub(crate) fn chat_schema() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat.schema.json").to_string()
}

pub(crate) fn namespace(prefix: &str, f: impl FnOnce(&mut NamespaceConfig)) -> NamespaceConfig {
    let mut ns = NamespaceConfig {
        prefix: prefix.into(),
        ..NamespaceConfig::default()
    };
    f(&mut ns);
    ns
}

pub(crate) async fn post(addr: std::net::SocketAddr, path: &str, body: Value) -> (u16, Value) {
    http(addr, "POST", path, &[JSON], Some(&body.to_string())).await
}

pub(crate) async fn details(addr: std::net::SocketAddr, room: &str) -> Value {
    let (status, body) = http(addr, "GET", &format!("/api/rooms/{room}"), &[], None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A token for `sub`, valid for an hour, with `perms` and `rooms` claims
/// when given.
pub(crate) fn token(sub: &str, perms: Option<&[&str]>, rooms: Option<&[&str]>) -> String {
    let mut claims = json!({"sub": sub, "exp": unix_now() + 3600});
    if let Some(perms) = perms {
        claims["perms"] = json!(perms);
    }
    if let Some(rooms) = rooms {
        claims["rooms"] = json!(rooms);
    }
    hs256(claims)
}

fn jwt(c: &mut Config) {
    c.auth.mode = shardcast::config::AuthMode::Jwt;
    c.auth.secret = JWT_SECRET.into();
}

#[tokio::test]
async fn the_longest_prefix_decides_and_a_create_only_tightens() {
    let broker = TestBroker::new()
        .with(|c| {
            c.room.namespaces = vec![
                namespace("team-", |n| {
                    n.private = Some(true);
                    n.max_members = Some(50);
                }),
                namespace("team-open-", |n| n.private = Some(false)),
                namespace("game-", |n| {
                    n.max_members = Some(2);
                    n.history = Some(0);
                    n.overflow = Some(OverflowPolicy::Drop);
                }),
            ];
        })
        .start();
    let mut c = broker.user("maker").await;
    let refused = c
        .err(
            json!({"type": "create", "room": "team-1", "private": false}),
            "forbidden",
        )
        .await;
    assert_says(&refused, "room team-1 is in namespace team-");
    assert_says(&refused, "`private: false`");
    let refused = c
        .err(
            json!({"type": "create", "room": "team-1", "max_members": 60}),
            "forbidden",
        )
        .await;
    assert_says(&refused, "`max_members: 60` above its 50");
    c.ok(json!({"type": "create", "room": "team-1", "max_members": 10}))
        .await;
    let team = details(broker.addr, "team-1").await;
    assert_eq!(team["namespace"], "team-");
    assert_eq!(
        (team["private"].clone(), team["max_members"].clone()),
        (json!(true), json!(10))
    );
    assert_eq!(team["options"]["private"], true);
    assert_eq!(team["options"]["client_publish"], true);
    // The longer prefix wins: team-open- rooms are public.
    c.ok(json!({"type": "create", "room": "team-open-1"})).await;
    let open = details(broker.addr, "team-open-1").await;
    assert_eq!(
        (open["namespace"].clone(), open["private"].clone()),
        (json!("team-open-"), json!(false))
    );
    c.join("team-open-1").await;
    // The API is held to the same rules.
    for loose in [
        json!({"room": "game-1", "max_members": 3}),
        json!({"room": "game-1", "overflow": "disconnect"}),
        json!({"room": "game-1", "history": 1}),
    ] {
        let (status, body) = post(broker.addr, "/api/rooms", loose.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (403, json!("forbidden")),
            "{loose} -> {body}"
        );
    }
    let (status, _) = post(broker.addr, "/api/rooms", json!({"room": "game-1"})).await;
    assert_eq!(status, 201);
    let game = details(broker.addr, "game-1").await;
    assert_eq!(game["options"]["overflow"], "drop");
    assert_eq!(game["options"]["history"], 0);
    assert_eq!(game["overflow"], "drop");
    let mut players = Vec::new();
    for i in 0..2 {
        let mut p = broker.user(&format!("p{i}")).await;
        p.join("game-1").await;
        players.push(p);
    }
    let mut third = broker.user("p2").await;
    third
        .err(json!({"type": "join", "room": "game-1"}), "room_full")
        .await;
    // Outside every namespace, options are free as before.
    c.ok(json!({"type": "create", "room": "lobby", "max_members": 100000, "overflow": "drop"}))
        .await;
    let lobby = details(broker.addr, "lobby").await;
    assert_eq!(lobby["namespace"], Value::Null);
    assert_eq!(lobby["options"]["max_members"], 100000);
}

/// Issue 15, item 2, in mode `jwt`: a user without special rights joins
/// `team-red` before its owners. With `team-` private, the join is refused
/// without making the room, the owners' create succeeds, and the squatter
/// never reads their messages, nor lists them. Made by the squatter's own
/// `create`, the room is private all the same.
#[tokio::test]
async fn room_squatting_in_jwt_mode_is_closed() {
    let broker = TestBroker::new()
        .with(|c| {
            jwt(c);
            c.room.namespaces = vec![namespace("team-", |n| n.private = Some(true))];
        })
        .start();
    // Default rights (create, publish, send, presence), no `rooms` claim.
    let mut squatter = with_token(&broker, &token("mallory", None, None)).await;
    let refused = squatter
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    assert_says(&refused, "private");
    let (status, _) = http(broker.addr, "GET", "/api/rooms/team-red", &[], None).await;
    assert_eq!(status, 404, "the refused join made no room");
    // The owners: an admin creates it private, as the attack's victims did.
    let mut admin = with_token(&broker, &token("root", Some(&["admin"]), None)).await;
    admin
        .ok(json!({"type": "create", "room": "team-red", "private": true}))
        .await;
    let team = Some(&["team-*"][..]);
    let mut alice = with_token(&broker, &token("alice", None, team)).await;
    let mut bob = with_token(&broker, &token("bob", None, team)).await;
    alice.join("team-red").await;
    bob.join("team-red").await;
    squatter
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    squatter
        .err(json!({"type": "members", "room": "team-red"}), "forbidden")
        .await;
    squatter
        .err(
            json!({"type": "publish", "room": "team-red", "data": 1}),
            "not_member",
        )
        .await;
    alice
        .ok(json!({"type": "publish", "room": "team-red", "data": {"plan": "secret"}}))
        .await;
    let message = bob.recv_type("message").await;
    assert_eq!(message["data"]["plan"], "secret");
    squatter.silent(Duration::from_millis(300)).await;
    // The other order: the squatter creates `team-blue` first. It is
    // private (the namespace says so), so the squatter cannot enter it,
    // and its owners can.
    squatter
        .ok(json!({"type": "create", "room": "team-blue"}))
        .await;
    squatter
        .err(json!({"type": "join", "room": "team-blue"}), "forbidden")
        .await;
    assert_eq!(details(broker.addr, "team-blue").await["private"], true);
    alice.join("team-blue").await;
    alice
        .ok(json!({"type": "publish", "room": "team-blue", "data": "hi"}))
        .await;
    squatter.silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn client_publish_off_refuses_clients_and_accepts_the_api_and_admin() {
    let broker = TestBroker::new()
        .with(|c| {
            jwt(c);
            c.room.namespaces = vec![namespace("news-", |n| n.client_publish = Some(false))];
        })
        .start();
    let mut reader = with_token(&broker, &token("reader", None, None)).await;
    reader.join("news-today").await;
    let refused = reader
        .err(
            json!({"type": "publish", "room": "news-today", "data": 1}),
            "forbidden",
        )
        .await;
    assert_says(
        &refused,
        "only the HTTP API and `admin` connections publish",
    );
    let mut editor = with_token(&broker, &token("editor", Some(&["admin"]), None)).await;
    editor.join("news-today").await;
    let ack = editor
        .ok(json!({"type": "publish", "room": "news-today", "data": "from admin"}))
        .await;
    assert_eq!(ack["seq"], 1, "the refused publish took no seq");
    let (status, body) = post(
        broker.addr,
        "/api/publish",
        json!({"room": "news-today", "data": "from the API"}),
    )
    .await;
    assert_eq!((status, body["seq"].clone()), (200, json!(2)), "{body}");
    for (seq, data) in [(1, "from admin"), (2, "from the API")] {
        let m = reader.recv_type("message").await;
        assert_eq!(
            (m["seq"].clone(), m["data"].clone()),
            (json!(seq), json!(data))
        );
    }
    // Elsewhere clients publish as before.
    reader.join("lobby").await;
    reader
        .ok(json!({"type": "publish", "room": "lobby", "data": 1}))
        .await;
}

/// `shardcast_invalid_data_total` of `namespace` on this broker.
async fn invalid_data_total(broker: &Running, namespace: &str) -> Option<u64> {
    let (_, text) = http_get(broker.addr, "/metrics HTTP/1.1").await;
    let needle = format!("shardcast_invalid_data_total{{namespace=\"{namespace}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|n| n.trim().parse().ok())
}

#[tokio::test]
async fn a_schema_refuses_bad_data_on_both_paths_and_delivers_good_data() {
    let broker = TestBroker::new()
        .with(|c| {
            c.room.namespaces = vec![namespace("chat-", |n| n.schema_file = chat_schema())];
        })
        .start();
    assert_eq!(invalid_data_total(&broker, "chat-").await, Some(0));
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.join("chat-1").await;
    b.join("chat-1").await;
    let long = "x".repeat(2001);
    let refused = a
        .err(
            json!({"type": "publish", "room": "chat-1", "data": {"text": long}}),
            "invalid_data",
        )
        .await;
    assert_eq!(
        refused["message"],
        "`data` does not match the schema of namespace chat-: /text: longer than 2000 characters"
    );
    let refused = a
        .err(
            json!({"type": "publish", "room": "chat-1", "data": {"text": "hi", "mentions": ["b", 3]}}),
            "invalid_data",
        )
        .await;
    assert_says(&refused, "/mentions/1: not of type \"string\"");
    // The API: 422 with the same body shape.
    let (status, body) = post(
        broker.addr,
        "/api/publish",
        json!({"room": "chat-1", "data": {"text": 5}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_data");
    assert_eq!(
        body["error"]["message"],
        "`data` does not match the schema of namespace chat-: /text: not of type \"string\""
    );
    // Refused data was never delivered, nor given a seq.
    let ack = a
        .ok(json!({"type": "publish", "room": "chat-1", "data": {"text": "hello", "mentions": ["b"]}}))
        .await;
    assert_eq!(ack["seq"], 1);
    let m = b.recv_type("message").await;
    assert_eq!(
        (m["seq"].clone(), m["data"]["text"].clone()),
        (json!(1), json!("hello"))
    );
    let (status, body) = post(
        broker.addr,
        "/api/publish",
        json!({"room": "chat-1", "data": {"text": "from the API"}}),
    )
    .await;
    assert_eq!((status, body["seq"].clone()), (200, json!(2)));
    assert_eq!(b.recv_type("message").await["seq"], 2);
    assert_eq!(invalid_data_total(&broker, "chat-").await, Some(3));
    // Rooms outside the namespace take any data.
    a.join("lobby").await;
    a.ok(json!({"type": "publish", "room": "lobby", "data": 5}))
        .await;
}

fn config_with(namespaces: Vec<NamespaceConfig>) -> Config {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(1),
        ..Overrides::default()
    };
    let mut config = Config::load_from(None, &[], &overrides).expect("config");
    config.room.namespaces = namespaces;
    config
}

#[test]
fn a_bad_schema_file_stops_the_start_naming_it() {
    let dir = std::env::temp_dir().join(format!("shardcast-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("missing.json").display().to_string();
    let config = config_with(vec![namespace("chat-", |n| {
        n.schema_file = missing.clone()
    })]);
    let err = Broker::start(config).err().expect("no broker");
    assert!(matches!(err, StartError::Schema(_)), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"type": "object", "maxLength": "long"}"#).expect("write");
    let bad = bad.display().to_string();
    let config = config_with(vec![namespace("chat-", |n| n.schema_file = bad.clone())]);
    let err = Broker::start(config).err().expect("no broker");
    let text = err.to_string();
    assert!(text.contains(&bad), "{text}");
    assert!(text.contains("is not a valid JSON Schema"), "{text}");
    // `serve` says so and exits with status 2, like other config errors.
    let file = dir.join("serve.toml");
    std::fs::write(
        &file,
        format!("[[room.namespaces]]\nprefix = \"chat-\"\nschema_file = {bad:?}\n"),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&bad) && stderr.contains("is not a valid JSON Schema"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The ```toml block of the README's "Room namespaces" section.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("README.md");
    let section = readme
        .split("\n## Room namespaces\n")
        .nth(1)
        .expect("a Room namespaces section");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    block.to_string()
}

/// The README's example, as written, loaded like `serve --config
/// examples/namespaces.toml` with the secret in the environment (from the
/// repository's root, as the README says; tests run there).
fn readme_broker() -> Running {
    let file = repo_file("examples/namespaces.toml");
    let text = std::fs::read_to_string(&file).expect("examples/namespaces.toml");
    assert_eq!(readme_example(), text, "the README shows the shipped file");
    let env = [("SHARDCAST_AUTH__SECRET".to_string(), JWT_SECRET.to_string())];
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        shards: Some(2),
        ..Overrides::default()
    };
    let config = Config::load_from(Some(&file), &env, &overrides).expect("the example loads");
    assert_eq!(config.room.namespaces.len(), 4);
    TestBroker::from_config(config).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_starts_as_written_and_each_namespace_behaves_as_documented() {
    let broker = readme_broker();
    let addr = broker.addr;
    let (status, stats) = http(addr, "GET", "/api/stats", &[], None).await;
    assert_eq!(status, 200);
    let prefixes: Vec<&str> = stats["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter_map(|n| n["prefix"].as_str())
        .collect();
    assert_eq!(prefixes, ["chat-", "team-", "news-", "game-"]);

    // chat-*: made by the first join; every message matches the schema; at
    // most 500 members.
    let mut alice = with_token(&broker, &token("alice", None, Some(&["team-*"]))).await;
    let mut bob = with_token(&broker, &token("bob", None, Some(&["team-*"]))).await;
    alice.join("chat-lobby").await;
    bob.join("chat-lobby").await;
    let refused = alice
        .err(
            json!({"type": "publish", "room": "chat-lobby", "data": {"text": "hi", "color": "red"}}),
            "invalid_data",
        )
        .await;
    assert_says(&refused, "(root): Additional properties are not allowed");
    let (status, _) = post(
        addr,
        "/api/publish",
        json!({"room": "chat-lobby", "data": {"mentions": []}}),
    )
    .await;
    assert_eq!(status, 422);
    alice
        .ok(json!({"type": "publish", "room": "chat-lobby", "data": {"text": "hi @bob", "mentions": ["bob"]}}))
        .await;
    assert_eq!(
        bob.recv_type("message").await["data"]["mentions"],
        json!(["bob"])
    );
    let chat = details(addr, "chat-lobby").await;
    assert_eq!(chat["max_members"], 500);
    assert_eq!(chat["options"]["schema"], "examples/chat.schema.json");
    alice
        .err(
            json!({"type": "create", "room": "chat-big", "max_members": 1000}),
            "forbidden",
        )
        .await;

    // team-*: private whoever makes it; only tokens with a matching `rooms`.
    let mut mallory = with_token(&broker, &token("mallory", None, None)).await;
    mallory
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    alice.join("team-red").await;
    assert_eq!(details(addr, "team-red").await["private"], true);
    mallory
        .err(json!({"type": "join", "room": "team-red"}), "forbidden")
        .await;
    alice
        .err(
            json!({"type": "create", "room": "team-blue", "private": false}),
            "forbidden",
        )
        .await;

    // news-*: only the API (and admin) publishes; readers come and go
    // silently.
    let mut reader = with_token(&broker, &token("reader", None, None)).await;
    reader.join("news-today").await;
    reader
        .err(
            json!({"type": "publish", "room": "news-today", "data": "x"}),
            "forbidden",
        )
        .await;
    mallory.join("news-today").await;
    let (status, _) = post(
        addr,
        "/api/publish",
        json!({"room": "news-today", "data": {"headline": "namespaces land"}}),
    )
    .await;
    assert_eq!(status, 200);
    let first = reader.recv().await;
    assert_eq!(first["type"], "message", "no `joined` before it: {first}");
    assert_eq!(first["data"]["headline"], "namespaces land");

    // game-*: made by create only; 8 players; overflow drop; no history.
    alice
        .err(json!({"type": "join", "room": "game-1"}), "room_not_found")
        .await;
    let (status, _) = post(addr, "/api/rooms", json!({"room": "game-1"})).await;
    assert_eq!(status, 201);
    let game = details(addr, "game-1").await;
    assert_eq!(
        (
            game["max_members"].clone(),
            game["overflow"].clone(),
            game["options"]["history"].clone()
        ),
        (json!(8), json!("drop"), json!(0))
    );
    let mut players = Vec::new();
    for i in 0..8 {
        let mut p = with_token(&broker, &token(&format!("player{i}"), None, None)).await;
        p.join("game-1").await;
        players.push(p);
    }
    mallory
        .err(json!({"type": "join", "room": "game-1"}), "room_full")
        .await;
}

#[test]
fn shardcast_config_prints_the_readme_example_with_every_option_resolved() {
    let bin = env!("CARGO_BIN_EXE_shardcast");
    let run = |file: &std::path::Path| {
        let out = std::process::Command::new(bin)
            .arg("config")
            .arg("--config")
            .arg(file)
            .env("SHARDCAST_AUTH__SECRET", JWT_SECRET)
            .output()
            .expect("run shardcast config");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let printed = run(&repo_file("examples/namespaces.toml"));
    assert_eq!(
        printed.matches("[[room.namespaces]]").count(),
        4,
        "{printed}"
    );
    let table: toml::Table = printed.parse().expect("TOML");
    let news = &table["room"]["namespaces"][2];
    assert_eq!(news["prefix"].as_str(), Some("news-"));
    assert_eq!(news["client_publish"].as_bool(), Some(false));
    // Left out in the file, resolved to the [room] defaults.
    assert_eq!(news["max_members"].as_integer(), Some(10_000));
    assert_eq!(news["auto_create"].as_bool(), Some(true));
    assert_eq!(news["overflow"].as_str(), Some("disconnect"));
    // Fed back, it prints the same.
    let file = std::env::temp_dir().join(format!("shardcast-ns-{}.toml", std::process::id()));
    std::fs::write(&file, printed.replace("\"<redacted>\"", "\"\"")).expect("write");
    let again = run(&file);
    let _ = std::fs::remove_file(&file);
    assert_eq!(again, printed);
}
