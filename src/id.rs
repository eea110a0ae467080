//! Request ids: unique per request, cheap to make, short enough to read out over the phone, and
//! unpredictable.
//!
//! An id is a 64-bit counter passed through a keyed pseudo-random permutation: a six-round
//! Feistel network on the counter's two 32-bit halves, whose round function is SipHash-1-3 under
//! a secret key per process (the standard library's `RandomState`, keyed from the operating
//! system's random source). A permutation, so ids are unique within a process (no two counter
//! values map to the same id); keyed, so one id tells nothing about the next ones (no guessable
//! neighbours in `/diagnoses/{id}`), and ids differ between restarts. Making one is an atomic
//! increment and six short hashes: no allocation, no lock. Ids start with the process's
//! `[server] instance`, so a fleet's ids name the instance that holds their report.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The longest instance name (`[server] instance`).
pub const MAX_INSTANCE: usize = 64;
const HEX_DIGITS: usize = 16;
const MAX_ID: usize = MAX_INSTANCE + 1 + HEX_DIGITS;

/// A request id: `INSTANCE-` (the `[server] instance` of the process that made it) and 16
/// lowercase hex digits, so an id on an error page says which of a fleet's instances holds its
/// report. Kept as text of its own (no allocation, `Copy`): it goes into a header, a log line
/// and a report for every request.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The text, then zeros.
    text: [u8; MAX_ID],
    len: u8,
}

/// This process's instance name, as ids start with it: set once at start-up
/// ([`set_instance`]); until then (unit tests) ids are the hex digits alone.
static INSTANCE: OnceLock<(usize, [u8; MAX_INSTANCE + 1])> = OnceLock::new();

/// Whether `name` may be an instance name: 1 to 64 of `A-Z a-z 0-9 . _ -`, safe in a header,
/// a URL path segment and a log field as it is.
pub fn valid_instance(name: &str) -> bool {
    (1..=MAX_INSTANCE).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Sets the instance name every id of this process starts with. The first call wins (a reload
/// cannot rename a running process: its ids already went out); an invalid name is ignored.
pub fn set_instance(name: &str) {
    if !valid_instance(name) {
        return;
    }
    let mut prefix = [0u8; MAX_INSTANCE + 1];
    prefix[..name.len()].copy_from_slice(name.as_bytes());
    prefix[name.len()] = b'-';
    let _ = INSTANCE.set((name.len() + 1, prefix));
}

/// The instance name of this process, if set.
pub fn instance() -> Option<&'static str> {
    let (len, prefix) = INSTANCE.get()?;
    std::str::from_utf8(&prefix[..len - 1]).ok()
}

impl RequestId {
    /// The next id of this process.
    pub fn next() -> RequestId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId::from_u64(Permutation::of_process().apply(n))
    }

    fn from_u64(value: u64) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; MAX_ID];
        let start = match INSTANCE.get() {
            Some((len, prefix)) => {
                text[..*len].copy_from_slice(&prefix[..*len]);
                *len
            }
            None => 0,
        };
        for (i, byte) in text[start..start + HEX_DIGITS].iter_mut().enumerate() {
            *byte = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
        }
        RequestId {
            text,
            len: (start + HEX_DIGITS) as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only the instance name's characters, `-` and hex digits are ever written.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("0000000000000000")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.text[..usize::from(self.len)])
            .unwrap_or_else(|_| http::HeaderValue::from_static("0000000000000000"))
    }

    /// The instance that made this id (`None` for an id of the hex digits alone).
    pub fn instance(&self) -> Option<&str> {
        self.as_str().rsplit_once('-').map(|(instance, _)| instance)
    }

    /// Parses an id as printed, e.g. from a `/diagnoses/{id}` path: `INSTANCE-` and 16 hex
    /// digits, or the 16 digits alone, which stand for this process's own instance.
    pub fn parse(text: &str) -> Option<RequestId> {
        let (instance, hex) = match text.rsplit_once('-') {
            Some((instance, hex)) => (Some(instance), hex),
            None => (None, text),
        };
        let hex_ok = hex.len() == HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok || !instance.is_none_or(valid_instance) {
            return None;
        }
        let full = match (instance, INSTANCE.get()) {
            (Some(_), _) | (None, None) => text.as_bytes(),
            (None, Some(_)) => {
                let value = u64::from_str_radix(hex, 16).ok()?;
                return Some(RequestId::from_u64(value));
            }
        };
        let mut bytes = [0u8; MAX_ID];
        bytes[..full.len()].copy_from_slice(full);
        Some(RequestId {
            text: bytes,
            len: full.len() as u8,
        })
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
            assert_eq!(id.as_str().len(), 16, "no instance is set in unit tests");
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

    /// Ids with an instance name print and parse back whole; the digits alone or a bad
    /// instance name are handled as documented. (The process-wide instance is never set in
    /// unit tests, so these build such ids by parsing.)
    #[test]
    fn ids_with_an_instance_parse() {
        let id = RequestId::parse("web-1.eu_2-0123456789abcdef").expect("id");
        assert_eq!(id.as_str(), "web-1.eu_2-0123456789abcdef");
        assert_eq!(id.instance(), Some("web-1.eu_2"));
        assert_eq!(id.header_value(), "web-1.eu_2-0123456789abcdef");
        assert_eq!(
            RequestId::parse("0123456789abcdef").expect("id").instance(),
            None
        );
        for bad in [
            "we b-0123456789abcdef",
            "-0123456789abcdef",
            "web-0123456789ABCDEF",
            "web-0123456789abcde",
            &format!("{}-0123456789abcdef", "a".repeat(65)),
        ] {
            assert_eq!(RequestId::parse(bad), None, "{bad}");
        }
        assert!(valid_instance(&"a".repeat(64)));
        assert!(!valid_instance("a/b"));
    }
}
