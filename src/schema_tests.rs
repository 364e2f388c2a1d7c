//! Tests of message schemas: compiling, checking `data`, the message of an
//! `invalid_data` refusal, loading errors, the namespace fingerprint.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::config::{Config, NamespaceConfig};
use crate::error::ErrorCode;
use crate::op::Reply;

/// The chat schema the repository ships (`examples/chat.schema.json`).
const CHAT: &str = include_str!("../examples/chat.schema.json");

fn chat() -> Schema {
    Schema::compile("chat-", "chat.schema.json", CHAT.as_bytes()).expect("the chat schema")
}

fn refused(schema: &Schema, data: &str) -> String {
    let refusal = schema.check("chat-", data.as_bytes()).expect_err("refused");
    assert_eq!(refusal.code, ErrorCode::InvalidData);
    refusal.message
}

#[test]
fn valid_chat_messages_pass() {
    let schema = chat();
    for data in [
        r#"{"text":"hi"}"#,
        r#"{"text":"hi @bob","mentions":["bob"]}"#,
        r#"{ "text" : "" , "mentions" : [] }"#,
    ] {
        assert_eq!(schema.check("chat-", data.as_bytes()), Ok(()), "{data}");
    }
}

#[test]
fn a_refusal_names_the_first_failing_pointer_and_rule() {
    let schema = chat();
    let long = format!(r#"{{"text":"{}"}}"#, "a".repeat(2001));
    let message = refused(&schema, &long);
    assert_eq!(
        message,
        "`data` does not match the schema of namespace chat-: /text: longer than 2000 characters"
    );
    assert!(!message.contains("aaaa"), "the value is not repeated");
    let message = refused(&schema, r#"{"text":"hi","mentions":["bob", 7]}"#);
    assert!(
        message.ends_with(r#"/mentions/1: not of type "string""#),
        "{message}"
    );
    let message = refused(&schema, r#"{"mentions":[]}"#);
    assert!(
        message.ends_with(r#"(root): "text" is a required property"#),
        "{message}"
    );
    let message = refused(&schema, "42");
    assert!(
        message.ends_with(r#"(root): not of type "object""#),
        "{message}"
    );
}

#[test]
fn a_message_stays_short_whatever_the_data_holds() {
    let schema = chat();
    // An unexpected property named with 60 KB: the rule quotes it, cut.
    let data = format!(r#"{{"text":"hi","{}":1}}"#, "k".repeat(60_000));
    let message = refused(&schema, &data);
    assert!(message.len() < 400, "{} bytes", message.len());
    assert!(message.ends_with("..."), "{message}");
    // Nesting deeper than the parser reads is refused, not a crash.
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let message = refused(&schema, &deep);
    assert!(message.contains("(root): cannot be checked"), "{message}");
}

#[test]
fn bad_schemas_are_refused_naming_the_file() {
    let err = Schema::compile("x-", "x.json", b"{not json").expect_err("not JSON");
    assert!(matches!(err, SchemaError::Json { .. }), "{err}");
    assert!(err.to_string().contains("\"x.json\""), "{err}");
    let err = Schema::compile("x-", "x.json", br#"{"type":"strang"}"#).expect_err("bad type");
    assert!(matches!(err, SchemaError::Invalid { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("schema_file \"x.json\" of namespace \"x-\" is not a valid JSON Schema"),
        "{text}"
    );
    // Nothing is fetched: a schema referring elsewhere does not compile.
    let remote = br#"{"$ref":"https://example.com/other.json"}"#;
    let err = Schema::compile("x-", "x.json", remote).expect_err("remote ref");
    assert!(matches!(err, SchemaError::Invalid { .. }), "{err}");
}

fn config_with(namespaces: Vec<NamespaceConfig>) -> Config {
    let mut config = Config::default();
    config.room.namespaces = namespaces;
    config
}

fn with_schema(prefix: &str, file: &str) -> NamespaceConfig {
    NamespaceConfig {
        prefix: prefix.into(),
        schema_file: file.into(),
        ..NamespaceConfig::default()
    }
}

#[test]
fn loading_reads_each_schema_once_and_names_a_missing_file() {
    let chat_file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat.schema.json");
    let config = config_with(vec![
        with_schema("chat-", chat_file),
        with_schema("plain-", ""),
    ]);
    let namespaces = Namespaces::new(&config);
    let schemas = Schemas::load(&namespaces).expect("loads");
    assert!(schemas.of(Some(0)).is_some());
    assert!(schemas.of(Some(1)).is_none());
    assert!(schemas.of(None).is_none());
    let config = config_with(vec![with_schema("chat-", "/nonexistent/chat.json")]);
    let err = Schemas::load(&Namespaces::new(&config)).expect_err("missing");
    assert!(matches!(err, SchemaError::Read { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot read schema_file \"/nonexistent/chat.json\" of namespace \"chat-\""),
        "{err}"
    );
}

fn publish(room: &str, data: &'static str, privileged: bool) -> Publish {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    Publish {
        room: Arc::from(room),
        from: Arc::from("u"),
        data: Bytes::from_static(data.as_bytes()),
        event: None,
        exclude: None,
        privileged,
        reply: Reply::Api(tx),
    }
}

#[test]
fn admit_publish_applies_client_publish_then_the_schema_and_counts() {
    let chat_file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chat.schema.json");
    let mut news = with_schema("news-", chat_file);
    news.client_publish = Some(false);
    let config = config_with(vec![with_schema("chat-", chat_file), news]);
    let namespaces = Namespaces::new(&config);
    let schemas = Schemas::load(&namespaces).expect("loads");
    let admit = |p: &Publish| admit_publish(&namespaces, &schemas, p);
    assert_eq!(admit(&publish("chat-1", r#"{"text":"hi"}"#, false)), Ok(()));
    assert_eq!(admit(&publish("lobby", "1", false)), Ok(()), "no namespace");
    let refusal = admit(&publish("chat-1", "1", false)).expect_err("not an object");
    assert_eq!(refusal.code, ErrorCode::InvalidData);
    // The API (privileged) is checked against the schema too.
    let refusal = admit(&publish("chat-1", "1", true)).expect_err("API too");
    assert_eq!(refusal.code, ErrorCode::InvalidData);
    // client_publish comes first.
    let refusal = admit(&publish("news-1", "1", false)).expect_err("a client");
    assert_eq!(refusal.code, ErrorCode::Forbidden);
    assert_eq!(admit(&publish("news-1", r#"{"text":"x"}"#, true)), Ok(()));
    assert_eq!(
        invalid_data_counts(&namespaces, &schemas),
        vec![(Arc::from("chat-"), 2), (Arc::from("news-"), 0)]
    );
}

#[test]
fn the_fingerprint_follows_rules_and_schema_content_not_paths() {
    let dir = std::env::temp_dir().join(format!("shardcast-fp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (a, b, c) = (dir.join("a.json"), dir.join("b.json"), dir.join("c.json"));
    std::fs::write(&a, r#"{"type":"object","maxProperties":3}"#).expect("a");
    // The same schema, spaced and ordered otherwise, at another path.
    std::fs::write(&b, "{ \"maxProperties\" : 3,\n \"type\" : \"object\" }").expect("b");
    std::fs::write(&c, r#"{"type":"object","maxProperties":4}"#).expect("c");
    let print = |file: &std::path::Path, max: Option<u32>| {
        let mut ns = with_schema("chat-", &file.display().to_string());
        ns.max_members = max;
        let namespaces = Namespaces::new(&config_with(vec![ns]));
        let schemas = Schemas::load(&namespaces).expect("loads");
        fingerprint(&namespaces, &schemas)
    };
    let fp = print(&a, None);
    assert_eq!(fp.len(), 16);
    assert_eq!(fp, print(&b, None), "same content, other path and spacing");
    assert_ne!(fp, print(&c, None), "other content");
    assert_ne!(fp, print(&a, Some(3)), "other rules");
    let none = Namespaces::new(&Config::default());
    let empty = fingerprint(&none, &Schemas::load(&none).expect("no schemas"));
    assert_ne!(fp, empty, "no namespaces differs from some");
    let _ = std::fs::remove_dir_all(&dir);
}
