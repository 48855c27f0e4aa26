//! Counting decisions through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`, off by default).
//!
//! Every request the layer judges adds one to
//! [`proxy_auth_requests_total`](REQUESTS_TOTAL), labelled with:
//!
//! | label | values | meaning |
//! |---|---|---|
//! | `outcome` | `allowed`, `rejected` | whether the inner service was called |
//! | `reason` | `preflight`, `auth_off`, `exempt_path`, `key` (allowed); `missing_key`, `invalid_key`, `no_key_configured` (rejected, the `x-proxy-auth-error` header's value) | why |
//! | `source` | `authorization`, `x-api-key`, `x-goog-api-key`, `query`, `none` | where the key was read from; `none` when no key was looked at or none was present |
//!
//! Only the 17 combinations that can happen exist (a preflight never has a
//! source, an `invalid_key` always has one), and all of them are registered
//! at the layer's first request, so they are exported at `0` from then on
//! and `rate()` and "absent" alerts work without waiting for a first event.
//! [`ProxyAuthLayer::check`](crate::ProxyAuthLayer::check) does not count:
//! only requests that went through the service do.
//!
//! Per-key counts are off by default: with
//! [`ProxyAuthLayer::metrics_key_labels(true)`](crate::ProxyAuthLayer::metrics_key_labels),
//! each request accepted by a [`KeySet`](crate::KeySet) key also adds one to
//! [`proxy_auth_key_requests_total{label="<its label>"}`](KEY_REQUESTS_TOTAL).
//! That is one series per label, which for a key set of 100,000 keys is
//! 100,000 series in the metrics backend; turn it on only for sets of a
//! size your backend is sized for. The config's `api_key` has no label and
//! is not counted there (its count is the `reason="key"` total minus the sum
//! of the per-label counts).
//!
//! # Cost
//!
//! With the feature off, none of this is compiled. With it on, the layer
//! registers its 17 counter handles with the recorder once, at its first
//! request, and each request then costs one atomic load (the handle table)
//! and one counter increment through the handle, with no allocation, no
//! hashing and no lock in the recorder's registry. The per-key counter is
//! the exception: its label is known only at run time, so each count looks
//! the series up in the recorder (one small allocation for the label list).
//!
//! `cargo bench --features metrics --bench metrics` measures it: on a
//! shared 2-core VM, the accept path with the Prometheus exporter installed
//! took about 10 ns more than with no recorder (the exporter's atomic
//! add), while `counter!` with static labels, which looks the series up
//! in the recorder on every call, took about 68 ns per count.
//!
//! Handles stay bound to the recorder that was in force when they were
//! registered (this is how the `metrics` crate works): **install the
//! recorder before the layer serves its first request**, or the layer
//! counts into the no-op recorder for its whole life. Clones of a layer and
//! the services it builds share one table; a new layer registers anew.
//!
//! # Example
//!
//! ```
//! use axum::{routing::get, Router};
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
//!
//! // Before the first request: handles bind to the recorder in force then.
//! let prometheus = PrometheusBuilder::new().build_recorder().handle();
//! # let _ = &prometheus;
//! // In a real proxy: `PrometheusBuilder::new().install_recorder()?`, then
//! // serve `prometheus.render()` on a `/metrics` route behind the layer.
//!
//! let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"))
//!     .metrics_key_labels(false); // the default; `true` for per-label counts
//! let app: Router = Router::new()
//!     .route("/v1/models", get(|| async { "models" }))
//!     .layer(layer);
//! # let _ = app;
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};

use ::metrics::{Counter, Key, Label, Level, Metadata, SharedString, Unit};

use crate::{Allowed, Decision, KeySource, ProxyAuthLayer};

/// `proxy_auth_requests_total{outcome, reason, source}`: one per judged request.
pub const REQUESTS_TOTAL: &str = "proxy_auth_requests_total";

/// `proxy_auth_key_requests_total{label}`: one per request accepted by a
/// [`KeySet`](crate::KeySet) key, only with
/// [`ProxyAuthLayer::metrics_key_labels(true)`](crate::ProxyAuthLayer::metrics_key_labels).
pub const KEY_REQUESTS_TOTAL: &str = "proxy_auth_key_requests_total";

static METADATA: Metadata<'static> = Metadata::new("proxy_auth", Level::INFO, Some(module_path!()));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Preflight,
    AuthOff,
    ExemptPath,
    Key,
    MissingKey,
    InvalidKey,
    NoKeyConfigured,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Authorization,
    XApiKey,
    XGoogApiKey,
    Query,
    None,
}

const REASONS: [Reason; 7] = [
    Reason::Preflight,
    Reason::AuthOff,
    Reason::ExemptPath,
    Reason::Key,
    Reason::MissingKey,
    Reason::InvalidKey,
    Reason::NoKeyConfigured,
];

const SOURCES: [Source; 5] = [
    Source::Authorization,
    Source::XApiKey,
    Source::XGoogApiKey,
    Source::Query,
    Source::None,
];

impl Reason {
    const fn outcome(self) -> &'static str {
        match self {
            Reason::Preflight | Reason::AuthOff | Reason::ExemptPath | Reason::Key => "allowed",
            Reason::MissingKey | Reason::InvalidKey | Reason::NoKeyConfigured => "rejected",
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Reason::Preflight => "preflight",
            Reason::AuthOff => "auth_off",
            Reason::ExemptPath => "exempt_path",
            Reason::Key => "key",
            Reason::MissingKey => "missing_key",
            Reason::InvalidKey => "invalid_key",
            Reason::NoKeyConfigured => "no_key_configured",
        }
    }

    /// Whether the decision function can produce this reason with `source`;
    /// only those series are registered.
    const fn has(self, source: Source) -> bool {
        match self {
            Reason::Preflight | Reason::AuthOff | Reason::ExemptPath | Reason::MissingKey => {
                matches!(source, Source::None)
            }
            Reason::Key | Reason::InvalidKey => !matches!(source, Source::None),
            Reason::NoKeyConfigured => true,
        }
    }
}

impl Source {
    const fn from_key_source(source: KeySource) -> Source {
        match source {
            KeySource::Authorization => Source::Authorization,
            KeySource::XApiKey => Source::XApiKey,
            KeySource::XGoogApiKey => Source::XGoogApiKey,
            KeySource::QueryKey => Source::Query,
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Source::Authorization => "authorization",
            Source::XApiKey => "x-api-key",
            Source::XGoogApiKey => "x-goog-api-key",
            Source::Query => "query",
            Source::None => "none",
        }
    }
}

/// The labels of a decision, and the [`KeySet`](crate::KeySet) label of the
/// key that was accepted, if any.
///
/// The only place here that knows `Allowed`'s variants, so a change to them
/// is a change to this function alone.
fn classify(decision: &Decision) -> (Reason, Source, Option<&Arc<str>>) {
    match decision {
        Decision::Allow(Allowed::Preflight) => (Reason::Preflight, Source::None, None),
        Decision::Allow(Allowed::AuthOff) => (Reason::AuthOff, Source::None, None),
        Decision::Allow(Allowed::ExemptPath) => (Reason::ExemptPath, Source::None, None),
        Decision::Allow(Allowed::Key(who)) => (
            Reason::Key,
            Source::from_key_source(who.source),
            who.label.as_ref(),
        ),
        Decision::Reject(rejection) => {
            let reason = match rejection.reason {
                crate::RejectReason::MissingKey => Reason::MissingKey,
                crate::RejectReason::InvalidKey => Reason::InvalidKey,
                crate::RejectReason::NoKeyConfigured => Reason::NoKeyConfigured,
            };
            let source = rejection
                .source
                .map_or(Source::None, Source::from_key_source);
            (reason, source, None)
        }
    }
}

/// One handle per (reason, source), indexed `reason * 5 + source`; the
/// combinations that cannot happen hold a no-op handle.
struct Handles([Counter; REASONS.len() * SOURCES.len()]);

impl Handles {
    fn register() -> Handles {
        ::metrics::with_recorder(|recorder| {
            recorder.describe_counter(
                REQUESTS_TOTAL.into(),
                Some(Unit::Count),
                SharedString::const_str(
                    "Requests judged by proxy-auth, by outcome, reason and key source",
                ),
            );
            Handles(std::array::from_fn(|i| {
                let (reason, source) = (REASONS[i / SOURCES.len()], SOURCES[i % SOURCES.len()]);
                if !reason.has(source) {
                    return Counter::noop();
                }
                let key = Key::from_parts(
                    REQUESTS_TOTAL,
                    vec![
                        Label::from_static_parts("outcome", reason.outcome()),
                        Label::from_static_parts("reason", reason.as_str()),
                        Label::from_static_parts("source", source.as_str()),
                    ],
                );
                recorder.register_counter(&key, &METADATA)
            }))
        })
    }

    #[inline]
    fn get(&self, reason: Reason, source: Source) -> &Counter {
        &self.0[reason as usize * SOURCES.len() + source as usize]
    }
}

/// The layer's metrics state: the per-key switch and the handle table
/// shared by the layer's clones and services.
#[derive(Clone, Default)]
pub(crate) struct LayerMetrics {
    key_labels: bool,
    handles: Arc<OnceLock<Handles>>,
}

impl fmt::Debug for LayerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerMetrics")
            .field("key_labels", &self.key_labels)
            .field("registered", &self.handles.get().is_some())
            .finish()
    }
}

/// Counts one decision; called once per request by the service, right
/// after the decision.
#[inline]
pub(crate) fn record(decision: &Decision, metrics: &LayerMetrics) {
    let (reason, source, label) = classify(decision);
    metrics
        .handles
        .get_or_init(Handles::register)
        .get(reason, source)
        .increment(1);
    if let (true, Some(label)) = (metrics.key_labels, label) {
        record_key_label(label);
    }
}

#[cold]
fn record_key_label(label: &Arc<str>) {
    // The label is shared with the key set, not copied.
    let key = Key::from_parts(
        KEY_REQUESTS_TOTAL,
        vec![Label::new("label", SharedString::from(Arc::clone(label)))],
    );
    ::metrics::with_recorder(|recorder| recorder.register_counter(&key, &METADATA).increment(1));
}

impl ProxyAuthLayer {
    /// Sets whether each request accepted by a [`KeySet`](crate::KeySet)
    /// key is also counted in
    /// [`proxy_auth_key_requests_total{label}`](crate::metrics::KEY_REQUESTS_TOTAL)
    /// (default: off, because each label is a series, and key sets may hold
    /// 100,000 keys). See [`crate::metrics`].
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[must_use]
    pub fn metrics_key_labels(mut self, count: bool) -> Self {
        self.options_mut().metrics.key_labels = count;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProxyAuthMode, ProxySecurityConfig, RejectReason};

    #[test]
    fn every_combination_the_decision_can_make_is_registered() {
        let count = REASONS
            .iter()
            .flat_map(|r| SOURCES.iter().map(move |s| (r, s)))
            .filter(|(r, s)| r.has(**s))
            .count();
        assert_eq!(count, 17);
    }

    #[test]
    fn classify_names_reason_and_source() {
        let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1");
        let layer = ProxyAuthLayer::new(config);
        let request = |headers: &[(&str, &str)]| {
            let mut builder = http::Request::get("/v1/models");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap()
        };
        let labels = |decision: &Decision| {
            let (reason, source, _) = classify(decision);
            (reason.outcome(), reason.as_str(), source.as_str())
        };
        let cases: [(&[(&str, &str)], _); 4] = [
            (&[], ("rejected", "missing_key", "none")),
            (
                &[("x-api-key", "nope")],
                ("rejected", "invalid_key", "x-api-key"),
            ),
            (
                &[("authorization", "Bearer sk-1")],
                ("allowed", "key", "authorization"),
            ),
            (
                &[("x-goog-api-key", "sk-1")],
                ("allowed", "key", "x-goog-api-key"),
            ),
        ];
        for (headers, expected) in cases {
            assert_eq!(labels(&layer.check(&request(headers))), expected);
        }
        // Every reject reason maps to the header value it is sent as.
        for reason in [
            RejectReason::MissingKey,
            RejectReason::InvalidKey,
            RejectReason::NoKeyConfigured,
        ] {
            let decision = Decision::Reject(crate::Rejection {
                reason,
                source: None,
                problem: None,
                mode: ProxyAuthMode::Strict,
            });
            assert_eq!(classify(&decision).0.as_str(), reason.as_str());
        }
    }
}
