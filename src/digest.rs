//! Helpers every module may use: lowercase hex, SHA-256, and the
//! `sha256:<hex>` form that configs use in place of a plaintext key.

/// The digest prefix as written by [`key_digest`]. Read case-insensitively:
/// `SHA256:` or `Sha256:` is still a digest, never a plaintext key.
#[cfg(feature = "key-set")]
const DIGEST_PREFIX: &str = "sha256:";

/// Appends `bytes` as lowercase hex.
#[cfg(any(feature = "key-set", feature = "generate-key"))]
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

#[cfg(feature = "key-set")]
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// What a configured key string is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyText {
    /// A plaintext key.
    Plain,
    /// `sha256:<64 hex>`, prefix and hex in any case.
    #[cfg(feature = "key-set")]
    Digest([u8; 32]),
    /// Claims to be a digest (starts with `sha256:` in any case) but is
    /// malformed, or digests are not compiled in. Never a plaintext key:
    /// whoever reads the config must not be able to log in with its text.
    BadDigest,
}

/// Classifies a (trimmed) configured key.
pub(crate) fn classify(value: &str) -> KeyText {
    let Some(prefix) = value.as_bytes().get(..7) else {
        return KeyText::Plain;
    };
    if !prefix.eq_ignore_ascii_case(b"sha256:") {
        return KeyText::Plain;
    }
    #[cfg(feature = "key-set")]
    if let Some(digest) = parse_hex32(&value.as_bytes()[7..]) {
        return KeyText::Digest(digest);
    }
    KeyText::BadDigest
}

#[cfg(feature = "key-set")]
fn parse_hex32(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        // Both nibbles are < 16, so the sum fits a byte.
        *byte = (nibble(pair[0])? * 16 + nibble(pair[1])?) as u8;
    }
    Some(out)
}

/// The SHA-256 digest of a key, in the `sha256:<64 hex>` form that
/// [`ProxySecurityConfig::api_key`](crate::ProxySecurityConfig::api_key) and
/// [`KeySet`](crate::KeySet) accept in place of the plaintext key.
///
/// From a shell: `printf %s "$KEY" | sha256sum` and prefix the hex with
/// `sha256:`. Surrounding whitespace of `key` is not part of the key.
///
/// ```
/// // printf %s sk-test | sha256sum
/// assert_eq!(
///     proxy_auth::key_digest("sk-test"),
///     "sha256:f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0",
/// );
/// ```
#[cfg(feature = "key-set")]
#[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
#[must_use]
pub fn key_digest(key: &str) -> String {
    digest_string(&zeroize::Zeroizing::new(sha256(key.trim().as_bytes())))
}

/// `sha256:<64 lowercase hex>`, the form [`classify`] reads back.
#[cfg(feature = "key-set")]
pub(crate) fn digest_string(digest: &[u8; 32]) -> String {
    let mut out = String::with_capacity(DIGEST_PREFIX.len() + 64);
    out.push_str(DIGEST_PREFIX);
    push_hex(&mut out, digest);
    out
}

#[cfg(all(test, feature = "key-set"))]
mod tests {
    use super::*;

    const SK_TEST: &str = "sha256:f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0";

    #[test]
    fn digest_format_matches_sha256sum() {
        assert_eq!(key_digest("sk-test"), SK_TEST);
        assert_eq!(classify(SK_TEST), KeyText::Digest(sha256(b"sk-test")));
    }

    #[test]
    fn prefix_and_hex_are_case_insensitive() {
        let want = KeyText::Digest(sha256(b"sk-test"));
        let hex = &SK_TEST[7..];
        for prefix in ["sha256:", "SHA256:", "Sha256:", "sHa256:"] {
            assert_eq!(classify(&format!("{prefix}{hex}")), want, "{prefix}");
            let upper = format!("{prefix}{}", hex.to_uppercase());
            assert_eq!(classify(&upper), want, "{upper}");
        }
    }

    #[test]
    fn malformed_digests_are_never_plaintext() {
        for bad in [
            "sha256:",
            "SHA256:abc",
            &format!("sha256:{}", "zz".repeat(32)),
            &format!("Sha256:{}0", &SK_TEST[7..]),
            "sha256:é",
        ] {
            assert_eq!(classify(bad), KeyText::BadDigest, "{bad}");
        }
        assert_eq!(classify("sk-plain"), KeyText::Plain);
        assert_eq!(classify("sha256"), KeyText::Plain);
        assert_eq!(classify("sha25"), KeyText::Plain);
    }

    #[test]
    fn known_vector() {
        // SHA-256("abc") from FIPS 180-2.
        let mut hex = String::new();
        push_hex(&mut hex, &sha256(b"abc"));
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
