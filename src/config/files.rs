//! The files a config names: CA files and the certificates of the https listeners. Each is read
//! and parsed once, when the config is loaded, and what it holds is handed on in the config
//! types, so a file that cannot be used is a config error with its line and column, and start-up
//! and the proxy never read it again.

use super::{CaFile, Certificate};
use crate::tls::ServerCertificate;
use pingora::utils::tls::WrappedX509;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

impl CaFile {
    /// Reads a PEM file of CA certificates into the form Pingora's peer options take.
    pub(super) fn read(path: &Path) -> Result<CaFile, String> {
        const MARKER: &[u8] = b"-----BEGIN CERTIFICATE-----";
        let pem = std::fs::read(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        if !pem.windows(MARKER.len()).any(|window| window == MARKER) {
            return Err(format!(
                "{} holds no PEM certificate (no -----BEGIN CERTIFICATE----- line)",
                path.display()
            ));
        }
        let mut certs = Vec::new();
        for der in rustls_pemfile::certs(&mut pem.as_slice()) {
            let der = der.map_err(|e| format!("{}: {e}", path.display()))?;
            let wrapped = WrappedX509::try_new(der.to_vec(), |raw| {
                X509Certificate::from_der(raw).map(|(_, cert)| cert)
            })
            .map_err(|e| format!("{}: not a valid certificate: {e}", path.display()))?;
            certs.push(wrapped);
        }
        if certs.is_empty() {
            return Err(format!("{}: no certificate found", path.display()));
        }
        Ok(CaFile {
            path: path.to_owned(),
            certs: Arc::from(certs.into_boxed_slice()),
        })
    }
}

impl PartialEq for CaFile {
    /// The same file with the same certificates.
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
            && self.certs.len() == other.certs.len()
            && self
                .certs
                .iter()
                .zip(other.certs.iter())
                .all(|(a, b)| a.borrow_raw_cert() == b.borrow_raw_cert())
    }
}

impl Eq for CaFile {}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl Certificate {
    /// Reads a certificate chain and its key, and checks they belong together.
    pub(super) fn read(cert_file: PathBuf, key_file: PathBuf) -> Result<Certificate, String> {
        let loaded = ServerCertificate::load(&cert_file, &key_file)?;
        Ok(Certificate {
            cert_file,
            key_file,
            loaded,
        })
    }
}
