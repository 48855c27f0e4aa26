//! Counting decisions through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`, off by default).
//!
//! Every request the layer judges adds one to
//! [`proxy_auth_requests_total`](REQUESTS_TOTAL), labelled with:
//!
//! | label | values | meaning |
//! |---|---|---|
//! | `outcome` | `allowed`, `rejected` | whether the inner service was called |
//! | `reason` | `preflight`, `auth_off`, `exempt_path`, `key` (allowed); `missing_key`, `invalid_key`, `no_key_configured`, for a key out of its scope `model_not_allowed`, `route_not_allowed`, `ip_not_allowed`, `model_unreadable`, `body_too_large`, `unsupported_encoding`, and for a key at its limit `rate_limited`, `concurrency_limited` (rejected: the `x-proxy-auth-error` header's value) | why |
//! | `source` | `authorization`, `x-api-key`, `x-goog-api-key`, `query`, `none` | where the key was read from; `none` when no key was looked at or none was present |
//!
//! Only the 49 combinations that can happen exist (a preflight never has a
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
//! of the per-label counts). With key labels on, each key with a
//! concurrency limit ([`limit`](crate::limit)) also has a gauge,
//! [`proxy_auth_key_in_flight{label}`](KEY_IN_FLIGHT): its requests in
//! flight, set whenever one starts or ends.
//!
//! # Cost
//!
//! With the feature off, none of this is compiled. With it on, the layer
//! registers its 49 counter handles with the recorder once, at its first
//! request, and each request then costs one atomic load (the handle table)
//! and one counter increment through the handle, with no allocation, no
//! hashing and no lock in the recorder's registry. The per-key counter is
//! the exception: its label is known only at run time, so each count looks
//! the series up in the recorder (one small allocation for the label list).
//!
//! `cargo bench --features metrics --bench metrics` measures it; figures
//! are in `benches/README.md`.
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

use crate::{Allowed, Authenticated, Decision, KeySource, ProxyAuthLayer, RejectReason};

/// `proxy_auth_requests_total{outcome, reason, source}`: one per judged request.
pub const REQUESTS_TOTAL: &str = "proxy_auth_requests_total";

/// `proxy_auth_key_requests_total{label}`: one per request accepted by a
/// [`KeySet`](crate::KeySet) key, only with
/// [`ProxyAuthLayer::metrics_key_labels(true)`](crate::ProxyAuthLayer::metrics_key_labels).
pub const KEY_REQUESTS_TOTAL: &str = "proxy_auth_key_requests_total";

static METADATA: Metadata<'static> = Metadata::new("proxy_auth", Level::INFO, Some(module_path!()));

/// The `source` label's values, in table order: `KeySource::as_str`, and
/// `none` when no key was looked at or none was present.
const SOURCES: [Option<KeySource>; 5] = [
    Some(KeySource::Authorization),
    Some(KeySource::XApiKey),
    Some(KeySource::XGoogApiKey),
    Some(KeySource::QueryKey),
    None,
];

/// The `reason` label's rows: the four reasons a request is allowed for,
/// then the reject reasons.
const ALLOWED_ROWS: usize = 4;
const REJECT_REASONS: [RejectReason; RejectReason::ALL.len()] = RejectReason::ALL;
const ROWS: usize = ALLOWED_ROWS + REJECT_REASONS.len();

/// The row of an allowed decision. The only place here that knows
/// `Allowed`'s variants.
fn allowed_row(allowed: &Allowed) -> usize {
    match allowed {
        Allowed::Preflight => 0,
        Allowed::AuthOff => 1,
        Allowed::ExemptPath => 2,
        Allowed::Key(_) => 3,
    }
}

/// An allowed decision of each row, for its label.
fn allowed_of_row(row: usize) -> Allowed {
    match row {
        0 => Allowed::Preflight,
        1 => Allowed::AuthOff,
        2 => Allowed::ExemptPath,
        _ => Allowed::Key(Authenticated::default_key(KeySource::Authorization)),
    }
}

/// `outcome` and `reason` labels of a row.
fn row_labels(row: usize) -> (&'static str, &'static str) {
    match row.checked_sub(ALLOWED_ROWS) {
        None => ("allowed", allowed_of_row(row).as_str()),
        Some(r) => ("rejected", REJECT_REASONS[r].as_str()),
    }
}

/// Whether the decision function can produce a row with a source; only
/// those series are registered.
fn row_has(row: usize, source: Option<KeySource>) -> bool {
    match row_labels(row).1 {
        "preflight" | "auth_off" | "exempt_path" | "missing_key" => source.is_none(),
        "no_key_configured" => true,
        // A wrong key, or a key that matched and was refused for its scope.
        _ => source.is_some(),
    }
}

fn source_label(source: Option<KeySource>) -> &'static str {
    source.map_or("none", KeySource::as_str)
}

/// The table index of a decision, and the [`KeySet`](crate::KeySet) label
/// of the key that was accepted, if any.
fn classify(decision: &Decision) -> (usize, Option<&Arc<str>>) {
    let (row, source, label) = match decision {
        Decision::Allow(allowed) => {
            let (source, label) = match allowed {
                Allowed::Key(who) => (Some(who.source), who.label.as_ref()),
                _ => (None, None),
            };
            (allowed_row(allowed), source, label)
        }
        Decision::Reject(rejection) => {
            let reason = REJECT_REASONS
                .iter()
                .position(|&r| r == rejection.reason)
                .unwrap_or(0);
            (ALLOWED_ROWS + reason, rejection.source, None)
        }
    };
    let column = source.map_or(SOURCES.len() - 1, |s| s as usize);
    (row * SOURCES.len() + column, label)
}

/// One handle per (reason, source), indexed `row * 5 + source`; the
/// combinations that cannot happen hold a no-op handle.
struct Handles([Counter; ROWS * SOURCES.len()]);

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
                let (row, source) = (i / SOURCES.len(), SOURCES[i % SOURCES.len()]);
                if !row_has(row, source) {
                    return Counter::noop();
                }
                let (outcome, reason) = row_labels(row);
                let key = Key::from_parts(
                    REQUESTS_TOTAL,
                    vec![
                        Label::from_static_parts("outcome", outcome),
                        Label::from_static_parts("reason", reason),
                        Label::from_static_parts("source", source_label(source)),
                    ],
                );
                recorder.register_counter(&key, &METADATA)
            }))
        })
    }

    #[inline]
    fn get(&self, index: usize) -> &Counter {
        &self.0[index]
    }
}

/// The layer's metrics state: the per-key switch and the handle table
/// shared by the layer's clones and services.
#[derive(Clone, Default)]
pub(crate) struct LayerMetrics {
    key_labels: bool,
    handles: Arc<OnceLock<Handles>>,
}

impl LayerMetrics {
    /// Whether per-key series are on.
    #[cfg(feature = "key-set")]
    #[inline]
    pub(crate) fn key_labels(&self) -> bool {
        self.key_labels
    }
}

/// `proxy_auth_key_in_flight{label}`: requests in flight of each key with a
/// concurrency limit, only with
/// [`ProxyAuthLayer::metrics_key_labels(true)`](crate::ProxyAuthLayer::metrics_key_labels).
pub const KEY_IN_FLIGHT: &str = "proxy_auth_key_in_flight";

/// Sets a key's in-flight gauge; called when a slot is taken and given
/// back.
#[cfg(feature = "key-set")]
#[cold]
pub(crate) fn set_in_flight(label: &Arc<str>, in_flight: u32) {
    let key = Key::from_parts(
        KEY_IN_FLIGHT,
        vec![Label::new("label", SharedString::from(Arc::clone(label)))],
    );
    ::metrics::with_recorder(|recorder| {
        recorder
            .register_gauge(&key, &METADATA)
            .set(f64::from(in_flight));
    });
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
    let (index, label) = classify(decision);
    metrics
        .handles
        .get_or_init(Handles::register)
        .get(index)
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

impl<R> ProxyAuthLayer<R> {
    /// Sets whether each request accepted by a [`KeySet`](crate::KeySet)
    /// key is also counted in
    /// [`proxy_auth_key_requests_total{label}`](crate::metrics::KEY_REQUESTS_TOTAL)
    /// (default: off, because each label is a series, and key sets may hold
    /// 100,000 keys). See [`crate::metrics`].
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics_key_labels(mut self, count: bool) -> Self {
        Arc::make_mut(&mut self.options).metrics.key_labels = count;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProxyAuthMode, ProxySecurityConfig};

    /// The labels of a decision's series.
    fn labels(decision: &Decision) -> (&'static str, &'static str, &'static str) {
        let (index, _) = classify(decision);
        let (outcome, reason) = row_labels(index / SOURCES.len());
        (
            outcome,
            reason,
            source_label(SOURCES[index % SOURCES.len()]),
        )
    }

    #[test]
    fn every_combination_the_decision_can_make_is_registered() {
        let count = (0..ROWS)
            .flat_map(|row| SOURCES.iter().map(move |&source| (row, source)))
            .filter(|&(row, source)| row_has(row, source))
            .count();
        // Preflight, auth off, exempt path and missing_key without a source,
        // 5 sources for no_key_configured, and 4 for `key`, `invalid_key`,
        // the 6 scope reasons and the 2 limits.
        assert_eq!(count, 3 + 1 + 5 + 4 * 10);
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
        // Every reject reason maps to the header value it is sent as, and
        // every allowed reason to its own name.
        for reason in REJECT_REASONS {
            let decision = Decision::Reject(crate::Rejection::of_key(
                reason,
                None,
                None,
                ProxyAuthMode::Strict,
                ProxyAuthMode::Strict,
            ));
            assert_eq!(labels(&decision).1, reason.as_str());
        }
        for row in 0..ALLOWED_ROWS {
            let allowed = allowed_of_row(row);
            assert_eq!(allowed_row(&allowed), row);
            assert_eq!(
                labels(&Decision::Allow(allowed.clone())).1,
                allowed.as_str()
            );
        }
    }
}
