//! Tests of [`RoomTable`]: examples of each op, and a property test that
//! applies random ops (joins, leaves, publishes by members, outsiders and
//! the API, creates, deletes, expiry) and checks what members see.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use tokio::sync::oneshot;

use super::*;
use crate::delivery::Ack;
use crate::index::CreationCaps;
use crate::observe::RoomChange;
use crate::op::Reply;
use crate::ws::encode::text_payload;

const SHARDS: usize = 3;

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    c.server.shards = SHARDS;
    c.room.empty_ttl_ms = 1_000;
    f(&mut c);
    c
}

fn now(at: Instant) -> Now {
    Now {
        instant: at,
        unix_ms: 1,
        stamp_us: 1,
    }
}

fn join(conn: u64, room: &str, id: Option<u64>) -> Op {
    Op::Join(Join {
        origin: Origin { conn, id },
        room: Arc::from(room),
        user: Arc::from(format!("u{conn}")),
        name: None,
        since: None,
        epoch: None,
        create: true,
        may_create: true,
        may_join_private: false,
        info: None,
        list_users: false,
    })
}

/// A join of `conn` as `user` (a Pusher presence member).
fn join_as(conn: u64, room: &str, user: &str, list_users: bool) -> Op {
    Op::Join(Join {
        origin: Origin { conn, id: Some(1) },
        room: Arc::from(room),
        user: Arc::from(user),
        name: None,
        since: None,
        epoch: None,
        create: true,
        may_create: true,
        may_join_private: true,
        info: Some(Arc::new(format!(r#"{{"u":"{user}"}}"#))),
        list_users,
    })
}

fn publish(
    conn: Option<u64>,
    room: &str,
    exclude_self: bool,
) -> (Op, Option<oneshot::Receiver<Result<u64, Refusal>>>) {
    let (reply, rx) = match conn {
        Some(conn) => (Reply::Conn(Origin { conn, id: Some(1) }), None),
        None => {
            let (tx, rx) = oneshot::channel();
            (Reply::Api(tx), Some(rx))
        }
    };
    let op = Op::Publish(Publish {
        room: Arc::from(room),
        from: Arc::from("u"),
        data: Bytes::from_static(b"1"),
        event: None,
        exclude: conn
            .filter(|_| exclude_self)
            .and_then(std::num::NonZeroU64::new),
        privileged: false,
        reply,
    });
    (op, rx)
}

/// The deliveries of one op, without their shards.
fn apply(table: &mut RoomTable, index: &RoomIndex, op: Op, at: Instant) -> Vec<(usize, Delivery)> {
    let mut out = Outbox::new(SHARDS);
    table.apply(index, op, now(at), &mut out);
    out.drain().collect()
}

#[test]
fn a_join_creates_the_room_and_tells_the_other_members() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    let first = apply(&mut table, &index, join(3, "r", Some(1)), t0);
    assert!(
        matches!(&first[..], [(0, Delivery::Joined { conn: 3, .. })]),
        "{first:?}"
    );
    assert!(index.contains("r"));
    let second = apply(&mut table, &index, join(4, "r", None), t0);
    // The joiner's shard (1) gets Joined; the first member's shard (0) the
    // `joined` event, which skips the joiner.
    assert!(matches!(&second[0], (1, Delivery::Joined { conn: 4, .. })));
    assert!(matches!(
        &second[1..],
        [
            (
                0,
                Delivery::Room {
                    seq: 0,
                    exclude: Some(4),
                    ..
                }
            ),
            (1, Delivery::Room { seq: 0, .. })
        ]
    ));
    // Joining again: acknowledged, no event.
    let again = apply(&mut table, &index, join(4, "r", None), t0);
    assert_eq!(again.len(), 1);
}

#[test]
fn a_full_room_refuses_the_next_member() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|c| c.room.default_max_members = 1));
    apply(&mut table, &index, join(1, "r", None), t0);
    let refused = apply(&mut table, &index, join(2, "r", Some(9)), t0);
    match &refused[..] {
        [
            (
                _,
                Delivery::JoinRefused {
                    refusal,
                    id: Some(9),
                    ..
                },
            ),
        ] => {
            assert_eq!(refusal.code, crate::error::ErrorCode::RoomFull)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_private_room_needs_a_grant() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    let options = RoomOptions {
        private: Some(true),
        ..RoomOptions::default()
    };
    let (tx, rx) = oneshot::channel();
    let create = Op::Create {
        room: Arc::from("p"),
        options,
        creator: None,
        reply: Reply::Api(tx),
    };
    apply(&mut table, &index, create, t0);
    assert_eq!(rx.blocking_recv().ok(), Some(Ok(())));
    let refused = apply(&mut table, &index, join(1, "p", None), t0);
    assert!(
        matches!(&refused[..], [(_, Delivery::JoinRefused { refusal, .. })] if refusal.code == crate::error::ErrorCode::Forbidden)
    );
}

#[test]
fn only_members_publish_and_the_api_publishes_anywhere() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    apply(&mut table, &index, join(1, "r", None), t0);
    let (op, _) = publish(Some(2), "r", false);
    let out = apply(&mut table, &index, op, t0);
    assert!(
        matches!(&out[..], [(_, Delivery::Answer { answer: Err(r), .. })] if r.code == crate::error::ErrorCode::NotMember)
    );
    let (op, rx) = publish(None, "r", false);
    let out = apply(&mut table, &index, op, t0);
    assert!(matches!(&out[..], [(1, Delivery::Room { seq: 1, .. })]));
    assert_eq!(rx.and_then(|rx| rx.blocking_recv().ok()), Some(Ok(1)));
    let (op, _) = publish(Some(1), "r", true);
    let out = apply(&mut table, &index, op, t0);
    assert!(matches!(
        &out[0],
        (
            1,
            Delivery::Room {
                seq: 2,
                exclude: Some(1),
                ..
            }
        )
    ));
    assert!(matches!(
        &out[1],
        (
            1,
            Delivery::Answer {
                answer: Ok(Ack::Published { seq: 2, .. }),
                ..
            }
        )
    ));
    let (op, rx) = publish(None, "nowhere", false);
    apply(&mut table, &index, op, t0);
    let refused = rx.and_then(|rx| rx.blocking_recv().ok());
    assert!(matches!(refused, Some(Err(r)) if r.code == crate::error::ErrorCode::RoomNotFound));
}

#[test]
fn a_join_with_since_recovers_exactly() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|c| c.room.history = 3));
    apply(&mut table, &index, join(1, "r", None), t0);
    for _ in 0..5 {
        let (op, _) = publish(None, "r", false);
        apply(&mut table, &index, op, t0);
    }
    let ack_of = |table: &mut RoomTable, since| {
        let op = Op::Join(Join {
            since: Some(since),
            ..match join(2, "r", Some(1)) {
                Op::Join(j) => j,
                _ => unreachable!(),
            }
        });
        match apply(table, &index, op, t0).into_iter().next() {
            Some((_, Delivery::Joined { admitted, .. })) => {
                admitted.ack.map(|a| (a.history.len(), a.recovered))
            }
            other => panic!("{other:?}"),
        }
    };
    // History keeps 3..=5.
    assert_eq!(ack_of(&mut table, 2), Some((3, Some(true))));
    assert_eq!(ack_of(&mut table, 1), Some((3, Some(false))));
    assert_eq!(ack_of(&mut table, 5), Some((0, Some(true))));
    assert_eq!(ack_of(&mut table, 6), Some((0, Some(false))));
}

#[test]
fn a_since_of_another_epoch_is_never_recovered() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|c| c.room.history_on_join = 3));
    apply(&mut table, &index, join(1, "r", None), t0);
    for _ in 0..10 {
        let (op, _) = publish(None, "r", false);
        apply(&mut table, &index, op, t0);
    }
    let ack_of = |table: &mut RoomTable, since, epoch: Option<&str>| {
        let op = Op::Join(Join {
            since: Some(since),
            epoch: epoch.map(Arc::from),
            ..match join(2, "r", Some(1)) {
                Op::Join(j) => j,
                _ => unreachable!(),
            }
        });
        match apply(table, &index, op, t0).into_iter().next() {
            Some((_, Delivery::Joined { admitted, .. })) => admitted.ack.expect("ack"),
            other => panic!("{other:?}"),
        }
    };
    let current = ack_of(&mut table, 10, None).epoch;
    // Like a join without since (the last history_on_join messages), but
    // said to be unrecovered, even where the v1 rule would hold.
    let stale = ack_of(&mut table, 10, Some("0123456789abcdef"));
    assert_eq!((stale.history.len(), stale.recovered), (3, Some(false)));
    assert!(String::from_utf8_lossy(&stale.history[0]).contains("\"seq\":8,"));
    let same = ack_of(&mut table, 8, Some(&current));
    assert_eq!((same.history.len(), same.recovered), (2, Some(true)));
    // Without an epoch, since keeps its v1 meaning.
    assert_eq!(ack_of(&mut table, 8, None).recovered, Some(true));
    // Deleted and made again: another incarnation, another epoch.
    let (tx, _rx) = oneshot::channel();
    apply(
        &mut table,
        &index,
        Op::Delete {
            room: Arc::from("r"),
            reply: tx,
        },
        t0,
    );
    apply(&mut table, &index, join(1, "r", None), t0);
    assert_ne!(ack_of(&mut table, 0, None).epoch, current);
}

#[test]
fn empty_auto_created_rooms_expire_and_explicit_ones_stay() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    apply(&mut table, &index, join(1, "auto", None), t0);
    let (tx, _rx) = oneshot::channel();
    let create = Op::Create {
        room: Arc::from("kept"),
        options: RoomOptions::default(),
        creator: None,
        reply: Reply::Api(tx),
    };
    apply(&mut table, &index, create, t0);
    let leave = Op::Leave {
        origin: Origin { conn: 1, id: None },
        room: Arc::from("auto"),
    };
    apply(&mut table, &index, leave, t0);
    table.expire(&index, t0 + Duration::from_millis(999));
    assert!(index.contains("auto"));
    table.expire(&index, t0 + Duration::from_millis(1_000));
    assert!(!index.contains("auto") && index.contains("kept"));
    assert_eq!(table.len(), 1);
}

#[test]
fn rooms_made_count_against_their_creator_until_they_go() {
    let caps = CreationCaps {
        per_user: 0,
        per_conn: 2,
    };
    let (index, t0) = (RoomIndex::with_caps(100, caps), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    for room in ["a", "b"] {
        let out = apply(&mut table, &index, join(3, room, None), t0);
        assert!(
            matches!(&out[..], [(_, Delivery::Joined { .. })]),
            "{out:?}"
        );
    }
    let refused = apply(&mut table, &index, join(3, "c", Some(9)), t0);
    assert!(
        matches!(&refused[..], [(_, Delivery::JoinRefused { refusal, id: Some(9), .. })]
            if refusal.code == crate::error::ErrorCode::TooManyRoomsCreated),
        "{refused:?}"
    );
    // `create` counts too; joining a room someone else made does not.
    let (tx, rx) = oneshot::channel();
    let create = Op::Create {
        room: Arc::from("d"),
        options: RoomOptions::default(),
        creator: Some(Creator {
            user: Arc::from("u3"),
            conn: 3,
        }),
        reply: Reply::Api(tx),
    };
    apply(&mut table, &index, create, t0);
    let refusal = rx.blocking_recv().ok().and_then(Result::err);
    assert_eq!(
        refusal.map(|r| r.code),
        Some(crate::error::ErrorCode::TooManyRoomsCreated)
    );
    apply(&mut table, &index, join(4, "e", None), t0);
    let out = apply(&mut table, &index, join(3, "e", None), t0);
    assert!(
        matches!(&out[..], [(_, Delivery::Joined { .. }), ..]),
        "{out:?}"
    );
    // Room "a" empties and expires: conn 3 may make another.
    let leave = Op::Leave {
        origin: Origin { conn: 3, id: None },
        room: Arc::from("a"),
    };
    apply(&mut table, &index, leave, t0);
    assert_eq!(index.created_by_conn(3), 2, "an empty room still counts");
    table.expire(&index, t0 + Duration::from_millis(1_000));
    assert_eq!(index.created_by_conn(3), 1);
    let out = apply(&mut table, &index, join(3, "c", None), t0);
    assert!(
        matches!(&out[..], [(_, Delivery::Joined { .. })]),
        "{out:?}"
    );
}

#[test]
fn over_the_history_budget_the_largest_rooms_lose_their_oldest_first() {
    let index = RoomIndex::new(100);
    let t0 = Instant::now();
    let mut table = RoomTable::new(
        0,
        &config(|c| c.limits.max_history_bytes_total = (SHARDS * 10_000) as u64),
    );
    for (conn, room) in [(1, "big"), (2, "small")] {
        apply(&mut table, &index, join(conn, room, None), t0);
    }
    let send = |table: &mut RoomTable, conn: u64, room: &str, size: usize| {
        let op = Op::Publish(Publish {
            room: Arc::from(room),
            from: Arc::from("u"),
            data: Bytes::from(vec![b'1'; size]),
            event: None,
            exclude: None,
            privileged: false,
            reply: Reply::Conn(Origin { conn, id: None }),
        });
        apply(table, &index, op, t0);
    };
    for _ in 0..5 {
        send(&mut table, 2, "small", 100);
    }
    let small = table.rooms["small"].history.bytes();
    for _ in 0..40 {
        send(&mut table, 1, "big", 1_000);
        assert!(table.history_bytes() <= 10_000, "{}", table.history_bytes());
    }
    assert!(table.history_trimmed() > 0);
    assert_eq!(
        table.rooms["small"].history.bytes(),
        small,
        "the small room keeps its history"
    );
    let big = &table.rooms["big"].history;
    assert_eq!(big.newest(), Some(40), "the newest message is kept");
    assert!(big.oldest() > Some(1), "the oldest went first");
    // A room that goes takes its bytes with it.
    let (tx, _rx) = oneshot::channel();
    let delete = Op::Delete {
        room: Arc::from("big"),
        reply: tx,
    };
    apply(&mut table, &index, delete, t0);
    assert_eq!(table.history_bytes(), small);
}

#[test]
fn a_sealed_table_sequences_nothing() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    apply(&mut table, &index, join(1, "r", None), t0);
    table.seal();
    let (op, rx) = publish(None, "r", false);
    assert!(apply(&mut table, &index, op, t0).is_empty());
    let refused = rx.and_then(|rx| rx.blocking_recv().ok());
    assert!(matches!(refused, Some(Err(r)) if r.code == crate::error::ErrorCode::Internal));
}

#[test]
fn deleting_closes_the_room_on_its_members_shards() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    apply(&mut table, &index, join(1, "r", None), t0);
    apply(&mut table, &index, join(4, "r", None), t0);
    let (tx, rx) = oneshot::channel();
    let out = apply(
        &mut table,
        &index,
        Op::Delete {
            room: Arc::from("r"),
            reply: tx,
        },
        t0,
    );
    let shards: Vec<usize> = out.iter().map(|(s, _)| *s).collect();
    assert_eq!(shards, vec![1]);
    assert!(matches!(&out[0].1, Delivery::RoomClosed { .. }));
    assert_eq!(rx.blocking_recv().ok(), Some(Ok(())));
    assert!(!index.contains("r"));
}

/// The deliveries and observed changes of one op.
fn apply_observed(
    table: &mut RoomTable,
    index: &RoomIndex,
    op: Op,
    at: Instant,
) -> (Vec<(usize, Delivery)>, Vec<RoomChange>) {
    let mut out = Outbox::new(SHARDS);
    table.apply(index, op, now(at), &mut out);
    let observed = out.take_observed().map(|o| o.change).collect();
    (out.drain().collect(), observed)
}

#[test]
fn presence_is_per_user_and_changes_are_observed_once() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|c| c.room.presence_events = false));
    let (_, seen) = apply_observed(&mut table, &index, join_as(1, "p", "ann", true), t0);
    let ann = || Arc::<str>::from("ann");
    assert_eq!(
        seen,
        vec![RoomChange::Occupied, RoomChange::UserAdded(ann())]
    );
    // Ann's second connection: no new user, and (native events off) the
    // frame it fans out speaks only to other protocols, with no change.
    let (out, seen) = apply_observed(&mut table, &index, join_as(2, "p", "ann", true), t0);
    assert!(seen.is_empty(), "{seen:?}");
    assert!(
        out.iter().all(|(_, d)| !matches!(d, Delivery::Room { .. })),
        "{out:?}"
    );
    // Bob joins: one user added; his ack lists both users, each once.
    let (out, seen) = apply_observed(&mut table, &index, join_as(3, "p", "bob", true), t0);
    assert_eq!(seen, vec![RoomChange::UserAdded(Arc::from("bob"))]);
    let ack = out.iter().find_map(|(_, d)| match d {
        Delivery::Joined { admitted, .. } => admitted.ack.as_ref(),
        _ => None,
    });
    let ack = ack.expect("ack");
    assert_eq!((ack.members, ack.user_count), (3, 2));
    let mut users: Vec<&str> = ack
        .users
        .as_ref()
        .expect("users")
        .iter()
        .map(|u| &*u.user)
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["ann", "bob"]);
    let change = out.iter().find_map(|(_, d)| match d {
        Delivery::Room { frame, .. } => frame.change().cloned(),
        _ => None,
    });
    let change = change.expect("a presence frame for the others");
    assert!(change.joined && change.user_changed && &*change.user == "bob");
    assert!(out.iter().all(|(_, d)| match d {
        Delivery::Room { frame, .. } => frame.native_frame().is_none(),
        _ => true,
    }));
    assert_eq!(
        index
            .get("p")
            .map(|m| m.users.load(std::sync::atomic::Ordering::Relaxed)),
        Some(2)
    );
    // Ann's first connection leaves: she is still there.
    let leave = |conn| Op::Leave {
        origin: Origin { conn, id: None },
        room: Arc::from("p"),
    };
    let (_, seen) = apply_observed(&mut table, &index, leave(1), t0);
    assert!(seen.is_empty(), "{seen:?}");
    let (_, seen) = apply_observed(&mut table, &index, leave(2), t0);
    assert_eq!(seen, vec![RoomChange::UserRemoved(ann())]);
    let (_, seen) = apply_observed(&mut table, &index, leave(3), t0);
    assert_eq!(
        seen,
        vec![
            RoomChange::UserRemoved(Arc::from("bob")),
            RoomChange::Vacated
        ]
    );
}

#[test]
fn a_publish_with_an_event_name_carries_it_and_skips_the_named_connection() {
    let (index, t0) = (RoomIndex::new(100), Instant::now());
    let mut table = RoomTable::new(0, &config(|_| {}));
    apply(&mut table, &index, join(1, "r", None), t0);
    apply(&mut table, &index, join(2, "r", None), t0);
    let (tx, rx) = oneshot::channel();
    let op = Op::Publish(Publish {
        room: Arc::from("r"),
        from: Arc::from("system"),
        data: Bytes::from_static(br#""hi""#),
        event: Some(Arc::new("news-flash".to_string())),
        exclude: std::num::NonZeroU64::new(2),
        privileged: true,
        reply: Reply::Api(tx),
    });
    let out = apply(&mut table, &index, op, t0);
    assert_eq!(rx.blocking_recv().ok(), Some(Ok(1)));
    let Some((_, Delivery::Room { frame, exclude, .. })) = out.first() else {
        panic!("{out:?}");
    };
    assert_eq!(*exclude, Some(2));
    let json: serde_json::Value =
        serde_json::from_slice(&text_payload(frame.native_frame().expect("native"))).expect("json");
    assert_eq!(
        (json["event"].as_str(), json["data"].as_str()),
        (Some("news-flash"), Some("hi"))
    );
}

#[derive(Debug, Clone)]
enum Action {
    Join {
        conn: u64,
        room: u8,
    },
    Leave {
        conn: u64,
        room: u8,
    },
    Publish {
        conn: Option<u64>,
        room: u8,
        exclude_self: bool,
    },
    Create {
        room: u8,
        max: u32,
    },
    Delete {
        room: u8,
    },
    Expire {
        after_ms: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let conn = 0u64..6;
    let room = 0u8..3;
    prop_oneof![
        4 => (conn.clone(), room.clone()).prop_map(|(conn, room)| Action::Join { conn, room }),
        2 => (conn.clone(), room.clone()).prop_map(|(conn, room)| Action::Leave { conn, room }),
        6 => (prop::option::weighted(0.8, conn), room.clone(), any::<bool>())
            .prop_map(|(conn, room, exclude_self)| Action::Publish { conn, room, exclude_self }),
        1 => (room.clone(), 1u32..4).prop_map(|(room, max)| Action::Create { room, max }),
        1 => room.prop_map(|room| Action::Delete { room }),
        1 => (0u64..2_000).prop_map(|after_ms| Action::Expire { after_ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Members see each room's messages gap-free and in order from their
    /// join on, fan-out reaches exactly the shards holding members, and no
    /// room exceeds its cap.
    #[test]
    fn members_see_gap_free_seqs_and_caps_hold(actions in prop::collection::vec(action(), 1..200)) {
        let index = RoomIndex::with_caps(100, CreationCaps { per_user: 3, per_conn: 2 });
        let share = 400;
        let mut table = RoomTable::new(0, &config(|c| {
            c.limits.max_history_bytes_total = (SHARDS * share) as u64;
        }));
        let mut clock = Instant::now();
        // (conn, room) -> next seq it must see; the shards' view of members.
        let mut members: HashMap<(u64, Arc<str>), u64> = HashMap::new();
        let mut caps: HashMap<Arc<str>, u32> = HashMap::new();
        let name = |r: u8| -> Arc<str> { Arc::from(format!("room-{r}")) };
        for a in actions {
            let op = match a {
                Action::Join { conn, room } => join(conn, &name(room), None),
                Action::Leave { conn, room } => Op::Leave { origin: Origin { conn, id: None }, room: name(room) },
                Action::Publish { conn, room, exclude_self } => publish(conn, &name(room), exclude_self).0,
                Action::Create { room, max } => {
                    let (tx, _rx) = oneshot::channel();
                    let options = RoomOptions { max_members: Some(max), ..RoomOptions::default() };
                    Op::Create { room: name(room), options, creator: None, reply: Reply::Api(tx) }
                }
                Action::Delete { room } => {
                    let (tx, _rx) = oneshot::channel();
                    Op::Delete { room: name(room), reply: tx }
                }
                Action::Expire { after_ms } => {
                    clock += Duration::from_millis(after_ms);
                    table.expire(&index, clock);
                    continue;
                }
            };
            for (shard, delivery) in apply(&mut table, &index, op, clock) {
                match delivery {
                    Delivery::Joined { conn, room, .. } => {
                        prop_assert_eq!(shard, shard_of(conn, SHARDS));
                        let seq = room_seq(&index, &room);
                        members.entry((conn, room.clone())).or_insert(seq + 1);
                        let max = index.get(&room).map_or(0, |m| m.max_members);
                        caps.insert(room, max);
                    }
                    Delivery::Left { conn, room, .. } => {
                        prop_assert!(members.remove(&(conn, room)).is_some(), "left without being in");
                    }
                    Delivery::RoomClosed { room, .. } => {
                        members.retain(|(c, r), _| !(r == &room && shard_of(*c, SHARDS) == shard));
                    }
                    Delivery::Room { room, seq, exclude, .. } if seq > 0 => {
                        let here: Vec<u64> = members.keys()
                            .filter(|(c, r)| r == &room && shard_of(*c, SHARDS) == shard)
                            .map(|(c, _)| *c)
                            .collect();
                        prop_assert!(!here.is_empty(), "fan-out to shard {} without members of {}", shard, room);
                        for conn in here {
                            let next = members.get_mut(&(conn, room.clone())).expect("member");
                            prop_assert_eq!(*next, seq, "conn {} in {}", conn, room);
                            *next = seq + 1;
                            let _ = exclude;
                        }
                    }
                    _ => {}
                }
            }
            // Every member's shard got each message: nobody fell behind.
            for ((conn, room), next) in &members {
                prop_assert_eq!(*next, room_seq(&index, room) + 1, "conn {} missed messages of {}", conn, room);
            }
            let mut counts: HashMap<&Arc<str>, u32> = HashMap::new();
            for (_, room) in members.keys() {
                *counts.entry(room).or_default() += 1;
            }
            for (room, n) in counts {
                prop_assert!(n <= caps.get(room).copied().unwrap_or(u32::MAX), "{} over its cap", room);
            }
            prop_assert_eq!(index.len() as usize, table.len());
            // Quotas count exactly the rooms that exist, by their creators.
            let mut made: HashMap<Arc<str>, u32> = HashMap::new();
            for (_, meta) in index.snapshot(1000) {
                if let Some(creator) = &meta.creator {
                    *made.entry(creator.user.clone()).or_default() += 1;
                    prop_assert!(index.created_by_conn(creator.conn) <= 2);
                }
            }
            for (user, n) in &made {
                prop_assert_eq!(index.created_by_user(user), *n);
                prop_assert!(*n <= 3, "{} made {} rooms", user, n);
            }
            // The history budget: the sum is right and within the share.
            let sum: usize = table.rooms.values().map(|r| r.history.bytes()).sum();
            prop_assert_eq!(sum, table.history_bytes());
            prop_assert!(table.history_bytes() <= share, "{} bytes of history", sum);
        }
        let rooms: HashSet<&Arc<str>> = members.keys().map(|(_, r)| r).collect();
        for room in rooms {
            prop_assert!(index.contains(room), "a member of a room that is gone");
        }
    }
}

fn room_seq(index: &RoomIndex, room: &str) -> u64 {
    index
        .get(room)
        .map_or(0, |m| m.seq.load(std::sync::atomic::Ordering::Relaxed))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the order of joins and leaves, each room's user count is
    /// its distinct users, a user is reported added exactly when its first
    /// connection joins and removed exactly when its last leaves, and a
    /// room is reported occupied and vacated alternately.
    #[test]
    fn users_are_counted_and_reported_once_per_user(
        steps in prop::collection::vec((any::<bool>(), 0u64..8, 0u8..3), 1..150)
    ) {
        let index = RoomIndex::new(100);
        let mut table = RoomTable::new(0, &config(|_| {}));
        let t0 = Instant::now();
        // Connection c is user c % 3.
        let user_of = |c: u64| -> Arc<str> { Arc::from(format!("user{}", c % 3)) };
        let name = |r: u8| -> Arc<str> { Arc::from(format!("#1#presence-{r}")) };
        let mut in_room: HashSet<(u64, u8)> = HashSet::new();
        let mut occupied: HashSet<u8> = HashSet::new();
        let mut present: HashSet<(Arc<str>, u8)> = HashSet::new();
        for (joining, conn, r) in steps {
            let op = if joining {
                join_as(conn, &name(r), &user_of(conn), false)
            } else {
                Op::Leave { origin: Origin { conn, id: None }, room: name(r) }
            };
            let was_in = in_room.contains(&(conn, r));
            let (_, seen) = apply_observed(&mut table, &index, op, t0);
            if joining { in_room.insert((conn, r)); } else { in_room.remove(&(conn, r)); }
            let changed = was_in != in_room.contains(&(conn, r));
            for change in seen {
                match change {
                    RoomChange::Occupied => prop_assert!(occupied.insert(r), "occupied twice"),
                    RoomChange::Vacated => prop_assert!(occupied.remove(&r), "vacated twice"),
                    RoomChange::UserAdded(u) => prop_assert!(present.insert((u, r)), "added twice"),
                    RoomChange::UserRemoved(u) => prop_assert!(present.remove(&(u, r)), "removed twice"),
                }
            }
            prop_assert!(changed || joining == was_in, "a change without a reason");
            let users: HashSet<(Arc<str>, u8)> =
                in_room.iter().map(|(c, r)| (user_of(*c), *r)).collect();
            prop_assert_eq!(&users, &present);
            for r in 0..3u8 {
                let distinct = users.iter().filter(|(_, x)| *x == r).count() as u32;
                let counted = index
                    .get(&name(r))
                    .map_or(0, |m| m.users.load(std::sync::atomic::Ordering::Relaxed));
                prop_assert_eq!(counted, distinct, "room {}", r);
                prop_assert_eq!(occupied.contains(&r), distinct > 0);
            }
        }
    }
}
