//! The cost per publish of the namespace rules the one route applies
//! before any back end (`Shard::route`, `schema::admit_publish`):
//!
//! * `publish_rules/no_namespaces`: a broker without namespaces (the path
//!   every publish took before namespaces existed, plus this check).
//! * `publish_rules/outside_namespaces`: a room outside the four namespaces
//!   of `examples/namespaces.toml`.
//! * `publish_rules/namespace_without_schema`: a `team-` room of that
//!   example (a namespace, no schema).
//! * `publish_rules/chat_schema_valid`, `.../chat_schema_invalid`: a
//!   typical chat message into a `chat-` room, checked against
//!   `examples/chat.schema.json` (parse + validate), and one that fails.
//!
//! Run with `cargo bench --bench schema` (add `-- --quick` for a fast pass).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use shardcast::internals::PublishRules;
use shardcast::{Config, Overrides};

/// The allocator of the `shardcast` binary, so allocation costs match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical chat message (about the size of the hot-path benches' data).
const CHAT: &[u8] = br#"{"text":"hello world, this is one chat line","mentions":["bob","carol"]}"#;

/// The same with a number for `text`.
const BAD_CHAT: &[u8] = br#"{"text":42,"mentions":["bob","carol"]}"#;

fn config() -> Criterion {
    Criterion::default()
        .without_plots()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

/// The README's example configuration (schema paths are relative to the
/// repository's root, where cargo runs benches).
fn example() -> Config {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/namespaces.toml");
    let env = [(
        "SHARDCAST_AUTH__SECRET".to_string(),
        "bench-secret-0123456789abcdef-0123456789".to_string(),
    )];
    Config::load_from(Some(&file), &env, &Overrides::default()).expect("the example loads")
}

fn bench_publish_rules(c: &mut Criterion) {
    let example = example();
    let cases = [
        ("no_namespaces", Config::default(), "lobby", CHAT, true),
        ("outside_namespaces", example.clone(), "lobby", CHAT, true),
        (
            "namespace_without_schema",
            example.clone(),
            "team-red",
            CHAT,
            true,
        ),
        (
            "chat_schema_valid",
            example.clone(),
            "chat-lobby",
            CHAT,
            true,
        ),
        (
            "chat_schema_invalid",
            example,
            "chat-lobby",
            BAD_CHAT,
            false,
        ),
    ];
    let mut group = c.benchmark_group("publish_rules");
    group.throughput(Throughput::Elements(1));
    for (name, config, room, data, valid) in cases {
        let rules = PublishRules::new(&config, room, Bytes::from_static(data)).expect("rules");
        assert_eq!(rules.admit().is_ok(), valid, "{name}");
        group.bench_function(name, |b| b.iter(|| black_box(rules.admit().is_ok())));
    }
    group.finish();
}

criterion_group! {
    name = schema;
    config = config();
    targets = bench_publish_rules
}
criterion_main!(schema);
