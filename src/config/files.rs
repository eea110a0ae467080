//! The files a config names: CA files, the certificates of the https listeners and the admin
//! listener's token file. Each is read and parsed once, when the config is loaded, and what it
//! holds is handed on in the config types, so a file that cannot be used is a config error with
//! its line and column, and start-up and the proxy never read it again.

use super::{AdminToken, CaFile, Certificate};
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

/// The largest token file read: a token is a few dozen characters, so anything larger is the
/// wrong file.
const MAX_TOKEN_FILE: u64 = 4096;
/// The shortest token accepted: 16 characters of `openssl rand -hex 32` already hold 64 bits.
const MIN_TOKEN_LEN: usize = 16;

impl AdminToken {
    /// Reads a bearer token from a regular file of at most [`MAX_TOKEN_FILE`] bytes: one line
    /// (surrounding whitespace, a final newline included, is not part of it) of at least
    /// [`MIN_TOKEN_LEN`] characters of RFC 6750's `b64token` set, so it is sent as written.
    pub(super) fn read(path: &Path) -> Result<AdminToken, String> {
        use std::io::Read;
        let shown = path.display();
        // Checked before opening: opening a FIFO would block until something writes to it.
        let metadata =
            std::fs::metadata(path).map_err(|error| format!("cannot read {shown}: {error}"))?;
        if !metadata.is_file() {
            return Err(format!("{shown} is not a regular file"));
        }
        if metadata.len() > MAX_TOKEN_FILE {
            return Err(format!(
                "{shown} holds {} bytes; a token file holds at most {MAX_TOKEN_FILE}",
                metadata.len()
            ));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_TOKEN_FILE + 1).read_to_end(&mut bytes))
            .map_err(|error| format!("cannot read {shown}: {error}"))?;
        if bytes.len() as u64 > MAX_TOKEN_FILE {
            return Err(format!(
                "{shown} holds more than {MAX_TOKEN_FILE} bytes; a token file holds at most that"
            ));
        }
        let token = bytes.trim_ascii();
        let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
        if token.is_empty() {
            return Err(format!("{shown} holds no token"));
        }
        if !token.iter().all(b64token) {
            return Err(format!(
                "{shown}: the token may hold only letters, digits and - . _ ~ + / = (on one line)"
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "{shown}: the token has {} characters, fewer than {MIN_TOKEN_LEN}; make one with \
                 `openssl rand -hex 32`",
                token.len()
            ));
        }
        // Only b64token bytes remain, which are ASCII.
        let secret = String::from_utf8_lossy(token).into();
        Ok(AdminToken {
            path: path.to_owned(),
            secret,
        })
    }
}
