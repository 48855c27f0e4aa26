//! [`ProxyAuth`]: the service that judges each request before the inner one
//! sees it.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::layer::{Options, PolicySource};
use crate::response::{unauthorized, Protocol};
use crate::{
    Allowed, Authenticated, Decision, ProxyAuthLayer, RejectReason, Rejection, ResponseBody,
    ResponseFuture,
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
        match self.check(&request) {
            Decision::Allow(allowed) => {
                if let (true, Allowed::Authenticated(source)) =
                    (self.options.insert_identity, allowed)
                {
                    request.extensions_mut().insert(Authenticated { source });
                }
                ResponseFuture::inner(self.inner.call(request))
            }
            Decision::Reject(rejection) => {
                log_rejection(&rejection, &request);
                let protocol = Protocol::detect(request.uri().path(), request.headers());
                ResponseFuture::rejected(unauthorized(
                    &rejection,
                    protocol,
                    ResponseBody::rejection,
                ))
            }
        }
    }
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
