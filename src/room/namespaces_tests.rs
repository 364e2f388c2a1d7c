//! Tests of the namespaces core: the longest prefix wins, options left out
//! come from `[room]`, a create may tighten and never loosen.

use proptest::prelude::*;

use super::*;
use crate::error::ErrorCode;

fn ns(prefix: &str, f: impl FnOnce(&mut NamespaceConfig)) -> NamespaceConfig {
    let mut ns = NamespaceConfig {
        prefix: prefix.into(),
        ..NamespaceConfig::default()
    };
    f(&mut ns);
    ns
}

fn namespaces(list: Vec<NamespaceConfig>) -> Namespaces {
    let room = RoomConfig {
        namespaces: list,
        ..RoomConfig::default()
    };
    Namespaces::of(&room, OverflowPolicy::Disconnect)
}

fn options(f: impl FnOnce(&mut RoomOptions)) -> RoomOptions {
    let mut o = RoomOptions::default();
    f(&mut o);
    o
}

#[test]
fn the_longest_prefix_wins_whatever_the_order() {
    let set = namespaces(vec![
        ns("t", |_| {}),
        ns("team-admin-", |_| {}),
        ns("team-", |_| {}),
    ]);
    let prefix = |room: &str| set.prefix(set.find(room)).map(|p| p.to_string());
    assert_eq!(prefix("team-admin-x").as_deref(), Some("team-admin-"));
    assert_eq!(prefix("team-red").as_deref(), Some("team-"));
    assert_eq!(prefix("team-admin").as_deref(), Some("team-"));
    assert_eq!(prefix("tx").as_deref(), Some("t"));
    assert_eq!(prefix("t").as_deref(), Some("t"));
    assert_eq!(prefix("lobby"), None);
    // The id is the position in the configuration.
    assert_eq!(set.find("team-admin-x"), Some(1));
}

#[test]
fn options_left_out_come_from_the_room_section() {
    let room = RoomConfig {
        default_max_members: 70,
        history: 30,
        history_on_join: 20,
        presence_events: false,
        auto_create: false,
        namespaces: vec![
            ns("game-", |n| {
                n.max_members = Some(8);
                n.overflow = Some(OverflowPolicy::Drop);
            }),
            ns("news-", |n| {
                n.client_publish = Some(false);
                n.schema_file = "news.json".into();
            }),
        ],
        ..RoomConfig::default()
    };
    let set = Namespaces::of(&room, OverflowPolicy::Disconnect);
    let game = set.rules(set.find("game-1"));
    assert_eq!(
        *game,
        Rules {
            private: false,
            max_members: 8,
            history: 30,
            history_on_join: 20,
            overflow: OverflowPolicy::Drop,
            presence_events: false,
            auto_create: false,
            client_publish: true,
            schema: None,
        }
    );
    let news = set.rules(set.find("news-1"));
    assert!(!news.client_publish);
    assert_eq!(news.schema.as_deref(), Some("news.json"));
    assert_eq!(news.overflow, OverflowPolicy::Disconnect);
    // Outside every namespace: the defaults, as before namespaces.
    let outside = set.rules(set.find("lobby"));
    assert_eq!((outside.max_members, outside.private), (70, false));
    assert!(outside.client_publish && outside.schema.is_none());
}

#[test]
fn a_create_may_tighten_a_namespace_and_never_loosen_it() {
    let set = namespaces(vec![ns("team-", |n| {
        n.private = Some(true);
        n.max_members = Some(50);
        n.history = Some(500);
        n.overflow = Some(OverflowPolicy::Drop);
    })]);
    let team = set.find("team-red");
    // Nothing asked: the namespace's options.
    let made = set
        .created_settings(team, "team-red", &RoomOptions::default())
        .expect("plain create");
    assert_eq!(made, set.joined_settings(team));
    assert_eq!(
        made,
        RoomSettings {
            private: true,
            max_members: 50,
            history: 500,
            overflow: OverflowPolicy::Drop,
        }
    );
    // Tighter, or the same: taken.
    let tighter = options(|o| {
        o.private = Some(true);
        o.max_members = Some(10);
        o.history = Some(0);
        o.overflow = Some(OverflowPolicy::Drop);
    });
    let made = set
        .created_settings(team, "team-red", &tighter)
        .expect("tighter");
    assert_eq!((made.max_members, made.history), (10, 0));
    // Looser: forbidden, saying which option.
    for (looser, says) in [
        (options(|o| o.private = Some(false)), "`private: false`"),
        (
            options(|o| o.max_members = Some(51)),
            "`max_members: 51` above its 50",
        ),
        (
            options(|o| o.history = Some(501)),
            "`history: 501` above its 500",
        ),
        (
            options(|o| o.overflow = Some(OverflowPolicy::Disconnect)),
            "`overflow: \"disconnect\"`",
        ),
    ] {
        let refusal = set
            .created_settings(team, "team-red", &looser)
            .expect_err("looser");
        assert_eq!(refusal.code, ErrorCode::Forbidden);
        assert!(refusal.message.contains(says), "{}", refusal.message);
        assert!(
            refusal
                .message
                .contains("room team-red is in namespace team-"),
            "{}",
            refusal.message
        );
    }
}

#[test]
fn a_public_namespace_may_be_made_private_and_outside_anything_goes() {
    let set = namespaces(vec![ns("chat-", |n| n.max_members = Some(5))]);
    let private = options(|o| o.private = Some(true));
    let made = set
        .created_settings(set.find("chat-1"), "chat-1", &private)
        .expect("private is tighter");
    assert!(made.private);
    // Outside every namespace, options are free (up to the protocol's
    // ranges), as without namespaces.
    let big = options(|o| {
        o.max_members = Some(1_000_000);
        o.history = Some(10_000);
        o.overflow = Some(OverflowPolicy::Drop);
    });
    let made = set
        .created_settings(set.find("lobby"), "lobby", &big)
        .expect("outside");
    assert_eq!(made.max_members, 1_000_000);
    assert_eq!(made.overflow, OverflowPolicy::Drop);
    assert!(!made.private);
}

#[test]
fn only_privileged_publishers_publish_where_clients_may_not() {
    let set = namespaces(vec![ns("news-", |n| n.client_publish = Some(false))]);
    let news = set.find("news-1");
    let refusal = set
        .may_publish(news, "news-1", false)
        .expect_err("a client");
    assert_eq!(refusal.code, ErrorCode::Forbidden);
    assert!(
        refusal.message.contains("namespace news-"),
        "{}",
        refusal.message
    );
    assert!(set.may_publish(news, "news-1", true).is_ok());
    assert!(set.may_publish(set.find("lobby"), "lobby", false).is_ok());
}

#[test]
fn the_effective_options_join_the_room_and_its_namespace() {
    let set = namespaces(vec![ns("chat-", |n| {
        n.history_on_join = Some(7);
        n.schema_file = "chat.json".into();
    })]);
    let chat = set.find("chat-1");
    let effective = set.effective(chat, set.joined_settings(chat));
    assert_eq!(effective.history_on_join, 7);
    assert_eq!(effective.schema.as_deref(), Some("chat.json"));
    assert_eq!(
        effective.max_members,
        RoomConfig::default().default_max_members
    );
}

#[test]
fn resolved_config_writes_every_option_out() {
    let mut config = Config::default();
    config.room.history = 42;
    config.room.namespaces = vec![ns("a-", |n| n.private = Some(true))];
    let resolved = resolved_config(&config);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].history, Some(42));
    assert_eq!(resolved[0].private, Some(true));
    assert_eq!(resolved[0].client_publish, Some(true));
    // Written out, it means the same.
    config.room.namespaces = resolved;
    assert_eq!(
        Namespaces::new(&config).rules(Some(0)).history,
        42,
        "resolved options load back the same"
    );
}

/// Prefixes and names over a small alphabet, so they often share starts.
fn name() -> impl Strategy<Value = String> {
    "[ab-]{1,6}"
}

proptest! {
    /// The namespace found is the longest configured prefix of the name.
    #[test]
    fn find_is_the_longest_matching_prefix(
        prefixes in prop::collection::btree_set(name(), 0..8),
        rooms in prop::collection::vec(name(), 1..20),
    ) {
        let list: Vec<NamespaceConfig> = prefixes.iter().map(|p| ns(p, |_| {})).collect();
        let set = namespaces(list.clone());
        for room in &rooms {
            let expected = list
                .iter()
                .enumerate()
                .filter(|(_, n)| room.starts_with(&n.prefix))
                .max_by_key(|(_, n)| n.prefix.len())
                .map(|(i, _)| i);
            prop_assert_eq!(set.find(room), expected, "room {}", room);
        }
    }

    /// Whatever a create asks, a room made in a namespace is never looser
    /// than it, and a refusal means the request asked for something looser.
    #[test]
    fn a_created_room_is_never_looser_than_its_namespace(
        private in any::<Option<bool>>(),
        ns_private in any::<Option<bool>>(),
        max in prop::option::of(1u32..100),
        ns_max in prop::option::of(1u32..100),
        history in prop::option::of(0usize..100),
        ns_history in prop::option::of(0usize..100),
        drop in any::<Option<bool>>(),
        ns_drop in any::<Option<bool>>(),
    ) {
        let policy = |d: bool| if d { OverflowPolicy::Drop } else { OverflowPolicy::Disconnect };
        let set = namespaces(vec![ns("n-", |n| {
            n.private = ns_private;
            n.max_members = ns_max;
            n.history = ns_history;
            n.overflow = ns_drop.map(policy);
        })]);
        let asked = RoomOptions {
            private,
            max_members: max,
            history,
            overflow: drop.map(policy),
        };
        let id = set.find("n-1");
        let rules = set.rules(id).clone();
        let looser = (rules.private && private == Some(false))
            || max.is_some_and(|m| m > rules.max_members)
            || history.is_some_and(|h| h > rules.history)
            || drop.map(policy).is_some_and(|o| o != rules.overflow);
        match set.created_settings(id, "n-1", &asked) {
            Ok(made) => {
                prop_assert!(!looser);
                prop_assert!(made.private || !rules.private);
                prop_assert!(made.max_members <= rules.max_members);
                prop_assert!(made.history <= rules.history);
                prop_assert_eq!(made.overflow, rules.overflow);
            }
            Err(refusal) => {
                prop_assert!(looser);
                prop_assert_eq!(refusal.code, ErrorCode::Forbidden);
            }
        }
    }
}
