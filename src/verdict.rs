//! The verdict on one request, as code reads it: [`Decision`], and the
//! types it is made of.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::{KeySources, ProxyAuthMode};

/// The verdict on one request.
///
/// [`ProxyAuthLayer::check`](crate::ProxyAuthLayer::check) returns it; a
/// refused request's response carries its [`Rejection`] in its extensions,
/// and an accepted one carries its [`Authenticated`] when the layer is built
/// with [`insert_identity`](crate::ProxyAuthLayer::insert_identity).
///
/// # Matching on a decision
///
/// Every refusal is a [`Decision::Reject`], whatever its status code:
/// [`Rejection::status`] says which (401 for the key itself, 403 for a
/// scope, 429 for a limit, 400, 413 or 415 for a model that cannot be
/// read), and [`RejectReason`] why.
/// `RejectReason`, [`Allowed`], [`KeySource`] and [`KeyProblem`] are
/// `#[non_exhaustive]`: new reasons arrive as new variants, so a `match`
/// on them needs a `_` arm, and code that only cares whether a request
/// passed uses [`Decision::is_allowed`] or [`Rejection::status`].
///
/// ```
/// use http::StatusCode;
/// use proxy_auth::{Decision, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, RejectReason};
///
/// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"));
/// let request = http::Request::get("/v1/models").body(()).unwrap();
/// match layer.check(&request) {
///     Decision::Allow(_) => unreachable!("no key was sent"),
///     Decision::Reject(rejection) => {
///         assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED);
///         match rejection.reason {
///             RejectReason::MissingKey => {}
///             RejectReason::InvalidKey | RejectReason::NoKeyConfigured => unreachable!(),
///             _ => {} // reasons added later
///         }
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request goes to the inner service.
    Allow(Allowed),
    /// The request is answered by the layer.
    Reject(Rejection),
}

impl Decision {
    /// Whether the request goes to the inner service.
    #[must_use]
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
    /// A key matched: the config's `api_key` or a [`KeySet`](crate::KeySet)
    /// entry.
    Key(Authenticated),
}

impl Allowed {
    /// `"preflight"`, `"auth_off"`, `"exempt_path"` or `"key"`, as the
    /// metrics label it.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Allowed::Preflight => "preflight",
            Allowed::AuthOff => "auth_off",
            Allowed::ExemptPath => "exempt_path",
            Allowed::Key(_) => "key",
        }
    }
}

/// Who authenticated a request: where the key was read from and, for a
/// [`KeySet`](crate::KeySet) key, its label.
///
/// Found in [`Allowed::Key`], and as a request extension when the layer is
/// built with [`insert_identity(true)`](crate::ProxyAuthLayer::insert_identity):
/// read it in a handler with `request.extensions().get::<Authenticated>()`
/// (or axum's `Extension<Authenticated>` extractor).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Authenticated {
    /// Where the matching key was read from.
    pub source: KeySource,
    /// The [`KeySet`](crate::KeySet) label of the key, or `None` for the
    /// config's `api_key`.
    pub label: Option<Arc<str>>,
    /// For a key limited to some models: the model the check read from the
    /// request, if it named one. Kept when the layer inserts the identity
    /// ([`insert_identity`](crate::ProxyAuthLayer::insert_identity)) or
    /// read the model from the body; otherwise `None`, so a check that
    /// passes allocates nothing.
    pub model: Option<Arc<str>>,
    #[cfg(feature = "key-set")]
    pub(crate) entry: Option<Arc<crate::KeyEntry>>,
}

impl Authenticated {
    pub(crate) fn default_key(source: KeySource) -> Self {
        Authenticated {
            source,
            label: None,
            model: None,
            #[cfg(feature = "key-set")]
            entry: None,
        }
    }

    /// The [`KeySet`](crate::KeySet) entry of the key (its label, expiry,
    /// data), or `None` for the config's `api_key`. Shared with the set, not
    /// copied.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn entry(&self) -> Option<&crate::KeyEntry> {
        self.entry.as_deref()
    }

    /// The key's own data, if it has data of type `T`
    /// ([`NewKey::data`](crate::NewKey::data)): a gateway's tenant or
    /// budget, in the handler, without a second lookup.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn data<T: std::any::Any>(&self) -> Option<&T> {
        self.entry()?.data()
    }
}

/// Who authenticated: equal when the source and the label are.
impl PartialEq for Authenticated {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.label == other.label
    }
}

impl Eq for Authenticated {}

impl std::hash::Hash for Authenticated {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
        self.label.hash(state);
    }
}

/// Why a request was refused, without the key itself.
///
/// The layer puts it in the extensions of the response it answers with, so
/// an outer layer (tracing, an audit log, an error mapper) can read it:
/// `response.extensions().get::<Rejection>()`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rejection {
    /// The machine-readable reason, also sent as the `x-proxy-auth-error`
    /// response header.
    pub reason: RejectReason,
    /// Where the key was read from, if a key header (or the query key) was
    /// present.
    pub source: Option<KeySource>,
    /// Set when the key could not be compared at all (empty, duplicated,
    /// not ASCII), has expired, or did not match and is not shaped like a
    /// key (`Bearer<key>`, another auth scheme).
    pub problem: Option<KeyProblem>,
    /// The effective mode that required the key: `strict` or
    /// `all_except_health`.
    pub mode: ProxyAuthMode,
    /// The mode as configured: `auto` when `mode` is what `auto` resolved
    /// to (with `allow_lan_access`), otherwise `mode` itself.
    pub configured_mode: ProxyAuthMode,
    /// Key headers (or the key query parameter) the request sent that were
    /// not read: after the one read in the layer's order, not in its list
    /// of sources at all, or an `Authorization` of another scheme that the
    /// layer counts as absent.
    pub ignored: KeySources,
    /// For a refusal of a key that matched (a scope, a limit): its
    /// [`KeySet`](crate::KeySet) label, `None` for the config's `api_key`.
    pub label: Option<Arc<str>>,
    /// What was refused, when there is a name for it: the model, the path,
    /// the client's address.
    pub detail: Option<Arc<str>>,
    /// Why the check could not be sure, when that is the reason: "the query
    /// names the model more than once", "the server does not pass the
    /// connection's address".
    pub note: Option<&'static str>,
    /// For a `429` ([`RejectReason::RateLimited`],
    /// [`RejectReason::ConcurrencyLimited`]): which limit, its value, the
    /// wait, what remains and when it resets.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub limit: Option<crate::Limited>,
}

impl Rejection {
    /// A refusal of the key itself: no label, detail or note.
    pub(crate) fn of_key(
        reason: RejectReason,
        source: Option<KeySource>,
        problem: Option<KeyProblem>,
        mode: ProxyAuthMode,
        configured_mode: ProxyAuthMode,
    ) -> Self {
        Rejection {
            reason,
            source,
            problem,
            mode,
            configured_mode,
            ignored: KeySources::default(),
            label: None,
            detail: None,
            note: None,
            #[cfg(feature = "key-set")]
            limit: None,
        }
    }

    /// The status code the layer answers with: see [`RejectReason::status`].
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }
}

/// The machine-readable reason for a refusal.
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
    /// The key may not use the model the request names (403).
    ModelNotAllowed,
    /// The key may not call the request's path (403).
    RouteNotAllowed,
    /// The key may not be used from the request's address, or the address is
    /// not known (403).
    IpNotAllowed,
    /// The key is limited to some models, and the request's model cannot be
    /// read for certain: two of them, a body that parsers would read
    /// differently, a layer that does not read bodies (400).
    ModelUnreadable,
    /// The key is limited to some models and the body is larger than the
    /// layer reads to find the model (413).
    BodyTooLarge,
    /// The key is limited to some models and the body is compressed
    /// (`Content-Encoding`), so its model cannot be read (415).
    UnsupportedEncoding,
    /// The key has made more requests than its `rpm` and `burst` allow
    /// (429); [`Rejection::limit`] says when to come back.
    RateLimited,
    /// The key has `max_concurrent` requests in flight already (429).
    ConcurrencyLimited,
}

impl RejectReason {
    /// The `x-proxy-auth-error` header's value: `"missing_key"`,
    /// `"invalid_key"`, `"no_key_configured"`, `"model_not_allowed"`,
    /// `"route_not_allowed"`, `"ip_not_allowed"`, `"model_unreadable"`,
    /// `"body_too_large"`, `"unsupported_encoding"`, `"rate_limited"`,
    /// `"concurrency_limited"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::MissingKey => "missing_key",
            RejectReason::InvalidKey => "invalid_key",
            RejectReason::NoKeyConfigured => "no_key_configured",
            RejectReason::ModelNotAllowed => "model_not_allowed",
            RejectReason::RouteNotAllowed => "route_not_allowed",
            RejectReason::IpNotAllowed => "ip_not_allowed",
            RejectReason::ModelUnreadable => "model_unreadable",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::UnsupportedEncoding => "unsupported_encoding",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::ConcurrencyLimited => "concurrency_limited",
        }
    }

    /// The status code of the layer's answer: `401 Unauthorized` for the
    /// key itself, `403 Forbidden` for a scope, `400`, `413` and `415` for a
    /// model that cannot be read for certain, `429 Too Many Requests` for a
    /// limit.
    #[must_use]
    pub const fn status(self) -> StatusCode {
        match self {
            RejectReason::MissingKey | RejectReason::InvalidKey | RejectReason::NoKeyConfigured => {
                StatusCode::UNAUTHORIZED
            }
            RejectReason::ModelNotAllowed
            | RejectReason::RouteNotAllowed
            | RejectReason::IpNotAllowed => StatusCode::FORBIDDEN,
            RejectReason::ModelUnreadable => StatusCode::BAD_REQUEST,
            RejectReason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RejectReason::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RejectReason::RateLimited | RejectReason::ConcurrencyLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// Every reason, for tables indexed by reason.
    pub(crate) const ALL: [RejectReason; 11] = [
        RejectReason::MissingKey,
        RejectReason::InvalidKey,
        RejectReason::NoKeyConfigured,
        RejectReason::ModelNotAllowed,
        RejectReason::RouteNotAllowed,
        RejectReason::IpNotAllowed,
        RejectReason::ModelUnreadable,
        RejectReason::BodyTooLarge,
        RejectReason::UnsupportedEncoding,
        RejectReason::RateLimited,
        RejectReason::ConcurrencyLimited,
    ];

    /// Whether the reason is about the key itself (a 401), rather than what
    /// a key that matched may do.
    pub(crate) const fn is_about_the_key(self) -> bool {
        matches!(
            self,
            RejectReason::MissingKey | RejectReason::InvalidKey | RejectReason::NoKeyConfigured
        )
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an API key was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySource {
    /// `Authorization`, with or without a `Bearer ` scheme (OpenAI style).
    Authorization,
    /// `x-api-key` (Anthropic style).
    XApiKey,
    /// `x-goog-api-key` (Gemini style).
    XGoogApiKey,
    /// The `key` query parameter (Gemini REST style), in any ASCII case and
    /// with its name percent-decoded once (`KEY`, `k%65y`); only read when
    /// [`ProxyAuthLayer::query_key`](crate::ProxyAuthLayer::query_key) is on.
    QueryKey,
}

impl KeySource {
    /// `"authorization"`, `"x-api-key"`, `"x-goog-api-key"` (the header
    /// names, lowercase as HTTP/2 sends them) or `"query"`: the one spelling
    /// the logs, the metrics and the examples use.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KeySource::Authorization => "authorization",
            KeySource::XApiKey => "x-api-key",
            KeySource::XGoogApiKey => "x-goog-api-key",
            KeySource::QueryKey => "query",
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a present key could not even be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The header (or what followed `Bearer `) was empty.
    Empty,
    /// The header appeared more than once. `Authorization` is a singleton
    /// field (RFC 9110 §11.6.2) and so are the API-key headers; picking one
    /// of several values would let a request smuggle a second credential
    /// past whatever checked the first, so the request is refused.
    Duplicate,
    /// The value has bytes outside visible ASCII, space and tab, which no
    /// API key contains.
    NotAscii,
    /// The key is one of a [`KeySet`](crate::KeySet)'s and its expiry has
    /// passed. Only a holder of a real (former) key can get this answer.
    Expired,
    /// An `Authorization` value that starts with `Bearer` but not with
    /// `Bearer <key>` (exactly one space): `Bearer<key>`, `Bearer  <key>`,
    /// `Bearer<TAB><key>`. Read whole as the key, it did not match.
    MalformedBearer,
    /// An `Authorization` value of the form `<scheme> <credentials>` with a
    /// scheme other than `Bearer` (`Basic ...`). Read whole as the key, it
    /// did not match.
    OtherScheme,
}

impl KeyProblem {
    /// `"empty"`, `"duplicate"`, `"not_ascii"`, `"expired"`,
    /// `"malformed_bearer"` or `"other_scheme"`, as logged.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyProblem::Empty => "empty",
            KeyProblem::Duplicate => "duplicate",
            KeyProblem::NotAscii => "not_ascii",
            KeyProblem::Expired => "expired",
            KeyProblem::MalformedBearer => "malformed_bearer",
            KeyProblem::OtherScheme => "other_scheme",
        }
    }
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_and_statuses() {
        assert_eq!(RejectReason::MissingKey.to_string(), "missing_key");
        assert_eq!(RejectReason::InvalidKey.as_str(), "invalid_key");
        assert_eq!(RejectReason::NoKeyConfigured.as_str(), "no_key_configured");
        for reason in RejectReason::ALL {
            assert_eq!(
                reason.status() == StatusCode::UNAUTHORIZED,
                reason.is_about_the_key()
            );
        }
    }

    #[test]
    fn one_spelling_per_source() {
        let all = [
            KeySource::Authorization,
            KeySource::XApiKey,
            KeySource::XGoogApiKey,
            KeySource::QueryKey,
        ];
        let names: Vec<_> = all.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            ["authorization", "x-api-key", "x-goog-api-key", "query"]
        );
    }
}
