//! Where the backplane connects: one Redis (`redis://`, or `rediss://` with
//! TLS), or the primary that Redis Sentinel names
//! (`redis+sentinel://host:port,host:port/primary`, `rediss+sentinel://`).
//!
//! Both of a node's connections (commands, subscriber) ask
//! [`Target::resolve`] before each (re)connect, so after a failover they
//! follow the new primary: the sentinels name it, and it is checked to be a
//! primary (`ROLE`) before it is used. A command that a demoted primary
//! refuses (`READONLY`) drops the command connection, which resolves again.
//!
//! **Invariant:** a secret in the URL or the files never reaches a log or an
//! error message (errors name the URL with [`redact_url_password`]).

use std::sync::Arc;

use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates, TlsMode};
use tokio_rustls::rustls;

use super::ClusterError;
use crate::config::{ClusterConfig, redact_url_password};

/// The Redis a node's backplane uses, resolved now.
pub(crate) struct Resolved {
    /// The command connection's client.
    pub(crate) client: redis::Client,
    /// Where the subscriber connection goes.
    pub(crate) addr: Addr,
}

/// A Redis address for the hand-written subscriber connection.
#[derive(Debug, Clone)]
pub(crate) struct Addr {
    /// Host (name or IP).
    pub(crate) host: String,
    /// Port.
    pub(crate) port: u16,
    /// TLS to it, with these roots and client certificate.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// ACL user.
    pub(crate) username: Option<String>,
    /// Password.
    pub(crate) password: Option<String>,
}

/// Where the backplane connects.
pub(crate) struct Target {
    kind: Kind,
    /// TLS settings (`rediss`), for the redis crate and the subscriber.
    tls: Option<Tls>,
}

enum Kind {
    /// One Redis.
    Direct(redis::Client),
    /// The primary the sentinels name.
    Sentinel {
        sentinels: Vec<redis::ConnectionInfo>,
        primary: String,
        /// Credentials, database and TLS of the data nodes.
        node: SentinelNodeConnectionInfo,
    },
}

struct Tls {
    certs: Option<TlsCertificates>,
    config: Arc<rustls::ClientConfig>,
}

/// What a `cluster.redis_url` says, before anything is read or resolved.
struct Parsed<'u> {
    /// `host:port,.../primary` of a Sentinel URL.
    sentinel: Option<&'u str>,
    tls: bool,
}

/// Read `cfg.redis_url`'s scheme and check it fits `cfg`'s TLS files.
fn parse(cfg: &ClusterConfig) -> Result<Parsed<'_>, String> {
    let url = cfg.redis_url.as_str();
    let parsed = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        Parsed {
            sentinel: Some(rest),
            tls: false,
        }
    } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
        Parsed {
            sentinel: Some(rest),
            tls: true,
        }
    } else if url.starts_with("rediss://") {
        Parsed {
            sentinel: None,
            tls: true,
        }
    } else if url.starts_with("redis://") {
        Parsed {
            sentinel: None,
            tls: false,
        }
    } else {
        return Err("use redis://, rediss://, redis+sentinel:// or rediss+sentinel://".into());
    };
    let files = [&cfg.tls_ca_file, &cfg.tls_cert_file, &cfg.tls_key_file];
    if !parsed.tls && files.iter().any(|f| f.is_some()) {
        return Err("cluster.tls_* files are set but the URL does not use TLS (rediss)".into());
    }
    if cfg.tls_cert_file.is_some() != cfg.tls_key_file.is_some() {
        return Err("set both cluster.tls_cert_file and cluster.tls_key_file, or neither".into());
    }
    Ok(parsed)
}

/// Check `cfg.redis_url` without reading files or the network: its scheme,
/// a Sentinel URL's form, and the TLS files' fit (for validation).
pub(crate) fn check_url(cfg: &ClusterConfig) -> Result<(), String> {
    let parsed = parse(cfg)?;
    if let Some(rest) = parsed.sentinel {
        sentinel_kind(rest, parsed.tls)?;
    }
    Ok(())
}

impl Target {
    /// The target of `cfg.redis_url` (with `cfg`'s TLS files, read now).
    pub(crate) fn from_config(cfg: &ClusterConfig) -> Result<Target, ClusterError> {
        let url = cfg.redis_url.as_str();
        let shown = redact_url_password(url);
        let bad = |why: &str| ClusterError::Url(format!("{shown}: {why}"));
        let parsed = parse(cfg).map_err(|e| bad(&e))?;
        let tls = if parsed.tls {
            Some(Tls::load(cfg).map_err(|e| bad(&e))?)
        } else {
            None
        };
        let kind = if let Some(rest) = parsed.sentinel {
            sentinel_kind(rest, tls.is_some()).map_err(|e| bad(&e))?
        } else {
            let client = match &tls {
                Some(Tls {
                    certs: Some(certs), ..
                }) => redis::Client::build_with_tls(url, certs.clone()),
                _ => redis::Client::open(url),
            }
            .map_err(|e| bad(&e.to_string()))?;
            if !matches!(
                client.get_connection_info().addr(),
                ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. }
            ) {
                return Err(bad("only TCP addresses (host:port) are supported"));
            }
            Kind::Direct(client)
        };
        Ok(Target { kind, tls })
    }

    /// The Redis to use now: the one of the URL, or the primary the
    /// sentinels name (asking them in order until one answers with a
    /// primary that says it is one).
    pub(crate) async fn resolve(&self) -> Result<Resolved, String> {
        let client = match &self.kind {
            Kind::Direct(client) => client.clone(),
            Kind::Sentinel {
                sentinels,
                primary,
                node,
                ..
            } => {
                let mut sentinel = Sentinel::build(sentinels.clone()).map_err(|e| e.to_string())?;
                sentinel
                    .async_master_for(primary, Some(node))
                    .await
                    .map_err(|e| format!("no primary {primary:?} from the sentinels: {e}"))?
            }
        };
        let addr = self.addr_of(&client)?;
        Ok(Resolved { client, addr })
    }

    fn addr_of(&self, client: &redis::Client) -> Result<Addr, String> {
        let info = client.get_connection_info();
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            other => return Err(format!("unsupported Redis address {other:?}")),
        };
        let settings = info.redis_settings();
        Ok(Addr {
            host,
            port,
            tls: self.tls.as_ref().map(|t| t.config.clone()),
            username: settings.username().map(String::from),
            password: settings.password().map(String::from),
        })
    }
}

/// `[user:password@]host:port,host:port/primary[/db]` of a sentinel URL.
fn sentinel_kind(rest: &str, tls: bool) -> Result<Kind, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("name the primary after the sentinels: .../<primary>")?;
    let mut parts = path.split('/');
    let primary = parts.next().unwrap_or_default().to_string();
    if primary.is_empty() {
        return Err("name the primary after the sentinels: .../<primary>".into());
    }
    let db: i64 = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| format!("{db:?} is not a database number"))?,
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let sentinels = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            format!("{scheme}://{h}")
                .into_connection_info()
                .map_err(|e| format!("sentinel {h:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err("list at least one sentinel host:port".into());
    }
    let mut redis = RedisConnectionInfo::default().set_db(db);
    if let Some(auth) = auth {
        let (user, password) = match auth.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (auth, None),
        };
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| "a bad %-escape in the credentials".to_string())
        };
        if !user.is_empty() {
            redis = redis.set_username(decode(user)?);
        }
        if let Some(password) = password {
            redis = redis.set_password(decode(password)?);
        }
    }
    let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
    if tls {
        node = node.set_tls_mode(TlsMode::Secure);
    }
    Ok(Kind::Sentinel {
        sentinels,
        primary,
        node,
    })
}

/// `%XX` escapes of a URL's userinfo, decoded.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

impl Tls {
    /// Roots from `cluster.tls_ca_file` (else the system's), and the client
    /// certificate of `cluster.tls_cert_file`/`tls_key_file` if set.
    fn load(cfg: &ClusterConfig) -> Result<Tls, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read cluster.{key} {path}: {e}"))
        };
        let ca = cfg
            .tls_ca_file
            .as_deref()
            .map(|p| read("tls_ca_file", p))
            .transpose()?;
        let client = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(cert), Some(key)) => {
                Some((read("tls_cert_file", cert)?, read("tls_key_file", key)?))
            }
            _ => None, // both or neither: checked by `parse`
        };
        let roots = crate::tls_client::roots(ca.as_deref(), "cluster.tls_ca_file", "Redis")?;
        let builder = crate::tls_client::builder(roots)?;
        let config = match &client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("cluster.tls_cert_file: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("cluster.tls_key_file: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("cluster.tls_cert_file: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        let certs = (ca.is_some() || client.is_some()).then(|| TlsCertificates {
            client_tls: client.map(|(client_cert, client_key)| redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
            root_cert: ca,
        });
        Ok(Tls {
            certs,
            config: Arc::new(config),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ClusterConfig {
        ClusterConfig {
            redis_url: url.into(),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn sentinel_urls_name_their_sentinels_primary_and_credentials() {
        let target = Target::from_config(&cfg(
            "redis+sentinel://u:p%40ss@10.0.0.1:26379,h2:26380/main/2",
        ))
        .expect("valid");
        let Kind::Sentinel {
            sentinels, primary, ..
        } = &target.kind
        else {
            panic!("a sentinel target");
        };
        assert_eq!(sentinels.len(), 2);
        assert_eq!(primary, "main");
        assert_eq!(percent_decode("p%40ss").as_deref(), Some("p@ss"));
        assert_eq!(percent_decode("bad%4"), None);
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        for url in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel:///main",
            "http://u:secret@h:1",
            "redis+sentinel://u:secret@h:1/main/x",
        ] {
            let err = Target::from_config(&cfg(url))
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let mut with_ca = cfg("redis://h:1");
        with_ca.tls_ca_file = Some("/ca.pem".into());
        assert!(
            Target::from_config(&with_ca).is_err(),
            "TLS files need rediss"
        );
    }
}
