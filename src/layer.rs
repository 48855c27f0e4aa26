//! [`ProxyAuthLayer`]: the configuration holder that wraps services.

use std::sync::Arc;

use http::Request;
use tower_layer::Layer;

use crate::decision::{Policy, PolicySource, Rules};
#[cfg(feature = "key-set")]
use crate::KeySet;
use crate::{Decision, ProxyAuth, ProxySecurityConfig, SharedSecurityConfig};

/// Applies [`ProxyAuth`] to a service: requires an API key according to a
/// [`ProxySecurityConfig`].
///
/// Cloning is cheap (a few reference counts), and so is wrapping a service:
/// every [`ProxyAuth`] built from one layer shares its config.
///
/// See the [crate documentation](crate) for the rules and an example.
#[derive(Clone, Debug)]
pub struct ProxyAuthLayer {
    pub(crate) policy: PolicySource,
    pub(crate) options: Options,
}

/// Settings that belong to the layer rather than to the reloadable config.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) rules: Rules,
    pub(crate) insert_identity: bool,
    pub(crate) strip_credentials: bool,
    // Feature `metrics`: the per-key switch and the layer's counter handles.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::LayerMetrics,
}

impl ProxyAuthLayer {
    /// A layer enforcing a fixed config. To change the key or mode while
    /// serving, use [`from_shared`](Self::from_shared).
    #[must_use]
    pub fn new(config: ProxySecurityConfig) -> Self {
        Self::with_source(PolicySource::Fixed(Arc::new(Policy::new(config))))
    }

    /// A layer enforcing a fixed config plus the named `keys`, accepted
    /// besides `config.api_key`. To rotate keys while serving, use
    /// [`SharedSecurityConfig::with_keys`] and [`from_shared`](Self::from_shared).
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    #[must_use]
    pub fn with_keys(config: ProxySecurityConfig, keys: KeySet) -> Self {
        Self::with_source(PolicySource::Fixed(Arc::new(Policy::build(config, keys))))
    }

    /// A layer that reads the config from `shared` on every request, so a
    /// [`SharedSecurityConfig::store`] is in force from the next request on.
    #[must_use]
    pub fn from_shared(shared: SharedSecurityConfig) -> Self {
        Self::with_source(PolicySource::Shared(shared))
    }

    fn with_source(policy: PolicySource) -> Self {
        ProxyAuthLayer {
            policy,
            options: Options {
                rules: Rules {
                    exempt_paths: Arc::new([Box::from("/healthz")]),
                    query_key: false,
                },
                insert_identity: false,
                strip_credentials: false,
                #[cfg(feature = "metrics")]
                metrics: Default::default(),
            },
        }
    }

    pub(crate) fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Sets the paths that pass without a key in `all_except_health` mode
    /// (default: just `/healthz`). Paths are compared exactly with the
    /// request's path, without its query: `/healthz/` and `/HEALTHZ` are
    /// different paths and need the key. In `strict` mode no path is exempt.
    ///
    /// # Panics
    ///
    /// If a path does not start with `/`, naming it. An empty entry (say,
    /// from splitting `"/healthz,"` on commas) would otherwise equal the
    /// path of every `CONNECT host:443` request and let it through.
    #[must_use]
    #[track_caller]
    pub fn exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.options_mut().rules.exempt_paths = paths
            .into_iter()
            .map(|path| {
                let path = path.into();
                assert!(
                    path.starts_with('/'),
                    "exempt path {path:?} must start with `/` (an origin-form path such as \"/healthz\")"
                );
                path.into_boxed_str()
            })
            .collect();
        self
    }

    /// Sets whether an accepted request gets an [`Authenticated`](crate::Authenticated)
    /// extension naming the source and label of its key (default: off,
    /// because inserting an extension allocates on every authenticated
    /// request).
    #[must_use]
    pub fn insert_identity(mut self, insert: bool) -> Self {
        self.options_mut().insert_identity = insert;
        self
    }

    /// Sets whether the `key` query parameter (`?key=...`, as Gemini's REST
    /// API sends it) is accepted as a last source, after the three headers
    /// (default: off). The first-present rule holds: a header, even a bad
    /// one, is judged before the query, and the query is not looked at.
    ///
    /// A parameter is the key parameter if its name, percent-decoded once,
    /// is `key` in any ASCII case: `key`, `KEY`, `Key`, `k%65y` and
    /// `%4B%45%59` all are; `keys`, `key%00`, `ke+y` and the double-encoded
    /// `%2565y` are not. That way an upstream that percent-decodes names
    /// once or folds their ASCII case cannot be handed a key parameter this
    /// layer did not judge (other dialects, such as PHP's `key[]` or `;`
    /// as a separator, are not covered). Two
    /// or more key parameters, in any spellings (`?key=a&KEY=a`), are
    /// refused as `invalid_key` with problem
    /// [`Duplicate`](crate::KeyProblem::Duplicate), so parsers that would
    /// pick different ones never disagree about which key was sent; so is
    /// an empty one. The value is compared as sent, not percent-decoded.
    ///
    /// Keys in URLs end up in access logs, browser history and proxy logs
    /// along the way; prefer headers, and turn this on only for clients that
    /// cannot send one. Combine with [`strip_credentials`](Self::strip_credentials)
    /// so the inner service never sees the key in the URI.
    #[must_use]
    pub fn query_key(mut self, accept: bool) -> Self {
        self.options_mut().rules.query_key = accept;
        self
    }

    /// Sets whether an authenticated request has its credentials removed
    /// before the inner service sees it (default: off), so the proxy's own
    /// key is never forwarded to an upstream provider. Removed are:
    ///
    /// - the `Authorization`, `x-api-key` and `x-goog-api-key` headers, all
    ///   of them, not only the one the key was read from;
    /// - `Proxy-Authorization`: it is addressed to a proxy (RFC 9110
    ///   §11.7.2), never to an upstream API. The layer never reads a key
    ///   from it; it is removed so a client that sends the proxy's key
    ///   there too does not leak it;
    /// - every key parameter of the query, as [`query_key`](Self::query_key)
    ///   defines it (`key`, `KEY`, `k%65y`, ...), **whether or not
    ///   `query_key` is on**: a copy of the key in the URI leaks as surely
    ///   as a second key header. The other parameters keep their order and
    ///   their exact bytes, and a URI without a key parameter is left as it
    ///   is.
    ///
    /// Only requests authenticated by this layer are changed: in mode `off`,
    /// for preflights and for exempt paths the headers and the query are the
    /// client's business and pass untouched. Removing a query parameter
    /// rebuilds the URI, which allocates; removing headers does not.
    #[must_use]
    pub fn strip_credentials(mut self, strip: bool) -> Self {
        self.options_mut().strip_credentials = strip;
        self
    }

    /// Judges `request` as the layer would, without sending it anywhere
    /// and without logging: for "why was I rejected?" diagnostics and tests.
    #[must_use]
    pub fn check<B>(&self, request: &Request<B>) -> Decision {
        self.policy.decide(&self.options.rules, request)
    }
}

impl<S> Layer<S> for ProxyAuthLayer {
    type Service = ProxyAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyAuth::new(inner, self.clone())
    }
}
