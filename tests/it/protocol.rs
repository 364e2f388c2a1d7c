//! Every client frame type and its replies, over a real connection.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn welcome_join_publish_receive() {
    let broker = TestBroker::new().start();
    let mut alice = broker.connect("user=alice&name=Alice%20A").await;
    let w = alice.recv().await;
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["user"], "alice");
    assert_eq!(w["heartbeat_ms"], 25000);
    assert!(w["node"].as_str().is_some());
    let mut bob = broker.user("bob").await;
    let a = alice.join("lobby").await;
    assert_eq!(a["room"], "lobby");
    assert_eq!(a["seq"], 0);
    assert_eq!(a["members"], 1);
    assert_eq!(a["history"], json!([]));
    bob.join("lobby").await;
    let joined = alice.recv_type("joined").await;
    assert_eq!(joined["user"], "bob");
    assert_eq!(joined["members"], 2);
    let ack = bob
        .ok(json!({"type":"publish","room":"lobby","data":{"text":"hi"}}))
        .await;
    assert_eq!(ack["seq"], 1);
    for c in [&mut alice, &mut bob] {
        let m = c.recv_type("message").await;
        assert_eq!(m["room"], "lobby");
        assert_eq!(m["seq"], 1);
        assert_eq!(m["from"], "bob");
        assert_eq!(m["data"], json!({"text":"hi"}));
        assert!(m["ts"].as_u64().is_some());
    }
}

#[tokio::test]
async fn anonymous_users_get_anon_ids() {
    let broker = TestBroker::new().start();
    let mut c = broker.connect("").await;
    let w = c.recv().await;
    assert_eq!(w["user"], format!("anon-{}", w["conn"]));
}

#[tokio::test]
async fn ping_pong_and_errors_without_id() {
    let broker = TestBroker::new().start();
    let mut c = broker.user("u").await;
    let pong = c.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.recv().await, json!({"type":"pong"}));
    c.send(json!({"type":"publish","room":"nope","data":1}))
        .await;
    let e = c.recv().await;
    assert_eq!(e["code"], "room_not_found");
    assert!(e.get("id").is_none());
}

#[tokio::test]
async fn shape_errors() {
    let broker = TestBroker::new().start();
    let mut c = broker.user("u").await;
    c.send_raw(tokio_tungstenite::tungstenite::Message::text("not json"))
        .await;
    assert_eq!(c.recv().await["code"], "bad_request");
    c.err(json!({"type":"dance"}), "unknown_type").await;
    c.err(
        json!({"type":"join","room":"a","colour":"red"}),
        "bad_request",
    )
    .await;
    c.err(json!({"type":"join"}), "bad_request").await;
    c.err(json!({"type":"join","room":"has space"}), "bad_request")
        .await;
    c.err(json!({"type":"join","room":"x".repeat(129)}), "bad_request")
        .await;
    c.send_raw(tokio_tungstenite::tungstenite::Message::binary(vec![
        1, 2, 3,
    ]))
    .await;
    assert_eq!(c.recv().await["code"], "bad_request");
    // The connection is still fine.
    c.join("ok").await;
}

#[tokio::test]
async fn state_errors() {
    let broker = TestBroker::new().start();
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.err(
        json!({"type":"publish","room":"r","data":1}),
        "room_not_found",
    )
    .await;
    a.err(json!({"type":"leave","room":"r"}), "room_not_found")
        .await;
    a.err(json!({"type":"members","room":"r"}), "room_not_found")
        .await;
    a.err(
        json!({"type":"join","room":"r","create":false}),
        "room_not_found",
    )
    .await;
    a.ok(json!({"type":"create","room":"r"})).await;
    a.err(json!({"type":"create","room":"r"}), "room_exists")
        .await;
    b.err(json!({"type":"publish","room":"r","data":1}), "not_member")
        .await;
    b.err(json!({"type":"leave","room":"r"}), "not_member")
        .await;
    a.err(json!({"type":"broadcast","data":1}), "forbidden")
        .await;
    a.ok(json!({"type":"create","room":"small","max_members":1}))
        .await;
    a.join("small").await;
    b.err(json!({"type":"join","room":"small"}), "room_full")
        .await;
}

#[tokio::test]
async fn leave_and_left_events() {
    let broker = TestBroker::new().start();
    let mut a = broker.user("a").await;
    let mut b = broker.connect("user=b&name=Bea").await;
    b.recv().await;
    a.join("r").await;
    b.join("r").await;
    let j = a.recv_type("joined").await;
    assert_eq!(j["name"], "Bea");
    let ack = b.ok(json!({"type":"leave","room":"r"})).await;
    assert_eq!(ack["room"], "r");
    let left = a.recv_type("left").await;
    assert_eq!(
        (left["user"].clone(), left["members"].clone()),
        (json!("b"), json!(1))
    );
    // b no longer receives the room.
    a.ok(json!({"type":"publish","room":"r","data":2})).await;
    b.silent(Duration::from_millis(200)).await;
    // Closing a connection leaves every room.
    b.join("r").await;
    a.recv_type("joined").await;
    drop(b);
    let left = a.recv_type("left").await;
    assert_eq!(left["user"], "b");
}

#[tokio::test]
async fn rejoin_is_acked_without_event() {
    let broker = TestBroker::new().start();
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.join("r").await;
    b.join("r").await;
    a.recv_type("joined").await;
    let again = b.join("r").await;
    assert_eq!(again["members"], 2);
    a.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn members_list() {
    let broker = TestBroker::new()
        .with(|c| c.limits.max_presence_list = 2)
        .start();
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut c = broker.connect(&format!("user=u{i}&name=N{i}")).await;
        c.recv().await;
        c.join("r").await;
        clients.push(c);
    }
    let list = clients[0].ok(json!({"type":"members","room":"r"})).await;
    assert_eq!(list["total"], 3);
    assert_eq!(list["members"].as_array().map(Vec::len), Some(2));
    let m = &list["members"][0];
    assert!(m["conn"].as_u64().is_some() && m["user"].as_str().is_some());
}

#[tokio::test]
async fn exclude_self_and_publisher_copy() {
    let broker = TestBroker::new().start();
    let mut a = broker.user("a").await;
    let mut b = broker.user("b").await;
    a.join("r").await;
    b.join("r").await;
    a.recv_type("joined").await;
    a.ok(json!({"type":"publish","room":"r","data":1,"exclude_self":true}))
        .await;
    assert_eq!(b.recv_type("message").await["data"], 1);
    a.silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn direct_messages_reach_every_connection_of_a_user() {
    let broker = TestBroker::new().shards(4).start();
    let mut sender = broker.user("s").await;
    let mut copies = Vec::new();
    for _ in 0..6 {
        copies.push(broker.user("target").await);
    }
    let ack = sender
        .ok(json!({"type":"send","to":"target","data":{"n":1}}))
        .await;
    assert_eq!(ack["to"], "target");
    for c in &mut copies {
        let d = c.recv_type("direct").await;
        assert_eq!(
            (d["from"].clone(), d["data"].clone()),
            (json!("s"), json!({"n":1}))
        );
    }
    // A user with no connection: not an error.
    sender
        .ok(json!({"type":"send","to":"nobody","data":1}))
        .await;
}

#[tokio::test]
async fn broadcast_needs_the_right_and_reaches_everyone() {
    use shardcast::perms::Perm;
    let broker = TestBroker::new()
        .shards(3)
        .with(|c| c.auth.default_perms.push(Perm::Broadcast))
        .start();
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(broker.user(&format!("u{i}")).await);
    }
    clients[0]
        .ok(json!({"type":"broadcast","data":"all"}))
        .await;
    for c in &mut clients {
        let b = c.recv_type("broadcast").await;
        assert_eq!(
            (b["from"].clone(), b["data"].clone()),
            (json!("u0"), json!("all"))
        );
    }
}

/// A broker whose rooms keep 5 messages and give 3 to a join without since.
fn history_5_on_join_3() -> Running {
    TestBroker::new()
        .with(|c| {
            c.room.history = 5;
            c.room.history_on_join = 3;
        })
        .start()
}

#[tokio::test]
async fn history_on_join_and_recovery() {
    let broker = history_5_on_join_3();
    let mut a = broker.user("a").await;
    a.join("r").await;
    a.publish_n("r", 8).await;
    let mut b = broker.user("b").await;
    let ack = b.join("r").await;
    assert_eq!(ack["seq"], 8);
    let seqs: Vec<u64> = ack["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![6, 7, 8]);
    assert!(ack.get("recovered").is_none());
    let mut c = broker.user("c").await;
    let ack = c.ok(json!({"type":"join","room":"r","since":5})).await;
    assert_eq!(ack["history"].as_array().map(Vec::len), Some(3));
    assert_eq!(ack["recovered"], true);
    let mut d = broker.user("d").await;
    let ack = d.ok(json!({"type":"join","room":"r","since":1})).await;
    assert_eq!(ack["history"].as_array().map(Vec::len), Some(5));
    assert_eq!(ack["recovered"], false);
}

#[tokio::test]
async fn drop_room_options_and_create_rights() {
    use shardcast::perms::Perm;
    let broker = TestBroker::new()
        .with(|c| c.auth.default_perms = vec![Perm::Publish])
        .start();
    let mut a = broker.user("a").await;
    a.err(json!({"type":"create","room":"r"}), "forbidden")
        .await;
    let e = a.err(json!({"type":"join","room":"r"}), "forbidden").await;
    assert!(e["message"].as_str().is_some_and(|m| m.contains("create")));
    a.err(json!({"type":"members","room":"r"}), "forbidden")
        .await;
    a.err(json!({"type":"send","to":"b","data":1}), "forbidden")
        .await;
}

#[tokio::test]
async fn rooms_per_connection_and_max_rooms() {
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.max_rooms_per_connection = 2;
            c.limits.max_rooms = 3;
        })
        .start();
    let mut a = broker.user("a").await;
    a.join("r1").await;
    a.join("r2").await;
    a.join("r2").await; // already a member: fine
    a.err(json!({"type":"join","room":"r3"}), "too_many_rooms")
        .await;
    let mut b = broker.user("b").await;
    b.join("r3").await;
    b.err(json!({"type":"join","room":"r4"}), "too_many_rooms")
        .await;
}

#[tokio::test]
async fn rate_limit() {
    let broker = TestBroker::new()
        .with(|c| {
            c.limits.publish_rate_per_sec = 1;
            c.limits.publish_burst = 2;
        })
        .start();
    let mut a = broker.user("a").await;
    a.join("r").await;
    a.ok(json!({"type":"publish","room":"r","data":1})).await;
    a.ok(json!({"type":"publish","room":"r","data":2})).await;
    a.err(
        json!({"type":"publish","room":"r","data":3}),
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn auto_created_rooms_expire_when_empty() {
    let broker = TestBroker::new()
        .with(|c| c.room.empty_ttl_ms = 100)
        .start();
    let mut a = broker.user("a").await;
    a.join("temp").await;
    a.ok(json!({"type":"create","room":"kept"})).await;
    a.ok(json!({"type":"leave","room":"temp"})).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    a.err(json!({"type":"members","room":"temp"}), "room_not_found")
        .await;
    a.ok(json!({"type":"members","room":"kept"})).await;
    assert_eq!(broker.broker().rooms(), 1);
}

#[tokio::test]
async fn health_and_unknown_paths() {
    let broker = TestBroker::new().start();
    let (status, _) = http_get(broker.addr, "/healthz HTTP/1.1").await;
    assert_eq!(status, 200);
    let (status, _) = http_get(broker.addr, "/readyz HTTP/1.1").await;
    assert_eq!(status, 200);
    let (status, _) = http_get(broker.addr, "/nope HTTP/1.1").await;
    assert_eq!(status, 404);
    let (status, text) = http_get(broker.addr, "/ws HTTP/1.1").await;
    assert_eq!(status, 400);
    assert_eq!(http_body(&text)["error"]["code"], "bad_request");
}

#[tokio::test]
async fn frames_take_effect_in_the_order_sent() {
    let broker = TestBroker::new().shards(4).start();
    for round in 0..10 {
        let mut c = broker.user(&format!("p{round}")).await;
        let room = format!("pipe-{round}");
        // No waiting between frames: join, publish, leave, publish.
        c.send(json!({"type":"join","room":room,"id":1})).await;
        c.send(json!({"type":"publish","room":room,"data":"x","id":2}))
            .await;
        c.send(json!({"type":"leave","room":room,"id":3})).await;
        c.send(json!({"type":"publish","room":room,"data":"y","id":4}))
            .await;
        let mut replies = std::collections::BTreeMap::new();
        while replies.len() < 4 {
            let v = c.recv().await;
            if let Some(id) = v["id"].as_u64() {
                replies.insert(id, v);
            }
        }
        assert_eq!(replies[&1]["type"], "ack", "{:?}", replies);
        assert_eq!(replies[&2]["type"], "ack", "{:?}", replies);
        assert_eq!(replies[&2]["seq"], 1);
        assert_eq!(replies[&3]["type"], "ack", "{:?}", replies);
        assert_eq!(replies[&4]["code"], "not_member", "{:?}", replies);
    }
}

#[tokio::test]
async fn reserved_user_and_protocol_version() {
    let broker = TestBroker::new().start();
    for (query, needle) in [("user=system", "reserved"), ("v=2", "version")] {
        let (status, body) = broker.refused(query).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (400, json!("bad_request"))
        );
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "{message}");
    }
    let mut c = broker.connect("v=1&user=ok").await;
    assert_eq!(c.recv().await["type"], "welcome");
}

#[tokio::test]
async fn rights_are_checked_before_state() {
    use shardcast::perms::Perm;
    let broker = TestBroker::new()
        .with(|c| {
            c.auth.default_perms = vec![Perm::Publish];
            c.limits.max_rooms_per_connection = 1;
        })
        .start();
    let mut admin_made = broker.user("x").await;
    // No `create` right: a missing room is `forbidden`, even when the
    // connection is also at its room limit.
    admin_made
        .err(json!({"type":"join","room":"nope"}), "forbidden")
        .await;
    // Without create the right is not needed: plain `room_not_found`.
    admin_made
        .err(
            json!({"type":"join","room":"nope","create":false}),
            "room_not_found",
        )
        .await;
}

#[tokio::test]
async fn history_is_bounded_in_bytes() {
    let broker = TestBroker::new()
        .with(|c| {
            c.room.history = 100;
            c.room.history_max_bytes = 2_000;
        })
        .start();
    let mut a = broker.user("a").await;
    a.join("r").await;
    for _ in 0..10 {
        a.ok(json!({"type":"publish","room":"r","data":"h".repeat(500)}))
            .await;
    }
    let mut b = broker.user("b").await;
    let ack = b.join("r").await;
    let kept = ack["history"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        (1..=3).contains(&kept),
        "kept {kept} messages of ~560 bytes under 2000"
    );
    assert_eq!(ack["history"][kept - 1]["seq"], 10);
}

#[tokio::test]
async fn a_second_broker_cannot_share_the_port() {
    let broker = TestBroker::new().start();
    let addr = broker.addr.to_string();
    let config = {
        let mut c = shardcast::Config::load_from(None, &[], &shardcast::Overrides::default())
            .expect("config");
        c.server.listen = addr;
        c
    };
    match shardcast::Broker::start(config) {
        Err(e) => assert!(e.to_string().contains("cannot listen"), "{e}"),
        Ok(b) => {
            b.shutdown();
            panic!("a second broker bound the same port");
        }
    }
}

#[tokio::test]
async fn private_rooms_need_a_grant_and_hide_their_members() {
    use shardcast::perms::Perm;
    let broker = TestBroker::new()
        .with(|c| c.limits.max_rooms_per_connection = 1)
        .start();
    let mut a = broker.user("a").await;
    a.ok(json!({"type":"create","room":"secret","private":true}))
        .await;
    a.join("open").await;
    // Rights before state: forbidden, although `a` is also at its room limit.
    let e = a
        .err(json!({"type":"join","room":"secret"}), "forbidden")
        .await;
    assert!(e["message"].as_str().is_some_and(|m| m.contains("private")));
    a.err(json!({"type":"members","room":"secret"}), "forbidden")
        .await;
    drop(a);
    let admin_broker = TestBroker::new()
        .with(|c| c.auth.default_perms.push(Perm::Admin))
        .start();
    let mut admin = admin_broker.user("root").await;
    admin
        .ok(json!({"type":"create","room":"secret","private":true}))
        .await;
    admin.join("secret").await;
    let list = admin.ok(json!({"type":"members","room":"secret"})).await;
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn join_acks_carry_the_epoch_and_recovery_honours_it_across_incarnations() {
    let broker = history_5_on_join_3();
    let mut a = broker.connect("user=a").await;
    assert_eq!(a.recv().await["protocol"], "1.1");
    let epoch = epoch_of(&a.join("r").await);
    a.publish_n("r", 4).await;
    // Rejoining with since and the room's epoch recovers, as v1 would.
    let mut b = broker.user("b").await;
    let ack = b
        .ok(json!({"type":"join","room":"r","since":2,"epoch":epoch}))
        .await;
    assert_eq!(
        (ack["recovered"].clone(), ack["epoch"].clone()),
        (json!(true), json!(epoch))
    );
    assert_eq!(history_seqs(&ack), vec![3, 4]);
    let again = a
        .ok(json!({"type":"join","room":"r","since":4,"epoch":epoch}))
        .await;
    assert_eq!(again["recovered"], true, "{again}");
    // since without epoch keeps the v1 meaning.
    let v1 = b.ok(json!({"type":"join","room":"r","since":1})).await;
    assert_eq!(
        (v1["recovered"].clone(), history_seqs(&v1)),
        (json!(true), vec![2, 3, 4])
    );
    // The API's room details show the epoch too.
    let (status, details) = http(broker.addr, "GET", "/api/rooms/r", &[], None).await;
    assert_eq!((status, details["epoch"].clone()), (200, json!(epoch)));
    // Deleted and made again: the old epoch is never recovered.
    remade_room_is_not_recovered(broker.addr, &mut a, &mut b, ("r", &epoch, 4, 3)).await;
    // Message frames carry no epoch.
    let m = a.recv_type("message").await;
    assert!(m.get("epoch").is_none(), "{m}");
}

#[tokio::test]
async fn an_expired_room_comes_back_with_a_new_epoch() {
    let broker = TestBroker::new()
        .with(|c| c.room.empty_ttl_ms = 100)
        .start();
    let mut a = broker.user("a").await;
    let first = epoch_of(&a.join("temp").await);
    a.ok(json!({"type":"publish","room":"temp","data":1})).await;
    a.ok(json!({"type":"leave","room":"temp"})).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let ack = a
        .ok(json!({"type":"join","room":"temp","since":1,"epoch":first}))
        .await;
    assert_ne!(epoch_of(&ack), first);
    assert_eq!(
        (ack["seq"].clone(), ack["recovered"].clone()),
        (json!(0), json!(false))
    );
}
