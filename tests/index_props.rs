//! Property tests of the shared indexes under concurrency (issue 7, item 2):
//! random interleavings of connects, disconnects, user churn and room
//! create/remove from several threads never exceed a cap and always end
//! consistent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use proptest::prelude::*;
use shardcast::config::OverflowPolicy;
use shardcast::internals::{ConnCaps, RoomIndex, RoomMeta, UserIndex};

#[derive(Debug, Clone)]
enum Op {
    /// Connect from IP `ip` (0..4) on shard `shard` (0..2) as user `user` (0..6).
    Connect { ip: u8, shard: u8, user: u8 },
    /// Drop the held connection at this index (mod held).
    Disconnect(usize),
    /// Create room `room` (0..8) if this thread does not hold it.
    Create(u8),
    /// Remove a room this thread created (index mod created).
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, 0u8..2, 0u8..6).prop_map(|(ip, shard, user)| Op::Connect { ip, shard, user }),
        any::<usize>().prop_map(Op::Disconnect),
        (0u8..8).prop_map(Op::Create),
        any::<usize>().prop_map(Op::Remove),
    ]
}

const MAX_TOTAL: u64 = 12;
const MAX_PER_IP: u32 = 4;
const MAX_PER_USER: u32 = 3;
const MAX_ROOMS: u64 = 5;

fn meta() -> Arc<RoomMeta> {
    Arc::new(RoomMeta {
        home: 0,
        private: false,
        max_members: 1,
        overflow: OverflowPolicy::Drop,
        explicit: true,
        members: AtomicU32::new(0),
        users: AtomicU32::new(0),
        seq: AtomicU64::new(0),
        creator: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn caps_and_indexes_hold_under_concurrency(
        threads in prop::collection::vec(prop::collection::vec(op(), 1..200), 2..4)
    ) {
        let caps = ConnCaps::new(2, MAX_TOTAL, 0, MAX_PER_IP);
        let users = UserIndex::new();
        let rooms = RoomIndex::new(MAX_ROOMS);
        let names: Vec<Arc<str>> = (0..6).map(|u| Arc::from(format!("u{u}"))).collect();
        std::thread::scope(|s| {
            for (t, ops) in threads.iter().enumerate() {
                let (caps, users, rooms, names) = (&caps, &users, &rooms, &names);
                s.spawn(move || {
                    let mut held: Vec<(u8, IpAddr, u8)> = Vec::new();
                    let mut created: Vec<Arc<str>> = Vec::new();
                    for op in ops {
                        match op {
                            Op::Connect { ip, shard, user } => {
                                let addr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip + 1));
                                if caps.try_acquire(*shard as usize, addr).is_err() {
                                    continue;
                                }
                                let name = &names[*user as usize];
                                if !users.try_connect(name, MAX_PER_USER) {
                                    caps.release(*shard as usize, addr);
                                    continue;
                                }
                                // Caps hold at every moment a connection exists.
                                assert!(caps.total() <= MAX_TOTAL);
                                assert!(users.connections(name) <= MAX_PER_USER);
                                held.push((*shard, addr, *user));
                            }
                            Op::Disconnect(i) if !held.is_empty() => {
                                let (shard, addr, user) = held.swap_remove(i % held.len());
                                caps.release(shard as usize, addr);
                                users.disconnect(&names[user as usize]);
                            }
                            Op::Create(r) => {
                                // Room names are per thread: only the home inserts a key.
                                let name: Arc<str> = Arc::from(format!("t{t}-r{r}"));
                                if !created.contains(&name) && rooms.insert(name.clone(), meta()).is_ok() {
                                    assert!(rooms.len() <= MAX_ROOMS);
                                    created.push(name);
                                }
                            }
                            Op::Remove(i) if !created.is_empty() => {
                                let name = created.swap_remove(i % created.len());
                                rooms.remove(&name);
                            }
                            _ => {}
                        }
                    }
                    for (shard, addr, user) in held {
                        caps.release(shard as usize, addr);
                        users.disconnect(&names[user as usize]);
                    }
                    for name in created {
                        rooms.remove(&name);
                    }
                });
            }
        });
        // Everything given back: nothing counted twice, nothing negative.
        prop_assert_eq!(caps.total(), 0);
        prop_assert_eq!(caps.on_shard(0) + caps.on_shard(1), 0);
        prop_assert!(users.is_empty());
        prop_assert_eq!(rooms.len(), 0);
        prop_assert!(rooms.snapshot(usize::MAX).is_empty());
    }
}
