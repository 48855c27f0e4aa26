//! [`ProxyAuth`]: the service that judges each request before the inner one
//! sees it.

use std::fmt;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::decision::{Admitted, Spend};
use crate::extract::strip_credentials;
use crate::layer::HeadsOnly;
use crate::response::respond;
use crate::{Allowed, Decision, ProxyAuthLayer, ResponseBody, ResponseFuture};

/// Middleware that requires an API key; built by [`ProxyAuthLayer`].
///
/// Accepted requests reach the inner service unchanged but for what
/// [`strip_credentials`](ProxyAuthLayer::strip_credentials) (on by default)
/// and [`insert_identity`](ProxyAuthLayer::insert_identity) ask for;
/// refused ones are answered by the layer without calling it. `poll_ready`
/// is the inner service's.
///
/// `R` is what the layer reads ([`HeadsOnly`](crate::HeadsOnly) or
/// [`ReadsBodies`](crate::ReadsBodies)); see [`ProxyAuthLayer`].
pub struct ProxyAuth<S, R = HeadsOnly> {
    pub(crate) inner: S,
    pub(crate) layer: ProxyAuthLayer<R>,
}

impl<S: Clone, R> Clone for ProxyAuth<S, R> {
    fn clone(&self) -> Self {
        ProxyAuth {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for ProxyAuth<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, R> ProxyAuth<S, R> {
    pub(crate) fn new(inner: S, layer: ProxyAuthLayer<R>) -> Self {
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProxyAuth<S, HeadsOnly>
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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let options = &self.layer.options;
        let spend = Spend::taking(options);
        let mut admitted = Admitted::default();
        let decision = self
            .layer
            .policy
            .judge_head(options, &request, spend, &mut admitted);
        match allow(decision, &mut admitted, request, options) {
            Outcome::Inner(request) => ResponseFuture::inner(self.inner.call(request), admitted),
            Outcome::Answer(response) => ResponseFuture::rejected(response),
        }
    }
}

/// A request readied for the inner service, or the layer's answer to it.
pub(crate) enum Outcome<B, R> {
    Inner(Request<B>),
    Answer(Response<ResponseBody<R>>),
}

/// Counts the decision, then readies an allowed request for the inner
/// service, or answers a refused one.
pub(crate) fn allow<B, R>(
    decision: Decision,
    admitted: &mut Admitted,
    mut request: Request<B>,
    options: &crate::layer::Options,
) -> Outcome<B, R> {
    // Feature `metrics`: the one place a decision is counted.
    #[cfg(feature = "metrics")]
    crate::metrics::record(&decision, &options.metrics);
    match decision {
        Decision::Allow(Allowed::Key(identity)) => {
            if options.strip_credentials {
                strip_credentials(&mut request);
            }
            #[cfg(all(feature = "metrics", feature = "key-set"))]
            if let (true, Some(label)) = (options.metrics.key_labels(), &identity.label) {
                admitted.slot.follow_gauge(label);
            }
            if options.insert_identity {
                request.extensions_mut().insert(identity);
            }
            let _ = &admitted;
            Outcome::Inner(request)
        }
        Decision::Allow(_) => Outcome::Inner(request),
        Decision::Reject(rejection) => {
            Outcome::Answer(respond(rejection, request, options).map(ResponseBody::rejection))
        }
    }
}

/// Whether the request's head shows it has no body: `Content-Length: 0`,
/// or, in HTTP/1, a method whose requests carry no content (`GET`, `HEAD`,
/// `DELETE`, `OPTIONS`, `TRACE`) with neither `Content-Length` nor
/// `Transfer-Encoding`. HTTP/2 and later send a body in frames the head
/// does not mention, and a request built in code may carry one too, so
/// only `Content-Length: 0` shows there is none there.
pub(crate) fn no_body<B>(request: &Request<B>) -> bool {
    use http::Method;
    let headers = request.headers();
    let length = headers.get_all(http::header::CONTENT_LENGTH);
    let mut lengths = length.iter();
    match (lengths.next(), lengths.next()) {
        (Some(only), None) => return only.as_bytes() == b"0",
        (Some(_), Some(_)) => return false,
        (None, _) => {}
    }
    let contentless = [
        Method::GET,
        Method::HEAD,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
    ];
    request.version() <= http::Version::HTTP_11
        && contentless.contains(request.method())
        && !headers.contains_key(http::header::TRANSFER_ENCODING)
}
