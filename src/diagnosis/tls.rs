//! Why a TLS handshake with the upstream failed, recovered from the text Pingora keeps.
//!
//! Pingora's rustls connector turns the typed `rustls::Error` into a string
//! (`TLS connect() failed: <pingora error> cause: <rustls error>, SNI: <name>`) and drops the
//! cause, so the reason can only be read back from that string. To keep that reliable, the
//! patterns below are matched against rustls's own `Display` output, and the tests build every
//! case from typed `rustls::Error` values passed through the same formatting chain Pingora
//! uses: a rustls upgrade that changes a wording fails those tests instead of silently turning
//! "certificate expired" into a generic handshake failure. The integration tests then check the
//! same classification end to end against real certificates.

use super::Diagnosis;

/// What a TLS failure text says, from most to least specific. Order matters: a certificate
/// problem is reported before the generic "invalid peer certificate" that wraps it.
const PATTERNS: &[(&str, Diagnosis)] = &[
    // CertificateError::ExpiredContext / Expired (Display of the unit variant is its Debug name).
    ("certificate expired", Diagnosis::TlsCertificateExpired),
    ("certificate: Expired", Diagnosis::TlsCertificateExpired),
    (
        "certificate not valid yet",
        Diagnosis::TlsCertificateExpired,
    ),
    ("certificate: NotValidYet", Diagnosis::TlsCertificateExpired),
    // CertificateError::NotValidForNameContext / NotValidForName.
    (
        "certificate not valid for name",
        Diagnosis::TlsCertificateNameMismatch,
    ),
    (
        "certificate: NotValidForName",
        Diagnosis::TlsCertificateNameMismatch,
    ),
    // Any other certificate verdict (UnknownIssuer, BadSignature, revoked...) means the chain
    // could not be trusted.
    (
        "invalid peer certificate",
        Diagnosis::TlsCertificateUntrusted,
    ),
    // A plain-HTTP answer ("HTTP/1.1 400 ...") is not a TLS record: its first byte is not a
    // content type rustls knows.
    ("InvalidContentType", Diagnosis::TlsUpstreamPlaintext),
];

/// A TLS handshake failure, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFailure<'a> {
    pub diagnosis: Diagnosis,
    /// The library's reason, without Pingora's wrapping: what an operator needs to read.
    pub reason: &'a str,
}

/// Classifies the text of a TLS handshake failure.
pub fn classify_tls_text(text: &str) -> TlsFailure<'_> {
    let diagnosis = PATTERNS
        .iter()
        .find(|(needle, _)| text.contains(needle))
        .map_or(Diagnosis::TlsHandshakeFailed, |(_, d)| *d);
    TlsFailure {
        diagnosis,
        reason: reason_of(text),
    }
}

/// The library's reason inside Pingora's chained error text: the innermost cause within the
/// `TLS connect() failed: ..., SNI: ...` frame that Pingora's handshake writes. Outside that frame
/// the chain carries only Pingora's own wrappers (the error type, "local address ...").
fn reason_of(text: &str) -> &str {
    const FRAME_START: &str = "TLS connect() failed: ";
    let framed = match text.find(FRAME_START) {
        Some(start) => {
            let inner = &text[start + FRAME_START.len()..];
            inner.rfind(", SNI: ").map_or(inner, |end| &inner[..end])
        }
        None => text,
    };
    framed
        .rsplit_once(" cause: ")
        .map_or(framed, |(_, cause)| cause)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::{Error, ErrorType};
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{CertificateError, InvalidMessage};

    /// Formats a rustls error exactly the way Pingora 0.9's rustls client path does:
    /// tokio-rustls wraps it in an `io::Error`, `InnerStream::connect` wraps that with
    /// `or_err(TLSHandshakeFailure, "tls connect error")`, `handshake` keeps only
    /// `format!("TLS connect() failed: {e}, SNI: {domain}")` as the context of a new error,
    /// and the connector adds the local address as its cause; triage reads the `Display` of
    /// that whole chain.
    fn as_pingora_text(e: rustls::Error) -> String {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let wrapped = Error::because(ErrorType::TLSHandshakeFailure, "tls connect error", io);
        let context = format!("TLS connect() failed: {wrapped}, SNI: localhost");
        let mut outer = Error::because(
            ErrorType::TLSHandshakeFailure,
            context,
            std::io::Error::other("local address 127.0.0.1:40000"),
        );
        outer.as_up();
        outer.to_string()
    }

    fn classify(e: rustls::Error) -> Diagnosis {
        classify_tls_text(&as_pingora_text(e)).diagnosis
    }

    /// An expired certificate, as webpki reports it today (with context) and in the bare form.
    #[test]
    fn expired() {
        let ctx = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(2_000_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000)),
        };
        assert_eq!(
            classify(rustls::Error::InvalidCertificate(ctx)),
            Diagnosis::TlsCertificateExpired
        );
        assert_eq!(
            classify(rustls::Error::InvalidCertificate(CertificateError::Expired)),
            Diagnosis::TlsCertificateExpired
        );
        assert_eq!(
            classify(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet
            )),
            Diagnosis::TlsCertificateExpired
        );
    }

    /// A certificate for another name, with and without the presented names.
    #[test]
    fn name_mismatch() {
        let expected = ServerName::try_from("localhost").expect("valid name");
        let ctx = CertificateError::NotValidForNameContext {
            expected,
            presented: vec!["DnsName(\"other.example\")".into()],
        };
        assert_eq!(
            classify(rustls::Error::InvalidCertificate(ctx)),
            Diagnosis::TlsCertificateNameMismatch
        );
        assert_eq!(
            classify(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            )),
            Diagnosis::TlsCertificateNameMismatch
        );
    }

    /// Unknown issuers and bad signatures mean an untrusted chain.
    #[test]
    fn untrusted() {
        for cert_error in [
            CertificateError::UnknownIssuer,
            CertificateError::BadEncoding,
            CertificateError::Revoked,
        ] {
            assert_eq!(
                classify(rustls::Error::InvalidCertificate(cert_error)),
                Diagnosis::TlsCertificateUntrusted
            );
        }
    }

    /// Plain HTTP bytes where a TLS record was expected.
    #[test]
    fn plaintext_answer() {
        assert_eq!(
            classify(rustls::Error::InvalidMessage(
                InvalidMessage::InvalidContentType
            )),
            Diagnosis::TlsUpstreamPlaintext
        );
    }

    /// Anything else stays a generic handshake failure, and the reason is the library's own text.
    #[test]
    fn generic_failure_keeps_the_reason() {
        let text = as_pingora_text(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        let failure = classify_tls_text(&text);
        assert_eq!(failure.diagnosis, Diagnosis::TlsHandshakeFailed);
        assert_eq!(failure.reason, "received fatal alert: HandshakeFailure");
    }

    /// The reason drops Pingora's wrapping and the SNI suffix.
    #[test]
    fn reason_is_the_innermost_cause() {
        let text = as_pingora_text(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            classify_tls_text(&text).reason,
            "invalid peer certificate: UnknownIssuer"
        );
    }
}
