//! [`ProxyAuthLayer`]: the configuration holder that wraps services.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use tower_layer::Layer;

use crate::decision::{Policy, PolicySource};
use crate::response::Bodies;
use crate::sources::Sources;
#[cfg(feature = "key-set")]
use crate::KeySet;
use crate::{
    ApiShape, Decision, KeySource, ProxyAuth, ProxySecurityConfig, Rejection, SharedSecurityConfig,
};

/// Applies [`ProxyAuth`] to a service: requires an API key according to a
/// [`ProxySecurityConfig`].
///
/// Cloning is cheap (a few reference counts), and so is wrapping a service:
/// every [`ProxyAuth`] built from one layer shares its config.
///
/// See the [crate documentation](crate) for the rules and an example.
///
/// `R` says what of a request the layer reads: [`HeadsOnly`] (the default:
/// headers and URI; the inner service gets the request's own body) or
/// [`ReadsBodies`] (built with
/// [`read_model_bodies`](Self::read_model_bodies): the body too, for keys
/// limited to some models; the inner service gets a [`ModelBody`]).
///
/// [`ModelBody`]: crate::ModelBody
#[must_use = "a layer does nothing until it wraps a service (`.layer(...)`, `ServiceBuilder::layer`)"]
pub struct ProxyAuthLayer<R = HeadsOnly> {
    pub(crate) policy: PolicySource,
    pub(crate) options: Arc<Options>,
    pub(crate) reads: PhantomData<fn() -> R>,
}

/// What a [`ProxyAuthLayer`] reads: headers and URI only, the default. A
/// key limited to some models whose model could be in the body is refused
/// (`model_unreadable`) unless the request's head shows it has no body.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadsOnly;

/// What a [`ProxyAuthLayer`] built with
/// [`read_model_bodies`](ProxyAuthLayer::read_model_bodies) reads: the
/// body too, for keys limited to some models.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadsBodies;

impl<R> Clone for ProxyAuthLayer<R> {
    fn clone(&self) -> Self {
        ProxyAuthLayer {
            policy: self.policy.clone(),
            options: Arc::clone(&self.options),
            reads: PhantomData,
        }
    }
}

impl<R> fmt::Debug for ProxyAuthLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuthLayer")
            .field("policy", &self.policy)
            .field("options", &self.options)
            .finish()
    }
}

/// How much of a body [`ProxyAuthLayer::read_model_bodies`] reads by
/// default: 2 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 2 << 20;

/// Settings that belong to the layer rather than to the reloadable config.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) exempt_paths: Arc<[Box<str>]>,
    pub(crate) sources: Sources,
    pub(crate) shape: Option<ApiShape>,
    pub(crate) insert_identity: bool,
    pub(crate) strip_credentials: bool,
    pub(crate) rejection_response: Option<RejectionResponse>,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` are believed, for keys
    /// with `allowed_ips`.
    #[cfg(feature = "key-set")]
    pub(crate) trusted: crate::scope::Trusted,
    /// The most of a body read to find its model.
    pub(crate) body_limit: usize,
    /// The refusal bodies written so far; they depend on `sources`.
    pub(crate) bodies: Arc<Bodies>,
    /// Whether accepted responses of limited keys get the IETF
    /// `RateLimit-Policy` / `RateLimit` fields.
    #[cfg(feature = "key-set")]
    pub(crate) rate_limit_headers: bool,
    // Feature `metrics`: the per-key switch and the layer's counter handles.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::LayerMetrics,
    /// Feature `redis`: the shared rates of a `SharesRates` layer.
    #[cfg(feature = "redis")]
    pub(crate) shared: Option<Arc<crate::redis::Redis>>,
}

/// The author's answer to a refused request; see
/// [`ProxyAuthLayer::rejection_response`].
#[derive(Clone)]
pub(crate) struct RejectionResponse(pub(crate) Arc<RespondFn>);

type RespondFn = dyn Fn(&Rejection, &Parts) -> Response<Bytes> + Send + Sync + 'static;

impl fmt::Debug for RejectionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RejectionResponse(<fn>)")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            exempt_paths: Arc::new([Box::from("/healthz")]),
            sources: Sources::default(),
            shape: None,
            insert_identity: false,
            strip_credentials: true,
            rejection_response: None,
            #[cfg(feature = "key-set")]
            trusted: Default::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            bodies: Arc::default(),
            #[cfg(feature = "key-set")]
            rate_limit_headers: false,
            #[cfg(feature = "metrics")]
            metrics: Default::default(),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }
}

impl Options {
    /// The refusal bodies name the sources, so a layer with other sources
    /// (a clone reconfigured) writes its own.
    fn set_sources(&mut self, sources: Sources) {
        self.sources = sources;
        self.bodies = Arc::default();
    }

    /// Exact comparison with the path the client sent ([`crate::ClientUri`]).
    /// Only origin-form paths
    /// (starting with `/`) can be exempt: an authority-form (`CONNECT
    /// host:443`) or asterisk-form (`OPTIONS *`) target never is.
    pub(crate) fn is_exempt(&self, path: &str) -> bool {
        path.starts_with('/') && self.exempt_paths.iter().any(|p| **p == *path)
    }
}

impl ProxyAuthLayer {
    /// A layer enforcing a fixed config. To change the key or mode while
    /// serving, use [`from_shared`](Self::from_shared).
    pub fn new(config: ProxySecurityConfig) -> Self {
        Self::with_source(PolicySource::Fixed(Arc::new(Policy::new(config))))
    }

    /// A layer enforcing a fixed config plus the named `keys`, accepted
    /// besides `config.api_key`. To rotate keys while serving, use
    /// [`SharedSecurityConfig::with_keys`] and [`from_shared`](Self::from_shared).
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn with_keys(config: ProxySecurityConfig, keys: KeySet) -> Self {
        Self::with_source(PolicySource::Fixed(Arc::new(Policy::build(
            config, keys, None,
        ))))
    }

    /// A layer that reads the config from `shared` on every request, so a
    /// [`SharedSecurityConfig::store`] is in force from the next request on.
    pub fn from_shared(shared: SharedSecurityConfig) -> Self {
        Self::with_source(PolicySource::Shared(shared))
    }

    fn with_source(policy: PolicySource) -> Self {
        ProxyAuthLayer {
            policy,
            options: Arc::new(Options::default()),
            reads: PhantomData,
        }
    }
}

impl<R> ProxyAuthLayer<R> {
    pub(crate) fn options_mut(&mut self) -> &mut Options {
        Arc::make_mut(&mut self.options)
    }

    /// Sets the paths that pass without a key in `all_except_health` mode
    /// (default: just `/healthz`). Paths are compared exactly with the path
    /// the client sent ([`ClientUri`](crate::ClientUri), or axum's
    /// `OriginalUri` with the `axum` feature, else the request's), without
    /// its query: `/healthz/` and `/HEALTHZ` are different paths and need
    /// the key. In `strict` mode no path is exempt.
    ///
    /// # Panics
    ///
    /// If a path does not start with `/`, naming it. An empty entry (say,
    /// from splitting `"/healthz,"` on commas) would otherwise equal the
    /// path of every `CONNECT host:443` request and let it through.
    #[track_caller]
    pub fn exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.options_mut().exempt_paths = paths
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
    /// cannot send one. [`strip_credentials`](Self::strip_credentials) (on by
    /// default) keeps the key in the URI from the inner service.
    pub fn query_key(mut self, accept: bool) -> Self {
        let sources = self.options.sources.with_query(accept);
        self.options_mut().set_sources(sources);
        self
    }

    /// Sets which key sources are read, in which order (default:
    /// `Authorization`, `x-api-key`, `x-goog-api-key`; then the query key
    /// with [`query_key`](Self::query_key), which puts it last or removes
    /// it). For a proxy whose clients use only some of them, or that must
    /// read `x-api-key` before `Authorization`.
    ///
    /// The rules hold for any list: the key is read from the **first
    /// present** source in it, and a present source that is empty, wrong,
    /// repeated or not ASCII is judged as it is, never skipped for a later
    /// one. A header left out of the list is never read; a refusal names it
    /// as sent but not read ([`Rejection::ignored`]). What
    /// [`strip_credentials`](Self::strip_credentials) removes does not
    /// change: every key header, whether read or not.
    ///
    /// ```
    /// use proxy_auth::{KeySource, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
    ///
    /// // An Anthropic-only proxy: x-api-key first, then a Bearer token.
    /// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"))
    ///     .key_sources([KeySource::XApiKey, KeySource::Authorization]);
    /// let request = http::Request::get("/v1/messages")
    ///     .header("x-api-key", "sk-1")
    ///     .header("authorization", "Bearer stale")
    ///     .body(())
    ///     .unwrap();
    /// assert!(layer.check(&request).is_allowed());
    /// ```
    ///
    /// # Panics
    ///
    /// If the list is empty or names a source twice, saying so.
    #[track_caller]
    pub fn key_sources(mut self, sources: impl IntoIterator<Item = KeySource>) -> Self {
        let other_schemes_absent = self.options.sources.other_schemes_absent;
        let sources = Sources::new(sources, other_schemes_absent)
            .unwrap_or_else(|why| panic!("ProxyAuthLayer::key_sources: {why}"));
        self.options_mut().set_sources(sources);
        self
    }

    /// Sets whether an `Authorization` value of another scheme than
    /// `Bearer` (`Basic dXNl...`, `Token ...`: a word, a space, the rest)
    /// counts as absent rather than as a wrong key (default: off), for a
    /// proxy where another layer reads such headers. The next source in the
    /// list is then read. A bare value (one word, no space) and anything
    /// starting with `Bearer` are still read as keys, and an `Authorization`
    /// sent twice is still refused as a duplicate.
    pub fn other_schemes_absent(mut self, absent: bool) -> Self {
        let mut sources = self.options.sources;
        sources.other_schemes_absent = absent;
        self.options_mut().set_sources(sources);
        self
    }

    /// Sets the proxies in front of this one whose `X-Forwarded-For` or
    /// `Forwarded: for=` header is believed (default: none, so those
    /// headers are ignored): for keys with `allowed_ips`, a request whose
    /// connection comes from one of them is judged by the rightmost address
    /// in the header that is not one of them. See [`scope`](crate::scope).
    ///
    /// ```
    /// use proxy_auth::scope::{IpNet, IpNetError};
    /// use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
    ///
    /// // As read from an environment variable: a bad entry is an error that names it.
    /// let nets = "10.0.0.0/8, fd00::/8"
    ///     .split(',')
    ///     .map(str::parse)
    ///     .collect::<Result<Vec<IpNet>, IpNetError>>()?;
    /// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"))
    ///     .trusted_proxies(nets);
    /// # let _ = layer;
    /// # Ok::<(), IpNetError>(())
    /// ```
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn trusted_proxies(mut self, nets: impl IntoIterator<Item = crate::scope::IpNet>) -> Self {
        self.options_mut().trusted = crate::scope::Trusted(nets.into_iter().collect());
        self
    }

    /// Sets whether the responses to accepted requests of a key with limits
    /// ([`limit`](crate::limit)) get the IETF `RateLimit-Policy` and
    /// `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers) with the
    /// key's quota and what is left of it (default: off). An upstream's own
    /// fields of those names are left as they are, and no `x-ratelimit-*`
    /// header is ever added to an accepted response: those are the
    /// upstream's. Building the two values allocates.
    #[cfg(feature = "key-set")]
    #[cfg_attr(docsrs, doc(cfg(feature = "key-set")))]
    pub fn rate_limit_headers(mut self, add: bool) -> Self {
        self.options_mut().rate_limit_headers = add;
        self
    }

    /// Pins the error shape of every refusal's body to one API's (default:
    /// chosen per request from its key header and path; see [`ApiShape`]).
    /// For a proxy that speaks one API, whose clients must see its error
    /// format whatever header they send.
    pub fn error_shape(mut self, shape: ApiShape) -> Self {
        self.options_mut().shape = Some(shape);
        self
    }

    /// Sets whether an authenticated request has its credentials removed
    /// before the inner service sees it (default: **on**), so the proxy's
    /// own key is never forwarded to an upstream provider. Turn it off only
    /// when the inner service must see the key (say, to check it again
    /// itself). Removed are:
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
    pub fn strip_credentials(mut self, strip: bool) -> Self {
        self.options_mut().strip_credentials = strip;
        self
    }

    /// Answers refused requests with `respond(&rejection, &parts)` instead of
    /// the default JSON in the client's API error shape: for proxies whose
    /// clients expect an error format of their own.
    ///
    /// Whatever `respond` returns, the layer then sets
    /// [`x-proxy-auth-error`](crate::REJECTION_HEADER) to the reason and puts
    /// the [`Rejection`] in the response's extensions, as it does for its own
    /// answers, so an operator can still tell whose refusal it was. The
    /// status code and every other header are `respond`'s choice
    /// ([`Rejection::status`] is the layer's). The request's body is dropped
    /// unread; `parts` has its method, URI, headers and extensions (an
    /// `x-request-id`, axum's `OriginalUri`). Never put the presented key in
    /// the response: `parts.headers` still holds it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, StatusCode};
    /// use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, Rejection};
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), std::convert::Infallible> {
    /// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"))
    ///     .rejection_response(|rejection, _parts| {
    ///         let body = format!(r#"{{"ok":false,"why":"{}"}}"#, rejection.reason);
    ///         let mut response = Response::new(Bytes::from(body));
    ///         *response.status_mut() = rejection.status();
    ///         response
    ///     });
    /// let service = layer.layer(service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
    /// }));
    /// let response = service.oneshot(http::Request::new(())).await?;
    /// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    /// assert_eq!(response.headers()["x-proxy-auth-error"], "missing_key");
    /// assert!(response.extensions().get::<Rejection>().is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn rejection_response<F>(mut self, respond: F) -> Self
    where
        F: Fn(&Rejection, &Parts) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.options_mut().rejection_response = Some(RejectionResponse(Arc::new(respond)));
        self
    }

    /// Whether the config in force can let anyone in: an error if auth is on
    /// with no key, or if `api_key` is malformed, too long or not sendable.
    /// Call it before serving (the examples exit with status 2 on an
    /// error): otherwise each request that needs a key is refused and logs
    /// an error.
    ///
    /// ```
    /// use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
    ///
    /// let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""));
    /// let err = layer.check_keys().unwrap_err();
    /// assert!(err.to_string().contains("api_key is empty"));
    /// assert!(ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "")).check_keys().is_ok());
    /// ```
    pub fn check_keys(&self) -> Result<(), crate::UnusableKey> {
        self.policy.check_keys()
    }
}

impl ProxyAuthLayer<HeadsOnly> {
    /// Judges `request` as the layer would, without sending it anywhere,
    /// without logging and without spending from the key's limits (a key
    /// at its limit is reported as the `429` it would get): for "why was I
    /// rejected?" diagnostics and tests. Like the service, it refuses a
    /// request of a key limited to models whose model could be in its body
    /// (this layer does not read bodies) unless its head shows it has none.
    #[must_use]
    pub fn check<B>(&self, request: &Request<B>) -> Decision {
        self.policy.judge_head(
            &self.options,
            request,
            crate::decision::Spend::Peek,
            &mut crate::decision::Admitted::default(),
        )
    }
}

impl ProxyAuthLayer<ReadsBodies> {
    /// Judges `request`'s head as the layer would, without sending it
    /// anywhere, without logging and without spending from the key's
    /// limits. A request whose model the service would read from its body
    /// is judged by its head only: allowed here if everything else is,
    /// though the service may still refuse it for its body's model.
    #[must_use]
    pub fn check<B>(&self, request: &Request<B>) -> Decision {
        let mut nothing = crate::decision::Admitted::default();
        #[cfg(feature = "key-set")]
        let spend = crate::decision::Spend::peeking(&self.options);
        #[cfg(not(feature = "key-set"))]
        let spend = crate::decision::Spend::Peek;
        self.policy
            .judge(&self.options, request, spend, &mut nothing)
            .into_decision(spend)
    }
}

impl<S, R> Layer<S> for ProxyAuthLayer<R> {
    type Service = ProxyAuth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ProxyAuth::new(inner, self.clone())
    }
}
