//! The Pusher Channels protocol (version 7): a second front door onto the
//! same rooms, so pusher-js, Laravel Echo and the Pusher server SDKs work
//! against shardcast unchanged.
//!
//! * [`names`]: channel names and kinds, and the rooms they are
//!   (`#<app>#<channel>`).
//! * [`sign`]: channel auth, sign-in, API request and webhook signatures.
//! * [`wire`]: client events in, server events out, and a room frame's
//!   Pusher form.
//! * [`api`]: the HTTP API under `/apps/{id}`.
//! * [`upgrade`]: `GET /app/{key}`, and its refusals.
//! * [`webhook`]: `channel_occupied`, `member_added`, `client_event`, ...
//!   POSTed to each app's `webhook_url`.
//!
//! The WebSocket side lives with the native one, in
//! `crate::shard::conn::pusher`: a Pusher connection is a connection
//! whose protocol is Pusher, with the same queue, socket loops, caps,
//! heartbeat and drain.
//!
//! **Architecture Invariants:** this front door turns what its clients ask
//! into [`crate::op::Op`]s on the one route, like the native one; it never
//! knows whether a cluster runs. A room message is encoded for Pusher once
//! per message, on first demand, by whichever member shard needs it first
//! ([`crate::delivery::RoomFrame`]).

pub(crate) mod api;
pub(crate) mod names;
pub(crate) mod sign;
pub(crate) mod upgrade;
pub(crate) mod webhook;
pub(crate) mod wire;

use std::sync::Arc;

use crate::config::{ConfigError, PusherApp, PusherConfig};
use crate::observe::Observer;

/// One configured app, resolved (its secret read).
#[derive(Debug)]
pub(crate) struct App {
    /// The app id (`/apps/{id}`).
    pub(crate) id: String,
    /// The key clients connect with.
    pub(crate) key: String,
    /// The secret.
    pub(crate) secret: Vec<u8>,
    /// `client-*` events allowed.
    pub(crate) client_events: bool,
    /// Where its webhooks go, if anywhere.
    pub(crate) webhook: Option<webhook::Target>,
}

impl App {
    /// The room of this app's `channel`.
    pub(crate) fn room(&self, channel: &str) -> Arc<str> {
        Arc::from(names::room_of(&self.id, channel))
    }
}

/// Where `app`'s webhooks go; for an `https://` URL, with the roots of its
/// `webhook_ca_file` (read now: a bad one stops startup, naming it) or the
/// system's.
fn webhook_target(app: &PusherApp) -> Result<webhook::Target, ConfigError> {
    let invalid = |key, problem: String| ConfigError::Invalid {
        key,
        problem: format!("of app {:?}: {problem}", app.id),
    };
    let url = match webhook::WebhookUrl::parse(&app.webhook_url)
        .map_err(|p| invalid("pusher.apps.webhook_url", p))?
    {
        webhook::WebhookUrl::Http(target) => return Ok(target),
        webhook::WebhookUrl::Https(url) => url,
    };
    let key = "pusher.apps.webhook_ca_file";
    let ca = match &app.webhook_ca_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?,
        ),
        None => None,
    };
    let what = app.webhook_ca_file.as_deref().unwrap_or(key);
    let roots = crate::tls_client::roots(ca.as_deref(), what, "the webhook receiver")
        .map_err(|p| invalid(key, p))?;
    url.secure(roots)
        .map_err(|p| invalid("pusher.apps.webhook_url", p))
}

/// The Pusher endpoint's state shared by every shard.
pub(crate) struct Pusher {
    /// The `[pusher]` settings.
    pub(crate) config: PusherConfig,
    apps: Vec<Arc<App>>,
    /// The webhook sender, if any app has a `webhook_url`.
    pub(crate) webhooks: Option<webhook::Webhooks>,
}

impl Pusher {
    /// The endpoint for `config` (enabled), and the observer of its apps'
    /// rooms (for webhooks). Reads secret files.
    pub(crate) fn start(config: &PusherConfig) -> Result<(Arc<Pusher>, Observer), ConfigError> {
        let mut apps = Vec::with_capacity(config.apps.len());
        for app in &config.apps {
            let secret = match &app.secret_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .as_bytes()
                    .to_vec(),
                None => app.secret.as_bytes().to_vec(),
            };
            if secret.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "pusher.apps.secret_file",
                    problem: format!("of app {:?} names an empty file", app.id),
                });
            }
            let webhook = if app.webhook_url.is_empty() {
                None
            } else {
                Some(webhook_target(app)?)
            };
            apps.push(Arc::new(App {
                id: app.id.clone(),
                key: app.key.clone(),
                secret,
                client_events: app.client_events,
                webhook,
            }));
        }
        let hooked: Vec<Arc<App>> = apps
            .iter()
            .filter(|a| a.webhook.is_some())
            .cloned()
            .collect();
        let (observer, webhooks) = if hooked.is_empty() {
            (Observer::none(), None)
        } else {
            let prefixes = hooked.iter().map(|a| names::app_prefix(&a.id)).collect();
            let (observer, changes) = Observer::new(prefixes, config.webhook_queue);
            let webhooks = webhook::Webhooks::start(config, hooked, changes).map_err(|e| {
                ConfigError::Invalid {
                    key: "pusher.apps.webhook_url",
                    problem: format!("cannot start the webhook sender: {e}"),
                }
            })?;
            (observer, Some(webhooks))
        };
        let pusher = Pusher {
            config: config.clone(),
            apps,
            webhooks,
        };
        Ok((Arc::new(pusher), observer))
    }

    /// The app with key `key`.
    pub(crate) fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.key == key)
    }

    /// The app with id `id`.
    pub(crate) fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.id == id)
    }
}
