//! Constant-time key comparison that hides the configured key's length.
//!
//! `subtle`'s slice comparison returns early when the lengths differ, which
//! tells an attacker the key's length from the response time. Here the
//! configured key is stored once, zero-padded to a power-of-two capacity, and
//! every comparison reads exactly as many bytes as were *presented*, wrapping
//! around the padded buffer. So the work depends only on the presented key's
//! length, which the attacker chose and already knows: not on where the
//! first differing byte is, nor on the configured key's length. The verdict
//! (bytes equal, lengths equal) is combined through `subtle::Choice`, so the
//! compiler cannot turn it back into an early exit.

use subtle::ConstantTimeEq;

/// Smallest padded capacity: keys up to 64 bytes share one buffer size, so
/// even the buffer's size says nothing about typical key lengths.
const MIN_CAPACITY: usize = 64;

/// The configured key in the shape the comparison needs: the plaintext
/// padded as described above, or only its SHA-256 digest when the config
/// held `sha256:<hex>`. Holds the secret; its `Debug` does not show it.
#[derive(Clone)]
pub(crate) enum ConfiguredKey {
    Plain {
        padded: Box<[u8]>,
        len: usize,
    },
    #[cfg(feature = "key-set")]
    Digest([u8; 32]),
}

impl ConfiguredKey {
    pub(crate) fn new(key: &[u8]) -> Self {
        let capacity = key.len().max(MIN_CAPACITY).next_power_of_two();
        let mut padded = vec![0u8; capacity].into_boxed_slice();
        padded[..key.len()].copy_from_slice(key);
        ConfiguredKey::Plain {
            padded,
            len: key.len(),
        }
    }

    /// A key that nothing matches, in the same time as any other: for a
    /// configured key no client could send (bytes outside key text).
    pub(crate) fn unmatchable() -> Self {
        ConfiguredKey::Plain {
            padded: vec![0u8; MIN_CAPACITY].into_boxed_slice(),
            len: usize::MAX,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, ConfiguredKey::Plain { len: 0, .. })
    }

    /// Whether `presented` equals the configured key, in time that depends
    /// only on `presented.len()`. An empty presented key never matches.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        // Branching on the presented length leaks nothing the sender does
        // not know; an empty key must never match, even an empty config.
        if presented.is_empty() {
            return false;
        }
        match self {
            ConfiguredKey::Plain { padded, len } => matches_padded(padded, *len, presented),
            #[cfg(feature = "key-set")]
            // A digest may stand for any bytes; only key text is a key
            // (a plain configured key is key text by construction).
            ConfiguredKey::Digest(digest) => {
                bool::from(crate::digest::sha256(presented).ct_eq(digest))
                    && crate::extract::is_key_text(presented)
            }
        }
    }
}

fn matches_padded(padded: &[u8], len: usize, presented: &[u8]) -> bool {
    let mask = padded.len() - 1;
    let mut diff: u64 = 0;
    let mut offset = 0;
    let mut chunks = presented.chunks_exact(8);
    for chunk in &mut chunks {
        diff |= word(chunk) ^ window(padded, offset & mask);
        offset += 8;
    }
    // The tail, zero-filled to a word, against a whole window: past the
    // configured key the buffer holds zeros, so equal keys still give 0,
    // and where the configured key is longer the lengths differ anyway.
    for (i, &byte) in chunks.remainder().iter().enumerate() {
        diff |= u64::from(byte ^ padded[(offset + i) & mask]);
    }
    // One verdict word: any differing bit or any length difference makes
    // it non-zero. Folding before the single `ct_eq` keeps it branch-free.
    let verdict = diff | (presented.len() ^ len) as u64;
    bool::from(verdict.ct_eq(&0))
}

fn word(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_ne_bytes(buf)
}

/// The 8 bytes at `at`. The capacity is a power of two >= 64 and `at` a
/// multiple of 8 below it, so the window is always in bounds.
fn window(padded: &[u8], at: usize) -> u64 {
    word(&padded[at..at + 8])
}

impl std::fmt::Debug for ConfiguredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "<empty>"
        } else {
            "<redacted>"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_match() {
        for key in [
            "a",
            "sk-0123456789abcdef0123456789abcdef",
            "12345678",
            "123456789",
        ] {
            assert!(
                ConfiguredKey::new(key.as_bytes()).matches(key.as_bytes()),
                "{key}"
            );
        }
        let long = "x".repeat(1000);
        assert!(ConfiguredKey::new(long.as_bytes()).matches(long.as_bytes()));
    }

    #[test]
    fn keys_of_every_length_match_themselves_only() {
        let lengths = (1..=130).chain([255, 256, 257, 511, 512, 1023, 1024, 1025]);
        for len in lengths {
            let key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let configured = ConfiguredKey::new(&key);
            assert!(
                configured.matches(&key),
                "a {len}-byte key must match itself"
            );
            let mut last_wrong = key.clone();
            last_wrong[len - 1] ^= 1;
            assert!(!configured.matches(&last_wrong), "{len}: last byte");
            let mut first_wrong = key.clone();
            first_wrong[0] ^= 1;
            assert!(!configured.matches(&first_wrong), "{len}: first byte");
            assert!(!configured.matches(&key[..len - 1]), "{len}: prefix");
            let mut longer = key.clone();
            longer.push(0);
            assert!(!configured.matches(&longer), "{len}: with a NUL after");
        }
    }

    #[test]
    fn every_single_byte_difference_is_caught() {
        let key = b"sk-0123456789abcdef0123456789abcdef";
        let configured = ConfiguredKey::new(key);
        for i in 0..key.len() {
            let mut wrong = *key;
            wrong[i] ^= 0x01;
            assert!(
                !configured.matches(&wrong),
                "difference at byte {i} not caught"
            );
        }
    }

    #[test]
    fn prefixes_extensions_and_padding_do_not_match() {
        let configured = ConfiguredKey::new(b"sk-abc");
        assert!(!configured.matches(b"sk-ab"));
        assert!(!configured.matches(b"sk-abcd"));
        // The padding is zeros: a presented key with trailing NULs must not
        // be mistaken for the key followed by padding.
        assert!(!configured.matches(b"sk-abc\0\0"));
        // Wrapping around the buffer must not alias a longer key onto it.
        let mut wrapped = vec![0u8; 64];
        wrapped[..6].copy_from_slice(b"sk-abc");
        wrapped.extend_from_slice(b"sk-abc");
        assert!(!configured.matches(&wrapped));
    }

    #[test]
    fn empty_never_matches() {
        assert!(!ConfiguredKey::new(b"").matches(b""));
        assert!(!ConfiguredKey::new(b"k").matches(b""));
        assert!(ConfiguredKey::new(b"").is_empty());
    }

    #[cfg(feature = "key-set")]
    #[test]
    fn digest_keys_match_their_preimage_only() {
        let configured = ConfiguredKey::Digest(crate::digest::sha256(b"sk-d"));
        assert!(configured.matches(b"sk-d"));
        let not_text = "sk-\u{e9}".as_bytes();
        let of_not_text = ConfiguredKey::Digest(crate::digest::sha256(not_text));
        assert!(!of_not_text.matches(not_text), "only key text is a key");
        assert!(!configured.matches(b"sk-e"));
        assert!(!configured.matches(b""));
        assert!(!configured.is_empty());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", ConfiguredKey::new(b"secret")), "<redacted>");
    }
}
