//! Unit tests of the room index: `max_rooms`, and the creation quotas
//! counting live rooms and undone on refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::*;
use crate::config::OverflowPolicy;
use crate::error::{ErrorCode, Refusal};

fn meta_of(creator: Option<Creator>) -> Arc<RoomMeta> {
    Arc::new(RoomMeta {
        home: 0,
        private: false,
        max_members: 1,
        overflow: OverflowPolicy::Drop,
        explicit: true,
        members: AtomicU32::new(0),
        users: AtomicU32::new(0),
        seq: AtomicU64::new(0),
        creator,
    })
}

#[test]
fn creation_caps_count_live_rooms_and_undo_on_refusal() {
    let rooms = RoomIndex::with_caps(
        4,
        CreationCaps {
            per_user: 3,
            per_conn: 2,
        },
    );
    let meta = |user: &str, conn: u64| {
        meta_of(Some(Creator {
            user: Arc::from(user),
            conn,
        }))
    };
    let code = |r: Result<(), Refusal>| r.map_err(|e| e.code);
    assert_eq!(code(rooms.insert(Arc::from("a"), meta("u", 1))), Ok(()));
    assert_eq!(code(rooms.insert(Arc::from("b"), meta("u", 1))), Ok(()));
    // The connection is at 2.
    let refused = rooms.insert(Arc::from("c"), meta("u", 1));
    assert_eq!(code(refused), Err(ErrorCode::TooManyRoomsCreated));
    assert_eq!(
        rooms.created_by_user("u"),
        2,
        "the refusal undid the user's raise"
    );
    // Another connection of the user: the user is at 3.
    assert_eq!(code(rooms.insert(Arc::from("c"), meta("u", 2))), Ok(()));
    let refused = rooms.insert(Arc::from("d"), meta("u", 3));
    assert_eq!(code(refused), Err(ErrorCode::TooManyRoomsCreated));
    // The room cap refuses after the quotas passed, and undoes them.
    assert_eq!(code(rooms.insert(Arc::from("d"), meta("v", 4))), Ok(()));
    let refused = rooms.insert(Arc::from("e"), meta("w", 5));
    assert_eq!(code(refused), Err(ErrorCode::TooManyRooms));
    assert_eq!(
        (rooms.created_by_user("w"), rooms.created_by_conn(5)),
        (0, 0)
    );
    // A room that goes gives its creator's quota back.
    rooms.remove("a");
    assert_eq!(
        (rooms.created_by_user("u"), rooms.created_by_conn(1)),
        (2, 1)
    );
    assert_eq!(code(rooms.insert(Arc::from("a2"), meta("u", 1))), Ok(()));
    for room in ["a2", "b", "c", "d"] {
        rooms.remove(room);
    }
    assert!(rooms.by_user.is_empty() && rooms.by_conn.is_empty());
    assert!(rooms.is_empty());
}

#[test]
fn room_cap() {
    let rooms = RoomIndex::new(1);
    let meta = || meta_of(None);
    assert!(rooms.insert(Arc::from("a"), meta()).is_ok());
    let err = rooms.insert(Arc::from("b"), meta()).expect_err("full");
    assert_eq!(err.code, ErrorCode::TooManyRooms);
    rooms.remove("a");
    assert!(rooms.insert(Arc::from("b"), meta()).is_ok());
    assert_eq!(rooms.len(), 1);
}
