//! [`KeyPolicy`]: a key's scopes and limits as the key table holds them;
//! [`PolicyChange`]: the fields [`KeyAdmin::set`](super::KeyAdmin::set)
//! changes.

use tokio_postgres::Row;

use super::StoreError;
use crate::limit::{LimitError, MAX};
use crate::scope::ScopeText;
use crate::Limits;

/// A key's scopes (see [`scope`](crate::scope)) and limits (see
/// [`limit`](crate::limit)) as the key table's policy columns hold them:
/// what [`KeyAdmin::add_with_policy`](super::KeyAdmin::add_with_policy)
/// writes, [`KeyAdmin::set`](super::KeyAdmin::set) changes and
/// [`KeyInfo::policy`](super::KeyInfo::policy) shows. `None` is no
/// restriction; a `burst` of `None` is `rpm`, whatever `rpm` is later set
/// to.
///
/// ```
/// use proxy_auth::postgres::KeyPolicy;
///
/// let policy = KeyPolicy::new()
///     .models(["gpt-4o*", "claude-3-5-*"])
///     .routes(["/v1/chat/completions"])
///     .allowed_ips(["10.0.0.0/8"])
///     .rpm(60)
///     .burst(10)
///     .max_concurrent(2);
/// assert_eq!(policy.limits().unwrap().burst(), Some(10));
/// assert!(KeyPolicy::new().is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct KeyPolicy {
    /// Model names or prefixes ending in `*` the key may use.
    pub models: Option<Vec<String>>,
    /// Path prefixes the key may call.
    pub routes: Option<Vec<String>>,
    /// CIDR blocks or addresses the key may be used from.
    pub allowed_ips: Option<Vec<String>>,
    /// Sustained requests per minute.
    pub rpm: Option<u32>,
    /// Requests back to back at `rpm`, as stored (`None`: `rpm`).
    pub burst: Option<u32>,
    /// Requests in flight at once.
    pub max_concurrent: Option<u32>,
}

impl KeyPolicy {
    /// No restriction and no limit.
    pub fn new() -> Self {
        KeyPolicy::default()
    }

    /// Sets the models the key may use (see [`NewKey::models`](crate::NewKey::models)).
    pub fn models<I: IntoIterator<Item = S>, S: Into<String>>(mut self, models: I) -> Self {
        self.models = Some(models.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the routes the key may call (see [`NewKey::routes`](crate::NewKey::routes)).
    pub fn routes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, routes: I) -> Self {
        self.routes = Some(routes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the client networks the key may be used from (see
    /// [`NewKey::allowed_ips`](crate::NewKey::allowed_ips)).
    pub fn allowed_ips<I: IntoIterator<Item = S>, S: Into<String>>(mut self, nets: I) -> Self {
        self.allowed_ips = Some(nets.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the sustained requests per minute.
    pub fn rpm(mut self, rpm: u32) -> Self {
        self.rpm = Some(rpm);
        self
    }

    /// Sets the requests allowed back to back at `rpm` (needs `rpm`).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets the requests in flight at once.
    pub fn max_concurrent(mut self, max: u32) -> Self {
        self.max_concurrent = Some(max);
        self
    }

    /// The limits the replicas enforce (`burst` filled in from `rpm`), or
    /// why there are none: a 0, a value over [`MAX`](crate::limit::MAX), a
    /// `burst` without `rpm`.
    pub fn limits(&self) -> Result<Limits, LimitError> {
        Limits::new(self.rpm, self.burst, self.max_concurrent)
    }

    /// Whether the policy restricts and limits nothing.
    #[must_use]
    pub fn is_none(&self) -> bool {
        *self == KeyPolicy::default()
    }

    /// What the replicas refuse in this policy, as
    /// [`KeySet::add`](crate::KeySet::add) does: an empty list, a `*`
    /// inside a model pattern, a route without a leading `/`, a bad CIDR
    /// block, a bad limit.
    pub(crate) fn problem(&self) -> Option<String> {
        let scope = ScopeText {
            models: self.models.clone(),
            routes: self.routes.clone(),
            allowed_ips: self.allowed_ips.clone(),
        };
        if let Err(message) = scope.parse() {
            return Some(message);
        }
        self.limits().err().map(|e| e.to_string())
    }

    /// The policy columns of a row of [`KeyAdmin::list`](super::KeyAdmin::list)
    /// (from column `at` on), and what in them the replicas refuse; a
    /// value that cannot be shown as it is (a negative limit, a nested
    /// array, written by hand) is left out of the policy and named in the
    /// problem.
    pub(crate) fn from_row(row: &Row, at: usize) -> (KeyPolicy, Option<String>) {
        let mut unreadable = None;
        let mut list = |i: usize, column: &str| {
            row.try_get::<_, Option<Vec<String>>>(at + i)
                .unwrap_or_else(|_| {
                    unreadable.get_or_insert(format!(
                        "its {column} is not a one-dimensional text array without NULLs"
                    ));
                    None
                })
        };
        let (models, routes, allowed_ips) =
            (list(0, "models"), list(1, "routes"), list(2, "allowed_ips"));
        let mut limit = |i: usize, column: &str| match row.try_get::<_, Option<i32>>(at + i) {
            Ok(value) => value.and_then(|v| match u32::try_from(v) {
                Ok(v) => Some(v),
                Err(_) => {
                    unreadable.get_or_insert(format!("its {column} is negative ({v})"));
                    None
                }
            }),
            Err(_) => {
                unreadable.get_or_insert(format!("its {column} is not an integer"));
                None
            }
        };
        let (rpm, burst, max_concurrent) = (
            limit(3, "rpm"),
            limit(4, "burst"),
            limit(5, "max_concurrent"),
        );
        let policy = KeyPolicy {
            models,
            routes,
            allowed_ips,
            rpm,
            burst,
            max_concurrent,
        };
        let problem = unreadable.or_else(|| policy.problem());
        (policy, problem)
    }
}

/// One of the policy columns, for [`PolicyChange::clear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyField {
    /// `models`.
    Models,
    /// `routes`.
    Routes,
    /// `allowed_ips`.
    AllowedIps,
    /// `rpm`.
    Rpm,
    /// `burst`.
    Burst,
    /// `max_concurrent`.
    MaxConcurrent,
}

impl PolicyField {
    /// The column's name: `models`, `routes`, `allowed_ips`, `rpm`,
    /// `burst` or `max_concurrent`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            PolicyField::Models => "models",
            PolicyField::Routes => "routes",
            PolicyField::AllowedIps => "allowed_ips",
            PolicyField::Rpm => "rpm",
            PolicyField::Burst => "burst",
            PolicyField::MaxConcurrent => "max_concurrent",
        }
    }
}

/// A value for one policy column: a list, a limit, or NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    List(Option<Vec<String>>),
    Limit(Option<u32>),
}

/// The policy fields [`KeyAdmin::set`](super::KeyAdmin::set) changes on a
/// key; every field not named keeps its value. A set list or limit is
/// checked as [`KeyPolicy`]'s are; a `burst` left without an `rpm` (set
/// where the key has none, or kept while `rpm` is cleared) is refused by
/// the table.
///
/// ```
/// use proxy_auth::postgres::{PolicyChange, PolicyField};
///
/// // Halve the rate and drop the model restriction; routes, networks,
/// // burst and max_concurrent stay as they are.
/// let change = PolicyChange::new().rpm(30).clear(PolicyField::Models);
/// assert!(!change.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct PolicyChange {
    changes: Vec<(PolicyField, Value)>,
}

impl PolicyChange {
    /// A change of nothing.
    pub fn new() -> Self {
        PolicyChange::default()
    }

    /// Sets the models.
    pub fn models<I: IntoIterator<Item = S>, S: Into<String>>(self, models: I) -> Self {
        let list = models.into_iter().map(Into::into).collect();
        self.with(PolicyField::Models, Value::List(Some(list)))
    }

    /// Sets the routes.
    pub fn routes<I: IntoIterator<Item = S>, S: Into<String>>(self, routes: I) -> Self {
        let list = routes.into_iter().map(Into::into).collect();
        self.with(PolicyField::Routes, Value::List(Some(list)))
    }

    /// Sets the client networks.
    pub fn allowed_ips<I: IntoIterator<Item = S>, S: Into<String>>(self, nets: I) -> Self {
        let list = nets.into_iter().map(Into::into).collect();
        self.with(PolicyField::AllowedIps, Value::List(Some(list)))
    }

    /// Sets `rpm`.
    pub fn rpm(self, rpm: u32) -> Self {
        self.with(PolicyField::Rpm, Value::Limit(Some(rpm)))
    }

    /// Sets `burst`.
    pub fn burst(self, burst: u32) -> Self {
        self.with(PolicyField::Burst, Value::Limit(Some(burst)))
    }

    /// Sets `max_concurrent`.
    pub fn max_concurrent(self, max: u32) -> Self {
        self.with(PolicyField::MaxConcurrent, Value::Limit(Some(max)))
    }

    /// Clears `field`: no restriction, or no limit (a cleared `burst` is
    /// `rpm` again).
    pub fn clear(self, field: PolicyField) -> Self {
        let value = match field {
            PolicyField::Models | PolicyField::Routes | PolicyField::AllowedIps => {
                Value::List(None)
            }
            PolicyField::Rpm | PolicyField::Burst | PolicyField::MaxConcurrent => {
                Value::Limit(None)
            }
        };
        self.with(field, value)
    }

    /// Whether nothing is changed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// A field named twice keeps the last value.
    fn with(mut self, field: PolicyField, value: Value) -> Self {
        self.changes.retain(|(f, _)| *f != field);
        self.changes.push((field, value));
        self
    }

    pub(crate) fn changes(&self) -> &[(PolicyField, Value)] {
        &self.changes
    }

    /// What is wrong with a value set here, field by field (whether a
    /// `burst` has an `rpm` depends on the row: the table checks that).
    pub(crate) fn problem(&self) -> Option<String> {
        self.changes.iter().find_map(|(field, value)| match value {
            Value::List(items) => {
                let mut scope = ScopeText::default();
                let slot = match field {
                    PolicyField::Models => &mut scope.models,
                    PolicyField::Routes => &mut scope.routes,
                    _ => &mut scope.allowed_ips,
                };
                slot.clone_from(items);
                scope.parse().err()
            }
            Value::Limit(Some(0)) => Some(
                LimitError::Zero {
                    field: field.as_str(),
                }
                .to_string(),
            ),
            Value::Limit(Some(value)) if *value > MAX => Some(
                LimitError::TooLarge {
                    field: field.as_str(),
                    value: *value,
                }
                .to_string(),
            ),
            Value::Limit(_) => None,
        })
    }
}

/// The error for a policy the replicas would refuse.
pub(crate) fn invalid(label: &str, reason: String) -> StoreError {
    StoreError::InvalidPolicy {
        label: label.to_owned(),
        reason,
    }
}
