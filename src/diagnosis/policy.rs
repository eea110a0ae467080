//! Who may read the detailed fields of a diagnosis.
//!
//! Addresses, errno text and TLS reasons help whoever operates the app and help an attacker
//! mapping the network behind the proxy just as much (Envoy removed the TLS reason from response
//! bodies for that reason). The `[diagnosis]` policy decides, per client address, whether a
//! response carries them; the token, phase, source, hint and id are always sent.

use crate::config::{Cidr, DetailPolicy, DiagnosisPolicy};
use std::net::IpAddr;

/// The disclosure policy, resolved from config once and shared by every request.
#[derive(Debug, Clone)]
pub struct Disclosure {
    detail: DetailPolicy,
    trusted: Vec<Cidr>,
}

impl Disclosure {
    pub fn new(policy: &DiagnosisPolicy) -> Self {
        Disclosure {
            detail: policy.detail.clone(),
            trusted: policy.trusted.clone(),
        }
    }

    /// Whether a client at `client` sees the detailed fields. A client whose address is unknown
    /// (e.g. a Unix socket) is not trusted under the `trusted` policy.
    pub fn shows_detail(&self, client: Option<IpAddr>) -> bool {
        match self.detail {
            DetailPolicy::All => true,
            DetailPolicy::None => false,
            DetailPolicy::Trusted => {
                client.is_some_and(|ip| self.trusted.iter().any(|net| net.contains(ip)))
            }
        }
    }
}
