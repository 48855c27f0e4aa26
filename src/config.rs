//! [`ProxySecurityConfig`]: the settings users write, and the key generator.

use std::fmt;
use std::net::SocketAddr;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::{ApiKey, ProxyAuthMode};

/// The proxy's auth settings, as written in a config file or built in code.
///
/// The field names and their serde form are those of Antigravity Tools'
/// `security` section, so an existing config deserializes unchanged:
///
/// ```
/// use proxy_auth::{ProxyAuthMode, ProxySecurityConfig};
///
/// let config: ProxySecurityConfig = serde_json::from_str(
///     r#"{ "auth_mode": "auto", "api_key": "sk-local", "allow_lan_access": true }"#,
/// )?;
/// assert_eq!(config.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
///
/// // `auth_mode` and `allow_lan_access` may be left out; `api_key` may not,
/// // so a config that forgot the key fails loudly instead of running with a
/// // key nobody knows.
/// let config: ProxySecurityConfig = serde_json::from_str(r#"{ "api_key": "sk-local" }"#)?;
/// assert_eq!(config.auth_mode, ProxyAuthMode::Auto);
/// assert!(!config.allow_lan_access);
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// `Debug` never prints the key, only whether it is empty.
///
/// Build one with [`new`](Self::new) (fields may be added, so it cannot be
/// written as a struct literal outside this crate).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[non_exhaustive]
pub struct ProxySecurityConfig {
    /// Which requests need the key; see [`effective_auth_mode`](Self::effective_auth_mode).
    #[cfg_attr(feature = "serde", serde(default))]
    pub auth_mode: ProxyAuthMode,
    /// The key clients must present. Surrounding whitespace is ignored when
    /// the key is compared (an HTTP header value cannot carry it anyway); an
    /// empty or all-whitespace key with auth enabled denies every request
    /// that needs a key. Wiped from memory when dropped (see [`ApiKey`]).
    /// Plaintext keys may be up to 4096 bytes long (after trimming); a longer
    /// one is refused like an empty one, with an error log.
    pub api_key: ApiKey,
    /// Whether the proxy listens beyond loopback; only consulted by
    /// [`ProxyAuthMode::Auto`] and by [`check_listen_addr`](Self::check_listen_addr).
    #[cfg_attr(feature = "serde", serde(default))]
    pub allow_lan_access: bool,
    /// The default [`Limits`](crate::Limits) of every key: the plain
    /// `api_key`'s, and those a [`KeySet`](crate::KeySet) key leaves out
    /// (see [`limit`](crate::limit)). Default: none. In serde, `limits = {
    /// rpm = 60, max_concurrent = 4 }`, left out when none.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "crate::Limits::is_none")
    )]
    pub limits: crate::Limits,
}

impl ProxySecurityConfig {
    /// A config with the given mode and key, LAN access off.
    #[must_use]
    pub fn new(auth_mode: ProxyAuthMode, api_key: impl Into<ApiKey>) -> Self {
        ProxySecurityConfig {
            auth_mode,
            api_key: api_key.into(),
            allow_lan_access: false,
            #[cfg(feature = "key-set")]
            limits: crate::Limits::NONE,
        }
    }

    /// Sets the default [`limits`](Self::limits) of every key.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets `allow_lan_access`.
    #[must_use]
    pub fn allow_lan_access(mut self, allow: bool) -> Self {
        self.allow_lan_access = allow;
        self
    }

    /// The mode actually enforced: `auto` becomes `off` without LAN access
    /// and `all_except_health` with it; the other modes are unchanged.
    #[must_use]
    pub fn effective_auth_mode(&self) -> ProxyAuthMode {
        self.auth_mode.resolve(self.allow_lan_access)
    }

    /// Refuses to serve the network with auth silently off: an error when
    /// `addr` is reachable from other machines (anything but a loopback
    /// address; `0.0.0.0` and `::` included) while `auto` resolves to `off`
    /// (`allow_lan_access` is false). Call it before binding.
    ///
    /// Antigravity ties the two settings: LAN access means listening on all
    /// interfaces, and `auto` then turns auth on. A proxy told to listen on
    /// the LAN without `allow_lan_access` would otherwise serve everyone
    /// with no key. An explicit `auth_mode = off` is taken at its word and
    /// passes.
    ///
    /// ```
    /// use proxy_auth::{ProxyAuthMode, ProxySecurityConfig};
    ///
    /// let config = ProxySecurityConfig::new(ProxyAuthMode::Auto, "sk-1");
    /// assert!(config.check_listen_addr("127.0.0.1:8045".parse()?).is_ok());
    /// let err = config.check_listen_addr("0.0.0.0:8045".parse()?).unwrap_err();
    /// assert!(err.to_string().contains("allow_lan_access"));
    ///
    /// assert!(config.clone().allow_lan_access(true).check_listen_addr("0.0.0.0:8045".parse()?).is_ok());
    /// let off = ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-1");
    /// assert!(off.check_listen_addr("0.0.0.0:8045".parse()?).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_listen_addr(&self, addr: SocketAddr) -> Result<(), ExposedWithoutAuth> {
        let loopback = addr.ip().to_canonical().is_loopback();
        if loopback || self.auth_mode == ProxyAuthMode::Off {
            return Ok(());
        }
        match self.effective_auth_mode() {
            ProxyAuthMode::Off => Err(ExposedWithoutAuth { addr }),
            _ => Ok(()),
        }
    }
}

/// Why [`ProxySecurityConfig::check_listen_addr`] refused an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to serve {addr} with auth off: auth_mode is auto and allow_lan_access is false, so every request from the network would pass without a key. Set allow_lan_access=true (auth becomes all_except_health), set auth_mode to strict or all_except_health, listen on 127.0.0.1, or set auth_mode=off explicitly to serve without auth")]
pub struct ExposedWithoutAuth {
    addr: SocketAddr,
}

impl ExposedWithoutAuth {
    /// The address that was refused.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Why a config refuses requests it is meant to let through, or holds an
/// `api_key` that can never match (reported whatever the mode): found by
/// [`ProxyAuthLayer::check_keys`](crate::ProxyAuthLayer::check_keys) or
/// [`SharedSecurityConfig::check_keys`](crate::SharedSecurityConfig::check_keys)
/// before serving, and logged as an error when the config is compiled. The
/// layer fails closed on each: requests that need a key are refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnusableKey {
    /// Auth is on, `api_key` is empty and there are no named keys.
    #[error("auth mode is {mode} but api_key is empty and there are no named keys, so every request that needs a key is refused (no_key_configured). Set api_key (or add named keys), or set auth_mode=off")]
    NoKey {
        /// The effective mode.
        mode: ProxyAuthMode,
    },
    /// `api_key` starts with `sha256:` (in any case) but is not followed by
    /// 64 hex characters, or digests are not compiled in.
    #[cfg_attr(feature = "key-set", error("configured api_key starts with \"sha256:\" but is not followed by 64 hex characters; treating the key as unset, so requests that need a key are refused"))]
    #[cfg_attr(not(feature = "key-set"), error("configured api_key is a sha256 digest, which needs proxy-auth's `key-set` feature; treating the key as unset, so requests that need a key are refused"))]
    BadDigest,
    /// A plaintext `api_key` longer than 4096 bytes after trimming.
    #[error("configured api_key is longer than 4096 bytes, the longest a comparison covers in constant time; treating the key as unset, so requests that need a key are refused. Use a shorter key (generate_api_key makes 35 bytes) or its sha256:<hex> digest")]
    TooLong,
    /// `api_key` has non-ASCII or control characters, which no client can
    /// send in a header.
    #[error("configured api_key contains non-ASCII or control characters; clients cannot send such a key in a header, so no request will match it")]
    NotKeyText,
}

#[cfg(feature = "generate-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "generate-key")))]
impl Default for ProxySecurityConfig {
    /// Mode `auto`, LAN access off, and a fresh key from [`generate_api_key`].
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator is unavailable; see
    /// [`generate_api_key`].
    fn default() -> Self {
        ProxySecurityConfig::new(ProxyAuthMode::default(), generate_api_key())
    }
}

impl fmt::Debug for ProxySecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ProxySecurityConfig");
        debug
            .field("auth_mode", &self.auth_mode)
            .field("effective_auth_mode", &self.effective_auth_mode())
            .field("api_key", &self.api_key)
            .field("allow_lan_access", &self.allow_lan_access);
        #[cfg(feature = "key-set")]
        debug.field("limits", &self.limits);
        debug.finish()
    }
}

/// Why [`try_generate_api_key`] failed: the OS gave no randomness.
#[cfg(feature = "generate-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "generate-key")))]
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator is unavailable ({0}); set api_key explicitly instead of generating one")]
pub struct KeyGenError(getrandom::Error);

/// A new random key: `sk-` followed by 32 lowercase hex characters (128 bits
/// from the operating system's CSPRNG), the format Antigravity Tools users
/// already have in their configs. It comes as an [`ApiKey`], wiped when
/// dropped; show it to its owner with
/// [`expose_secret`](ApiKey::expose_secret).
///
/// # Panics
///
/// If the OS random number generator is unavailable, which on supported
/// platforms only happens in a broken sandbox; use [`try_generate_api_key`]
/// to handle that case.
#[cfg(feature = "generate-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "generate-key")))]
#[must_use]
pub fn generate_api_key() -> ApiKey {
    try_generate_api_key()
        .expect("the OS random number generator must be available to generate an API key")
}

/// Like [`generate_api_key`], returning an error instead of panicking.
#[cfg(feature = "generate-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "generate-key")))]
pub fn try_generate_api_key() -> Result<ApiKey, KeyGenError> {
    let mut random = zeroize::Zeroizing::new([0u8; 16]);
    getrandom::fill(&mut random[..]).map_err(KeyGenError)?;
    // Sized once, so no smaller buffer is freed with part of the key in it.
    let mut key = String::with_capacity(3 + 32);
    key.push_str("sk-");
    crate::digest::push_hex(&mut key, &random[..]);
    Ok(ApiKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_mode_resolves_auto_only() {
        let mut config = ProxySecurityConfig::new(ProxyAuthMode::Auto, "k");
        assert_eq!(config.effective_auth_mode(), ProxyAuthMode::Off);
        config.allow_lan_access = true;
        assert_eq!(config.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
        for mode in [
            ProxyAuthMode::Off,
            ProxyAuthMode::Strict,
            ProxyAuthMode::AllExceptHealth,
        ] {
            for lan in [false, true] {
                let config = ProxySecurityConfig::new(mode, "k").allow_lan_access(lan);
                assert_eq!(config.effective_auth_mode(), mode);
            }
        }
    }

    #[test]
    fn listening_beyond_loopback_with_auth_off_is_refused() {
        let auto = ProxySecurityConfig::new(ProxyAuthMode::Auto, "k");
        for addr in [
            "0.0.0.0:8045",
            "[::]:8045",
            "192.0.2.7:80",
            "[::ffff:192.0.2.7]:80",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let err = auto.check_listen_addr(addr).unwrap_err();
            assert_eq!(err.addr(), addr);
            assert!(err.to_string().contains("allow_lan_access=true"), "{err}");
            assert!(auto
                .clone()
                .allow_lan_access(true)
                .check_listen_addr(addr)
                .is_ok());
            for mode in [
                ProxyAuthMode::Off,
                ProxyAuthMode::Strict,
                ProxyAuthMode::AllExceptHealth,
            ] {
                assert!(ProxySecurityConfig::new(mode, "k")
                    .check_listen_addr(addr)
                    .is_ok());
            }
        }
        for addr in [
            "127.0.0.1:8045",
            "127.3.2.1:1",
            "[::1]:8045",
            "[::ffff:127.0.0.1]:8045",
        ] {
            assert!(
                auto.check_listen_addr(addr.parse().unwrap()).is_ok(),
                "{addr}"
            );
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserialize_defaults_and_errors() {
        let config: ProxySecurityConfig = serde_json::from_str(r#"{"api_key":"sk-1"}"#).unwrap();
        assert_eq!(
            config,
            ProxySecurityConfig::new(ProxyAuthMode::Auto, "sk-1")
        );

        let err =
            serde_json::from_str::<ProxySecurityConfig>(r#"{"auth_mode":"on","api_key":"k"}"#)
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("unknown variant `on`") && err.contains("all_except_health"),
            "{err}"
        );

        let err = serde_json::from_str::<ProxySecurityConfig>(r#"{"auth_mode":"strict"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `api_key`"), "{err}");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serialize_round_trips() {
        let config =
            ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-x").allow_lan_access(true);
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            r#"{"auth_mode":"all_except_health","api_key":"sk-x","allow_lan_access":true}"#
        );
        assert_eq!(
            serde_json::from_str::<ProxySecurityConfig>(&json).unwrap(),
            config
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-super-secret-value");
        let debug = format!("{config:?} {config:#?}");
        assert!(!debug.contains("super-secret"), "{debug}");
        assert!(
            debug.contains("ApiKey(<redacted>)") && debug.contains("Strict"),
            "{debug}"
        );
        let empty = format!(
            "{:?}",
            ProxySecurityConfig::new(ProxyAuthMode::Strict, "  ")
        );
        assert!(empty.contains("<empty>"), "{empty}");
    }

    #[cfg(feature = "generate-key")]
    #[test]
    fn generated_keys_have_the_documented_shape_and_differ() {
        let a = generate_api_key();
        let b = generate_api_key();
        for key in [&a, &b] {
            let key = key.expose_secret();
            assert_eq!(key.len(), 35, "{key}");
            assert!(key.starts_with("sk-"));
            assert!(key[3..]
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
        assert_ne!(a, b);
        let default = ProxySecurityConfig::default();
        assert_eq!(default.auth_mode, ProxyAuthMode::Auto);
        assert!(!default.allow_lan_access);
        let key = default.api_key.expose_secret();
        assert!(key.starts_with("sk-") && key.len() == 35);
    }
}
