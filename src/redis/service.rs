//! A layer with shared rates: its builder, its `check()`, its service and
//! the future that waits for Redis before calling the inner service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Answer, Redis, SharedRates};
use crate::decision::Admitted;
use crate::layer::{HeadsOnly, Options, ReadsBodies};
use crate::limit::Deferred;
use crate::service::{allow, Outcome};
use crate::{Decision, ProxyAuth, ProxyAuthLayer, ResponseBody, ResponseFuture};

/// What a [`ProxyAuthLayer`] built with
/// [`shared_rates`](ProxyAuthLayer::shared_rates) reads: headers and URI,
/// as [`HeadsOnly`]; its keys' rates are shared through Redis (feature
/// `redis`). Its service waits for Redis before calling the inner one, so
/// the inner service must be `Clone`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharesRates;

impl ProxyAuthLayer<HeadsOnly> {
    /// Shares every key's rate (`rpm`, `burst`) with the other replicas
    /// through the Redis of `rates`: see [`redis`](crate::redis). Keys
    /// without a rate, and the concurrency limits, are judged as before,
    /// without Redis. The layer's services need an inner service that is
    /// `Clone` (as tower-http's `AsyncRequireAuthorization` does): the one
    /// polled ready is the one called once Redis has answered.
    ///
    /// Needs a tokio runtime when the first request comes: outside one,
    /// every rate is this replica's share, with one warning. To read model
    /// bodies as well, call
    /// [`read_model_bodies`](ProxyAuthLayer::read_model_bodies) first: that
    /// layer's `shared_rates` keeps its type.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_rates(self, rates: SharedRates) -> ProxyAuthLayer<SharesRates> {
        let mut layer = ProxyAuthLayer {
            policy: self.policy,
            options: self.options,
            reads: PhantomData,
        };
        layer.options_mut().shared = Some(rates.start());
        layer
    }
}

impl ProxyAuthLayer<ReadsBodies> {
    /// Shares every key's rate with the other replicas through the Redis
    /// of `rates`, as [`ProxyAuthLayer::<HeadsOnly>::shared_rates`] does;
    /// the layer already waits (it reads bodies), so its type and its
    /// bounds stay as they are.
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_rates(mut self, rates: SharedRates) -> ProxyAuthLayer<ReadsBodies> {
        self.options_mut().shared = Some(rates.start());
        self
    }
}

impl ProxyAuthLayer<SharesRates> {
    /// Judges `request` as the layer would, without sending it anywhere,
    /// without logging, without spending and without asking Redis: a key's
    /// shared rate is reported as the last answer this replica had from
    /// Redis says now, or during an outage as this replica's share. See
    /// [`redis`](crate::redis).
    #[must_use]
    pub fn check<B>(&self, request: &Request<B>) -> Decision {
        let spend = shared(&self.options).peek();
        self.policy
            .judge_head(&self.options, request, spend, &mut Admitted::default())
    }
}

pub(crate) fn shared(options: &Options) -> &Arc<Redis> {
    options
        .shared
        .as_ref()
        .expect("a SharesRates layer is built by shared_rates, which sets its Redis")
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProxyAuth<S, SharesRates>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = SharedResponseFuture<S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let options = &self.layer.options;
        let spend = shared(options).spend(options.rate_limit_headers);
        let mut admitted = Admitted::default();
        let decision = self
            .layer
            .policy
            .judge_head(options, &request, spend, &mut admitted);
        let Some(deferred) = admitted.deferred.take() else {
            let future = match allow(decision, &mut admitted, request, options) {
                Outcome::Inner(request) => {
                    ResponseFuture::inner(self.inner.call(request), admitted)
                }
                Outcome::Answer(response) => ResponseFuture::rejected(response),
            };
            return SharedResponseFuture {
                state: State::Ready { future },
            };
        };
        // The service polled ready is the one called; the clone waits for
        // the next request's poll_ready.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        SharedResponseFuture {
            state: State::Asking {
                asking: Asking::new(*deferred, request, service, decision, admitted, options),
            },
        }
    }
}

/// What a request waits for Redis with: the request readied for the
/// inner service, the service polled ready for it, the decision so far,
/// what the key's limits admitted it with, and its rate still to be asked.
struct Waiting<S, B> {
    request: Request<B>,
    service: S,
    decision: Decision,
    admitted: Admitted,
    deferred: Deferred,
    options: Arc<Options>,
}

type Ask = Pin<Box<dyn Future<Output = Option<Answer>> + Send>>;

/// A request waiting for the shared budget's answer (or the bound), for
/// both layers that can share rates ([`SharesRates`] and `ReadsBodies`).
pub(crate) struct Asking<S, B> {
    ask: Ask,
    waiting: Option<Box<Waiting<S, B>>>,
}

/// A request whose shared rate has answered: what to hand [`allow`].
pub(crate) struct Settled<S, B> {
    pub(crate) request: Request<B>,
    pub(crate) service: S,
    pub(crate) decision: Decision,
    pub(crate) admitted: Admitted,
    pub(crate) options: Arc<Options>,
}

impl<S, B> Asking<S, B> {
    /// Asks the shared budget for `deferred`'s rate; the request goes on
    /// (or is refused) once it answered.
    pub(crate) fn new(
        deferred: Deferred,
        request: Request<B>,
        service: S,
        decision: Decision,
        admitted: Admitted,
        options: &Arc<Options>,
    ) -> Self {
        let ask = shared(options).ask(deferred.label.clone(), deferred.limits);
        Asking {
            ask,
            waiting: Some(Box::new(Waiting {
                request,
                service,
                decision,
                admitted,
                deferred,
                options: Arc::clone(options),
            })),
        }
    }

    /// The decision once the shared budget (or this replica's share, with
    /// no answer within the bound) has spoken.
    pub(crate) fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Settled<S, B>> {
        let answer = ready!(self.ask.as_mut().poll(cx));
        let Waiting {
            request,
            service,
            decision,
            mut admitted,
            deferred,
            options,
        } = *self
            .waiting
            .take()
            .expect("an asking future is not polled after it answered");
        let replicas = shared(&options).replicas();
        let decision = deferred.settle(answer, replicas, decision, &mut admitted);
        Poll::Ready(Settled {
            request,
            service,
            decision,
            admitted,
            options,
        })
    }
}

pin_project! {
    /// Response future of [`ProxyAuth`] for a layer with shared rates:
    /// Redis's answer, then the inner service's future or the layer's
    /// answer.
    #[must_use = "futures do nothing unless polled"]
    pub struct SharedResponseFuture<S, B, R>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, R>
    where
        S: Service<Request<B>>,
    {
        Asking { asking: Asking<S, B> },
        Ready { #[pin] future: ResponseFuture<S::Future, R> },
    }
}

impl<S, B, R> Future for SharedResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Output = Result<Response<ResponseBody<R>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Ready { future } => return future.poll(cx),
                StateProj::Asking { asking } => {
                    let Settled {
                        request,
                        mut service,
                        decision,
                        mut admitted,
                        options,
                    } = ready!(asking.poll_settled(cx));
                    let future = match allow(decision, &mut admitted, request, &options) {
                        Outcome::Inner(request) => {
                            ResponseFuture::inner(service.call(request), admitted)
                        }
                        Outcome::Answer(response) => ResponseFuture::rejected(response),
                    };
                    State::Ready { future }
                }
            };
            state.set(next);
        }
    }
}

impl<S, B, R> std::fmt::Debug for SharedResponseFuture<S, B, R>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedResponseFuture")
            .finish_non_exhaustive()
    }
}
