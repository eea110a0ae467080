//! Request ids: unique per request, cheap to make, short enough to read out over the phone.
//!
//! An id is a 64-bit counter, offset by a per-process random seed and passed through a bijective
//! mixer, so ids are unique within a process (no two counter values map to the same id), look
//! unrelated to each other (no guessable neighbours in `/diagnoses/{id}`), and differ between
//! restarts. Making one is an atomic increment and sixteen table lookups: no allocation, no lock.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A request id: 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId([u8; 16]);

impl RequestId {
    /// The next id of this process.
    pub fn next() -> RequestId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId::from_u64(mix(n.wrapping_add(seed())))
    }

    fn from_u64(value: u64) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId(out)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into the array.
        std::str::from_utf8(&self.0).unwrap_or("0000000000000000")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.0)
            .unwrap_or_else(|_| http::HeaderValue::from_static("0000000000000000"))
    }

    /// Parses an id as printed, e.g. from a `/diagnoses/{id}` path.
    pub fn parse(text: &str) -> Option<RequestId> {
        let bytes: [u8; 16] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(RequestId(bytes))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// A random value per process, from the standard library's randomly keyed hasher.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    })
}

/// SplitMix64's finalizer: a bijection on u64, so distinct inputs give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A hundred thousand ids in a row are all distinct and well-formed.
    #[test]
    fn ids_are_unique_and_hex() {
        let mut seen = HashSet::new();
        for _ in 0..100_000 {
            let id = RequestId::next();
            assert_eq!(id.as_str().len(), 16);
            assert_eq!(RequestId::parse(id.as_str()), Some(id));
            assert!(seen.insert(id));
        }
    }

    /// Parsing rejects anything that is not 16 lowercase hex digits.
    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "0123",
            "0123456789abcdeg",
            "0123456789ABCDEF",
            "0123456789abcdef0",
        ] {
            assert_eq!(RequestId::parse(bad), None, "{bad}");
        }
    }
}
