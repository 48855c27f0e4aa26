//! [`ApiKey`]: the configured key as a string that is wiped when dropped.

use std::fmt;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A secret key: the configured [`api_key`](crate::ProxySecurityConfig::api_key),
/// a key from [`generate_api_key`](crate::generate_api_key) or from the
/// key store's admin. Its bytes are overwritten with zeros when it is
/// dropped, and the only way to read them is the explicit, greppable
/// [`expose_secret`](Self::expose_secret).
///
/// Every copy is wiped: a clone owns its own buffer and wipes it too, so the
/// old config a hot reload replaces, the copy
/// [`SharedSecurityConfig::load`](crate::SharedSecurityConfig::load) hands
/// out and the one an `update` closure edits leave no key behind in freed
/// memory. It cannot be changed in place (which could reallocate and leave
/// the old buffer behind); assign a new one instead.
///
/// It compares with strings (without an early exit), its `Debug` shows only
/// whether it is empty, and it has no `Display` and no `Deref`, so it ends
/// up in a log line or an ordinary `String` only where the code says
/// `expose_secret()`. It (de)serializes as a plain string: serializing a
/// config writes its key.
///
/// ```
/// use proxy_auth::{ApiKey, ProxyAuthMode, ProxySecurityConfig};
///
/// let mut config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1");
/// assert_eq!(config.api_key, "sk-1");
/// config.api_key = "sk-2".into(); // the old key's buffer is wiped here
/// assert!(config.api_key.expose_secret().starts_with("sk-"));
/// assert_eq!(format!("{:?}", config.api_key), "ApiKey(<redacted>)");
/// assert_eq!(format!("{:?}", ApiKey::default()), "ApiKey(<empty>)");
/// ```
///
/// What it cannot wipe: the string it was made from if that was borrowed
/// (`"sk-1".into()` copies it), copies a deserializer made on the way
/// (serde_json's `from_str` and `from_slice` read an unescaped string in
/// place; an escaped one, `from_reader`, `from_value` and TOML's parser go
/// through buffers of their own), and copies made from `expose_secret()`
/// (`key.expose_secret().to_owned()` is an ordinary `String`).
#[derive(Clone, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps `key`, taking over its buffer (no copy is made).
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself. Every place that reads a secret says so with this
    /// call: printing a generated key for its owner, handing it to a client.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty or only whitespace (what the layer treats as
    /// no key), without exposing it.
    #[must_use]
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        // Wipes the whole allocation, spare capacity included.
        self.0.zeroize();
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey(key)
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        ApiKey(key.to_owned())
    }
}

impl From<&String> for ApiKey {
    fn from(key: &String) -> Self {
        ApiKey(key.clone())
    }
}

/// Compares without an early exit on the first differing byte (the lengths
/// may show), so comparing configs does not become a key oracle.
impl PartialEq for ApiKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for ApiKey {}

impl PartialEq<str> for ApiKey {
    fn eq(&self, other: &str) -> bool {
        self.0.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl PartialEq<&str> for ApiKey {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for ApiKey {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

impl PartialEq<ApiKey> for str {
    fn eq(&self, other: &ApiKey) -> bool {
        *other == *self
    }
}

impl PartialEq<ApiKey> for &str {
    fn eq(&self, other: &ApiKey) -> bool {
        *other == **self
    }
}

impl PartialEq<ApiKey> for String {
    fn eq(&self, other: &ApiKey) -> bool {
        *other == **self
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Like the config's `Debug`: a blank key is no key.
        f.write_str(if self.is_blank() {
            "ApiKey(<empty>)"
        } else {
            "ApiKey(<redacted>)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_with_strings_and_hides_itself() {
        let key = ApiKey::new("sk-secret");
        assert_eq!(key, "sk-secret");
        assert_eq!(key, String::from("sk-secret"));
        assert_ne!(key, "sk-secreT");
        assert_ne!(key, "sk-secret ");
        assert_eq!("sk-secret", key);
        assert_eq!(String::from("sk-secret"), key);
        assert_eq!(format!("{:?}", ApiKey::new(" \t")), "ApiKey(<empty>)");
        assert_eq!(key, ApiKey::from("sk-secret"));
        assert_eq!(key.expose_secret().len(), 9);
        assert!(ApiKey::new(" \t").is_blank() && !key.is_blank());
        assert!(!format!("{key:?}").contains("secret"));
    }

    #[test]
    fn takes_over_a_string_without_copying_it() {
        let owned = String::from("sk-moved");
        let at = owned.as_ptr();
        assert_eq!(ApiKey::from(owned).expose_secret().as_ptr(), at);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_as_a_plain_string() {
        let key: ApiKey = serde_json::from_str(r#""sk-json""#).unwrap();
        assert_eq!(key, "sk-json");
        assert_eq!(serde_json::to_string(&key).unwrap(), r#""sk-json""#);
    }
}
