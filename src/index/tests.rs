//! Unit tests of the connection caps (under threads, per IP, per shard,
//! handshakes) and the user index. The room index's are `rooms_tests.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::error::ErrorCode;

#[test]
fn caps_never_overshoot_under_threads() {
    let caps = Arc::new(ConnCaps::new(2, 50, 0, 0));
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let caps = caps.clone();
            let admitted = &admitted;
            s.spawn(move || {
                for _ in 0..100 {
                    if caps
                        .try_acquire(t % 2, IpAddr::V4(Ipv4Addr::LOCALHOST))
                        .is_ok()
                    {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 50);
    assert_eq!(caps.total(), 50);
}

#[test]
fn per_ip_cap_and_release() {
    let caps = ConnCaps::new(1, 100, 0, 2);
    let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert!(caps.try_acquire(0, a).is_ok());
    assert!(caps.try_acquire(0, a).is_ok());
    let err = caps.try_acquire(0, a).expect_err("cap");
    assert_eq!(err.code, ErrorCode::TooManyConnections);
    assert!(caps.try_acquire(0, b).is_ok());
    caps.release(0, a);
    assert!(caps.try_acquire(0, a).is_ok());
    assert_eq!(caps.total(), 3);
}

#[test]
fn handshakes_count_with_open_connections() {
    let caps = ConnCaps::new(1, 3, 0, 2);
    let a = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    assert!(caps.try_acquire(0, a).is_ok());
    assert!(caps.try_handshake(a).is_ok());
    // a: one open + one handshake = its cap of 2.
    assert_eq!(
        caps.try_handshake(a).expect_err("ip").code,
        ErrorCode::TooManyConnections
    );
    assert!(caps.try_handshake(b).is_ok());
    // 1 open + 2 handshakes = the global cap of 3.
    assert_eq!(
        caps.try_handshake(b).expect_err("global").code,
        ErrorCode::ServerFull
    );
    caps.end_handshake(a);
    caps.end_handshake(b);
    assert_eq!(caps.handshakes(), 0);
    assert!(caps.try_handshake(a).is_ok());
}

#[test]
fn shard_cap() {
    let caps = ConnCaps::new(2, 100, 1, 0);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert!(caps.try_acquire(0, ip).is_ok());
    assert_eq!(
        caps.try_acquire(0, ip).expect_err("shard").code,
        ErrorCode::ServerFull
    );
    assert!(caps.try_acquire(1, ip).is_ok());
    assert_eq!(caps.total(), 2);
}

#[test]
fn user_index_counts_and_forgets() {
    let users = UserIndex::new();
    let u: Arc<str> = Arc::from("u");
    assert!(users.try_connect(&u, 2));
    assert!(users.try_connect(&u, 2));
    assert!(!users.try_connect(&u, 2));
    users.attach(&u, 3);
    assert_eq!(users.shards("u"), 1 << 3);
    users.disconnect(&u);
    users.disconnect(&u);
    assert_eq!(users.len(), 1);
    users.detach(&u, 3);
    assert!(users.is_empty());
}
