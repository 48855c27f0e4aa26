//! [`NewKey`]: a key to add to a [`KeySet`](crate::KeySet), with what it
//! carries; [`KeyEntry`]: what the set knows of a key once it is in.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::limit::KeyLimiter;
use crate::scope::{Scope, ScopeText};
use crate::{ApiKey, Limits};

/// A key for [`KeySet::add`](crate::KeySet::add): a label, the key (or its
/// `sha256:<hex>` digest), and optionally an expiry, scopes (see
/// [`scope`](crate::scope)), limits (see [`limit`](crate::limit)) and the
/// author's own data for it. Scopes and limits are checked when the key is
/// added: an empty list, a `*` inside a model pattern, a route without a
/// leading `/`, a bad CIDR block, a limit of 0 or a `burst` without `rpm`
/// is an error, never an open key.
///
/// ```
/// use proxy_auth::{KeySet, NewKey};
///
/// #[derive(Debug, PartialEq)]
/// struct Tenant { id: u32 }
///
/// let mut keys = KeySet::new();
/// keys.add(NewKey::new("team-a", "sk-team-a").data(Tenant { id: 7 }))?;
/// assert_eq!(keys.get("team-a").unwrap().data::<Tenant>(), Some(&Tenant { id: 7 }));
/// # Ok::<(), proxy_auth::KeySetError>(())
/// ```
#[must_use = "a NewKey does nothing until it is added to a KeySet"]
pub struct NewKey {
    pub(crate) label: String,
    pub(crate) key: ApiKey,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) data: Option<KeyData>,
    pub(crate) scope: ScopeText,
    /// `rpm`, `burst`, `max_concurrent` as given, checked by `KeySet::add`.
    pub(crate) limits: [Option<u32>; 3],
}

impl NewKey {
    /// A key that never expires and carries nothing.
    pub fn new(label: impl Into<String>, key: impl Into<ApiKey>) -> Self {
        NewKey {
            label: label.into(),
            key: key.into(),
            expires_at: None,
            data: None,
            scope: ScopeText::default(),
            limits: [None; 3],
        }
    }

    /// Limits the key to `rpm` requests per minute, sustained (see
    /// [`limit`](crate::limit)); `burst` of them may come back to back
    /// (default: `rpm`).
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.limits[0] = Some(rpm);
        self
    }

    /// Sets how many requests may come back to back at the key's
    /// [`rpm`](Self::rpm) (default: `rpm`). A burst without an `rpm` is an
    /// error when the key is added.
    pub fn burst(mut self, burst: u32) -> Self {
        self.limits[1] = Some(burst);
        self
    }

    /// Limits the key to `max` requests in flight at once; a request holds
    /// its slot until its response body is done or dropped.
    pub fn max_concurrent(mut self, max: u32) -> Self {
        self.limits[2] = Some(max);
        self
    }

    /// Sets all three limits at once (over whatever was set before).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = [limits.rpm(), limits.burst(), limits.max_concurrent()];
        self
    }

    /// Sets the models the key may use: exact names, or prefixes ending in
    /// `*` (`"gpt-4o-mini"`, `"claude-3-5-*"`).
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the paths the key may call: prefixes matched on `/` boundaries
    /// (`"/v1/chat"` allows `/v1/chat/completions`, not `/v1/chatty`).
    pub fn routes<I, S>(mut self, routes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope.routes = Some(routes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the client networks the key may be used from: CIDR blocks
    /// (`"10.0.0.0/8"`, `"2001:db8::/32"`) or single addresses.
    pub fn allowed_ips<I, S>(mut self, nets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scope.allowed_ips = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// Sets when the key stops being accepted.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets data of the author's own for this key (a tenant, a budget, its
    /// own limits): handed to the inner service with the identity, as
    /// [`Authenticated::data`](crate::Authenticated::data), without a
    /// second lookup.
    pub fn data<T: Any + Send + Sync>(mut self, data: T) -> Self {
        self.data = Some(KeyData(Arc::new(data)));
        self
    }
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("label", &self.label)
            .field("key", &self.key)
            .field("expires_at", &self.expires_at)
            .field("data", &self.data.is_some())
            .field("scope", &self.scope)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A key's own data, shared by every copy of the set and every request it
/// authenticates.
#[derive(Clone)]
pub(crate) struct KeyData(pub(crate) Arc<dyn Any + Send + Sync>);

impl PartialEq for KeyData {
    /// A config file's JSON data by value, so rereading an unchanged file
    /// changes nothing; other data by identity (the type need not be
    /// comparable).
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (
            self.0.downcast_ref::<serde_json::Value>(),
            other.0.downcast_ref::<serde_json::Value>(),
        );
        match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => Arc::ptr_eq(&self.0, &other.0),
        }
    }
}

impl Eq for KeyData {}

/// What a [`KeySet`](crate::KeySet) knows of one key, without the key: its
/// label, its expiry and its data. See
/// [`KeySet::entries`](crate::KeySet::entries) and
/// [`Authenticated::entry`](crate::Authenticated::entry).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyEntry {
    pub(crate) label: Arc<str>,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) data: Option<KeyData>,
    pub(crate) scope: Scope,
    /// The key's own limits, as added.
    pub(crate) limits: Limits,
    /// The limits in force (its own over the config's defaults) and their
    /// state; set when a policy is built from the set.
    pub(crate) limiter: LimiterCell,
}

/// A [`KeyEntry`]'s limiter: state, not configuration, so it takes no part
/// in comparing entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct LimiterCell(pub(crate) Option<KeyLimiter>);

impl PartialEq for LimiterCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LimiterCell {}

impl KeyEntry {
    /// The key's label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// When the key stops being accepted, if ever.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The key's data ([`NewKey::data`]), if it has data of type `T`. A key
    /// from a config file (feature `watch`) carries its `data` table as a
    /// `serde_json::Value`.
    #[must_use]
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.as_ref()?.0.downcast_ref()
    }

    /// The models the key may use, as written; `None`: any.
    #[must_use]
    pub fn models(&self) -> Option<Vec<&str>> {
        self.scope.model_texts()
    }

    /// The routes the key may call; `None`: any.
    #[must_use]
    pub fn routes(&self) -> Option<Vec<&str>> {
        self.scope.route_texts()
    }

    /// The client networks the key may be used from; `None`: any.
    #[must_use]
    pub fn allowed_ips(&self) -> Option<Vec<String>> {
        self.scope.ip_texts()
    }

    /// The key's own limits, as added (the config's
    /// [`limits`](crate::ProxySecurityConfig::limits) fill in what they
    /// leave out).
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub(crate) fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= SystemTime::now())
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("label", &self.label)
            .field("expires_at", &self.expires_at)
            .field("data", &self.data.is_some())
            .field("scope", &self.scope)
            .field("limits", &self.limits)
            .finish()
    }
}
