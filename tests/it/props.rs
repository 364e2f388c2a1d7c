//! Property test of the home shard's room table through the protocol:
//! random interleavings of join, leave, create, delete (HTTP API) and
//! disconnect from several clients at once, against a real broker.
//!
//! The outcome of a race is not predicted; what must hold whatever the
//! interleaving is checked instead: counts within `max_members` and never
//! negative, no connection counted twice, a client's own membership as the
//! server reports it matching what it was told, and at the end an empty,
//! consistent room table (auto-created rooms expired, explicit ones kept
//! with no member).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::harness::*;

/// Rooms the clients fight over, auto-created or created explicitly.
const ROOMS: u8 = 3;
/// `max_members` of every room (auto-created rooms by config).
const CAP: u64 = 2;
/// Concurrent clients: more than `CAP`, so joins race for the last place.
const CLIENTS: usize = 3;
/// `room.empty_ttl_ms` of the broker: auto-created rooms go soon after
/// their last member.
const EMPTY_TTL_MS: u64 = 150;
/// Longest wait for the table to settle at the end.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Op {
    Join(u8),
    Leave(u8),
    Create(u8),
    /// `DELETE /api/rooms/{room}`.
    Delete(u8),
    /// Drop the TCP connection while in rooms, then connect again.
    Disconnect,
}

fn op() -> impl Strategy<Value = Op> {
    let room = 0..ROOMS;
    prop_oneof![
        4 => room.clone().prop_map(Op::Join),
        3 => room.clone().prop_map(Op::Leave),
        1 => room.clone().prop_map(Op::Create),
        1 => room.prop_map(Op::Delete),
        1 => Just(Op::Disconnect),
    ]
}

fn room_name(r: u8) -> String {
    format!("p{r}")
}

/// What one client saw that matters at the end.
#[derive(Default)]
struct Seen {
    /// Rooms this client created (acknowledged `create`).
    created: BTreeSet<u8>,
    /// Rooms this client deleted (200 from the API).
    deleted: BTreeSet<u8>,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        max_shrink_iters: 32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn room_table_holds_under_concurrent_join_leave_create_delete(
        clients in prop::collection::vec(prop::collection::vec(op(), 1..12), CLIENTS)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(run_case(clients));
    }
}

async fn run_case(clients: Vec<Vec<Op>>) {
    let broker = TestBroker::new()
        .shards(2)
        .with(|c| {
            c.room.default_max_members = CAP as u32;
            c.room.empty_ttl_ms = EMPTY_TTL_MS;
        })
        .start();
    // A room no client may delete is one whose membership each client can
    // check exactly against what it was told.
    let deletable: BTreeSet<u8> = clients
        .iter()
        .flatten()
        .filter_map(|op| match op {
            Op::Delete(r) => Some(*r),
            _ => None,
        })
        .collect();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, ops)| {
            let (addr, url, deletable) = (
                broker.addr,
                broker.url(&format!("user=c{i}")),
                deletable.clone(),
            );
            tokio::spawn(async move { run_client(addr, &url, ops, &deletable).await })
        })
        .collect();
    let mut created = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for t in tasks {
        let seen = t.await.expect("client task");
        created.extend(seen.created);
        deleted.extend(seen.deleted);
    }
    settle(broker.addr, &created, &deleted).await;
}

/// One client's ops, each followed by checks of the room it touched.
async fn run_client(addr: SocketAddr, url: &str, ops: Vec<Op>, deletable: &BTreeSet<u8>) -> Seen {
    let mut seen = Seen::default();
    let mut client = connect(url).await;
    // Rooms this connection is in, as far as its acks tell.
    let mut mine: BTreeSet<u8> = BTreeSet::new();
    for op in ops {
        let room = match op {
            Op::Join(r) => {
                let reply = client
                    .request(json!({"type":"join","room":room_name(r)}))
                    .await;
                if reply["type"] == "ack" {
                    let members = reply["members"].as_u64().expect("members in join ack");
                    assert!((1..=CAP).contains(&members), "join ack {reply}");
                    mine.insert(r);
                } else {
                    // Join creates a missing room, so the only refusal is a full one.
                    assert_eq!(reply["code"], "room_full", "{reply}");
                    // A rejoin is acknowledged again (unless the room was
                    // deleted under it and filled up since).
                    assert!(
                        !mine.contains(&r) || deletable.contains(&r),
                        "refused a room it is in: {reply}"
                    );
                }
                Some(r)
            }
            Op::Leave(r) => {
                let reply = client
                    .request(json!({"type":"leave","room":room_name(r)}))
                    .await;
                if reply["type"] == "ack" {
                    assert!(mine.contains(&r), "left a room it never joined: {reply}");
                } else {
                    let code = reply["code"].as_str().unwrap_or("");
                    assert!(code == "not_member" || code == "room_not_found", "{reply}");
                    // Only a delete by the API may take a member out.
                    assert!(
                        !mine.contains(&r) || deletable.contains(&r),
                        "lost membership: {reply}"
                    );
                }
                mine.remove(&r);
                Some(r)
            }
            Op::Create(r) => {
                let reply = client
                    .request(json!({"type":"create","room":room_name(r),"max_members":CAP}))
                    .await;
                if reply["type"] == "ack" {
                    seen.created.insert(r);
                } else {
                    assert_eq!(reply["code"], "room_exists", "{reply}");
                }
                Some(r)
            }
            Op::Delete(r) => {
                let path = format!("/api/rooms/{}", room_name(r));
                let (status, body) = http(addr, "DELETE", &path, &[], None).await;
                match status {
                    200 => {
                        seen.deleted.insert(r);
                    }
                    404 => assert_eq!(body["error"]["code"], "room_not_found", "{body}"),
                    other => panic!("DELETE: {other} {body}"),
                }
                mine.remove(&r);
                Some(r)
            }
            Op::Disconnect => {
                drop(client);
                client = connect(url).await;
                mine.clear();
                None
            }
        };
        check_presence(&mut client);
        if let Some(r) = room {
            check_room(addr, r, &client, &mine, deletable).await;
        }
    }
    check_presence(&mut client);
    seen
}

async fn connect(url: &str) -> Client {
    let mut c = Client::connect(url).await;
    let welcome = c.recv().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    c.conn = welcome["conn"].as_u64().expect("conn id");
    c
}

/// Presence events read so far carry counts within the cap: a `joined`
/// counts the joiner and the receiver, a `left` at least the receiver.
fn check_presence(client: &mut Client) {
    for frame in client.take_backlog() {
        let members = frame["members"].as_u64();
        match frame["type"].as_str() {
            Some("joined") => assert!(members.is_some_and(|m| (2..=CAP).contains(&m)), "{frame}"),
            Some("left") => assert!(members.is_some_and(|m| (1..CAP).contains(&m)), "{frame}"),
            _ => {}
        }
    }
}

/// `GET /api/rooms/{room}`: the count matches the member list, no
/// connection is listed twice, the cap holds, and this client is listed
/// exactly when it is a member (unless the room may have been deleted under
/// it).
async fn check_room(
    addr: SocketAddr,
    r: u8,
    client: &Client,
    mine: &BTreeSet<u8>,
    deletable: &BTreeSet<u8>,
) {
    let (status, details) = room_details(addr, &room_name(r)).await;
    if status == 404 {
        assert!(
            !mine.contains(&r) || deletable.contains(&r),
            "room {r} vanished under a member"
        );
        return;
    }
    assert_eq!(status, 200, "{details}");
    let conns = member_conns(&details);
    let members = details["members"].as_u64().expect("members");
    assert_eq!(
        members,
        conns.len() as u64,
        "a connection counted twice or lost: {details}"
    );
    assert!(members <= CAP, "cap exceeded: {details}");
    let listed = conns.contains(&client.conn);
    if !deletable.contains(&r) {
        assert_eq!(
            listed,
            mine.contains(&r),
            "conn {} membership: {details}",
            client.conn
        );
    } else if listed {
        assert!(mine.contains(&r), "listed without joining: {details}");
    }
}

/// The distinct connections of a room's member list (a duplicate shrinks
/// the set, so the count check catches it).
fn member_conns(details: &Value) -> BTreeSet<u64> {
    details["member_list"]
        .as_array()
        .expect("member_list")
        .iter()
        .map(|m| m["conn"].as_u64().expect("conn"))
        .collect()
}

/// `GET /api/rooms/{room}`.
async fn room_details(addr: SocketAddr, room: &str) -> (u16, Value) {
    http(addr, "GET", &format!("/api/rooms/{room}"), &[], None).await
}

/// `GET /api/rooms` by room name.
async fn room_list(addr: SocketAddr) -> BTreeMap<String, Value> {
    let (status, list) = http(addr, "GET", "/api/rooms", &[], None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("room list")
        .iter()
        .map(|r| (r["room"].as_str().expect("room").to_string(), r.clone()))
        .collect()
}

/// After every client closed: no connection, no member anywhere, every
/// auto-created room expired, and the explicit rooms still there.
async fn settle(addr: SocketAddr, created: &BTreeSet<u8>, deleted: &BTreeSet<u8>) {
    let started = tokio::time::Instant::now();
    let (stats, rooms) = loop {
        let (_, stats) = http(addr, "GET", "/api/stats", &[], None).await;
        let rooms = room_list(addr).await;
        // Settled: every connection gone and only explicit rooms left.
        let mut auto_left = false;
        for name in rooms.keys() {
            let (_, details) = room_details(addr, name).await;
            auto_left |= details["explicit"] != true;
        }
        // The index and the list agree (a room may expire between them).
        let agree = stats["rooms"].as_u64() == Some(rooms.len() as u64);
        if (stats["connections"] == 0 && !auto_left && agree) || started.elapsed() > SETTLE {
            break (stats, rooms);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stats["connections"], 0, "{stats}");
    for shard in stats["shards"].as_array().expect("shards") {
        assert_eq!(shard["rooms_with_members"], 0, "{stats}");
        assert_eq!(shard["queued_frames"], 0, "{stats}");
    }
    for r in 0..ROOMS {
        let name = room_name(r);
        match rooms.get(&name) {
            Some(entry) => {
                assert!(
                    created.contains(&r),
                    "auto-created room {name} did not expire: {entry}"
                );
                assert_eq!(entry["members"], 0, "{entry}");
                let (status, details) = room_details(addr, &name).await;
                assert_eq!(status, 200);
                assert_eq!(details["explicit"], true, "{details}");
                assert_eq!(details["members"], 0, "{details}");
                assert!(member_conns(&details).is_empty(), "{details}");
            }
            // Created and never deleted: it must still be there.
            None => assert!(
                !created.contains(&r) || deleted.contains(&r),
                "explicit room {name} vanished"
            ),
        }
    }
    assert_eq!(
        rooms.len() as u64,
        stats["rooms"].as_u64().expect("rooms"),
        "{stats}"
    );
}
