//! Certificates for the TLS failure tests, made fresh by rcgen in each test: a test CA, leaves it
//! signs (valid, expired, for another name), and self-signed certificates it did not sign.
//!
//! All keys are ECDSA P-256 (rcgen's default), which every rustls provider accepts. Validity
//! times are computed from the system clock, so "expired" and "valid" mean what they say on the
//! day the tests run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A certificate and its private key, in the forms servers and config files need.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PEM is long and says nothing to a person reading a failed assertion.
        f.debug_struct("CertifiedKey")
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    fn from_rcgen(cert: &Certificate, key: &KeyPair) -> Self {
        CertifiedKey {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls server config presenting this certificate (alone, without the CA: clients are
    /// expected to trust the CA directly), using the ring provider explicitly.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain = vec![CertificateDer::from(self.cert_der.clone())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("rcgen's certificate and key form a valid server identity");
        Arc::new(config)
    }
}

/// The crypto provider every config here is built with, so that no process-wide default is
/// needed even when several providers are compiled in.
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A test certificate authority, made fresh for each test.
pub struct TestPki {
    ca_cert: Certificate,
    ca_key: KeyPair,
}

impl TestPki {
    /// Makes a CA valid from yesterday to ten years from now.
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
        params
            .distinguished_name
            .push(DnType::CommonName, "triage test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now() - DAY, now() + 3650 * DAY);
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca_cert = params.self_signed(&ca_key).expect("self-sign the CA");
        TestPki { ca_cert, ca_key }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA, valid
    /// from an hour ago (tolerates small clock differences) for a year.
    pub fn leaf(&self, names: &[&str]) -> CertifiedKey {
        self.signed_leaf(names, now() - Duration::from_secs(3600), now() + 365 * DAY)
    }

    /// A certificate signed by this CA that expired a year ago (valid from two years ago).
    pub fn expired_leaf(&self, names: &[&str]) -> CertifiedKey {
        self.signed_leaf(names, now() - 730 * DAY, now() - 365 * DAY)
    }

    /// A certificate signed by this CA that only becomes valid in a year ("not yet valid", as
    /// after a clock jump backwards).
    pub fn not_yet_valid_leaf(&self, names: &[&str]) -> CertifiedKey {
        self.signed_leaf(names, now() + 365 * DAY, now() + 730 * DAY)
    }

    /// A valid self-signed certificate for `names`, which a client trusting only this CA
    /// rejects as signed by an unknown issuer.
    pub fn self_signed(&self, names: &[&str]) -> CertifiedKey {
        self_signed(names)
    }

    /// This CA's certificate, PEM, as a proxy's `ca_file` holds it.
    pub fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// This CA's certificate, DER.
    pub fn ca_der(&self) -> Vec<u8> {
        self.ca_cert.der().to_vec()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns that path.
    pub fn write_ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.ca_pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A rustls client config trusting only this CA (ring provider), for checking from the test
    /// itself what a TLS origin presents.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der()))
            .expect("the test CA is a valid trust anchor");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn signed_leaf(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> CertifiedKey {
        let mut params = leaf_params(names);
        set_validity(&mut params, not_before, not_after);
        let key = KeyPair::generate().expect("generate a leaf key");
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign the leaf with the test CA");
        CertifiedKey::from_rcgen(&cert, &key)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A valid self-signed certificate for `names`, from no CA at all (what [`TestPki::self_signed`]
/// returns; also used by the origin's `SpeaksTls`).
pub fn self_signed(names: &[&str]) -> CertifiedKey {
    let mut params = leaf_params(names);
    set_validity(
        &mut params,
        now() - Duration::from_secs(3600),
        now() + 365 * DAY,
    );
    let key = KeyPair::generate().expect("generate a key");
    let cert = params.self_signed(&key).expect("self-sign");
    CertifiedKey::from_rcgen(&cert, &key)
}

/// Parameters of a server certificate: subject alternative names (rcgen makes an IP SAN of
/// anything that parses as an address), the first name as CN, and the serverAuth usage.
fn leaf_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans)
        .unwrap_or_else(|e| panic!("invalid certificate names {names:?}: {e}"));
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params
}

fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    // rcgen takes `time::OffsetDateTime`, which it does not re-export; building it from the
    // Unix epoch plus a std Duration avoids a direct dependency on the `time` crate.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("clock after 1970");
    params.not_before = epoch + since_epoch(not_before);
    params.not_after = epoch + since_epoch(not_after);
}

fn now() -> SystemTime {
    SystemTime::now()
}
