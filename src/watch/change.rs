//! What a reload changed, for the info log; never a key.

use std::fmt;

use zeroize::Zeroizing;

use crate::digest::{classify, sha256, KeyText};
use crate::{KeySet, ProxyAuthMode, ProxySecurityConfig};

/// What a reload changed, for the info log; never a key.
pub(crate) struct Change {
    pub(crate) auth_mode: (ProxyAuthMode, ProxyAuthMode),
    pub(crate) effective_mode: (ProxyAuthMode, ProxyAuthMode),
    pub(crate) allow_lan_access: (bool, bool),
    pub(crate) key_rotated: bool,
    pub(crate) named_keys: usize,
    pub(crate) named_keys_changed: bool,
}

impl Change {
    pub(crate) fn between(
        old: (&ProxySecurityConfig, &KeySet),
        new: (&ProxySecurityConfig, &KeySet),
    ) -> Change {
        Change {
            auth_mode: (old.0.auth_mode, new.0.auth_mode),
            effective_mode: (old.0.effective_auth_mode(), new.0.effective_auth_mode()),
            allow_lan_access: (old.0.allow_lan_access, new.0.allow_lan_access),
            key_rotated: key_identity(old.0.api_key.expose_secret())
                != key_identity(new.0.api_key.expose_secret()),
            named_keys: new.1.len(),
            named_keys_changed: old.1 != new.1,
        }
    }
}

/// The digest a configured key stands for, so writing a key as its own
/// `sha256:` digest is not reported as a rotation.
fn key_identity(api_key: &str) -> Option<Zeroizing<[u8; 32]>> {
    let trimmed = api_key.trim();
    match classify(trimmed) {
        KeyText::Digest(digest) => Some(Zeroizing::new(digest)),
        KeyText::BadDigest => None,
        KeyText::Plain if trimmed.is_empty() => None,
        KeyText::Plain => Some(Zeroizing::new(sha256(trimmed.as_bytes()))),
    }
}

/// `"strict"` or `"off -> strict"`.
pub(crate) fn transition<T: fmt::Display + PartialEq>((from, to): (T, T)) -> String {
    if from == to {
        to.to_string()
    } else {
        format!("{from} -> {to}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_described_without_keys() {
        let old = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1");
        let same_as_digest =
            ProxySecurityConfig::new(ProxyAuthMode::Strict, crate::key_digest("sk-1"));
        let empty = KeySet::new();
        let change = Change::between((&old, &empty), (&same_as_digest, &empty));
        assert!(!change.key_rotated);
        let mut keys = KeySet::new();
        keys.insert("a", "sk-a").unwrap();
        let new = ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-2");
        let change = Change::between((&old, &empty), (&new, &keys));
        assert!(change.key_rotated && change.named_keys_changed);
        assert_eq!(change.named_keys, 1);
        assert_eq!(transition(change.auth_mode), "strict -> off");
        assert_eq!(transition((true, true)), "true");
    }
}
