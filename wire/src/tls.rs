//! TLS for the toy server: a certificate chain and key from PEM files, and
//! with a client CA, mutual TLS (every client must present a certificate
//! that CA signed). The handshake happens under the ping policy's frame
//! reader, so the policy sees HTTP/2 frames whether or not TLS is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig, server::WebPkiClientVerifier};

/// The files of the server's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's own first.
    pub cert: PathBuf,
    /// PEM private key of the first certificate.
    pub key: PathBuf,
    /// PEM CA certificates that client certificates must chain to; `None`: no client certificate asked.
    pub client_ca: Option<PathBuf>,
}

/// A TLS file that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct TlsError {
    pub path: PathBuf,
    pub reason: String,
}

fn error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError { path: path.to_owned(), reason: reason.to_string() }
}

/// Every certificate in the PEM file at `path`; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(error(path, "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| error(path, pem_reason(e)))
}

fn pem_reason(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// The CA certificates in `path`, as trust roots.
pub fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A ring-backed rustls provider: the same one whatever else the process links.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which of [`TlsFiles`] could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Cert,
    Key,
    ClientCa,
}

/// The server's TLS configuration, offering only HTTP/2 (ALPN `h2`).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, (Which, TlsError)> {
    let chain = certificates(&files.cert).map_err(|e| (Which::Cert, e))?;
    let key = private_key(&files.key).map_err(|e| (Which::Key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = roots(ca).map_err(|e| (Which::ClientCa, e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| (Which::ClientCa, error(ca, format!("cannot verify clients with it: {e}"))))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| (Which::Key, error(&files.key, format!("does not fit {}: {e}", files.cert.display()))))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
