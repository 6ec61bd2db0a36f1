//! TLS for the public listener (rustls), loaded at startup and again on
//! every reload.
//!
//! Certificates and keys are PEM files named in `[server.tls]`; a missing or
//! unreadable file, or a key that does not match, is a startup (or reload)
//! error naming the file. ALPN offers `h2` and `http/1.1`. With
//! `client_ca_file` the handshake verifies client certificates against
//! those CAs (rustls' WebPKI client verifier): under `client_auth =
//! "required"` a client without one is refused, under `"optional"` it is
//! let in without an identity. This module must never log key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// TLS listener files: `[server.tls]` as validated (the config re-exports
/// this type; this module reads nothing else of the config).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Client certificates (mTLS), when `client_ca_file` is set.
    pub client_auth: Option<ClientAuth>,
}

/// `[server.tls] client_ca_file` and `client_auth`: which CAs vouch for
/// client certificates, and whether a client must present one.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// The CA file (for messages).
    pub ca_file: PathBuf,
    /// The CA certificates read from it when the config was loaded.
    pub roots: std::sync::Arc<rustls::RootCertStore>,
    /// `client_auth = "required"` (the default): the handshake refuses a
    /// client without a verified certificate. `optional`: it is let in,
    /// and only `identity = "client_cert"` routes refuse it.
    pub required: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("TLS certificate {path}: {why}")]
    Cert {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("TLS private key {path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// The client CA certificates cannot verify anything.
    #[error("TLS client CA file {path}: {why}")]
    ClientCa {
        /// The file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the pair.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The listener's acceptor, swapped by reload.
pub type SharedAcceptor = Arc<arc_swap::ArcSwap<TlsAcceptor>>;

/// Build the acceptor from the configured files.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let cert = std::fs::read(&files.cert_file).map_err(|e| TlsError::Cert {
        path: display(&files.cert_file),
        why: e.to_string(),
    })?;
    let key = std::fs::read(&files.key_file).map_err(|e| TlsError::Key {
        path: display(&files.key_file),
        why: e.to_string(),
    })?;
    acceptor_from_pem(files, &cert, &key)
}

/// Build the acceptor from the files' contents (`files` names them in
/// errors). Config validation calls this too, so `check` refuses exactly
/// the certificates and keys that startup refuses.
pub fn acceptor_from_pem(
    files: &TlsFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: display(&files.cert_file),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: display(&files.cert_file),
            why: "no PEM certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: display(&files.key_file),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(auth.roots.clone(), provider.clone());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::ClientCa {
                path: display(&auth.ca_file),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The verified client certificate of an accepted connection, read once:
/// `None` without mTLS, or when an optional certificate was not sent.
pub fn client_identity(
    connection: &rustls::ServerConnection,
) -> Option<crate::identity::client_cert::CertIdentity> {
    let end_entity = connection.peer_certificates()?.first()?;
    crate::identity::client_cert::CertIdentity::from_der(end_entity.as_ref())
}
