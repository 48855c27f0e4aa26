//! [`ProxyAuth`]: the service that judges each request before the inner one
//! sees it.

use std::task::{Context, Poll};

use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use tower_service::Service;

use crate::extract::{query_values, split_pair, HEADER_SOURCES, QUERY_KEY};
use crate::layer::{Options, PolicySource};
use crate::response::{unauthorized, Protocol};
use crate::{
    Allowed, Authenticated, Decision, KeySource, ProxyAuthLayer, RejectReason, Rejection,
    ResponseBody, ResponseFuture,
};

/// Middleware that requires an API key; built by [`ProxyAuthLayer`].
///
/// Accepted requests reach the inner service unchanged (plus an
/// [`Authenticated`] extension if asked for); rejected ones are answered
/// with a 401 without calling it. `poll_ready` is the inner service's.
#[derive(Clone, Debug)]
pub struct ProxyAuth<S> {
    inner: S,
    policy: PolicySource,
    options: Options,
}

impl<S> ProxyAuth<S> {
    /// Wraps `inner` with the rules of `layer`.
    pub fn new(inner: S, layer: &ProxyAuthLayer) -> Self {
        Self::from_layer(inner, layer.clone())
    }

    pub(crate) fn from_layer(inner: S, layer: ProxyAuthLayer) -> Self {
        ProxyAuth {
            inner,
            policy: layer.policy,
            options: layer.options,
        }
    }

    /// Judges `request` as [`call`](Service::call) would, without calling
    /// the inner service.
    pub fn check<B>(&self, request: &Request<B>) -> Decision {
        self.options.check(&self.policy, request)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProxyAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The config snapshot lives only inside `check`: nothing is held
        // while the inner service runs.
        let decision = self.check(&request);
        // Feature `metrics`: the one place a decision is counted.
        #[cfg(feature = "metrics")]
        crate::metrics::record(&decision, &self.options.metrics);
        match decision {
            Decision::Allow(allowed) => {
                let identity = match allowed {
                    Allowed::Authenticated(source) => Some(Authenticated {
                        source,
                        label: None,
                    }),
                    Allowed::NamedKey { source, label } => Some(Authenticated {
                        source,
                        label: Some(label),
                    }),
                    _ => None,
                };
                if let Some(identity) = identity {
                    if self.options.strip_credentials {
                        strip_credentials(&mut request, self.options.query_key);
                    }
                    if self.options.insert_identity {
                        request.extensions_mut().insert(identity);
                    }
                }
                ResponseFuture::inner(self.inner.call(request))
            }
            Decision::Reject(rejection) => {
                log_rejection(&rejection, &request);
                let protocol = match rejection.source {
                    Some(KeySource::QueryKey) => Protocol::Gemini,
                    _ => Protocol::detect(request.uri().path(), request.headers()),
                };
                ResponseFuture::rejected(unauthorized(
                    &rejection,
                    protocol,
                    ResponseBody::rejection,
                ))
            }
        }
    }
}

/// Removes every place a key can travel in, not only the one that was
/// read: a client that sends the proxy's key twice must not leak the copy.
fn strip_credentials<B>(request: &mut Request<B>, query_key: bool) {
    let headers = request.headers_mut();
    for (_, name) in &HEADER_SOURCES {
        headers.remove(*name);
    }
    if query_key {
        strip_query_key(request.uri_mut());
    }
}

fn strip_query_key(uri: &mut Uri) {
    let Some(query) = uri.query() else { return };
    if query_values(query, QUERY_KEY).next().is_none() {
        return;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| split_pair(pair).0 != QUERY_KEY)
        .collect();
    let mut path_and_query = String::from(uri.path());
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    // Dropping pairs from a valid query leaves a valid one, so the first
    // fallback (drop the whole query) and the last (the other parts came
    // from a valid URI) are not expected to run. Each keeps the key out.
    let path_and_query = PathAndQuery::try_from(path_and_query)
        .or_else(|_| PathAndQuery::try_from(uri.path()))
        .unwrap_or_else(|_| PathAndQuery::from_static("/"));
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(path_and_query);
    *uri = Uri::from_parts(parts).unwrap_or_default();
}

/// One line per rejection, with everything needed to explain it and nothing
/// secret: never the key, never the query string (Gemini clients put keys
/// there).
fn log_rejection<B>(rejection: &Rejection, request: &Request<B>) {
    let header = rejection.source.map_or("none", |s| s.header_name());
    let problem = rejection.problem.map(|p| match p {
        crate::KeyProblem::Empty => "empty",
        crate::KeyProblem::Duplicate => "duplicate",
        crate::KeyProblem::NotAscii => "not_ascii",
        crate::KeyProblem::Expired => "expired",
    });
    if rejection.reason == RejectReason::NoKeyConfigured {
        tracing::error!(
            target: "proxy_auth",
            mode = %rejection.mode,
            method = %request.method(),
            path = request.uri().path(),
            "proxy auth is enabled but the api key is empty; denying request (set api_key, or turn auth off)"
        );
    } else {
        tracing::warn!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            header,
            problem,
            mode = %rejection.mode,
            method = %request.method(),
            path = request.uri().path(),
            "proxy auth rejected request with 401"
        );
    }
}
