//! [`SharedSecurityConfig`]: the hot-reload handle.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use crate::decision::Policy;
#[cfg(feature = "key-set")]
use crate::{KeySet, KeySetError};
use crate::{ProxyAuthMode, ProxySecurityConfig};

/// A cheaply clonable handle to a [`ProxySecurityConfig`] (and, with the
/// `key-set` feature, a [`KeySet`]) that can be replaced while the proxy
/// serves.
///
/// Every request reads the config once, when the layer decides, and uses
/// that one snapshot for the whole decision: a request sees the old config
/// or the new one, never parts of both. Reading is lock-free and wait-free
/// (an [`arc_swap::ArcSwap`] load, no allocation), and nothing is held
/// while the inner service runs, so a slow upstream never delays a reload.
///
/// Writers ([`store`](Self::store), [`update`](Self::update) and the key-set
/// methods) take turns behind a mutex, so concurrent `update`s never lose
/// each other's changes; readers never wait for them. As with any mutex,
/// an `update` closure must not write to the same handle (that waits for
/// the lock its own thread holds: a deadlock) nor wait for another writer;
/// compute the change in the closure and do anything else outside it.
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
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Policy>,
    /// Serializes writers; readers never touch it.
    writer: Mutex<()>,
}

impl SharedSecurityConfig {
    /// A handle holding `config`.
    #[must_use]
    pub fn new(config: ProxySecurityConfig) -> Self {
        Self::from_policy(Policy::new(config))
    }

    /// A handle holding `config` and named `keys`, accepted besides
    /// `config.api_key`.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn with_keys(config: ProxySecurityConfig, keys: KeySet) -> Self {
        Self::from_policy(Policy::build(config, keys))
    }

    fn from_policy(policy: Policy) -> Self {
        SharedSecurityConfig {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(policy),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Replaces the config (the key set is kept); requests that have not
    /// been decided yet use the new one.
    pub fn store(&self, config: ProxySecurityConfig) {
        self.write(|policy| Some(policy.with_config(config)));
    }

    /// Changes the config in place, as one step with respect to other
    /// writers.
    pub fn update(&self, f: impl FnOnce(&mut ProxySecurityConfig)) {
        self.write(|policy| {
            let mut config = policy.config.clone();
            f(&mut config);
            Some(policy.with_config(config))
        });
    }

    /// Replaces the named key set (the config is kept).
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn store_keys(&self, keys: KeySet) {
        self.write(|policy| Some(Policy::build(policy.config.clone(), keys)));
    }

    /// Changes the named key set in place, as one step with respect to
    /// other writers. If `f` fails, nothing is stored and its error is
    /// returned.
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
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn update_keys(
        &self,
        f: impl FnOnce(&mut KeySet) -> Result<(), KeySetError>,
    ) -> Result<(), KeySetError> {
        let mut outcome = Ok(());
        self.write(|policy| {
            let mut keys = policy.keys.clone();
            outcome = f(&mut keys);
            outcome
                .is_ok()
                .then(|| Policy::build(policy.config.clone(), keys))
        });
        outcome
    }

    /// Replaces the config and the key set in one step: every request sees
    /// the old pair or the new one, never one's mode with the other's keys.
    /// For a proxy that reloads its own config file (which holds both) and
    /// feeds the layer from its reload path.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn store_with_keys(&self, config: ProxySecurityConfig, keys: KeySet) {
        self.write(|_| Some(Policy::build(config, keys)));
    }

    /// A copy of the named key set currently in force.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn keys(&self) -> KeySet {
        self.policy().keys.clone()
    }

    /// A copy of the config currently in force.
    #[must_use]
    pub fn load(&self) -> ProxySecurityConfig {
        self.policy().config.clone()
    }

    /// The mode currently enforced (`auto` already resolved).
    #[must_use]
    pub fn effective_auth_mode(&self) -> ProxyAuthMode {
        self.policy().mode.mode()
    }

    #[inline]
    pub(crate) fn policy(&self) -> Guard<Arc<Policy>> {
        self.inner.current.load()
    }

    /// Runs one writer at a time; `f` returns the new policy, or `None` to
    /// keep the current one.
    fn write(&self, f: impl FnOnce(&Policy) -> Option<Policy>) {
        // A panic in `f` leaves the config as it was, so a poisoned lock
        // guards nothing broken.
        let _lock = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.inner.current.load_full();
        if let Some(next) = f(&current) {
            self.inner.current.store(Arc::new(next));
        }
    }
}

impl Policy {
    fn with_config(&self, config: ProxySecurityConfig) -> Policy {
        Policy::build(
            config,
            #[cfg(feature = "key-set")]
            self.keys.clone(),
        )
    }
}

impl From<ProxySecurityConfig> for SharedSecurityConfig {
    fn from(config: ProxySecurityConfig) -> Self {
        SharedSecurityConfig::new(config)
    }
}

impl fmt::Debug for SharedSecurityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = self.policy();
        let mut debug = f.debug_struct("SharedSecurityConfig");
        debug.field("config", &policy.config);
        #[cfg(feature = "key-set")]
        debug.field("keys", &policy.keys);
        debug.finish()
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
    fn concurrent_updates_lose_nothing() {
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, ""));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        shared.update(|c| {
                            c.api_key = format!("{}x", c.api_key.expose_secret()).into()
                        });
                    }
                });
            }
        });
        assert_eq!(shared.load().api_key.expose_secret().len(), 1000);
    }

    #[test]
    fn a_panicking_update_changes_nothing_and_leaves_the_handle_usable() {
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "a"));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            shared.update(|_| panic!("boom"));
        }));
        assert!(result.is_err());
        assert_eq!(shared.load().api_key, "a");
        shared.update(|c| c.api_key = "b".into());
        assert_eq!(shared.load().api_key, "b");
    }

    #[cfg(feature = "key-set")]
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
