//! `pusher:signin` (user authentication): the signature over the
//! socket id and `user_data` checked, then the connection's user becomes
//! the app's user `id`.
//!
//! **Invariant:** the user changes only after the signature and
//! `user_data` were checked, and only through [`Shard::rename_user`], so
//! the shard's user tables follow; every refusal is a [`WireError`] with
//! code [`codes::POLICY`].

use std::rc::Rc;
use std::sync::Arc;

use super::PusherConn;
use crate::protocol::json::shallow;
use crate::pusher::names;
use crate::pusher::sign;
use crate::pusher::wire::{WireError, codes};
use crate::shard::Shard;
use crate::shard::conn::Conn;

/// `pusher:signin`: check the signature, then the connection's user is
/// the app's user `id` (what `terminate_connections` names).
pub(super) async fn signin(
    shard: &Shard,
    conn: &Rc<Conn>,
    p: &PusherConn,
    auth: &str,
    user_data: &str,
) -> Result<(), WireError> {
    let refused = |message: String| WireError {
        code: codes::POLICY,
        message,
    };
    sign::check_signin(&p.app.key, &p.app.secret, &p.socket_id, user_data, auth)
        .map_err(|e| refused(e.to_string()))?;
    let max_depth = shard.shared.config.limits.max_json_depth;
    shallow("user_data", user_data.as_bytes(), max_depth).map_err(|r| refused(r.message))?;
    #[derive(serde::Deserialize)]
    struct UserData {
        id: serde_json::Value,
    }
    let data: UserData =
        serde_json::from_str(user_data).map_err(|e| refused(format!("invalid user_data: {e}")))?;
    let id = match data.id {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(refused("user_data.id must be a string".into())),
    };
    if !names::is_valid_user_id(&id) {
        return Err(refused(
            "user_data.id must be 1-128 bytes without control characters".into(),
        ));
    }
    let user: Arc<str> = Arc::from(names::room_of(&p.app.id, &id));
    shard
        .rename_user(conn, user)
        .await
        .map_err(|r| refused(r.message))
}
