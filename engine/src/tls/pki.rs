//! A throwaway CA, made when a run starts: a certificate for the toy server
//! (`localhost` and 127.0.0.1) and, for mutual TLS, one for the client, both
//! signed by it. Scenarios with TLS need no files on disk; the run writes the
//! server's into its directory for the server process to read.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::RootCertStore;

/// The CA and the certificates it signed, in memory.
#[derive(Debug)]
pub struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    server: (String, String),
    /// The client's certificate and key, for mutual TLS.
    client: Option<(CertificateDer<'static>, Vec<u8>)>,
    client_pem: Option<(String, String)>,
}

/// Where [`Pki::write`] put the server's files.
#[derive(Debug, Clone)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// With mutual TLS, the client's certificate and key, for clients of your own.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl Pki {
    /// A new CA and a server certificate; with `client_auth`, a client certificate too.
    pub fn generate(client_auth: bool) -> Result<Pki, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a client trusting another throwaway CA then sees an unknown issuer,
        // not a same-named issuer whose signature does not match.
        let made = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let name =
            format!("leaklab throwaway CA {}.{:09} pid {}", made.as_secs(), made.subsec_nanos(), std::process::id());
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, common_name: &str| {
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, common_name);
            params.extended_key_usages = vec![purpose];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok::<_, rcgen::Error>((cert, key))
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()],
            ExtendedKeyUsagePurpose::ServerAuth,
            "leaklab toy server",
        )?;
        let client = match client_auth {
            true => {
                Some(leaf(vec!["leaklab-client".to_owned()], ExtendedKeyUsagePurpose::ClientAuth, "leaklab client")?)
            }
            false => None,
        };
        Ok(Pki {
            ca_pem: ca.pem(),
            ca: ca.der().clone(),
            server: (server_cert.pem(), server_key.serialize_pem()),
            client_pem: client.as_ref().map(|(cert, key)| (cert.pem(), key.serialize_pem())),
            client: client.map(|(cert, key)| (cert.der().clone(), key.serialize_der())),
        })
    }

    /// The CA, as the only trust root.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("the CA just made is a valid certificate");
        roots
    }

    /// The client's certificate chain and key, when mutual TLS was asked.
    pub fn client_identity(&self) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let (cert, key) = self.client.as_ref()?;
        Some((vec![cert.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone()))))
    }

    /// Writes the CA, the server's certificate and key and, with mutual TLS, the client's into `dir`
    /// (keys with mode 0600).
    pub fn write(&self, dir: &Path) -> std::io::Result<PkiFiles> {
        let key = |path: &Path, pem: &str| -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(pem.as_bytes())
        };
        let files = PkiFiles {
            ca: dir.join("tls-ca.pem"),
            server_cert: dir.join("tls-server.pem"),
            server_key: dir.join("tls-server.key"),
            client: self.client_pem.as_ref().map(|_| (dir.join("tls-client.pem"), dir.join("tls-client.key"))),
        };
        std::fs::write(&files.ca, &self.ca_pem)?;
        std::fs::write(&files.server_cert, &self.server.0)?;
        key(&files.server_key, &self.server.1)?;
        if let (Some((cert_path, key_path)), Some((cert, pem))) = (&files.client, &self.client_pem) {
            std::fs::write(cert_path, cert)?;
            key(key_path, pem)?;
        }
        Ok(files)
    }
}
