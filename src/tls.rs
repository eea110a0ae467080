//! Downstream TLS: the certificates triage presents on its `https` listeners, chosen by SNI.
//!
//! Each `[[tls.certificates]]` entry serves the DNS names in its certificate (exact names and
//! `*.` wildcards); a client that sends no SNI, or a name no certificate covers, gets the first
//! certificate, as nginx's default server would. Files are read and checked (certificate and key
//! match) once, when the config is loaded ([`ServerCertificate::from_pem`]), so a bad certificate is
//! a config error, not a crash, and start-up serves what the check read.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// One loaded certificate chain with its key, and the names it serves.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

impl PartialEq for ServerCertificate {
    /// The same chain (the key is checked to belong to it), so a renewed certificate differs.
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names && self.key.cert == other.key.cert
    }
}

impl Eq for ServerCertificate {}

/// Picks a certificate by SNI.
#[derive(Debug)]
pub struct SniResolver {
    entries: Vec<ServerCertificate>,
}

impl SniResolver {
    /// Serves `entries`; the first is the default.
    pub fn new(entries: Vec<ServerCertificate>) -> Result<SniResolver, String> {
        if entries.is_empty() {
            return Err("an https listener needs at least one [[tls.certificates]]".to_owned());
        }
        Ok(SniResolver { entries })
    }

    fn find(&self, server_name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let by_name = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.entries
                .iter()
                .find(|e| e.names.iter().any(|n| name_matches(n, &name)))
        });
        by_name.or(self.entries.first()).map(|e| &e.key)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(client_hello.server_name()).cloned()
    }
}

/// `pattern` from a certificate (exact or `*.example.com`) against a requested name.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

impl ServerCertificate {
    /// Parses a PEM certificate chain and its PEM private key, as read from `cert_path` and
    /// `key_path` (by the config loader, which bounds what it reads), and checks they belong
    /// together. The paths only name the files in messages.
    pub fn from_pem(
        cert_path: &Path,
        cert_pem: &[u8],
        key_path: &Path,
        key_pem: &[u8],
    ) -> Result<ServerCertificate, String> {
        let (mut cert_pem, mut key_pem) = (cert_pem, key_pem);
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        let Some(leaf) = chain.first() else {
            return Err(format!("{}: no certificate found", cert_path.display()));
        };
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem)
            .map_err(|e| format!("{}: {e}", key_path.display()))?
            .ok_or_else(|| format!("{}: no private key found", key_path.display()))?;
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| format!("{}: unsupported private key: {e}", key_path.display()))?;
        let names = certificate_names(leaf)
            .map_err(|e| format!("{}: not a valid certificate: {e}", cert_path.display()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(|e| {
            format!(
                "{} and {} do not belong together: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
        Ok(ServerCertificate {
            names,
            key: Arc::new(certified),
        })
    }
}

/// The DNS names a certificate is valid for (subjectAltName, else the common name), lowercased.
fn certificate_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact names and single-label wildcards match; a wildcard does not match its own apex.
    #[test]
    fn wildcard_matching() {
        assert!(name_matches("example.com", "example.com"));
        assert!(name_matches("*.example.com", "api.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("example.com", "other.com"));
    }
}
