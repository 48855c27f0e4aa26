//! [`SharedSecurityConfig`]: the hot-reload handle.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};

use crate::decision::Policy;
use crate::{ExposedWithoutAuth, ProxyAuthMode, ProxySecurityConfig};
#[cfg(feature = "key-set")]
use crate::{KeySet, KeySetError};

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
/// # The listen-address guard
///
/// [`guard_listen_addr`](Self::guard_listen_addr) tells the handle the
/// address the server listens on. From then on every write, from code, a
/// watched file ([`watch`](crate::watch)) or anything else, is checked as
/// [`ProxySecurityConfig::check_listen_addr`] checks one config: a config
/// that would serve that address with auth silently off (`auto` without
/// `allow_lan_access` on a non-loopback address) is refused, and the one in
/// force stays. A [`postgres`](crate::postgres) key store writes only the
/// named key set, which the guard does not need to judge: the mode alone
/// decides whether auth is on.
///
/// # One source of named keys
///
/// A watched file ([`watch::watch_file`](crate::watch::watch_file)) and a
/// key store (`postgres::PgKeyStore::start`) each replace the whole named
/// key set, so a handle is followed by at most one of them at a time: the
/// second one to start on the same handle is refused with an error naming
/// the first, until the first is stopped.
///
/// ```
/// use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
///
/// let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-old"));
/// let layer = ProxyAuthLayer::from_shared(shared.clone());
///
/// // Later, from an admin endpoint or a file watcher:
/// shared.store(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-new"))?;
/// shared.update(|config| config.auth_mode = ProxyAuthMode::AllExceptHealth)?;
/// assert_eq!(shared.load().api_key, "sk-new");
///
/// // Serving the LAN: a config that turns auth off there is refused.
/// shared.guard_listen_addr("0.0.0.0:8045".parse().unwrap())?;
/// let refused = shared.update(|config| config.auth_mode = ProxyAuthMode::Auto);
/// assert!(refused.is_err());
/// assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
/// # drop(layer);
/// # Ok::<(), proxy_auth::ExposedWithoutAuth>(())
/// ```
#[derive(Clone)]
pub struct SharedSecurityConfig {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Policy>,
    /// Serializes writers and holds what they are checked against; readers
    /// never touch it.
    writer: Mutex<Writer>,
}

#[derive(Default)]
struct Writer {
    /// The address the server listens on, once [`guard_listen_addr`]
    /// was called.
    ///
    /// [`guard_listen_addr`]: SharedSecurityConfig::guard_listen_addr
    listen: Option<SocketAddr>,
    /// What keeps the named key set, while a watched file or a key store
    /// does: each replaces the whole set, so two would undo each other.
    #[cfg(any(feature = "watch", feature = "postgres"))]
    keys_owner: Option<String>,
}

/// Held by a source that replaces the whole named key set (a watched file,
/// a key store) for as long as it runs; dropping it lets another source
/// claim the set.
#[cfg(any(feature = "watch", feature = "postgres"))]
pub(crate) struct KeysClaim {
    shared: SharedSecurityConfig,
}

#[cfg(any(feature = "watch", feature = "postgres"))]
impl Drop for KeysClaim {
    fn drop(&mut self) {
        self.shared.lock().keys_owner = None;
    }
}

#[cfg(any(feature = "watch", feature = "postgres"))]
impl fmt::Debug for KeysClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysClaim").finish_non_exhaustive()
    }
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
        Self::from_policy(Policy::build(config, keys, None))
    }

    fn from_policy(policy: Policy) -> Self {
        SharedSecurityConfig {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(policy),
                writer: Mutex::default(),
            }),
        }
    }

    /// Replaces the config (the key set is kept); requests that have not
    /// been decided yet use the new one. Refused, leaving the config in
    /// force, if it fails the [listen-address guard](Self#the-listen-address-guard).
    pub fn store(&self, config: ProxySecurityConfig) -> Result<(), ExposedWithoutAuth> {
        self.write_config(|policy| policy.with_config(config))
    }

    /// Changes the config in place, as one step with respect to other
    /// writers. Refused, leaving the config in force, if the result fails
    /// the [listen-address guard](Self#the-listen-address-guard).
    pub fn update(
        &self,
        f: impl FnOnce(&mut ProxySecurityConfig),
    ) -> Result<(), ExposedWithoutAuth> {
        self.write_config(|policy| {
            let mut config = policy.config.clone();
            f(&mut config);
            policy.with_config(config)
        })
    }

    /// Guards the address the server listens on (call it before binding):
    /// an error if the config in force would serve `addr` with auth
    /// silently off, and from then on every write that would is refused
    /// (see the [type docs](Self#the-listen-address-guard)). Calling it
    /// again replaces the address.
    pub fn guard_listen_addr(&self, addr: SocketAddr) -> Result<(), ExposedWithoutAuth> {
        let mut writer = self.lock();
        self.policy().config.check_listen_addr(addr)?;
        writer.listen = Some(addr);
        Ok(())
    }

    /// Makes `owner` (how errors name it, e.g. "the config file
    /// /etc/auth.toml") the one source that keeps the named key set, or
    /// names the source that already does.
    #[cfg(any(feature = "watch", feature = "postgres"))]
    pub(crate) fn claim_keys(&self, owner: String) -> Result<KeysClaim, String> {
        let mut writer = self.lock();
        if let Some(current) = &writer.keys_owner {
            return Err(current.clone());
        }
        writer.keys_owner = Some(owner);
        Ok(KeysClaim {
            shared: self.clone(),
        })
    }

    /// The address given to [`guard_listen_addr`](Self::guard_listen_addr),
    /// if any.
    #[must_use]
    pub fn guarded_listen_addr(&self) -> Option<SocketAddr> {
        self.lock().listen
    }

    /// Replaces the named key set (the config is kept).
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn store_keys(&self, keys: KeySet) {
        let _ = self.write(|policy| {
            Ok::<_, std::convert::Infallible>(Some(Policy::build(
                policy.config.clone(),
                keys,
                Some(policy),
            )))
        });
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
        self.write(|policy| {
            let mut keys = policy.keys.clone();
            f(&mut keys)?;
            Ok(Some(Policy::build(
                policy.config.clone(),
                keys,
                Some(policy),
            )))
        })
    }

    /// Replaces the config and the key set in one step: every request sees
    /// the old pair or the new one, never one's mode with the other's keys.
    /// For a proxy that reloads its own config file (which holds both) and
    /// feeds the layer from its reload path. Refused, leaving both in force,
    /// if the config fails the
    /// [listen-address guard](Self#the-listen-address-guard).
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn store_with_keys(
        &self,
        config: ProxySecurityConfig,
        keys: KeySet,
    ) -> Result<(), ExposedWithoutAuth> {
        self.write_config(|policy| Policy::build(config, keys, Some(policy)))
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

    /// Whether the config in force can let anyone in; see
    /// [`ProxyAuthLayer::check_keys`](crate::ProxyAuthLayer::check_keys).
    pub fn check_keys(&self) -> Result<(), crate::UnusableKey> {
        self.policy().check_keys()
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

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A panic in a writer's closure leaves the config as it was, so a
        // poisoned lock guards nothing broken.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one writer at a time; `f` returns the new policy, `None` to
    /// keep the current one, or an error, which stores nothing.
    #[cfg(feature = "key-set")]
    fn write<E>(&self, f: impl FnOnce(&Policy) -> Result<Option<Policy>, E>) -> Result<(), E> {
        let _writer = self.lock();
        let current = self.inner.current.load_full();
        if let Some(next) = f(&current)? {
            self.inner.current.store(Arc::new(next));
        }
        Ok(())
    }

    /// [`write`](Self::write) for a new config: one that fails the
    /// listen-address guard is not stored. (A new key set cannot fail it:
    /// the mode decides.)
    fn write_config(&self, f: impl FnOnce(&Policy) -> Policy) -> Result<(), ExposedWithoutAuth> {
        let writer = self.lock();
        let next = f(&self.inner.current.load_full());
        if let Some(addr) = writer.listen {
            next.config.check_listen_addr(addr)?;
        }
        self.inner.current.store(Arc::new(next));
        Ok(())
    }
}

impl Policy {
    fn with_config(&self, config: ProxySecurityConfig) -> Policy {
        Policy::build(
            config,
            #[cfg(feature = "key-set")]
            self.keys.clone(),
            Some(self),
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
        other
            .store(ProxySecurityConfig::new(ProxyAuthMode::Auto, "b").allow_lan_access(true))
            .unwrap();
        assert_eq!(shared.load().api_key, "b");
        assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
        shared.update(|c| c.allow_lan_access = false).unwrap();
        assert_eq!(other.effective_auth_mode(), ProxyAuthMode::Off);
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, ""));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..250 {
                        shared
                            .update(|c| {
                                c.api_key = format!("{}x", c.api_key.expose_secret()).into()
                            })
                            .unwrap();
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
            let _ = shared.update(|_| panic!("boom"));
        }));
        assert!(result.is_err());
        assert_eq!(shared.load().api_key, "a");
        shared.update(|c| c.api_key = "b".into()).unwrap();
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
        shared
            .store(ProxySecurityConfig::new(ProxyAuthMode::Strict, "b"))
            .unwrap();
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
    fn the_listen_guard_refuses_every_write_that_would_open_auth() {
        let lan: SocketAddr = "0.0.0.0:8045".parse().unwrap();
        let auto = |lan_access| {
            ProxySecurityConfig::new(ProxyAuthMode::Auto, "sk-1").allow_lan_access(lan_access)
        };
        // Refused at once if the config in force already opens auth.
        let open = SharedSecurityConfig::new(auto(false));
        assert!(open.guard_listen_addr(lan).is_err());
        assert_eq!(open.guarded_listen_addr(), None);
        let shared = SharedSecurityConfig::new(auto(true));
        shared.guard_listen_addr(lan).unwrap();
        assert_eq!(shared.guarded_listen_addr(), Some(lan));
        let err = shared.store(auto(false)).unwrap_err();
        assert_eq!(err.addr(), lan);
        assert!(shared.update(|c| c.allow_lan_access = false).is_err());
        #[cfg(feature = "key-set")]
        assert!(shared.store_with_keys(auto(false), KeySet::new()).is_err());
        assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::AllExceptHealth);
        // What the guard allows still goes through: off said explicitly, or
        // a mode that needs a key.
        shared
            .store(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-2"))
            .unwrap();
        shared
            .store(ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-2"))
            .unwrap();
        assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::Off);
        // A loopback guard refuses nothing.
        let local = SharedSecurityConfig::new(auto(true));
        local
            .guard_listen_addr("127.0.0.1:8045".parse().unwrap())
            .unwrap();
        local.store(auto(false)).unwrap();
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
