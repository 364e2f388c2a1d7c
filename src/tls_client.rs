//! TLS as a client, to servers the operator names: Redis (`rediss://`,
//! `cluster.tls_*`) and Pusher webhook receivers (`https://`,
//! `pusher.apps.webhook_ca_file`). A server's certificate must chain to
//! the roots of a PEM file the operator gives, else to the system's.

use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};
use tokio_rustls::rustls;

/// The roots to check `server`'s certificate with: every certificate of
/// the PEM text `ca` (`what` names its file in errors), or the system's
/// when `ca` is `None`. Never empty: no root at all is an error.
pub(crate) fn roots(ca: Option<&[u8]>, what: &str, server: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("{what}: {e}"))?;
                roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{what}: no PEM certificate in it"));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!(
                    "the system has no root certificate to check {server}'s certificate with (give {what})"
                ));
            }
        }
    }
    Ok(roots)
}

/// A client config's builder that checks servers against `roots`, with
/// the process' one crypto provider and safe protocol versions.
pub(crate) fn builder(
    roots: RootCertStore,
) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, String> {
    Ok(
        ClientConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_by_name() {
        let err = roots(Some(b"not a certificate"), "/etc/ca.pem", "Redis").expect_err("no cert");
        assert!(err.contains("/etc/ca.pem"), "{err}");
        let err = roots(
            Some(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            "/etc/ca.pem",
            "Redis",
        )
        .expect_err("bad PEM");
        assert!(err.contains("/etc/ca.pem"), "{err}");
    }
}
