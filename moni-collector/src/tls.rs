//! HTTPS for the collector (rustls, ring; no OpenSSL).
//!
//! `[tls] cert_file` and `key_file` turn HTTP into HTTPS; `client_ca_file`
//! adds mutual TLS: a client certificate is then verified against that CA
//! (an invalid or expired one fails the handshake), and an upload must come
//! with a certificate whose subject CN or a DNS SAN is the node id its token
//! names (checked per request, 403 otherwise). Readers and `/healthz`,
//! `/metrics` need no client certificate. The files are read again on
//! SIGHUP ([`Reloadable`]); a reload that fails keeps the old ones.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", path.display())]
    Cert { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    ClientCa { path: PathBuf, message: String },
}

impl TlsError {
    /// The configuration key the error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } => "tls.cert_file",
            TlsError::Key { .. } => "tls.key_file",
            TlsError::ClientCa { .. } => "tls.client_ca_file",
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// Builds the rustls server configuration from the files.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: s.cert_file.clone(),
        message,
    };
    let key_err = |message: String| TlsError::Key {
        path: s.key_file.clone(),
        message,
    };
    let chain = load_certs(&s.cert_file).map_err(cert_err)?;
    crate::config::warn_if_readable_by_others(&s.key_file);
    let key = PrivateKeyDer::from_pem_file(&s.key_file).map_err(|e| key_err(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(e.to_string()))?;
    let builder = match &s.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_err = |message: String| TlsError::ClientCa {
                path: ca.clone(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca).map_err(ca_err)? {
                roots.add(c).map_err(|e| ca_err(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ca_err(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| key_err(format!("does not fit tls.cert_file: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The current server configuration, replaced on SIGHUP.
pub struct Reloadable {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn new(settings: TlsSettings) -> Result<Reloadable, TlsError> {
        let current = RwLock::new(server_config(&settings)?);
        Ok(Reloadable { settings, current })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.settings)?;
        match self.current.write() {
            Ok(mut g) => *g = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    pub fn mutual(&self) -> bool {
        self.settings.client_ca_file.is_some()
    }
}

/// The names a verified client certificate carries: subject CNs and DNS
/// SANs. Attached to every request of the connection.
#[derive(Clone, Debug, Default)]
pub struct PeerNames(pub Arc<Vec<String>>);

impl PeerNames {
    pub fn from_der(der: &CertificateDer<'_>) -> PeerNames {
        let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
            return PeerNames::default();
        };
        let mut names = common_names(cert.subject());
        names.extend(cert.valid_dns_names().map(str::to_string));
        PeerNames(Arc::new(names))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }
}

/// One DER TLV at the start of `b`: (tag, contents, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | usize::from(x);
        }
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The commonName values of an X.509 Name given as the contents of its
/// SEQUENCE (as webpki hands it out). Malformed input yields what parsed.
pub fn common_names(mut name: &[u8]) -> Vec<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut out = Vec::new();
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
    while let Some((0x31, mut set, rest)) = tlv(name) {
        name = rest;
        while let Some((0x30, atv, next)) = tlv(set) {
            set = next;
            let Some((0x06, oid, value)) = tlv(atv) else {
                continue;
            };
            if oid != CN {
                continue;
            }
            // UTF8String, PrintableString, IA5String, T61String
            if let Some((0x0c | 0x13 | 0x16 | 0x14, v, _)) = tlv(value) {
                if let Ok(s) = std::str::from_utf8(v) {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_names_are_read_and_garbage_is_harmless() {
        // SET { SEQ { OID 2.5.4.6 (C), PrintableString "DE" } },
        // SET { SEQ { OID 2.5.4.3 (CN), UTF8String "node-1" } }
        let name = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'D', b'E', 0x31,
            0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x06, b'n', b'o', b'd', b'e',
            b'-', b'1',
        ];
        assert_eq!(common_names(&name), vec!["node-1".to_string()]);
        for cut in 0..name.len() {
            let got = common_names(&name[..cut]);
            assert!(got.is_empty(), "cut at {cut}: {got:?}");
        }
        assert!(common_names(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(common_names(&[0x31, 0x80]).is_empty());
    }
}
