//! The decision: a compiled config ([`Policy`]) plus the layer's options
//! judge one request, and say why.
//!
//! Everything a request's fate depends on is here, in the order it is
//! checked; the service, [`ProxyAuthLayer::check`], the tests and the fuzzer
//! all call [`PolicySource::decide`], so they agree by construction.
//!
//! [`ProxyAuthLayer::check`]: crate::ProxyAuthLayer::check

use std::fmt;
use std::sync::Arc;

use http::{Method, Request};

use crate::client_uri::client_path;
use crate::compare::ConfiguredKey;
use crate::digest::{classify, KeyText};
use crate::extract::{is_key_text, presented_key, Presented};
use crate::layer::Options;
#[cfg(feature = "key-set")]
use crate::scope::judge::{judge, Judged};
use crate::sources::{scheme, Scheme};
#[cfg(feature = "key-set")]
use crate::{digest::sha256, KeySet};
use crate::{
    Allowed, Authenticated, Decision, KeyProblem, KeySource, ProxyAuthMode, ProxySecurityConfig,
    RejectReason, Rejection, SharedSecurityConfig, UnusableKey,
};
#[cfg(feature = "key-set")]
use zeroize::{Zeroize, Zeroizing};

#[cfg(feature = "key-set")]
pub(crate) use crate::limit::{Admitted, Spend};
#[cfg(feature = "key-set")]
use crate::limit::{KeyLimiter, LimitKind};

#[cfg(feature = "key-set")]
pub(crate) use crate::limit::Slot;

/// What an admitted request holds of its key's limits; nothing without
/// the `key-set` feature, which has the limits.
#[cfg(not(feature = "key-set"))]
#[derive(Debug, Default)]
pub(crate) struct Admitted;

/// A concurrency slot; there are none without the `key-set` feature.
#[cfg(not(feature = "key-set"))]
#[derive(Debug, Default)]
pub(crate) struct Slot;

#[cfg(not(feature = "key-set"))]
impl Slot {
    pub(crate) fn release(&mut self) {}
}

#[cfg(not(feature = "key-set"))]
impl Admitted {
    pub(crate) fn is_empty(&self) -> bool {
        true
    }

    /// The inner service's response, as the layer hands it on.
    pub(crate) fn into_response<B>(
        self,
        response: http::Response<B>,
    ) -> http::Response<crate::ResponseBody<B>> {
        response.map(crate::ResponseBody::inner)
    }
}

/// Whether a decision spends from the limits; without the `key-set`
/// feature there are none to spend from.
#[cfg(not(feature = "key-set"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spend {
    Take,
    Peek,
}

#[cfg(not(feature = "key-set"))]
impl Spend {
    pub(crate) fn taking(_: &Options) -> Spend {
        Spend::Take
    }
}

/// What the layer does with a request, as its head shows.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Allowed or refused. What the key's limits admitted an allowed
    /// request with (a concurrency slot) is written to the judge's
    /// `admitted`, so the common path moves nothing more than before.
    Decided(Decision),
    /// Allowed so far; the key is limited to models and the path names
    /// none, so the body's model, if the request has a body, must be
    /// allowed too.
    ReadBody(Pending),
}

/// A request whose body's model decides: who it is, and the refusal it
/// gets if the body's model is not allowed or cannot be read.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) identity: Authenticated,
    pub(crate) refusal: Rejection,
}

impl Pending {
    /// Allowed when the body is known to be empty (if the key's limits let
    /// it through); otherwise refused, as the body is not read.
    pub(crate) fn without_body(
        self,
        empty: bool,
        spend: Spend,
        admitted: &mut Admitted,
    ) -> Decision {
        if empty {
            return self.allow(spend, admitted);
        }
        let mut refusal = self.refusal;
        refusal.reason = RejectReason::ModelUnreadable;
        refusal.note = Some("the key is limited to some models and the request may name one in its body, which this layer does not read (build it with ProxyAuthLayer::read_model_bodies)");
        Decision::Reject(refusal)
    }

    /// In scope: allowed if the key's limits let it through.
    pub(crate) fn allow(self, spend: Spend, admitted: &mut Admitted) -> Decision {
        #[cfg(feature = "key-set")]
        {
            let entry = self.identity.entry.clone();
            let limiter = entry.as_deref().and_then(|e| e.limiter.0.as_ref());
            admit(self.identity, limiter, spend, || self.refusal, admitted)
        }
        #[cfg(not(feature = "key-set"))]
        {
            let _ = (spend, admitted);
            Decision::Allow(Allowed::Key(self.identity))
        }
    }

    /// Refused for what the body showed.
    pub(crate) fn refuse(
        self,
        reason: RejectReason,
        detail: Option<&str>,
        note: Option<&'static str>,
    ) -> Decision {
        let mut refusal = self.refusal;
        refusal.reason = reason;
        refusal.detail = detail.map(Arc::from);
        refusal.note = note;
        Decision::Reject(refusal)
    }
}

impl Verdict {
    /// The decision without the body: what [`ProxyAuthLayer::check`] says.
    ///
    /// [`ProxyAuthLayer::check`]: crate::ProxyAuthLayer::check
    ///
    /// The limits are read as `peek` says (`Spend::Peek`, or a layer
    /// with shared rates' own way).
    pub(crate) fn into_decision(self, peek: Spend) -> Decision {
        match self {
            Verdict::Decided(decision) => decision,
            Verdict::ReadBody(pending) => pending.allow(peek, &mut Admitted::default()),
        }
    }
}

/// An in-scope key through its limits: allowed (what they admitted it with
/// written to `admitted`), or refused with `refusal` (its source, label and
/// modes) made a 429. Without a limiter, allowed.
#[cfg(feature = "key-set")]
#[inline(always)]
fn admit(
    identity: Authenticated,
    limiter: Option<&KeyLimiter>,
    spend: Spend,
    refusal: impl FnOnce() -> Rejection,
    admitted: &mut Admitted,
) -> Decision {
    let Some(limiter) = limiter else {
        return Decision::Allow(Allowed::Key(identity));
    };
    match limiter.admit(spend) {
        Ok(taken) => {
            *admitted = taken;
            #[cfg(feature = "redis")]
            if let (Spend::Shared(crate::limit::Shared::Ask { .. }), Some(rate)) =
                (spend, limiter.rate())
            {
                let mut refusal = refusal();
                refusal.reason = RejectReason::RateLimited;
                refusal.label = identity.label.clone();
                refusal.detail = None;
                refusal.note = None;
                admitted.deferred = Some(Box::new(crate::limit::Deferred {
                    rate: rate.clone(),
                    limits: limiter.limits,
                    label: identity.label.clone(),
                    refusal,
                }));
            }
            Decision::Allow(Allowed::Key(identity))
        }
        Err(limited) => {
            let mut rejection = refusal();
            rejection.reason = match limited.kind {
                LimitKind::Rate => RejectReason::RateLimited,
                _ => RejectReason::ConcurrencyLimited,
            };
            rejection.label = identity.label;
            rejection.detail = None;
            rejection.note = None;
            rejection.limit = Some(limited);
            Decision::Reject(rejection)
        }
    }
}

/// A mode that needs no more resolving: `auto` cannot reach a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enforced {
    Off,
    AllExceptHealth,
    Strict,
}

impl Enforced {
    fn of(config: &ProxySecurityConfig) -> Self {
        match (config.auth_mode, config.allow_lan_access) {
            (ProxyAuthMode::Off, _) | (ProxyAuthMode::Auto, false) => Enforced::Off,
            (ProxyAuthMode::AllExceptHealth, _) | (ProxyAuthMode::Auto, true) => {
                Enforced::AllExceptHealth
            }
            (ProxyAuthMode::Strict, _) => Enforced::Strict,
        }
    }

    pub(crate) fn mode(self) -> ProxyAuthMode {
        match self {
            Enforced::Off => ProxyAuthMode::Off,
            Enforced::AllExceptHealth => ProxyAuthMode::AllExceptHealth,
            Enforced::Strict => ProxyAuthMode::Strict,
        }
    }
}

/// A config prepared for the request path once per change, not once per
/// request: the mode resolved, the key laid out for constant-time
/// comparison.
pub(crate) struct Policy {
    pub(crate) config: ProxySecurityConfig,
    pub(crate) mode: Enforced,
    key: ConfiguredKey,
    #[cfg(feature = "key-set")]
    pub(crate) keys: KeySet,
    has_key: bool,
    /// Why `api_key` cannot match anything, if it cannot (and is not blank).
    key_problem: Option<UnusableKey>,
    /// The plain `api_key`'s limits (the config's `limits`) and their state.
    #[cfg(feature = "key-set")]
    limiter: Option<KeyLimiter>,
}

impl Policy {
    pub(crate) fn new(config: ProxySecurityConfig) -> Self {
        Policy::build(
            config,
            #[cfg(feature = "key-set")]
            KeySet::new(),
            None,
        )
    }

    /// Compiles `config` and `keys`; each label's limiter (and the plain
    /// `api_key`'s) carries the state it had in `previous`, the policy this
    /// one replaces.
    pub(crate) fn build(
        config: ProxySecurityConfig,
        #[cfg(feature = "key-set")] mut keys: KeySet,
        previous: Option<&Policy>,
    ) -> Self {
        // A header value cannot start or end with whitespace once an HTTP
        // parser has read it, so a key pasted with a trailing newline could
        // never match; trimming makes it work as meant.
        let trimmed = config.api_key.expose_secret().trim();
        let (key, problem) = match classify(trimmed) {
            KeyText::Plain if is_key_text(trimmed.as_bytes()) => {
                match ConfiguredKey::new(trimmed.as_bytes()) {
                    Some(key) => (key, None),
                    // Fail closed, like a malformed digest: a longer key
                    // would need a larger buffer, whose size the timing of
                    // a comparison could tell apart from everyone else's.
                    None => (ConfiguredKey::empty(), Some(UnusableKey::TooLong)),
                }
            }
            // Presented keys are refused unless they are key text, so such
            // a key can never match; saying so beats a silent 401.
            KeyText::Plain => (ConfiguredKey::unmatchable(), Some(UnusableKey::NotKeyText)),
            #[cfg(feature = "key-set")]
            KeyText::Digest(digest) => (ConfiguredKey::digest(digest), None),
            // Fail closed: a mistyped digest must not turn into a plaintext
            // key that whoever reads the config could send.
            KeyText::BadDigest => (ConfiguredKey::empty(), Some(UnusableKey::BadDigest)),
        };
        if let Some(problem) = &problem {
            tracing::error!(target: "proxy_auth", "{problem}");
        }
        #[cfg(feature = "key-set")]
        warn_about_overlap(&key, trimmed, &keys);
        #[cfg(feature = "key-set")]
        let limiter = {
            set_limiters(&mut keys, config.limits, previous);
            KeyLimiter::build(config.limits, previous.and_then(|p| p.limiter.as_ref()))
        };
        #[cfg(not(feature = "key-set"))]
        let _ = previous;
        #[cfg(feature = "key-set")]
        let has_key = !key.is_empty() || !keys.is_empty();
        #[cfg(not(feature = "key-set"))]
        let has_key = !key.is_empty();
        Policy {
            mode: Enforced::of(&config),
            key,
            key_problem: problem,
            #[cfg(feature = "key-set")]
            keys,
            has_key,
            #[cfg(feature = "key-set")]
            limiter,
            config,
        }
    }

    /// The limiter of a label, or of the plain `api_key` (`None`).
    #[cfg(all(test, feature = "key-set"))]
    pub(crate) fn limiter_of(&self, label: Option<&str>) -> Option<&KeyLimiter> {
        match label {
            None => self.limiter.as_ref(),
            Some(label) => self.keys.get(label)?.limiter.0.as_ref(),
        }
    }

    /// Why this config refuses requests it should let through: a bad
    /// `api_key`, or auth on with no key at all.
    pub(crate) fn check_keys(&self) -> Result<(), UnusableKey> {
        if let Some(problem) = &self.key_problem {
            return Err(problem.clone());
        }
        match self.mode {
            Enforced::Off => Ok(()),
            _ if self.has_key => Ok(()),
            mode => Err(UnusableKey::NoKey { mode: mode.mode() }),
        }
    }

    /// The decision on what the request's head shows.
    #[cfg(test)]
    fn decide<B>(&self, options: &Options, request: &Request<B>) -> Decision {
        self.judge(options, request, Spend::Peek, &mut Admitted::default())
            .into_decision(Spend::Peek)
    }

    /// Judges a request. The order is the Antigravity one: preflight, then
    /// mode, then exempt paths, then the configured key, then the presented
    /// key; then a named key's scopes; then the key's limits, spent from
    /// only if `spend` says so.
    fn judge<B>(
        &self,
        options: &Options,
        request: &Request<B>,
        spend: Spend,
        admitted: &mut Admitted,
    ) -> Verdict {
        let decided = Verdict::Decided;
        if request.method() == Method::OPTIONS {
            return decided(Decision::Allow(Allowed::Preflight));
        }
        match self.mode {
            Enforced::Off => return decided(Decision::Allow(Allowed::AuthOff)),
            Enforced::AllExceptHealth
                if options.is_exempt(client_path(request.extensions(), request.uri())) =>
            {
                return decided(Decision::Allow(Allowed::ExemptPath));
            }
            Enforced::AllExceptHealth | Enforced::Strict => {}
        }
        let headers = request.headers();
        let query = request.uri().query();
        let presented = presented_key(headers, query, &options.sources);
        let rejection = |reason, source, problem| Rejection {
            ignored: options.sources.ignored(headers, query, source),
            ..Rejection::of_key(
                reason,
                source,
                problem,
                self.mode.mode(),
                self.config.auth_mode,
            )
        };
        let reject = |reason, source, problem| {
            Verdict::Decided(Decision::Reject(rejection(reason, source, problem)))
        };
        if !self.has_key {
            return reject(RejectReason::NoKeyConfigured, presented.source(), None);
        }
        let (source, key, raw) = match presented {
            Presented::Missing => return reject(RejectReason::MissingKey, None, None),
            Presented::Unusable { source, problem } => {
                return reject(RejectReason::InvalidKey, Some(source), Some(problem))
            }
            Presented::Key { source, key, raw } => (source, key, raw),
        };
        let default_matches = self.key.matches(key);
        #[cfg(feature = "key-set")]
        if !self.keys.is_empty() {
            // Both checks always run, so the time does not tell whether the
            // default key or a named one matched. A key-set entry wins over
            // an equal api_key, so its expiry and label apply.
            let mut digest = sha256(key);
            let entry = self.keys.lookup(&digest);
            digest.zeroize();
            if let Some(entry) = entry {
                // A digest may stand for any bytes; only key text is a key.
                let problem = if !is_key_text(key) {
                    Some(KeyProblem::NotAscii)
                } else if entry.is_expired() {
                    Some(KeyProblem::Expired)
                } else {
                    None
                };
                if problem.is_some() {
                    return reject(RejectReason::InvalidKey, Some(source), problem);
                }
                let mut identity = Authenticated {
                    source,
                    label: Some(Arc::clone(&entry.label)),
                    model: None,
                    entry: Some(Arc::clone(entry)),
                };
                let limiter = entry.limiter.0.as_ref();
                let limited = || rejection(RejectReason::RateLimited, Some(source), None);
                if entry.scope.is_unrestricted() {
                    return Verdict::Decided(admit(identity, limiter, spend, limited, admitted));
                }
                return match judge(
                    &entry.scope,
                    request,
                    &options.trusted.0,
                    options.insert_identity,
                ) {
                    Judged::Pass { model } => {
                        identity.model = model;
                        Verdict::Decided(admit(identity, limiter, spend, limited, admitted))
                    }
                    Judged::ReadBody { model } => {
                        identity.model = model;
                        let mut refusal =
                            rejection(RejectReason::ModelUnreadable, Some(source), None);
                        refusal.label = identity.label.clone();
                        Verdict::ReadBody(Pending { identity, refusal })
                    }
                    Judged::Refuse(refusal) => {
                        let mut rejection = rejection(refusal.reason, Some(source), None);
                        rejection.label = identity.label;
                        rejection.detail = refusal.detail;
                        rejection.note = refusal.note;
                        Verdict::Decided(Decision::Reject(rejection))
                    }
                };
            }
        }
        if default_matches {
            let identity = Authenticated::default_key(source);
            #[cfg(feature = "key-set")]
            if let Some(limiter) = &self.limiter {
                let limited = || rejection(RejectReason::RateLimited, Some(source), None);
                return Verdict::Decided(admit(identity, Some(limiter), spend, limited, admitted));
            }
            let _ = (spend, &admitted);
            decided(Decision::Allow(Allowed::Key(identity)))
        } else {
            reject(
                RejectReason::InvalidKey,
                Some(source),
                mismatch(source, key, raw),
            )
        }
    }
}

/// Why a key that matched nothing is not even shaped like a key, if it is
/// not. Asked only now: the configured key is key text, so a key that
/// matched needs no such pass, and the time of these passes depends only
/// on the presented key, like everything here.
#[inline(never)]
fn mismatch(source: KeySource, key: &[u8], raw: &[u8]) -> Option<KeyProblem> {
    if !is_key_text(key) {
        return Some(KeyProblem::NotAscii);
    }
    match (source, scheme(raw)) {
        (KeySource::Authorization, Scheme::MalformedBearer) => Some(KeyProblem::MalformedBearer),
        (KeySource::Authorization, Scheme::Other) => Some(KeyProblem::OtherScheme),
        _ => None,
    }
}

/// Gives every entry the limiter of its limits over `defaults`, carrying
/// the state its label had in `previous`. An entry shared with the previous
/// set whose limits in force did not change keeps its limiter as it is.
#[cfg(feature = "key-set")]
fn set_limiters(keys: &mut KeySet, defaults: crate::Limits, previous: Option<&Policy>) {
    for entry in keys.entries_mut() {
        let limits = entry.limits.or(defaults);
        let current = entry.limiter.0.as_ref();
        if current.map(|l| l.limits) == Some(limits) || (current.is_none() && limits.is_none()) {
            continue;
        }
        // The state to carry: this entry's own (a set cloned from the
        // previous one), else the previous policy's entry of the label.
        let before = current.cloned().or_else(|| {
            let previous = previous?.keys.get(&entry.label)?;
            previous.limiter.0.clone()
        });
        // Copy-on-write: the previous policy's set may share this entry.
        Arc::make_mut(entry).limiter.0 = KeyLimiter::build(limits, before.as_ref());
    }
}

#[cfg(feature = "key-set")]
fn warn_about_overlap(key: &ConfiguredKey, trimmed: &str, keys: &KeySet) {
    if keys.is_empty() || key.is_empty() {
        return;
    }
    let digest = Zeroizing::new(match key {
        ConfiguredKey::Digest(digest) => **digest,
        ConfiguredKey::Plain { .. } => sha256(trimmed.as_bytes()),
    });
    if let Some(entry) = keys.lookup(&digest) {
        tracing::warn!(
            target: "proxy_auth",
            label = &*entry.label,
            "api_key is also in the key set; requests with it are attributed to the key set entry, whose expiry applies"
        );
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// Where a layer reads its config: a fixed snapshot or a reloadable handle.
#[derive(Clone, Debug)]
pub(crate) enum PolicySource {
    Fixed(Arc<Policy>),
    Shared(SharedSecurityConfig),
}

impl PolicySource {
    pub(crate) fn check_keys(&self) -> Result<(), UnusableKey> {
        match self {
            PolicySource::Fixed(policy) => policy.check_keys(),
            PolicySource::Shared(shared) => shared.check_keys(),
        }
    }

    /// One config snapshot per decision, released before the inner service
    /// runs: a request sees the old config or the new one, never a mix.
    #[inline]
    pub(crate) fn judge<B>(
        &self,
        options: &Options,
        request: &Request<B>,
        spend: Spend,
        admitted: &mut Admitted,
    ) -> Verdict {
        match self {
            PolicySource::Fixed(policy) => policy.judge(options, request, spend, admitted),
            PolicySource::Shared(shared) => {
                shared.policy().judge(options, request, spend, admitted)
            }
        }
    }

    /// [`judge`](Self::judge) for a layer that does not read bodies: only a
    /// request whose head shows it has no body can pass without its model
    /// being known.
    #[inline]
    pub(crate) fn judge_head<B>(
        &self,
        options: &Options,
        request: &Request<B>,
        spend: Spend,
        admitted: &mut Admitted,
    ) -> Decision {
        match self.judge(options, request, spend, admitted) {
            Verdict::Decided(decision) => decision,
            Verdict::ReadBody(pending) => {
                pending.without_body(crate::service::no_body(request), spend, admitted)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(
        mode: ProxyAuthMode,
        key: &str,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Decision {
        let policy = Policy::new(ProxySecurityConfig::new(mode, key));
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        policy.decide(&Options::default(), &request.body(()).unwrap())
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
    fn check_keys_finds_a_config_that_lets_nobody_in() {
        let check = |mode, key: &str| Policy::new(ProxySecurityConfig::new(mode, key)).check_keys();
        use ProxyAuthMode::*;
        assert_eq!(check(Strict, " "), Err(UnusableKey::NoKey { mode: Strict }));
        assert_eq!(
            check(AllExceptHealth, ""),
            Err(UnusableKey::NoKey {
                mode: AllExceptHealth
            })
        );
        assert_eq!(check(Off, ""), Ok(()));
        assert_eq!(check(Auto, ""), Ok(()), "auto on loopback is off");
        assert_eq!(check(Strict, "sk-1"), Ok(()));
        assert_eq!(check(Strict, "sha256:00"), Err(UnusableKey::BadDigest));
        assert_eq!(check(Off, "sha256:00"), Err(UnusableKey::BadDigest));
        assert_eq!(check(Strict, "sk-\u{7f}"), Err(UnusableKey::NotKeyText));
        assert_eq!(check(Strict, &"k".repeat(4097)), Err(UnusableKey::TooLong));
        #[cfg(feature = "key-set")]
        {
            let mut keys = KeySet::new();
            keys.insert("ci", "sk-ci").unwrap();
            let with_keys = Policy::build(ProxySecurityConfig::new(Strict, ""), keys, None);
            assert_eq!(
                with_keys.check_keys(),
                Ok(()),
                "named keys let their holders in"
            );
        }
    }

    #[test]
    fn the_enforced_mode_is_the_effective_one_and_never_auto() {
        for mode in ProxyAuthMode::ALL {
            for lan in [false, true] {
                let config = ProxySecurityConfig::new(mode, "k").allow_lan_access(lan);
                let enforced = Policy::new(config.clone()).mode;
                assert_eq!(enforced.mode(), config.effective_auth_mode());
                assert_ne!(enforced.mode(), ProxyAuthMode::Auto);
            }
        }
    }
}
