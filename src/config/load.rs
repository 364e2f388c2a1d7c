//! Loading a [`Config`]: defaults, then a TOML file, then `SHARDCAST_*`
//! environment variables, then flags; and what `serve` adjusts after (the
//! open-file limit).

use std::net::SocketAddr;
use std::path::Path;

use super::{Config, ConfigError, ENV_PREFIX, Overrides};
use crate::limits::{MAX_SHARDS, RESERVED_FDS};

impl Config {
    /// Load from `file` (if any), the process environment and `overrides`,
    /// then validate and resolve `shards = 0`, `node_id = ""` and
    /// `memory_budget_bytes = 0`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, overrides)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: format!(" in {}", path.display()),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        let env_used = env.iter().any(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains("__"))
        });
        let origin = match (file, env_used) {
            (Some(p), true) => format!(" in {} or SHARDCAST_* environment", p.display()),
            (Some(p), false) => format!(" in {}", p.display()),
            (None, true) => " in SHARDCAST_* environment".to_string(),
            (None, false) => String::new(),
        };
        apply_env(&mut table, env)?;
        let mut config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin,
                    message: e.to_string().trim().to_string(),
                })?;
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(shards) = overrides.shards {
            config.server.shards = shards;
        }
        if let Some(url) = &overrides.redis_url {
            config.cluster.redis_url = url.clone();
        }
        if config.server.shards == 0 {
            config.server.shards = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_SHARDS);
        }
        if config.server.node_id.is_empty() {
            config.server.node_id = random_node_id();
        }
        if config.limits.memory_budget_bytes == 0 {
            config.limits.memory_budget_bytes = crate::memory::default_budget().unwrap_or(u64::MAX);
        }
        config.validate()?;
        Ok(config)
    }

    /// The listen address; an error naming `server.listen` if it is not a
    /// literal `ip:port` (there is no fallback address).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "server.listen",
                problem: format!(
                    "must be an address like 127.0.0.1:8080, not {:?}",
                    self.server.listen
                ),
            })
    }

    /// Lower `limits.max_connections` to what the open-file limit allows.
    /// Returns `Some((configured, clamped))` when it lowered it.
    pub fn clamp_to_fd_limit(&mut self, fd_limit: u64) -> Option<(u64, u64)> {
        let budget = fd_limit.saturating_sub(RESERVED_FDS + 4 * self.server.shards as u64);
        let budget = budget.max(1);
        if self.limits.max_connections > budget {
            let configured = self.limits.max_connections;
            self.limits.max_connections = budget;
            return Some((configured, budget));
        }
        None
    }
}

/// Keys whose environment values are always plain strings.
const RAW_STRING_KEYS: [(&str, &str); 15] = [
    ("server", "listen"),
    ("server", "tls_cert_file"),
    ("server", "tls_key_file"),
    ("server", "allowed_origins"),
    ("server", "trusted_proxies"),
    ("server", "ws_path"),
    ("server", "node_id"),
    ("server", "echo_path"),
    ("auth", "secret"),
    ("auth", "secret_file"),
    ("auth", "public_key_file"),
    ("auth", "issuer"),
    ("auth", "audience"),
    ("api", "keys"),
    ("cluster", "redis_url"),
];

/// Merge `SHARDCAST_<SECTION>__<KEY>=value` variables into `table`. A value
/// is read as a TOML value (`5000`, `true`, `["a","b"]`) and otherwise
/// taken as a string.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if section.is_empty() || key.is_empty() {
            return Err(ConfigError::Parse {
                origin: format!(" from env {name}"),
                message: "expected SHARDCAST_<SECTION>__<KEY>".into(),
            });
        }
        // Keys that hold text are taken as they are: a secret made of digits
        // must not turn into a number.
        // (A TOML array is still an array: `SHARDCAST_API__KEYS='["k1","k2"]'`.)
        let text_key = RAW_STRING_KEYS.contains(&(section.as_str(), key.as_str()))
            && !raw.trim_start().starts_with('[');
        let value = if text_key {
            toml::Value::String(raw.clone())
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()))
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(ConfigError::Parse {
                origin: format!(" from env {name}"),
                message: format!("`{section}` is not a section"),
            });
        };
        section_table.insert(key, value);
    }
    Ok(())
}

/// A random node id: 8 hex digits from the clock and the process id.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    format!("node-{:08x}", h.finish() as u32)
}
