//! The Pusher HTTP API under `/apps/{id}`: publish events, query
//! channels and users, terminate a user's connections. Every request is
//! signed (`auth_key`, `auth_timestamp` within 600 s, `auth_version=1.0`,
//! `body_md5`, `auth_signature`, see [`super::sign`]); refusals are plain
//! text with the documented status (400, 401, 404, 413).
//!
//! A front door like the native API: each operation is an [`Op`] on the
//! one route, so it works the same on one node and in a cluster.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::names::{Kind, app_prefix, channel_of, is_valid_channel, is_valid_event, room_of};
use super::{App, Pusher, sign};
use crate::api::ask;
use crate::delivery::RoomDetails;
use crate::error::{ErrorCode, Refusal};
use crate::op::{Audience, Op, Publish, Reply, UserFrame};
use crate::protocol::json::shallow;
use crate::server::{JSON, SYSTEM_USER, respond};
use crate::shard::Shard;

type Body = Full<Bytes>;

/// Most channels `GET /apps/{id}/channels` lists.
pub(crate) const MAX_LISTED_CHANNELS: usize = 10_000;

/// A refusal of this API: its status and why.
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(why: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, why.into())
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status =
            StatusCode::from_u16(r.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError(status, r.message)
    }
}

/// Serve one `/apps/...` request.
pub(crate) async fn handle(
    shard: &Rc<Shard>,
    pusher: &Pusher,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match route(shard, pusher, req).await {
        Ok(value) => respond(StatusCode::OK, JSON, value.to_string()),
        Err(ApiError(status, why)) => {
            tracing::info!(%method, %path, %status, reason = %why, "pusher api request refused");
            respond(status, "text/plain; charset=utf-8", format!("{why}\n"))
        }
    }
}

async fn route(shard: &Shard, pusher: &Pusher, req: Request<Incoming>) -> Result<Value, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (app_id, rest) = match segments.as_slice() {
        ["apps", id, rest @ ..] => (*id, rest),
        _ => return Err(ApiError(StatusCode::NOT_FOUND, "no such path".into())),
    };
    let Some(app) = pusher.by_id(app_id) else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown app {app_id:?}"),
        ));
    };
    let body = crate::api::read_body(shard, req).await?;
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let now_s = crate::protocol::encode::now_ms() / 1000;
    sign::check_request(
        &app.key,
        &app.secret,
        method.as_str(),
        &path,
        &params,
        &body,
        now_s,
    )
    .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let infos = Infos::parse(param("info"));
    match (&method, rest) {
        (&Method::POST, ["events"]) => {
            let event: EventBody = json_body(&body)?;
            let channels = event.channels(pusher.config.max_event_channels)?;
            let info = event.info.as_deref().map(|i| Infos::parse(Some(i)));
            let published = publish(shard, pusher, app, &event, &channels).await?;
            Ok(match info {
                Some(info) if !info.is_empty() => {
                    json!({ "channels": channel_infos(shard, app, &channels, info).await? })
                }
                _ => published,
            })
        }
        (&Method::POST, ["batch_events"]) => {
            let batch: BatchBody = json_body(&body)?;
            let max = pusher.config.max_batch_events;
            if batch.batch.len() > max {
                return Err(ApiError::bad(format!("a batch holds at most {max} events")));
            }
            // Check every event before publishing any.
            for event in &batch.batch {
                event.channels(1)?;
                event.check(pusher, shard.shared.config.limits.max_json_depth)?;
            }
            let mut infos = Vec::with_capacity(batch.batch.len());
            for event in &batch.batch {
                let channels = event.channels(1)?;
                publish(shard, pusher, app, event, &channels).await?;
                let info = Infos::parse(event.info.as_deref());
                infos.push(if info.is_empty() {
                    json!({})
                } else {
                    let mut all = channel_infos(shard, app, &channels, info).await?;
                    all.remove(&channels[0]).unwrap_or_else(|| json!({}))
                });
            }
            let asked = batch.batch.iter().any(|e| e.info.is_some());
            Ok(if asked {
                json!({ "batch": infos })
            } else {
                json!({})
            })
        }
        (&Method::GET, ["channels"]) => {
            let filter = param("filter_by_prefix").unwrap_or("");
            if infos.user_count && !filter.starts_with("presence-") {
                return Err(ApiError::bad(
                    "info=user_count needs filter_by_prefix=presence-",
                ));
            }
            let prefix: Arc<str> = Arc::from(format!("{}{filter}", app_prefix(&app.id)));
            let rooms = ask(shard, |reply| Op::Rooms {
                prefix,
                limit: MAX_LISTED_CHANNELS,
                reply,
            })
            .await?;
            let mut channels = Map::new();
            for counts in rooms {
                let Some((_, channel)) = channel_of(&counts.room) else {
                    continue;
                };
                let mut info = Map::new();
                if infos.user_count {
                    info.insert("user_count".into(), json!(counts.users));
                }
                if infos.subscription_count {
                    info.insert("subscription_count".into(), json!(counts.members));
                }
                channels.insert(channel.to_string(), Value::Object(info));
            }
            Ok(json!({ "channels": channels }))
        }
        (&Method::GET, ["channels", channel]) => {
            valid_channel(channel)?;
            if infos.user_count && Kind::of(channel) != Kind::Presence {
                return Err(ApiError::bad("user_count is only for presence channels"));
            }
            let details = details(shard, app, channel).await?;
            Ok(Value::Object(channel_info(details.as_ref(), infos, true)))
        }
        (&Method::GET, ["channels", channel, "users"]) => {
            valid_channel(channel)?;
            if Kind::of(channel) != Kind::Presence {
                return Err(ApiError::bad("users are listed for presence channels only"));
            }
            let details = details(shard, app, channel).await?;
            let mut seen = std::collections::HashSet::new();
            let users: Vec<Value> = details
                .iter()
                .flat_map(|d| d.member_list.iter())
                .filter(|m| seen.insert(m.user.clone()))
                .map(|m| json!({ "id": &*m.user }))
                .collect();
            Ok(json!({ "users": users }))
        }
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            if !super::names::is_valid_user_id(user) {
                return Err(ApiError::bad("invalid user id"));
            }
            let op = Op::ToUsers {
                audience: Audience::User(Arc::from(room_of(&app.id, user))),
                frame: UserFrame::Close(Arc::from("connections terminated by the server's API")),
                counted: None,
            };
            shard.route(op).await;
            Ok(json!({}))
        }
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no Pusher API endpoint {method} {path}"),
        )),
    }
}

fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

fn valid_channel(channel: &str) -> Result<(), ApiError> {
    if is_valid_channel(channel) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "invalid channel name {:?}: 1-164 characters of [A-Za-z0-9_-=@,.;]",
            channel.chars().take(200).collect::<String>()
        )))
    }
}

/// Which `info` attributes a request asks for.
#[derive(Debug, Clone, Copy, Default)]
struct Infos {
    user_count: bool,
    subscription_count: bool,
}

impl Infos {
    fn parse(info: Option<&str>) -> Infos {
        let mut infos = Infos::default();
        for attribute in info.unwrap_or("").split(',') {
            match attribute.trim() {
                "user_count" => infos.user_count = true,
                "subscription_count" => infos.subscription_count = true,
                _ => {}
            }
        }
        infos
    }

    fn is_empty(self) -> bool {
        !self.user_count && !self.subscription_count
    }
}

/// `POST /apps/{id}/events` (and one event of a batch).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody<'a> {
    name: String,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<EventBody<'a>>,
}

impl EventBody<'_> {
    /// Its channels, checked: 1..=`max`, each valid.
    fn channels(&self, max: usize) -> Result<Vec<String>, ApiError> {
        let channels = match (&self.channels, &self.channel) {
            (Some(list), None) => list.clone(),
            (None, Some(one)) => vec![one.clone()],
            _ => {
                return Err(ApiError::bad(
                    "give either `channels` (a list) or `channel`",
                ));
            }
        };
        if channels.is_empty() || channels.len() > max {
            return Err(ApiError::bad(format!(
                "an event goes to 1 to {max} channels, not {}",
                channels.len()
            )));
        }
        for c in &channels {
            valid_channel(c)?;
        }
        Ok(channels)
    }

    /// Its name, size, depth (at most `max_depth` nested arrays and
    /// objects, `limits.max_json_depth`) and `socket_id`, checked.
    fn check(&self, pusher: &Pusher, max_depth: usize) -> Result<Option<u64>, ApiError> {
        if !is_valid_event(&self.name) {
            return Err(ApiError::bad(
                "the event name must be 1-200 characters without control characters",
            ));
        }
        let max = pusher.config.max_event_bytes;
        if self.data.get().len() > max {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the event's data is larger than {max} bytes"),
            ));
        }
        shallow("data", self.data.get().as_bytes(), max_depth)?;
        self.socket_id.as_deref().map(excluded_conn).transpose()
    }
}

/// The connection a `socket_id` names (`<conn>.<salt>`).
fn excluded_conn(socket_id: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::bad(format!("invalid socket_id {socket_id:?}"));
    let (conn, salt) = socket_id.split_once('.').ok_or_else(bad)?;
    salt.parse::<u64>().map_err(|_| bad())?;
    conn.parse::<u64>().map_err(|_| bad())
}

/// Publish `event` on each of `channels`. A channel nobody is subscribed
/// to takes the event and drops it, as Pusher does.
async fn publish(
    shard: &Shard,
    pusher: &Pusher,
    app: &App,
    event: &EventBody<'_>,
    channels: &[String],
) -> Result<Value, ApiError> {
    let max_depth = shard.shared.config.limits.max_json_depth;
    let exclude = event
        .check(pusher, max_depth)?
        .and_then(std::num::NonZeroU64::new);
    let data = Bytes::copy_from_slice(event.data.get().as_bytes());
    let name = Arc::new(event.name.clone());
    for channel in channels {
        let result = ask(shard, |tx| {
            Op::Publish(Publish {
                room: app.room(channel),
                from: Arc::from(SYSTEM_USER),
                data: data.clone(),
                event: Some(name.clone()),
                exclude,
                privileged: true,
                reply: Reply::Api(tx),
            })
        })
        .await;
        match result {
            Ok(_) => {}
            Err(r) if r.code == ErrorCode::RoomNotFound => {}
            Err(r) => return Err(r.into()),
        }
    }
    Ok(json!({}))
}

/// The details of `channel`'s room, `None` if it has no members.
async fn details(shard: &Shard, app: &App, channel: &str) -> Result<Option<RoomDetails>, ApiError> {
    let room = app.room(channel);
    match ask(shard, |reply| Op::Details { room, reply }).await {
        Ok(details) if details.members > 0 => Ok(Some(details)),
        Ok(_) => Ok(None),
        Err(r) if r.code == ErrorCode::RoomNotFound => Ok(None),
        Err(r) => Err(r.into()),
    }
}

/// `occupied` (if `with_occupied`), `user_count`, `subscription_count`
/// of a channel.
fn channel_info(
    details: Option<&RoomDetails>,
    infos: Infos,
    with_occupied: bool,
) -> Map<String, Value> {
    let mut info = Map::new();
    if with_occupied {
        info.insert("occupied".into(), json!(details.is_some()));
    }
    if infos.user_count {
        info.insert("user_count".into(), json!(details.map_or(0, |d| d.users)));
    }
    if infos.subscription_count {
        info.insert(
            "subscription_count".into(),
            json!(details.map_or(0, |d| d.members)),
        );
    }
    info
}

/// The `info` of each of `channels` (after a publish).
async fn channel_infos(
    shard: &Shard,
    app: &App,
    channels: &[String],
    infos: Infos,
) -> Result<Map<String, Value>, ApiError> {
    let mut all = Map::new();
    for channel in channels {
        let mut asked = infos;
        asked.user_count &= Kind::of(channel) == Kind::Presence;
        let details = details(shard, app, channel).await?;
        all.insert(
            channel.clone(),
            Value::Object(channel_info(details.as_ref(), asked, false)),
        );
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_name_connections() {
        assert_eq!(excluded_conn("123.456").ok(), Some(123));
        for bad in ["", "1", "a.1", "1.a", "1.2.3", "-1.2"] {
            assert!(excluded_conn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn info_attributes() {
        let i = Infos::parse(Some("user_count, subscription_count"));
        assert!(i.user_count && i.subscription_count);
        assert!(Infos::parse(None).is_empty());
    }
}
