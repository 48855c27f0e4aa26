//! [`ResponseBody`]: the inner service's body, or the layer's 401 body.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::decision::Slot;

pin_project! {
    /// The body of a response from [`ProxyAuth`](crate::ProxyAuth): the inner
    /// service's body, passed through untouched, or the body of a refusal
    /// the layer answered itself (its JSON, or what
    /// [`rejection_response`](crate::ProxyAuthLayer::rejection_response)
    /// returned).
    ///
    /// Wrapping (instead of requiring `B: Default` or `B: From<String>`)
    /// keeps the layer usable with any body whose data is [`Bytes`]-like,
    /// including hyper's and axum's.
    ///
    /// For a key with a concurrency limit
    /// ([`max_concurrent`](crate::NewKey::max_concurrent)), the body holds
    /// the request's slot until its last frame has been read or it is
    /// dropped.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // Holding its key's concurrency slot: apart, so the common case
        // drops nothing of it.
        Holding { #[pin] body: B, slot: Slot },
        Rejection { data: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// The inner service's body, holding its key's concurrency slot.
    #[cfg_attr(not(feature = "key-set"), allow(dead_code))]
    pub(crate) fn holding(body: B, slot: Slot) -> Self {
        ResponseBody {
            kind: Kind::Holding { body, slot },
        }
    }

    /// A refusal's body; `Bytes::from_static` for the prebuilt ones, so it
    /// costs no allocation.
    pub(crate) fn rejection(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Rejection { data: Some(data) },
        }
    }

    /// The inner service's body, or `None` for a rejection.
    #[must_use]
    pub fn into_inner(self) -> Option<B> {
        match self.kind {
            Kind::Inner { body } | Kind::Holding { body, .. } => Some(body),
            Kind::Rejection { .. } => None,
        }
    }
}

/// The inner body's default, so tower-http's `Cors`, `Timeout` and
/// `ValidateRequest` layers, which answer some requests themselves with
/// `B::default()`, can sit outside this layer.
impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::inner(B::default())
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Holding { body, slot } => {
                let frame = body.poll_frame(cx);
                // Sent to its end: the request is done with its slot.
                if let Poll::Ready(None) = frame {
                    slot.release();
                }
                frame
            }
            KindProj::Rejection { data } => {
                Poll::Ready(data.take().map(|data| Ok(Frame::data(data.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } | Kind::Holding { body, .. } => body.is_end_stream(),
            Kind::Rejection { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } | Kind::Holding { body, .. } => body.size_hint(),
            Kind::Rejection { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } | Kind::Holding { body, .. } => {
                f.debug_tuple("ResponseBody::Inner").field(body).finish()
            }
            Kind::Rejection { data } => f
                .debug_tuple("ResponseBody::Rejection")
                .field(&data.as_deref().map(String::from_utf8_lossy))
                .finish(),
        }
    }
}
