//! The files a config names: CA files, the certificates of the https listeners and the admin
//! listener's token file. Each is read and parsed once, when the config is loaded, and what it
//! holds is handed on in the config types, so a file that cannot be used is a config error with
//! its line and column, and start-up and the proxy never read it again.
//!
//! Every file is read through [`read_file`]: it must be a regular file (a directory, FIFO or
//! device is refused before it is opened: `/dev/zero` would be read until memory runs out, a
//! FIFO would wait forever for a writer) of at most [`MAX_FILE_SIZE`] bytes, and the read itself
//! stops past that bound, so a file that grows while it is read cannot exhaust memory either.
//! A reader of a new file key uses it the same way.

use super::{AdminToken, CaFile, Certificate};
use crate::tls::ServerCertificate;
use pingora::utils::tls::WrappedX509;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The most a file the config names (a certificate, key or CA file) may hold: a bundle of every
/// publicly trusted root CA is about a quarter of it.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// The most the config file itself may hold: tens of thousands of routes.
pub const MAX_CONFIG_SIZE: u64 = 16 << 20;

/// Reads the file at `path`, which must be a regular file of at most `max` bytes. The message of
/// an error names the path and says what is wrong, for a reader to prefix with its key.
pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let cannot_read = |error: std::io::Error| format!("cannot read {}: {error}", path.display());
    // Checked before opening: opening a FIFO blocks until a writer comes.
    let metadata = std::fs::metadata(path).map_err(cannot_read)?;
    check_regular(path, &metadata, max)?;
    let file = File::open(path).map_err(cannot_read)?;
    // Checked again on what was opened, in case the path was replaced in between.
    check_regular(path, &file.metadata().map_err(cannot_read)?, max)?;
    let mut contents = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // One byte past the bound tells a file that grew from one that fits.
    file.take(max.saturating_add(1))
        .read_to_end(&mut contents)
        .map_err(cannot_read)?;
    if contents.len() as u64 > max {
        return Err(format!(
            "{} grew past the {} maximum while it was read",
            path.display(),
            written_size(max)
        ));
    }
    Ok(contents)
}

/// The file a config value names: `text` resolved against `origin` (the config file's
/// directory), and what [`read_file`] reads from it within [`MAX_FILE_SIZE`]. A reader of a file
/// key passes it to [`Table::spanned`](super::table::Table::spanned):
/// `t.spanned("token_file", |text| named_file(origin, text))`.
pub(super) fn named_file(origin: &Path, text: &str) -> Result<(PathBuf, Vec<u8>), String> {
    let path = origin.join(text);
    let contents = read_file(&path, MAX_FILE_SIZE)?;
    Ok((path, contents))
}

fn check_regular(path: &Path, metadata: &std::fs::Metadata, max: u64) -> Result<(), String> {
    let kind = metadata.file_type();
    let other = match () {
        _ if kind.is_file() => None,
        _ if kind.is_dir() => Some("a directory"),
        _ if kind.is_fifo() => Some("a FIFO"),
        _ if kind.is_socket() => Some("a socket"),
        _ if kind.is_char_device() => Some("a character device"),
        _ if kind.is_block_device() => Some("a block device"),
        _ => Some("not a file"),
    };
    if let Some(other) = other {
        return Err(format!(
            "{} is not a regular file but {other}",
            path.display()
        ));
    }
    if metadata.len() > max {
        return Err(format!(
            "{} holds {} bytes, more than the {} maximum",
            path.display(),
            metadata.len(),
            written_size(max)
        ));
    }
    Ok(())
}

/// A size as the docs write it: `1 MiB`, `64 KiB`, or bytes.
fn written_size(bytes: u64) -> String {
    match bytes {
        _ if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) => format!("{} MiB", bytes >> 20),
        _ if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) => format!("{} KiB", bytes >> 10),
        _ => format!("{bytes} bytes"),
    }
}

impl CaFile {
    /// Reads a PEM file of CA certificates into the form Pingora's peer options take.
    pub(super) fn read(path: &Path) -> Result<CaFile, String> {
        const MARKER: &[u8] = b"-----BEGIN CERTIFICATE-----";
        let pem = read_file(path, MAX_FILE_SIZE)?;
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
    /// Parses a certificate chain and its key, read from `cert_file` and `key_file` with
    /// [`read_file`], and checks they belong together.
    pub(super) fn parse(
        cert_file: PathBuf,
        cert_pem: &[u8],
        key_file: PathBuf,
        key_pem: &[u8],
    ) -> Result<Certificate, String> {
        let loaded = ServerCertificate::from_pem(&cert_file, cert_pem, &key_file, key_pem)?;
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
