//! The decision itself: config + request parts in, accept or a reason out.
//!
//! A pure function, shared by the service, by [`ProxyAuthLayer::check`]
//! (for "why was I rejected?" endpoints) and by the tests and fuzzers, so
//! all of them agree by construction.
//!
//! [`ProxyAuthLayer::check`]: crate::ProxyAuthLayer::check

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderMap, Method, Uri};

use crate::extract::{presented_key, KeyProblem, KeySource, Presented};
use crate::key_set::sha256;
use crate::shared::Policy;
use crate::ProxyAuthMode;

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request goes to the inner service.
    Allow(Allowed),
    /// The request is answered with a 401 by the layer.
    Reject(Rejection),
}

impl Decision {
    /// Whether the request goes to the inner service.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Why a request was let through.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Allowed {
    /// An `OPTIONS` request (CORS preflight), which passes in every mode.
    Preflight,
    /// The effective mode is `off`.
    AuthOff,
    /// The effective mode is `all_except_health` and the path is exempt.
    ExemptPath,
    /// The key from this source matched the config's `api_key`.
    Authenticated(KeySource),
    /// The key from this source matched the [`KeySet`](crate::KeySet) entry
    /// with this label.
    NamedKey {
        /// Where the key was read from.
        source: KeySource,
        /// The matching key's label.
        label: Arc<str>,
    },
}

/// Why a request was refused, without the key itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rejection {
    /// The machine-readable reason, also sent as the `x-proxy-auth-error`
    /// response header.
    pub reason: RejectReason,
    /// The header the key was read from, if one was present.
    pub source: Option<KeySource>,
    /// Set when the key could not be compared at all (empty, duplicated,
    /// not ASCII).
    pub problem: Option<KeyProblem>,
    /// The effective mode that required the key.
    pub mode: ProxyAuthMode,
}

/// The machine-readable reason for a 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// None of `Authorization`, `x-api-key`, `x-goog-api-key` was sent.
    MissingKey,
    /// A key was sent but is wrong, empty, duplicated, malformed or expired.
    InvalidKey,
    /// Auth is enabled but the proxy has no key configured, so nothing can
    /// match. The operator must set `api_key`.
    NoKeyConfigured,
}

impl RejectReason {
    /// `"missing_key"`, `"invalid_key"` or `"no_key_configured"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MissingKey => "missing_key",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::NoKeyConfigured => "no_key_configured",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Judges a request. The order is the Antigravity one: preflight, then mode,
/// then exempt paths, then the configured key, then the presented key.
pub(crate) fn decide(
    policy: &Policy,
    exempt_paths: &[Box<str>],
    query_key: bool,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Decision {
    if method == Method::OPTIONS {
        return Decision::Allow(Allowed::Preflight);
    }
    let mode = policy.mode;
    match mode {
        ProxyAuthMode::Off | ProxyAuthMode::Auto => return Decision::Allow(Allowed::AuthOff),
        ProxyAuthMode::AllExceptHealth if exempt_paths.iter().any(|p| **p == *uri.path()) => {
            return Decision::Allow(Allowed::ExemptPath);
        }
        ProxyAuthMode::AllExceptHealth | ProxyAuthMode::Strict => {}
    }
    let reject = |reason, source, problem| {
        Decision::Reject(Rejection {
            reason,
            source,
            problem,
            mode,
        })
    };
    let presented = presented_key(headers, if query_key { uri.query() } else { None });
    if policy.key.is_empty() && policy.keys.is_empty() {
        let source = match presented {
            Presented::Missing => None,
            Presented::Key { source, .. } | Presented::Unusable { source, .. } => Some(source),
        };
        return reject(RejectReason::NoKeyConfigured, source, None);
    }
    let (source, key) = match presented {
        Presented::Missing => return reject(RejectReason::MissingKey, None, None),
        Presented::Unusable { source, problem } => {
            return reject(RejectReason::InvalidKey, Some(source), Some(problem))
        }
        Presented::Key { source, key } => (source, key),
    };
    let default_matches = policy.key.matches(key);
    // With a key set, both checks always run, so the time does not tell
    // whether the default key or a named one matched.
    let named = if policy.keys.is_empty() {
        None
    } else {
        policy.keys.lookup(&sha256(key))
    };
    // A key-set entry wins over an equal api_key, so its expiry and label
    // apply (Policy warns about that overlap when it is built).
    match (named, default_matches) {
        (Some(entry), _) if entry.expires_at.is_some_and(|at| at <= SystemTime::now()) => reject(
            RejectReason::InvalidKey,
            Some(source),
            Some(KeyProblem::Expired),
        ),
        (Some(entry), _) => Decision::Allow(Allowed::NamedKey {
            source,
            label: Arc::clone(&entry.label),
        }),
        (None, true) => Decision::Allow(Allowed::Authenticated(source)),
        (None, false) => reject(RejectReason::InvalidKey, Some(source), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProxySecurityConfig;
    use http::HeaderValue;

    fn judge(
        mode: ProxyAuthMode,
        key: &str,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Decision {
        let policy = Policy::new(ProxySecurityConfig::new(mode, key));
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        decide(
            &policy,
            &["/healthz".into()],
            false,
            &method,
            &path.parse().unwrap(),
            &map,
        )
    }

    #[test]
    fn order_of_checks() {
        use ProxyAuthMode::*;
        // Preflight beats everything, even a missing configured key.
        assert_eq!(
            judge(Strict, "", Method::OPTIONS, "/v1", &[]),
            Decision::Allow(Allowed::Preflight)
        );
        assert_eq!(
            judge(Off, "", Method::GET, "/v1", &[]),
            Decision::Allow(Allowed::AuthOff)
        );
        assert_eq!(
            judge(AllExceptHealth, "", Method::GET, "/healthz", &[]),
            Decision::Allow(Allowed::ExemptPath)
        );
        let Decision::Reject(r) = judge(Strict, "", Method::GET, "/healthz", &[("x-api-key", "k")])
        else {
            panic!("empty configured key must reject");
        };
        assert_eq!(
            (r.reason, r.source, r.mode),
            (
                RejectReason::NoKeyConfigured,
                Some(KeySource::XApiKey),
                Strict
            )
        );
    }

    #[test]
    fn reasons() {
        use ProxyAuthMode::Strict;
        let reason = |headers: &[(&'static str, &str)]| match judge(
            Strict,
            "sk-1",
            Method::GET,
            "/",
            headers,
        ) {
            Decision::Reject(r) => Some((r.reason, r.problem)),
            Decision::Allow(_) => None,
        };
        assert_eq!(reason(&[]), Some((RejectReason::MissingKey, None)));
        assert_eq!(
            reason(&[("x-api-key", "sk-2")]),
            Some((RejectReason::InvalidKey, None))
        );
        assert_eq!(
            reason(&[("x-api-key", "")]),
            Some((RejectReason::InvalidKey, Some(KeyProblem::Empty)))
        );
        assert_eq!(reason(&[("authorization", "Bearer sk-1")]), None);
    }

    #[test]
    fn reason_strings() {
        assert_eq!(RejectReason::MissingKey.to_string(), "missing_key");
        assert_eq!(RejectReason::InvalidKey.as_str(), "invalid_key");
        assert_eq!(RejectReason::NoKeyConfigured.as_str(), "no_key_configured");
    }
}

/// Request extension naming the source (and, for a [`KeySet`](crate::KeySet)
/// key, the label) of the key that authenticated the request.
///
/// Inserted only when the layer is built with
/// [`insert_identity(true)`](crate::ProxyAuthLayer::insert_identity); read it
/// in a handler with `request.extensions().get::<Authenticated>()` (or axum's
/// `Extension<Authenticated>` extractor).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Authenticated {
    /// Where the matching key was read from.
    pub source: KeySource,
    /// The [`KeySet`](crate::KeySet) label of the key, or `None` for the
    /// config's `api_key`.
    pub label: Option<Arc<str>>,
}
