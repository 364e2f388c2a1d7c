//! Tests of [`RoomTable`] with namespaces: rooms take their namespace's
//! options however they are made, a create only tightens them, a join never
//! makes a private room its joiner cannot enter; and a property test of
//! random joins and creates across namespaces.

use proptest::prelude::*;
use tokio::sync::oneshot;

use super::*;
use crate::config::NamespaceConfig;
use crate::config::OverflowPolicy;
use crate::error::ErrorCode;
use crate::op::Reply;

const SHARDS: usize = 2;

/// `team-` private (cap 3), `game-` capped at 2 with `drop`, `quiet-`
/// without events and with 2 messages of history on join, `fixed-` where
/// joins make nothing.
fn config() -> Config {
    let mut c = Config::default();
    c.server.shards = SHARDS;
    c.room.namespaces = vec![
        NamespaceConfig {
            prefix: "team-".into(),
            private: Some(true),
            max_members: Some(3),
            ..NamespaceConfig::default()
        },
        NamespaceConfig {
            prefix: "game-".into(),
            max_members: Some(2),
            history: Some(5),
            overflow: Some(OverflowPolicy::Drop),
            ..NamespaceConfig::default()
        },
        NamespaceConfig {
            prefix: "quiet-".into(),
            presence_events: Some(false),
            history_on_join: Some(2),
            ..NamespaceConfig::default()
        },
        NamespaceConfig {
            prefix: "fixed-".into(),
            auto_create: Some(false),
            ..NamespaceConfig::default()
        },
    ];
    c
}

fn join(conn: u64, room: &str, granted: bool) -> Op {
    Op::Join(Join {
        origin: Origin { conn, id: Some(1) },
        room: Arc::from(room),
        user: Arc::from(format!("u{conn}")),
        name: None,
        since: None,
        epoch: None,
        create: true,
        may_create: true,
        may_join_private: granted,
        info: None,
        list_users: false,
    })
}

fn create(room: &str, options: RoomOptions) -> (Op, oneshot::Receiver<Result<(), Refusal>>) {
    let (tx, rx) = oneshot::channel();
    let op = Op::Create {
        room: Arc::from(room),
        options,
        creator: None,
        reply: Reply::Api(tx),
    };
    (op, rx)
}

fn apply(table: &mut RoomTable, index: &RoomIndex, op: Op) -> Vec<(usize, Delivery)> {
    let mut out = Outbox::new(SHARDS);
    table.apply(index, op, Now::read(), &mut out);
    out.drain().collect()
}

/// The refusal of a join, if it was refused.
fn join_refusal(out: &[(usize, Delivery)]) -> Option<ErrorCode> {
    out.iter().find_map(|(_, d)| match d {
        Delivery::JoinRefused { refusal, .. } => Some(refusal.code),
        _ => None,
    })
}

#[test]
fn a_join_never_makes_a_private_room_its_joiner_may_not_enter() {
    let index = RoomIndex::new(100);
    let mut table = RoomTable::new(0, &config());
    // The squatter: the create right, no grant. Refused, and nothing made.
    let out = apply(&mut table, &index, join(1, "team-red", false));
    assert_eq!(join_refusal(&out), Some(ErrorCode::Forbidden));
    assert!(!index.contains("team-red"));
    // An owner with a grant makes it, private with the namespace's cap.
    let out = apply(&mut table, &index, join(2, "team-red", true));
    assert_eq!(join_refusal(&out), None);
    let meta = index.get("team-red").expect("made");
    assert!(meta.private && meta.max_members == 3 && !meta.explicit);
    let out = apply(&mut table, &index, join(1, "team-red", false));
    assert_eq!(join_refusal(&out), Some(ErrorCode::Forbidden));
}

#[test]
fn a_create_takes_the_namespace_options_and_may_only_tighten_them() {
    let index = RoomIndex::new(100);
    let mut table = RoomTable::new(0, &config());
    // `private: false` in a private namespace: forbidden, nothing made.
    let loose = RoomOptions {
        private: Some(false),
        ..RoomOptions::default()
    };
    let (op, rx) = create("team-red", loose);
    apply(&mut table, &index, op);
    let refused = rx.blocking_recv().expect("answer").expect_err("loosens");
    assert_eq!(refused.code, ErrorCode::Forbidden);
    assert!(!index.contains("team-red"));
    // Without options: private, whoever creates it.
    let (op, rx) = create("team-red", RoomOptions::default());
    apply(&mut table, &index, op);
    assert_eq!(rx.blocking_recv().ok(), Some(Ok(())));
    let meta = index.get("team-red").expect("made");
    assert!(meta.private && meta.max_members == 3 && meta.explicit);
    // Tighter than the namespace: taken.
    let tight = RoomOptions {
        max_members: Some(1),
        history: Some(2),
        ..RoomOptions::default()
    };
    let (op, rx) = create("game-1", tight);
    apply(&mut table, &index, op);
    assert_eq!(rx.blocking_recv().ok(), Some(Ok(())));
    let meta = index.get("game-1").expect("made");
    assert_eq!((meta.max_members, meta.overflow), (1, OverflowPolicy::Drop));
    let (tx, rx) = oneshot::channel();
    let details = Op::Details {
        room: Arc::from("game-1"),
        reply: tx,
    };
    apply(&mut table, &index, details);
    let details = rx.blocking_recv().expect("answer").expect("details");
    assert_eq!(details.namespace.as_deref(), Some("game-"));
    assert_eq!(details.options.history, 2);
    assert_eq!(details.options.max_members, 1);
    assert!(details.options.client_publish);
}

#[test]
fn a_namespace_without_auto_create_is_joined_only_once_created() {
    let index = RoomIndex::new(100);
    let mut table = RoomTable::new(0, &config());
    let out = apply(&mut table, &index, join(1, "fixed-1", true));
    assert_eq!(join_refusal(&out), Some(ErrorCode::RoomNotFound));
    let (op, _rx) = create("fixed-1", RoomOptions::default());
    apply(&mut table, &index, op);
    let out = apply(&mut table, &index, join(1, "fixed-1", true));
    assert_eq!(join_refusal(&out), None);
}

#[test]
fn history_on_join_and_presence_events_follow_the_namespace() {
    let index = RoomIndex::new(100);
    let mut table = RoomTable::new(0, &config());
    for conn in [1, 2] {
        let out = apply(&mut table, &index, join(conn, "quiet-1", false));
        // Only the joiner's own Joined: no `joined` event for the others.
        assert_eq!(out.len(), 1, "{out:?}");
    }
    for n in 0..5 {
        let (tx, _rx) = oneshot::channel();
        let publish = Op::Publish(Publish {
            room: Arc::from("quiet-1"),
            from: Arc::from("system"),
            data: Bytes::from(n.to_string()),
            event: None,
            exclude: None,
            privileged: true,
            reply: Reply::Api(tx),
        });
        apply(&mut table, &index, publish);
    }
    let out = apply(&mut table, &index, join(3, "quiet-1", false));
    match &out[..] {
        [(_, Delivery::Joined { admitted, .. })] => {
            let ack = admitted.ack.as_ref().expect("ack");
            assert_eq!(ack.history.len(), 2, "the namespace's history_on_join");
        }
        other => panic!("{other:?}"),
    }
}

#[derive(Debug, Clone)]
enum Action {
    Join { conn: u64, room: u8, granted: bool },
    Create { room: u8, options: RoomOptions },
}

const ROOMS: [&str; 4] = ["team-a", "game-a", "quiet-a", "lobby"];

fn action() -> impl Strategy<Value = Action> {
    let options = (
        any::<Option<bool>>(),
        prop::option::of(1u32..6),
        prop::option::of(0usize..8),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(private, max_members, history, drop)| RoomOptions {
            private,
            max_members,
            history,
            overflow: drop.map(|d| {
                if d {
                    OverflowPolicy::Drop
                } else {
                    OverflowPolicy::Disconnect
                }
            }),
        });
    prop_oneof![
        4 => (0u64..8, 0u8..4, any::<bool>())
            .prop_map(|(conn, room, granted)| Action::Join { conn, room, granted }),
        1 => (0u8..4, options).prop_map(|(room, options)| Action::Create { room, options }),
    ]
}

proptest! {
    /// However rooms are made (joins with and without grants, creates with
    /// any options), a room in a namespace is never looser than it, and no
    /// connection without a grant is ever a member of a private room.
    #[test]
    fn rooms_in_namespaces_never_loosen_and_private_ones_admit_only_grants(
        actions in prop::collection::vec(action(), 1..60),
    ) {
        let index = RoomIndex::new(100);
        let config = config();
        let namespaces = Namespaces::new(&config);
        let mut table = RoomTable::new(0, &config);
        for action in actions {
            let (op, granted) = match action {
                Action::Join { conn, room, granted } => (join(conn, ROOMS[room as usize], granted), granted),
                Action::Create { room, options } => (create(ROOMS[room as usize], options).0, false),
            };
            for (_, delivery) in apply(&mut table, &index, op) {
                if let Delivery::Joined { room, .. } = delivery {
                    let private = index.get(&room).is_some_and(|m| m.private);
                    prop_assert!(granted || !private, "admitted to private {} without a grant", room);
                }
            }
            for room in ROOMS {
                let Some(meta) = index.get(room) else { continue };
                let ns = namespaces.find(room);
                if ns.is_none() {
                    continue;
                }
                let rules = namespaces.rules(ns);
                prop_assert!(meta.private || !rules.private, "{} made public", room);
                prop_assert!(meta.max_members <= rules.max_members, "{} over its cap", room);
                prop_assert_eq!(meta.overflow, rules.overflow);
                let members = meta.members.load(Ordering::Relaxed);
                prop_assert!(members <= meta.max_members);
            }
        }
    }
}
