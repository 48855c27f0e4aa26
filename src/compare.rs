//! Constant-time key comparison that hides the configured key's length.
//!
//! `subtle`'s slice comparison returns early when the lengths differ, which
//! tells an attacker the key's length from the response time. Here every
//! plaintext configured key, whatever its length, is stored zero-padded in
//! one buffer of the same fixed size ([`MAX_KEY_LEN`] bytes, aligned to a
//! cache line), and every comparison reads exactly as many bytes as were
//! *presented*, wrapping around that buffer. So the work, and the memory
//! touched (which cache lines, hence how many may miss), depend only on the
//! presented key's length, which the attacker chose and already knows: not
//! on where the first differing byte is, nor on the configured key's
//! length. The verdict (bytes equal, lengths equal) is combined through
//! `subtle::Choice`, so the compiler cannot turn it back into an early exit.
//!
//! A buffer sized after the key (a power of two per length bucket) was the
//! earlier design: with the buffers out of cache, a long presented key took
//! measurably longer against a long configured key, as it touched more
//! cache lines. One size for all closes that.
//!
//! The key is wiped from the buffer (and a digest from its array) when the
//! value is dropped.

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The longest plaintext configured key: the size of the one buffer every
/// plaintext key lives in. Longer keys are refused (see `Policy::build`):
/// giving them a larger buffer would tell their length class apart.
pub(crate) const MAX_KEY_LEN: usize = 4096;

// The wrap-around indexing masks offsets with `MAX_KEY_LEN - 1` and reads
// whole 8-byte windows at multiples of 8.
const _: () = assert!(MAX_KEY_LEN.is_power_of_two() && MAX_KEY_LEN >= 8);

/// The padded key. Aligned so a key's first bytes sit in one cache line
/// wherever the allocator puts the buffer.
#[repr(C, align(64))]
pub(crate) struct Padded([u8; MAX_KEY_LEN]);

/// The configured key in the shape the comparison needs: the plaintext
/// padded as described above, or only its SHA-256 digest when the config
/// held `sha256:<hex>`. Holds the secret; its `Debug` does not show it.
/// Not `Clone`: the one copy lives in the compiled config.
pub(crate) enum ConfiguredKey {
    Plain {
        padded: Box<Padded>,
        len: usize,
    },
    #[cfg(feature = "key-set")]
    Digest(Box<[u8; 32]>),
}

impl ConfiguredKey {
    /// The key, or `None` when it is longer than [`MAX_KEY_LEN`].
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        let mut padded = Box::new(Padded([0u8; MAX_KEY_LEN]));
        padded.0.get_mut(..key.len())?.copy_from_slice(key);
        Some(ConfiguredKey::Plain {
            padded,
            len: key.len(),
        })
    }

    /// No key: nothing matches it (the layer refuses before comparing).
    pub(crate) fn empty() -> Self {
        ConfiguredKey::Plain {
            padded: Box::new(Padded([0u8; MAX_KEY_LEN])),
            len: 0,
        }
    }

    /// A key that nothing matches, in the same time as any other: for a
    /// configured key no client could send (bytes outside key text).
    pub(crate) fn unmatchable() -> Self {
        ConfiguredKey::Plain {
            padded: Box::new(Padded([0u8; MAX_KEY_LEN])),
            len: usize::MAX,
        }
    }

    #[cfg(feature = "key-set")]
    pub(crate) fn digest(digest: [u8; 32]) -> Self {
        ConfiguredKey::Digest(Box::new(digest))
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
                let mut of_presented = crate::digest::sha256(presented);
                let equal = bool::from(of_presented.ct_eq(&**digest));
                of_presented.zeroize();
                equal && crate::extract::is_key_text(presented)
            }
        }
    }
}

impl Drop for ConfiguredKey {
    fn drop(&mut self) {
        match self {
            ConfiguredKey::Plain { padded, len } => {
                padded.0.zeroize();
                len.zeroize();
            }
            #[cfg(feature = "key-set")]
            ConfiguredKey::Digest(digest) => digest.zeroize(),
        }
    }
}

fn matches_padded(padded: &Padded, len: usize, presented: &[u8]) -> bool {
    const MASK: usize = MAX_KEY_LEN - 1;
    let padded = &padded.0;
    let mut diff: u64 = 0;
    let mut offset = 0;
    let mut chunks = presented.chunks_exact(8);
    for chunk in &mut chunks {
        diff |= word(chunk) ^ window(padded, offset & MASK);
        offset += 8;
    }
    // The tail byte by byte: past the configured key the buffer holds
    // zeros, so equal keys still give 0, and where the configured key is
    // longer the lengths differ anyway.
    for (i, &byte) in chunks.remainder().iter().enumerate() {
        diff |= u64::from(byte ^ padded[(offset + i) & MASK]);
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

/// The 8 bytes at `at`. The size is a power of two and `at` a multiple of
/// 8 below it, so the window is always in bounds.
fn window(padded: &[u8; MAX_KEY_LEN], at: usize) -> u64 {
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
                ConfiguredKey::new(key.as_bytes())
                    .unwrap()
                    .matches(key.as_bytes()),
                "{key}"
            );
        }
        let long = "x".repeat(1000);
        assert!(ConfiguredKey::new(long.as_bytes())
            .unwrap()
            .matches(long.as_bytes()));
    }

    #[test]
    fn keys_of_every_length_match_themselves_only() {
        let lengths = (1..=130).chain([255, 256, 257, 1023, 1024, 1025, 4095, MAX_KEY_LEN]);
        for len in lengths {
            let key: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let configured = ConfiguredKey::new(&key).unwrap();
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
        let configured = ConfiguredKey::new(key).unwrap();
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
        let configured = ConfiguredKey::new(b"sk-abc").unwrap();
        assert!(!configured.matches(b"sk-ab"));
        assert!(!configured.matches(b"sk-abcd"));
        // The padding is zeros: a presented key with trailing NULs must not
        // be mistaken for the key followed by padding.
        assert!(!configured.matches(b"sk-abc\0\0"));
        // Wrapping around the buffer must not alias a longer key onto it.
        let mut wrapped = vec![0u8; MAX_KEY_LEN];
        wrapped[..6].copy_from_slice(b"sk-abc");
        wrapped.extend_from_slice(b"sk-abc");
        assert!(!configured.matches(&wrapped));
    }

    #[test]
    fn keys_longer_than_the_buffer_are_refused() {
        assert!(ConfiguredKey::new(&[b'k'; MAX_KEY_LEN + 1]).is_none());
        let full = ConfiguredKey::new(&[b'k'; MAX_KEY_LEN]).unwrap();
        assert!(full.matches(&[b'k'; MAX_KEY_LEN]));
        // Twice around the buffer: the bytes agree, the length does not.
        assert!(!full.matches(&[b'k'; 2 * MAX_KEY_LEN]));
    }

    #[test]
    fn unmatchable_matches_nothing() {
        let nothing = ConfiguredKey::unmatchable();
        assert!(!nothing.is_empty());
        for presented in [&b"k"[..], &[0u8; 8], &[0u8; MAX_KEY_LEN]] {
            assert!(!nothing.matches(presented));
        }
    }

    #[test]
    fn empty_never_matches() {
        assert!(!ConfiguredKey::empty().matches(b""));
        assert!(!ConfiguredKey::empty().matches(b"k"));
        assert!(!ConfiguredKey::new(b"k").unwrap().matches(b""));
        assert!(ConfiguredKey::empty().is_empty());
        assert!(ConfiguredKey::new(b"").unwrap().is_empty());
    }

    #[cfg(feature = "key-set")]
    #[test]
    fn digest_keys_match_their_preimage_only() {
        let configured = ConfiguredKey::digest(crate::digest::sha256(b"sk-d"));
        assert!(configured.matches(b"sk-d"));
        let not_text = "sk-\u{e9}".as_bytes();
        let of_not_text = ConfiguredKey::digest(crate::digest::sha256(not_text));
        assert!(!of_not_text.matches(not_text), "only key text is a key");
        assert!(!configured.matches(b"sk-e"));
        assert!(!configured.matches(b""));
        assert!(!configured.is_empty());
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", ConfiguredKey::new(b"secret").unwrap()),
            "<redacted>"
        );
    }
}
