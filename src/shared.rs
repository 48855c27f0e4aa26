//! [`SharedSecurityConfig`]: the hot-reload handle, and the compiled form of
//! a config that requests are judged against.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compare::ConfiguredKey;
use crate::key_set::parse_digest;
use crate::{KeySet, KeySetError, ProxyAuthMode, ProxySecurityConfig};

/// A config prepared for the request path: the effective mode resolved and
/// the key laid out for constant-time comparison, once per `store` instead
/// of once per request.
pub(crate) struct Policy {
    pub(crate) config: ProxySecurityConfig,
    pub(crate) mode: ProxyAuthMode,
    pub(crate) key: ConfiguredKey,
    pub(crate) keys: KeySet,
}

impl Policy {
    pub(crate) fn new(config: ProxySecurityConfig) -> Self {
        Policy::with_keys(config, KeySet::new())
    }

    pub(crate) fn with_keys(config: ProxySecurityConfig, keys: KeySet) -> Self {
        let trimmed = config.api_key.trim();
        let key = match parse_digest(trimmed) {
            Some(Ok(digest)) => ConfiguredKey::Digest(digest),
            Some(Err(())) => {
                // Fail closed: a mistyped digest must not turn into a
                // plaintext key that someone could send verbatim.
                tracing::error!(
                    target: "proxy_auth",
                    "configured api_key starts with \"sha256:\" but is not followed by 64 hex characters; treating the key as unset, so requests that need a key are refused"
                );
                ConfiguredKey::new(b"")
            }
            // A header value cannot start or end with whitespace once an
            // HTTP parser has read it, so a key pasted with a trailing
            // newline could never match; trimming makes it work as meant.
            None => ConfiguredKey::new(trimmed.as_bytes()),
        };
        if !key.is_empty()
            && !trimmed
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            tracing::warn!(
                target: "proxy_auth",
                "configured api_key contains non-ASCII or control characters; clients cannot send such a key in a header, so no request will match it"
            );
        }
        if !keys.is_empty() && !key.is_empty() {
            let digest = match &key {
                ConfiguredKey::Digest(digest) => *digest,
                ConfiguredKey::Plain { .. } => crate::key_set::sha256(trimmed.as_bytes()),
            };
            if let Some(entry) = keys.lookup(&digest) {
                tracing::warn!(
                    target: "proxy_auth",
                    label = &*entry.label,
                    "api_key is also in the key set; requests with it are attributed to the key set entry, whose expiry applies"
                );
            }
        }
        Policy {
            mode: config.effective_auth_mode(),
            key,
            keys,
            config,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// A cheaply clonable handle to a [`ProxySecurityConfig`] that can be
/// replaced while the proxy serves.
///
/// Every request reads the config once, when the layer decides, and uses
/// that one snapshot for the whole decision: a request sees the old config
/// or the new one, never parts of both. Reading is lock-free and wait-free
/// (it is an [`arc_swap::ArcSwap`] load, no allocation), and nothing is held
/// while the inner service runs, so a slow upstream never delays a reload.
///
/// ```
/// use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
///
/// let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-old"));
/// let layer = ProxyAuthLayer::from_shared(shared.clone());
///
/// // Later, from an admin endpoint or a file watcher:
/// shared.store(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-new"));
/// shared.update(|config| config.auth_mode = ProxyAuthMode::AllExceptHealth);
/// assert_eq!(shared.load().api_key, "sk-new");
/// # drop(layer);
/// ```
#[derive(Clone)]
pub struct SharedSecurityConfig {
    current: Arc<ArcSwap<Policy>>,
}

impl SharedSecurityConfig {
    /// A handle holding `config`.
    pub fn new(config: ProxySecurityConfig) -> Self {
        SharedSecurityConfig::with_keys(config, KeySet::new())
    }

    /// A handle holding `config` and named `keys`, accepted besides
    /// `config.api_key`.
    pub fn with_keys(config: ProxySecurityConfig, keys: KeySet) -> Self {
        SharedSecurityConfig {
            current: Arc::new(ArcSwap::from_pointee(Policy::with_keys(config, keys))),
        }
    }

    /// Replaces the config (the key set is kept); requests that have not
    /// been decided yet use the new one.
    pub fn store(&self, config: ProxySecurityConfig) {
        self.current
            .rcu(|policy| Policy::with_keys(config.clone(), policy.keys.clone()));
    }

    /// Changes the config in place. Concurrent `update`s do not lose each
    /// other's changes: `f` is re-run on the newer config if another writer
    /// got in first, so it should only compute the change.
    pub fn update(&self, mut f: impl FnMut(&mut ProxySecurityConfig)) {
        self.current.rcu(|policy| {
            let mut config = policy.config.clone();
            f(&mut config);
            Policy::with_keys(config, policy.keys.clone())
        });
    }

    /// Replaces the named key set (the config is kept).
    pub fn store_keys(&self, keys: KeySet) {
        self.current
            .rcu(|policy| Policy::with_keys(policy.config.clone(), keys.clone()));
    }

    /// Changes the named key set in place, atomically with respect to other
    /// writers (like [`update`](Self::update)). If `f` fails, nothing is
    /// stored and its error is returned.
    ///
    /// ```
    /// use proxy_auth::{ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"));
    /// // Rotation without a window of failures: add the new key, give the
    /// // old one a deadline, remove it once clients have moved.
    /// shared.update_keys(|keys| keys.insert("ci-2026-12", "sk-new"))?;
    /// shared.update_keys(|keys| keys.insert_expiring("ci-2026-11", "sk-old", SystemTime::now() + Duration::from_secs(86400)))?;
    /// shared.update_keys(|keys| { keys.remove("ci-2026-11"); Ok(()) })?;
    /// # Ok::<(), proxy_auth::KeySetError>(())
    /// ```
    pub fn update_keys(
        &self,
        mut f: impl FnMut(&mut KeySet) -> Result<(), KeySetError>,
    ) -> Result<(), KeySetError> {
        let mut outcome = Ok(());
        self.current.rcu(|policy| {
            let mut keys = policy.keys.clone();
            outcome = f(&mut keys);
            match outcome {
                Ok(()) => Arc::new(Policy::with_keys(policy.config.clone(), keys)),
                Err(_) => Arc::clone(policy),
            }
        });
        outcome
    }

    /// A copy of the named key set currently in force.
    pub fn keys(&self) -> KeySet {
        self.current.load().keys.clone()
    }

    /// A copy of the config currently in force.
    pub fn load(&self) -> ProxySecurityConfig {
        self.current.load().config.clone()
    }

    /// The mode currently enforced (`auto` already resolved).
    pub fn effective_auth_mode(&self) -> ProxyAuthMode {
        self.current.load().mode
    }

    pub(crate) fn with_policy<R>(&self, f: impl FnOnce(&Policy) -> R) -> R {
        f(&self.current.load())
    }

    // Feature `watch`: a config file holds both the config and the keys, and
    // a request must see the old pair or the new one, never a mix.
    #[cfg(feature = "watch")]
    pub(crate) fn store_with_keys(&self, config: ProxySecurityConfig, keys: KeySet) {
        self.current
            .store(Arc::new(Policy::with_keys(config, keys)));
    }
}

impl From<ProxySecurityConfig> for SharedSecurityConfig {
    fn from(config: ProxySecurityConfig) -> Self {
        SharedSecurityConfig::new(config)
    }
}

impl fmt::Debug for SharedSecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = self.current.load();
        f.debug_struct("SharedSecurityConfig")
            .field("config", &policy.config)
            .field("keys", &policy.keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_update_are_seen_by_every_clone() {
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "a"));
        let other = shared.clone();
        other.store(ProxySecurityConfig::new(ProxyAuthMode::Auto, "b").allow_lan_access(true));
        assert_eq!(shared.load().api_key, "b");
        assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
        shared.update(|c| c.allow_lan_access = false);
        assert_eq!(other.effective_auth_mode(), ProxyAuthMode::Off);
    }

    #[test]
    fn configured_key_is_trimmed() {
        let policy = Policy::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, " sk-1\n"));
        assert!(policy.key.matches(b"sk-1"));
        let blank = Policy::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, " \t\n"));
        assert!(blank.key.is_empty());
    }

    #[test]
    fn digest_api_key_matches_its_preimage() {
        let policy = Policy::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            crate::key_digest("sk-1"),
        ));
        assert!(policy.key.matches(b"sk-1"));
        assert!(!policy.key.matches(crate::key_digest("sk-1").as_bytes()));
        // A malformed digest fails closed.
        let bad = Policy::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            "sha256:1234",
        ));
        assert!(bad.key.is_empty());
        assert!(!bad.key.matches(b"sha256:1234"));
    }

    #[test]
    fn store_keeps_keys_and_update_keys_is_atomic() {
        let shared =
            SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "a"));
        shared
            .update_keys(|k| k.insert("alice", "sk-alice"))
            .unwrap();
        shared.store(ProxySecurityConfig::new(ProxyAuthMode::Strict, "b"));
        assert_eq!(shared.keys().len(), 1);
        let err = shared.update_keys(|k| {
            k.insert("bob", "sk-bob")?;
            k.insert("", "x")
        });
        assert!(err.is_err());
        assert_eq!(shared.keys().len(), 1, "a failed update stores nothing");
        shared.store_keys(KeySet::new());
        assert!(shared.keys().is_empty());
    }

    #[test]
    fn debug_hides_the_key() {
        let shared =
            SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-hidden"));
        let debug = format!("{shared:?}");
        assert!(
            !debug.contains("sk-hidden") && debug.contains("Strict"),
            "{debug}"
        );
    }
}
