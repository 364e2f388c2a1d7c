//! Printing a [`Config`] (`shardcast config`) with its secrets redacted.

use super::Config;

impl Config {
    /// The effective config as TOML, with secrets redacted, and every
    /// option of each `[[room.namespaces]]` written out (those it left out
    /// resolved to the `[room]` defaults they take).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.room.namespaces = crate::room::namespaces::resolved_config(self);
        if !shown.auth.secret.is_empty() {
            shown.auth.secret = REDACTED.into();
        }
        for key in &mut shown.api.keys {
            *key = REDACTED.into();
        }
        shown.cluster.redis_url = redact_url_password(&shown.cluster.redis_url);
        for app in &mut shown.pusher.apps {
            if !app.secret.is_empty() {
                app.secret = REDACTED.into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// What [`Config::to_toml`] prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// `redis://user:secret@host` shown as `redis://user:<redacted>@host`.
pub(crate) fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = credentials.split_once(':').map_or("", |(u, _)| u);
    format!("{scheme}://{user}:{REDACTED}@{host}")
}
