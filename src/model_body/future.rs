//! [`ModelResponseFuture`]: reads a body to check its model, then the inner
//! service's future, or the layer's ready answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{model_in, ModelBody};
use crate::decision::{Admitted, Pending};
use crate::layer::Options;
use crate::service::{allow, Outcome};
use crate::{RejectReason, ResponseBody};

pin_project! {
    /// Response future of [`ProxyAuth`](crate::ProxyAuth) for a layer that
    /// reads model bodies.
    #[must_use = "futures do nothing unless polled"]
    pub struct ModelResponseFuture<S, B, R>
    where
        S: Service<Request<ModelBody<B>>>,
    {
        #[pin]
        state: State<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, R>
    where
        S: Service<Request<ModelBody<B>>>,
    {
        Reading {
            #[pin]
            body: B,
            read: BytesMut,
            trailers: Option<HeaderMap>,
            // Taken when the body is done.
            waiting: Option<Waiting<S>>,
        },
        // Feature `redis`: waiting for the shared budget's answer.
        Asking { asking: Asking<S, ModelBody<B>> },
        Inner { #[pin] future: S::Future },
        Limited { #[pin] future: S::Future, admitted: Admitted },
        Ready { response: Option<Response<ResponseBody<R>>> },
    }
}

impl<S, B, R> State<S, B, R>
where
    S: Service<Request<ModelBody<B>>>,
{
    /// The inner service's future, apart from what the key's limits
    /// admitted the request with if it holds anything.
    fn of(future: S::Future, admitted: Admitted) -> Self {
        if admitted.is_empty() {
            // Nothing to give back: skip its drop glue on the common path.
            std::mem::forget(admitted);
            State::Inner { future }
        } else {
            State::Limited { future, admitted }
        }
    }
}

#[cfg(feature = "redis")]
use crate::redis::service::{Asking, Settled};

/// Without the `redis` feature no request waits for a shared rate.
#[cfg(not(feature = "redis"))]
enum Asking<S, B> {
    _Never(
        std::convert::Infallible,
        std::marker::PhantomData<fn() -> (S, B)>,
    ),
}

/// What a read request waits with: its head, its pending verdict, the
/// service that was ready for it, and the layer's options.
struct Waiting<S> {
    parts: Parts,
    pending: Pending,
    service: S,
    options: Arc<Options>,
}

impl<S, B, R> ModelResponseFuture<S, B, R>
where
    S: Service<Request<ModelBody<B>>>,
{
    pub(crate) fn reading(
        request: Request<B>,
        pending: Pending,
        service: S,
        options: &Arc<Options>,
    ) -> Self {
        let (parts, body) = request.into_parts();
        ModelResponseFuture {
            state: State::Reading {
                body,
                read: BytesMut::new(),
                trailers: None,
                waiting: Some(Waiting {
                    parts,
                    pending,
                    service,
                    options: Arc::clone(options),
                }),
            },
        }
    }

    pub(crate) fn inner(future: S::Future, admitted: Admitted) -> Self {
        ModelResponseFuture {
            state: State::of(future, admitted),
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn asking(asking: Asking<S, ModelBody<B>>) -> Self {
        ModelResponseFuture {
            state: State::Asking { asking },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<R>>) -> Self {
        ModelResponseFuture {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<S, B, R> Future for ModelResponseFuture<S, B, R>
where
    S: Service<Request<ModelBody<B>>, Response = Response<R>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<R>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                StateProj::Limited { future, admitted } => {
                    // An error gives the key's concurrency slot back at
                    // once, as does dropping this future before it is ready.
                    let result = ready!(future.poll(cx));
                    let admitted = std::mem::take(admitted);
                    return Poll::Ready(result.map(|response| admitted.into_response(response)));
                }
                #[cfg(feature = "redis")]
                StateProj::Asking { asking } => {
                    let Settled {
                        request,
                        mut service,
                        decision,
                        mut admitted,
                        options,
                    } = ready!(asking.poll_settled(cx));
                    match allow(decision, &mut admitted, request, &options) {
                        Outcome::Inner(request) => State::of(service.call(request), admitted),
                        Outcome::Answer(response) => State::Ready {
                            response: Some(response),
                        },
                    }
                }
                #[cfg(not(feature = "redis"))]
                StateProj::Asking { asking } => match asking {
                    Asking::_Never(never, _) => match *never {},
                },
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("ModelResponseFuture polled after it completed")));
                }
                StateProj::Reading {
                    mut body,
                    read,
                    trailers,
                    waiting,
                } => {
                    let limit = waiting.as_ref().map_or(0, |w| w.options.body_limit);
                    let outcome = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            None => break Ok(()),
                            Some(Err(_)) => break Err((RejectReason::ModelUnreadable, None)),
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) if read.len() + data.len() > limit => {
                                    break Err((
                                        RejectReason::BodyTooLarge,
                                        Some(limit.to_string()),
                                    ))
                                }
                                Ok(data) => read.extend_from_slice(&data),
                                Err(frame) => {
                                    if let Ok(t) = frame.into_trailers() {
                                        trailers.get_or_insert_with(HeaderMap::new).extend(t);
                                    }
                                }
                            },
                        }
                    };
                    let Waiting {
                        parts,
                        pending,
                        mut service,
                        options,
                    } = waiting.take().expect("a reading future holds its request");
                    let data: Bytes = std::mem::take(read).freeze();
                    let mut admitted = Admitted::default();
                    let decision = match outcome {
                        Ok(()) => pending.with_body_model(
                            model_in(&parts.headers, &data),
                            crate::decision::Spend::taking(&options),
                            &mut admitted,
                        ),
                        Err((RejectReason::ModelUnreadable, _)) => pending.refuse(
                            RejectReason::ModelUnreadable,
                            None,
                            Some("the request body could not be read to its end"),
                        ),
                        Err((reason, detail)) => pending.refuse(reason, detail.as_deref(), None),
                    };
                    let request =
                        Request::from_parts(parts, ModelBody::read(data, trailers.take()));
                    #[cfg(feature = "redis")]
                    if let Some(deferred) = admitted.deferred.take() {
                        let asking =
                            Asking::new(*deferred, request, service, decision, admitted, &options);
                        state.set(State::Asking { asking });
                        continue;
                    }
                    match allow(decision, &mut admitted, request, &options) {
                        Outcome::Inner(request) => State::of(service.call(request), admitted),
                        Outcome::Answer(response) => State::Ready {
                            response: Some(response),
                        },
                    }
                }
            };
            state.set(next);
        }
    }
}

impl<S, B, R> std::fmt::Debug for ModelResponseFuture<S, B, R>
where
    S: Service<Request<ModelBody<B>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelResponseFuture")
            .finish_non_exhaustive()
    }
}
