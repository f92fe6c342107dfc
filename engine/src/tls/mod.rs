//! The client's TLS, made from a [`ClientTlsPlan`] before anything runs:
//! rustls on ring, ALPN `h2`, the server verified against a CA file, the
//! Mozilla roots or a throwaway CA ([`pki`]), or not at all when asked. The
//! handshake runs in the connector, under the frame reader that sees GOAWAYs.

pub mod pki;

use std::sync::Arc;

use leaklab_wire::tls as files;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use pki::Pki;

use crate::call::ResolveError;
use crate::scenario::{ClientTlsPlan, Identity, Trust};

/// What the connector needs to open TLS on a connection.
#[derive(Clone)]
pub struct ClientTls {
    pub connector: tokio_rustls::TlsConnector,
    /// The name the server's certificate must be valid for (SNI too, when it is a DNS name).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

fn error(origin: &str, reason: impl std::fmt::Display) -> ResolveError {
    ResolveError { origin: origin.to_owned(), reason: reason.to_string() }
}

/// The client's TLS for a server at `host`; `pki` is the run's throwaway CA, when the plan trusts it.
pub fn client(plan: &ClientTlsPlan, host: &str, pki: Option<&Pki>) -> Result<ClientTls, ResolveError> {
    let provider = files::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let generated = || {
        pki.ok_or_else(|| error("server.tls", "the throwaway CA is made for the toy server only, not for a --target"))
    };
    let builder = match &plan.trust {
        Trust::CaFile(path) => {
            builder.with_root_certificates(files::roots(path).map_err(|e| error(&plan.origins.cacert, e))?)
        }
        Trust::MozillaRoots => {
            builder.with_root_certificates(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
        }
        Trust::Generated => builder.with_root_certificates(generated()?.roots()),
        Trust::Insecure => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnything(provider))),
    };
    let mut config = match &plan.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match identity {
                Identity::Files { cert, key } => (
                    files::certificates(cert).map_err(|e| error(&plan.origins.cert, e))?,
                    files::private_key(key).map_err(|e| error(&plan.origins.key, e))?,
                ),
                Identity::Generated => generated()?
                    .client_identity()
                    .ok_or_else(|| error("server.tls.client_auth", "the throwaway CA made no client certificate"))?,
            };
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error(&plan.origins.key, format!("does not fit the certificate: {e}")))?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = plan.server_name.as_deref().unwrap_or(host);
    let origin = if plan.server_name.is_some() { plan.origins.cname.as_str() } else { "--target" };
    let server_name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_owned())
        .map_err(|e| error(origin, format!("{name:?} is not a DNS name or an IP address: {e}")))?;
    Ok(ClientTls { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
}

/// `insecure`: any certificate is accepted, but the handshake's signatures are still checked, so the
/// connection is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The failure kind of a TLS error (`tls_unknown_issuer`, `tls_name_mismatch`, `tls_expired`,
/// `tls_alert_certificate_required`…), for `requests.errors`.
pub fn failure_kind(error: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let kind = match error {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => "unknown_issuer".to_owned(),
        rustls::Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "name_mismatch".to_owned()
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => "expired".to_owned(),
        rustls::Error::InvalidCertificate(other) => format!("bad_certificate_{}", snake_case(&format!("{other:?}"))),
        rustls::Error::AlertReceived(alert) => format!("alert_{}", snake_case(&format!("{alert:?}"))),
        rustls::Error::NoApplicationProtocol => "no_alpn_h2".to_owned(),
        other => snake_case(&format!("{other:?}")),
    };
    format!("tls_{kind}")
}

/// `UnknownIssuer` → `unknown_issuer`; anything after the name (fields) is dropped.
pub fn snake_case(debug: &str) -> String {
    let name: String = debug.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_have_kinds_a_reader_can_act_on() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(failure_kind(&unknown), "tls_unknown_issuer");
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert_eq!(failure_kind(&name), "tls_name_mismatch");
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert_eq!(failure_kind(&alert), "tls_alert_certificate_required");
    }
}
