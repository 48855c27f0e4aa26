//! [`ResponseFuture`]: the inner service's future, or the layer's ready answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::decision::Admitted;
use crate::ResponseBody;

pin_project! {
    /// Response future of [`ProxyAuth`](crate::ProxyAuth).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        // A request that holds something of its key's limits (a slot, a
        // report): apart, so the common case carries and drops nothing.
        Limited { #[pin] future: F, admitted: Admitted },
        Rejected { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn inner(future: F, admitted: Admitted) -> Self {
        let kind = if admitted.is_empty() {
            // Nothing to give back: skip its drop glue on the common path.
            std::mem::forget(admitted);
            Kind::Inner { future }
        } else {
            Kind::Limited { future, admitted }
        };
        ResponseFuture { kind }
    }

    pub(crate) fn rejected(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Limited { future, admitted } => {
                // An error gives the key's concurrency slot back at once,
                // as does dropping this future before it is ready.
                let result = ready!(future.poll(cx));
                let admitted = std::mem::take(admitted);
                Poll::Ready(result.map(|response| admitted.into_response(response)))
            }
            KindProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after it completed"))),
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
