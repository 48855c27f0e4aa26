//! [`ProxyAuth`]: the service that judges each request before the inner one
//! sees it.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::extract::strip_credentials;
use crate::response::respond;
use crate::{Allowed, Decision, ProxyAuthLayer, ResponseBody, ResponseFuture};

/// Middleware that requires an API key; built by [`ProxyAuthLayer`].
///
/// Accepted requests reach the inner service unchanged but for what
/// [`strip_credentials`](ProxyAuthLayer::strip_credentials) (on by default)
/// and [`insert_identity`](ProxyAuthLayer::insert_identity) ask for;
/// refused ones are answered by the layer without calling it. `poll_ready`
/// is the inner service's.
#[derive(Clone, Debug)]
pub struct ProxyAuth<S> {
    inner: S,
    layer: ProxyAuthLayer,
}

impl<S> ProxyAuth<S> {
    pub(crate) fn new(inner: S, layer: ProxyAuthLayer) -> Self {
        ProxyAuth { inner, layer }
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
        let options = &self.layer.options;
        let decision = self.layer.policy.decide(options, &request);
        // Feature `metrics`: the one place a decision is counted.
        #[cfg(feature = "metrics")]
        crate::metrics::record(&decision, &options.metrics);
        match decision {
            Decision::Allow(Allowed::Key(identity)) => {
                if options.strip_credentials {
                    strip_credentials(&mut request);
                }
                if options.insert_identity {
                    request.extensions_mut().insert(identity);
                }
                ResponseFuture::inner(self.inner.call(request))
            }
            Decision::Allow(_) => ResponseFuture::inner(self.inner.call(request)),
            Decision::Reject(rejection) => ResponseFuture::rejected(
                respond(rejection, request, options).map(ResponseBody::rejection),
            ),
        }
    }
}
