//! The relay's TLS server configuration: its certificate chain and key
//! (PEM), and optionally the CA that client certificates must chain to
//! (mutual TLS).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is missing or wrong.
        what: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: shown.clone(),
            what: format!("not PEM certificates ({e})"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: shown,
            what: "holds no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown.clone(),
        source,
    })?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::Pem {
            path: shown.clone(),
            what: format!("not a PEM private key ({e})"),
        })?
        .ok_or(TlsError::Pem {
            path: shown,
            what: "holds no PRIVATE KEY block".into(),
        })
}

/// The server configuration for `cert`/`key`; with `client_ca`, clients
/// must present a certificate signed by it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| TlsError::Rustls(format!("{} and {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(config))
}
