//! Validating a [`Config`]: every value's range, the relations between
//! values, and no placeholder that `shardcast config` printed for a secret.

use super::{Config, ConfigError, ProxyProtocol, REDACTED};
use crate::edge::{Origins, TrustedProxies};
use crate::limits::{
    MAX_HTTP_HEAD_BYTES, MAX_LINGERING_CLOSE_MS, MAX_NAMESPACES, MAX_ROOM_HISTORY, MAX_SHARDS,
    MIN_HTTP_HEAD_BYTES,
};

impl Config {
    /// Check every value's range and the relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        self.refuse_redacted()?;
        let s = &self.server;
        self.listen_addr()?;
        if s.shards == 0 || s.shards > MAX_SHARDS {
            return Err(invalid(
                "server.shards",
                format!("must be 1..={MAX_SHARDS}, not {}", s.shards),
            ));
        }
        if !s.ws_path.starts_with('/') || s.ws_path.len() < 2 {
            return Err(invalid(
                "server.ws_path",
                "must start with / and name a path",
            ));
        }
        if !s.echo_path.is_empty()
            && (!s.echo_path.starts_with('/')
                || s.echo_path == s.ws_path
                || s.echo_path.starts_with("/api/"))
        {
            return Err(invalid(
                "server.echo_path",
                "must start with / and differ from server.ws_path and /api/",
            ));
        }
        if s.drain_timeout_ms == 0 {
            return Err(invalid("server.drain_timeout_ms", "must be > 0"));
        }
        if s.node_id.len() > crate::limits::MAX_NAME_BYTES
            || !crate::protocol::names::is_valid_name(&s.node_id)
        {
            return Err(invalid(
                "server.node_id",
                format!(
                    "must be 1-128 bytes of [A-Za-z0-9_.:@-], not {:?}",
                    s.node_id
                ),
            ));
        }
        self.validate_edge()?;
        let l = &self.limits;
        let positive: [(&'static str, u64); 12] = [
            ("limits.max_connections", l.max_connections),
            ("limits.max_message_bytes", l.max_message_bytes as u64),
            (
                "limits.max_rooms_per_connection",
                l.max_rooms_per_connection as u64,
            ),
            ("limits.max_rooms", l.max_rooms),
            (
                "limits.outbound_queue_messages",
                l.outbound_queue_messages as u64,
            ),
            ("limits.outbound_queue_bytes", l.outbound_queue_bytes as u64),
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.heartbeat_interval_ms", l.heartbeat_interval_ms),
            ("limits.heartbeat_timeout_ms", l.heartbeat_timeout_ms),
            ("limits.max_json_depth", l.max_json_depth as u64),
            ("limits.max_history_bytes_total", l.max_history_bytes_total),
            ("limits.memory_budget_bytes", l.memory_budget_bytes),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        if l.max_message_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be at most 64 MiB",
            ));
        }
        if l.publish_rate_per_sec > 0 && l.publish_burst == 0 {
            return Err(invalid(
                "limits.publish_burst",
                "must be > 0 when limits.publish_rate_per_sec is set",
            ));
        }
        if l.max_presence_list == 0 {
            return Err(invalid("limits.max_presence_list", "must be > 0"));
        }
        if self.api.max_body_bytes == 0 {
            return Err(invalid("api.max_body_bytes", "must be > 0"));
        }
        if self.api.keys.iter().any(|k| k.len() < 16) {
            return Err(invalid(
                "api.keys",
                "must hold keys of at least 16 bytes each",
            ));
        }
        let r = &self.room;
        if r.default_max_members == 0 {
            return Err(invalid("room.default_max_members", "must be > 0"));
        }
        if r.history > MAX_ROOM_HISTORY {
            return Err(invalid(
                "room.history",
                format!("must be at most {MAX_ROOM_HISTORY}"),
            ));
        }
        if r.history_max_bytes == 0 {
            return Err(invalid("room.history_max_bytes", "must be > 0"));
        }
        if r.history_on_join > MAX_ROOM_HISTORY {
            return Err(invalid(
                "room.history_on_join",
                format!("must be at most {MAX_ROOM_HISTORY}"),
            ));
        }
        self.validate_namespaces()?;
        let c = &self.cluster;
        if c.enabled() {
            crate::cluster::target::check_url(c).map_err(|e| invalid("cluster.redis_url", e))?;
            for (key, value) in [
                ("cluster.connect_timeout_ms", c.connect_timeout_ms),
                ("cluster.command_timeout_ms", c.command_timeout_ms),
                (
                    "cluster.reconnect_max_backoff_ms",
                    c.reconnect_max_backoff_ms,
                ),
                ("cluster.command_queue", c.command_queue as u64),
                ("cluster.subscriber_queue", c.subscriber_queue as u64),
                (
                    "cluster.subscriber_queue_bytes",
                    c.subscriber_queue_bytes as u64,
                ),
            ] {
                if value == 0 {
                    return Err(invalid(key, "must be > 0"));
                }
            }
            if c.node_ttl_ms < 1_000 {
                return Err(invalid("cluster.node_ttl_ms", "must be at least 1000"));
            }
        }
        self.validate_pusher()
    }

    /// `[pusher]`: checked whether or not it is enabled, so a mistake shows
    /// before the endpoint is turned on.
    fn validate_pusher(&self) -> Result<(), ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        let p = &self.pusher;
        for (key, value) in [
            ("pusher.activity_timeout_s", p.activity_timeout_s),
            ("pusher.max_event_bytes", p.max_event_bytes as u64),
            ("pusher.max_event_channels", p.max_event_channels as u64),
            ("pusher.max_batch_events", p.max_batch_events as u64),
            ("pusher.webhook_queue", p.webhook_queue as u64),
            ("pusher.webhook_batch_events", p.webhook_batch_events as u64),
            ("pusher.webhook_attempts", u64::from(p.webhook_attempts)),
            ("pusher.webhook_timeout_ms", p.webhook_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        if p.enabled && p.apps.is_empty() {
            return Err(invalid(
                "pusher.apps",
                "must list at least one app when pusher.enabled is true",
            ));
        }
        if p.enabled && !self.room.auto_create {
            return Err(invalid(
                "room.auto_create",
                "must be true when pusher.enabled is true (a Pusher subscribe makes its channel)",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for app in &p.apps {
            let id_ok = (1..=64).contains(&app.id.len())
                && app
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !id_ok {
                return Err(invalid(
                    "pusher.apps.id",
                    format!("must be 1-64 bytes of [A-Za-z0-9_-], not {:?}", app.id),
                ));
            }
            let key_ok = (1..=128).contains(&app.key.len())
                && app
                    .key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !key_ok {
                return Err(invalid(
                    "pusher.apps.key",
                    format!("of app {:?} must be 1-128 bytes of [A-Za-z0-9_.-]", app.id),
                ));
            }
            if !ids.insert(app.id.as_str()) {
                return Err(invalid(
                    "pusher.apps.id",
                    format!("{:?} is used by two apps", app.id),
                ));
            }
            if !keys.insert(app.key.as_str()) {
                return Err(invalid(
                    "pusher.apps.key",
                    format!("of app {:?} is used by another app", app.id),
                ));
            }
            match (app.secret.is_empty(), &app.secret_file) {
                (true, None) => {
                    return Err(invalid(
                        "pusher.apps.secret",
                        format!(
                            "of app {:?} is missing (give secret or secret_file)",
                            app.id
                        ),
                    ));
                }
                (false, Some(_)) => {
                    return Err(invalid(
                        "pusher.apps.secret_file",
                        format!("of app {:?}: give secret or secret_file, not both", app.id),
                    ));
                }
                _ => {}
            }
            let https = app.webhook_url.starts_with("https://");
            if !app.webhook_url.is_empty() && !https && !app.webhook_url.starts_with("http://") {
                return Err(invalid(
                    "pusher.apps.webhook_url",
                    format!("of app {:?} must start with http:// or https://", app.id),
                ));
            }
            if app.webhook_ca_file.is_some() && !https {
                return Err(invalid(
                    "pusher.apps.webhook_ca_file",
                    format!(
                        "of app {:?} is set but its webhook_url does not use https://",
                        app.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `[server]`'s edge keys: TLS files, origins, proxies, compression,
    /// and the HTTP limits.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
        let s = &self.server;
        let set = |f: &Option<String>| f.as_deref().is_some_and(|p| !p.is_empty());
        match (set(&s.tls_cert_file), set(&s.tls_key_file)) {
            (true, false) => {
                return Err(invalid(
                    "server.tls_key_file",
                    "must be set when server.tls_cert_file is".into(),
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "server.tls_cert_file",
                    "must be set when server.tls_key_file is".into(),
                ));
            }
            _ => {}
        }
        Origins::parse(&s.allowed_origins).map_err(|e| invalid("server.allowed_origins", e))?;
        let trusted = TrustedProxies::parse(&s.trusted_proxies)
            .map_err(|e| invalid("server.trusted_proxies", e))?;
        if s.proxy_protocol != ProxyProtocol::Off && trusted.is_empty() {
            return Err(invalid(
                "server.proxy_protocol",
                "needs server.trusted_proxies: a PROXY header is believed only from those peers"
                    .into(),
            ));
        }
        let l = &self.limits;
        if !(MIN_HTTP_HEAD_BYTES..=MAX_HTTP_HEAD_BYTES).contains(&l.max_http_head_bytes) {
            return Err(invalid(
                "limits.max_http_head_bytes",
                format!(
                    "must be {MIN_HTTP_HEAD_BYTES}..={MAX_HTTP_HEAD_BYTES}, not {}",
                    l.max_http_head_bytes
                ),
            ));
        }
        if l.lingering_close_ms > MAX_LINGERING_CLOSE_MS {
            return Err(invalid(
                "limits.lingering_close_ms",
                format!("must be at most {MAX_LINGERING_CLOSE_MS}"),
            ));
        }
        Ok(())
    }

    /// Each `[[room.namespaces]]` entry: a valid, distinct prefix and
    /// options in the ranges of the `[room]` keys they stand for.
    fn validate_namespaces(&self) -> Result<(), ConfigError> {
        let namespaces = &self.room.namespaces;
        if namespaces.len() > MAX_NAMESPACES {
            return Err(ConfigError::Invalid {
                key: "room.namespaces",
                problem: format!(
                    "may hold at most {MAX_NAMESPACES} namespaces, not {}",
                    namespaces.len()
                ),
            });
        }
        for (i, ns) in namespaces.iter().enumerate() {
            let entry = |problem: String| ConfigError::Invalid {
                key: "room.namespaces",
                problem: format!("entry {} (prefix {:?}): {problem}", i + 1, ns.prefix),
            };
            if !crate::protocol::names::is_valid_name(&ns.prefix) {
                return Err(entry(
                    "`prefix` must be 1-128 bytes of [A-Za-z0-9_.:@-]".into(),
                ));
            }
            if namespaces[..i]
                .iter()
                .any(|other| other.prefix == ns.prefix)
            {
                return Err(entry("the prefix appears twice".into()));
            }
            if ns.max_members == Some(0) {
                return Err(entry("`max_members` must be > 0".into()));
            }
            for (key, value) in [
                ("history", ns.history),
                ("history_on_join", ns.history_on_join),
            ] {
                if value.is_some_and(|v| v > MAX_ROOM_HISTORY) {
                    return Err(entry(format!("`{key}` must be at most {MAX_ROOM_HISTORY}")));
                }
            }
        }
        Ok(())
    }

    /// Refuse the placeholder [`Config::to_toml`] prints in place of each
    /// secret, so that its output fed back says what is wrong instead of
    /// failing on the placeholder's length (or failing later, at Redis).
    fn refuse_redacted(&self) -> Result<(), ConfigError> {
        let redacted = |key: &'static str, how: &str| ConfigError::Invalid {
            key,
            problem: format!(
                "holds {REDACTED:?}, the placeholder `shardcast config` prints in place of \
                 {how}: give the real value (a SHARDCAST_* environment variable keeps it \
                 out of files)"
            ),
        };
        if self.api.keys.iter().any(|k| k == REDACTED) {
            return Err(redacted("api.keys", "each key"));
        }
        if self.auth.secret == REDACTED {
            return Err(redacted("auth.secret", "the secret"));
        }
        if self.cluster.redis_url.contains(&format!(":{REDACTED}@")) {
            return Err(redacted("cluster.redis_url", "the password"));
        }
        if self.pusher.apps.iter().any(|a| a.secret == REDACTED) {
            return Err(redacted("pusher.apps.secret", "each app's secret"));
        }
        Ok(())
    }
}
