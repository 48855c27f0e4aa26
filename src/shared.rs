//! [`SharedSecurityConfig`]: the hot-reload handle, and the compiled form of
//! a config that requests are judged against.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compare::ConfiguredKey;
use crate::{ProxyAuthMode, ProxySecurityConfig};

/// A config prepared for the request path: the effective mode resolved and
/// the key laid out for constant-time comparison, once per `store` instead
/// of once per request.
pub(crate) struct Policy {
    pub(crate) config: ProxySecurityConfig,
    pub(crate) mode: ProxyAuthMode,
    pub(crate) key: ConfiguredKey,
}

impl Policy {
    pub(crate) fn new(config: ProxySecurityConfig) -> Self {
        // A header value cannot start or end with whitespace once an HTTP
        // parser has read it, so a key pasted with a trailing newline could
        // never match; trimming makes it work as its owner meant.
        let key = ConfiguredKey::new(config.api_key.trim().as_bytes());
        if !key.is_empty()
            && !config
                .api_key
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ' || b == b'\t')
        {
            tracing::warn!(
                target: "proxy_auth",
                "configured api_key contains non-ASCII or control characters; clients cannot send such a key in a header, so no request will match it"
            );
        }
        Policy {
            mode: config.effective_auth_mode(),
            key,
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
        SharedSecurityConfig {
            current: Arc::new(ArcSwap::from_pointee(Policy::new(config))),
        }
    }

    /// Replaces the config; requests that have not been decided yet use the
    /// new one.
    pub fn store(&self, config: ProxySecurityConfig) {
        self.current.store(Arc::new(Policy::new(config)));
    }

    /// Changes the config in place. Concurrent `update`s do not lose each
    /// other's changes: `f` is re-run on the newer config if another writer
    /// got in first, so it should only compute the change.
    pub fn update(&self, mut f: impl FnMut(&mut ProxySecurityConfig)) {
        self.current.rcu(|policy| {
            let mut config = policy.config.clone();
            f(&mut config);
            Policy::new(config)
        });
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
}

impl From<ProxySecurityConfig> for SharedSecurityConfig {
    fn from(config: ProxySecurityConfig) -> Self {
        SharedSecurityConfig::new(config)
    }
}

impl fmt::Debug for SharedSecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedSecurityConfig")
            .field(&*self.current.load())
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
