//! TLS with rustls: the certificate chain and key of `[server]
//! tls_cert_file` and `tls_key_file`, checked when loaded and swapped in
//! place when they change.
//!
//! **Invariant:** the pair in use always passed [`load_pair`] (readable PEM,
//! a key that matches the first certificate, a certificate valid now). A
//! reload that fails leaves the pair in use as it was; connections already
//! open never notice a reload (rustls asks [`CertResolver`] for the pair at
//! each handshake).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A certificate that expires within this many days is logged as a
/// warning at each load.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 14;

/// Why a certificate and key pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `server.tls_cert_file` or `server.tls_key_file`.
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("server.tls_cert_file {path}: {problem}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The key file holds no usable PEM private key.
    #[error("server.tls_key_file {path}: {problem}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The key is not the key of the (first) certificate.
    #[error("server.tls_key_file {key} is not the private key of the certificate in {cert}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The certificate is outside its validity period.
    #[error("server.tls_cert_file {path}: the certificate {problem}")]
    Validity {
        /// The file.
        path: String,
        /// "expired at ..." or "is not valid before ...".
        problem: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A pair that passed every check.
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: i64,
}

/// Read and check `cert_path` and `key_path`.
fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let cert_name = cert_path.display().to_string();
    let key_name = key_path.display().to_string();
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::Read {
        what: "server.tls_cert_file",
        path: cert_name.clone(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| TlsError::Read {
        what: "server.tls_key_file",
        path: key_name.clone(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert_name.clone(),
            problem: format!("not PEM certificates: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Certificate {
            path: cert_name,
            problem: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        });
    };
    let (not_before, not_after) = validity(leaf).map_err(|problem| TlsError::Certificate {
        path: cert_name.clone(),
        problem,
    })?;
    let now = unix_now();
    if now > not_after {
        return Err(TlsError::Validity {
            path: cert_name,
            problem: format!("expired at {} (Unix time)", not_after),
        });
    }
    if now < not_before {
        return Err(TlsError::Validity {
            path: cert_name,
            problem: format!("is not valid before {} (Unix time)", not_before),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: key_name.clone(),
        problem: format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: cert_name.clone(),
            key: key_name.clone(),
        },
        other => TlsError::Key {
            path: key_name.clone(),
            problem: other.to_string(),
        },
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
    })
}

/// The validity period of a DER certificate, in Unix seconds.
fn validity(der: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the first certificate: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Warn when the certificate in use expires soon.
fn warn_if_expiring(path: &Path, not_after: i64) {
    let left = not_after - unix_now();
    if left < EXPIRY_WARNING_DAYS * 86_400 {
        tracing::warn!(
            file = %path.display(),
            expires_in_hours = left / 3600,
            "the TLS certificate expires within {EXPIRY_WARNING_DAYS} days"
        );
    }
}

/// Hands rustls the pair in use at each handshake.
#[derive(Debug)]
struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a checked pair.
        Some(match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        })
    }
}

/// What identifies a version of a file without reading it.
type FileStamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The TLS side of the listeners: the acceptor and the reloadable pair.
pub(crate) struct TlsCerts {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    acceptor: TlsAcceptor,
    /// The files' stamps when last loaded (or tried).
    stamps: Mutex<(FileStamp, FileStamp)>,
}

impl TlsCerts {
    /// Load and check the pair; the error says what is wrong with it.
    pub(crate) fn new(cert_path: &Path, key_path: &Path) -> Result<TlsCerts, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let stamps = (stamp(cert_path), stamp(key_path));
        let loaded = load_pair(cert_path, key_path, &provider)?;
        warn_if_expiring(cert_path, loaded.not_after);
        let resolver = Arc::new(CertResolver {
            current: RwLock::new(loaded.key),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsCerts {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            stamps: Mutex::new(stamps),
        })
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Load the files again and use them for later handshakes; on error
    /// the pair in use stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let stamps = (stamp(&self.cert_path), stamp(&self.key_path));
        if let Ok(mut s) = self.stamps.lock() {
            *s = stamps;
        }
        let loaded = load_pair(&self.cert_path, &self.key_path, &self.provider)?;
        warn_if_expiring(&self.cert_path, loaded.not_after);
        match self.resolver.current.write() {
            Ok(mut k) => *k = loaded.key,
            Err(poisoned) => *poisoned.into_inner() = loaded.key,
        }
        Ok(())
    }

    /// Reload if either file changed since the last load; logs the outcome.
    pub(crate) fn reload_if_changed(&self) {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        let changed = self.stamps.lock().map(|s| *s != now).unwrap_or(true);
        if changed {
            self.reload_logged("the files changed");
        }
    }

    /// Reload and log the outcome (`why` says what asked for it).
    pub(crate) fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.cert_path.display(),
                reason = why,
                "TLS certificate reloaded"
            ),
            Err(e) => tracing::error!(
                error = %e,
                reason = why,
                "TLS certificate not reloaded; the one in use stays"
            ),
        }
    }
}
