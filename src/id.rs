//! Request ids: unique per request, cheap to make, short enough to read out over the phone, and
//! unpredictable.
//!
//! An id is a 64-bit counter passed through a keyed pseudo-random permutation: a six-round
//! Feistel network on the counter's two 32-bit halves, whose round function is SipHash-1-3 under
//! a secret key per process (the standard library's `RandomState`, keyed from the operating
//! system's random source). A permutation, so ids are unique within a process (no two counter
//! values map to the same id); keyed, so one id tells nothing about the next ones (no guessable
//! neighbours in `/diagnoses/{id}`), and ids differ between restarts. Making one is an atomic
//! increment and six short hashes: no allocation, no lock.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
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
        RequestId::from_u64(Permutation::of_process().apply(n))
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

/// Feistel rounds: with a pseudo-random round function, four already make a strong
/// pseudo-random permutation; six leave a margin for the short (32-bit) halves.
const ROUNDS: usize = 6;

/// A keyed permutation of u64: each round's key is a `RandomState` of its own.
struct Permutation {
    rounds: [RandomState; ROUNDS],
}

impl Permutation {
    /// The process's permutation, keyed once, on first use.
    fn of_process() -> &'static Permutation {
        static PERMUTATION: OnceLock<Permutation> = OnceLock::new();
        PERMUTATION.get_or_init(|| Permutation {
            rounds: std::array::from_fn(|_| RandomState::new()),
        })
    }

    fn apply(&self, value: u64) -> u64 {
        let (mut left, mut right) = ((value >> 32) as u32, value as u32);
        for key in &self.rounds {
            (left, right) = (right, left ^ key.hash_one(right) as u32);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    /// The inverse of [`Permutation::apply`]: the rounds backwards.
    #[cfg(test)]
    fn invert(&self, value: u64) -> u64 {
        let (mut left, mut right) = ((value >> 32) as u32, value as u32);
        for key in self.rounds.iter().rev() {
            (left, right) = (right ^ key.hash_one(left) as u32, left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }
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

    /// The permutation is one: inverting it gives back every counter value, so no two counter
    /// values can share an id (not only the 100,000 tried above).
    #[test]
    fn the_permutation_inverts() {
        let permutation = Permutation::of_process();
        for n in (0..10_000u64).chain([u64::MAX, u64::MAX - 1, 1 << 32, 0xdead_beef_0000_0001]) {
            assert_eq!(permutation.invert(permutation.apply(n)), n);
        }
    }

    /// Two permutations keyed separately (two processes) give different ids for the same
    /// counters.
    #[test]
    fn ids_depend_on_the_key() {
        let one = Permutation {
            rounds: std::array::from_fn(|_| RandomState::new()),
        };
        let other = Permutation {
            rounds: std::array::from_fn(|_| RandomState::new()),
        };
        assert!((0..100).all(|n| one.apply(n) != other.apply(n)));
    }

    /// The attack on the previous scheme (a per-process offset added to the counter, then
    /// SplitMix64's public finalizer) fails: it inverted the finalizer on one id, added one and
    /// applied the finalizer again, which gave the next id exactly.
    #[test]
    fn the_next_id_cannot_be_computed_from_one_id() {
        fn inverse_mod_2_64(a: u64) -> u64 {
            // Newton's iteration doubles the correct low bits each step: 1, 2, 4, ..., 64.
            let mut x = a;
            for _ in 0..6 {
                x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
            }
            x
        }
        fn splitmix(mut z: u64) -> u64 {
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn unsplitmix(mut z: u64) -> u64 {
            z ^= (z >> 31) ^ (z >> 62);
            z = z.wrapping_mul(inverse_mod_2_64(0x94d0_49bb_1331_11eb));
            z ^= (z >> 27) ^ (z >> 54);
            z = z.wrapping_mul(inverse_mod_2_64(0xbf58_476d_1ce4_e5b9));
            z ^ (z >> 30) ^ (z >> 60)
        }
        assert_eq!(
            unsplitmix(splitmix(12345)),
            12345,
            "the attack itself works"
        );
        let hex = |id: RequestId| u64::from_str_radix(id.as_str(), 16).expect("hex");
        let ids: Vec<u64> = (0..64).map(|_| hex(RequestId::next())).collect();
        let guessed = ids
            .windows(2)
            .filter(|pair| splitmix(unsplitmix(pair[0]).wrapping_add(1)) == pair[1])
            .count();
        assert_eq!(guessed, 0);
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
