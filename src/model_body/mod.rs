//! Reading the model from request bodies, for keys limited to some models:
//! [`ProxyAuthLayer::read_model_bodies`], and the [`ModelBody`] the inner
//! service then gets.
//!
//! Only a request whose key is limited to some models, and whose path does
//! not name its model, is read: up to the layer's limit, then judged, then
//! handed to the inner service byte for byte. Every other request's body
//! streams through untouched, never buffered.

mod future;
mod json;
mod multipart;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;

pub use future::ModelResponseFuture;

use crate::decision::{Admitted, Pending, Spend, Verdict};
use crate::layer::{HeadsOnly, ReadsBodies};
use crate::scope::model::Named;
use crate::service::{allow, Outcome};
use crate::{ProxyAuth, ProxyAuthLayer, RejectReason, ResponseBody};

impl ProxyAuthLayer<HeadsOnly> {
    /// Makes the layer read the body of a request whose key is limited to
    /// some models ([`NewKey::models`](crate::NewKey::models)) and whose
    /// path does not name its model, up to `limit` bytes
    /// ([`DEFAULT_BODY_LIMIT`](crate::DEFAULT_BODY_LIMIT) is 2 MiB), to
    /// check the body's `model`: the top-level field of a JSON body, or the
    /// `model` field of a `multipart/form-data` one.
    ///
    /// The inner service then gets a [`ModelBody`]: the request's own body,
    /// streamed as before, for every request that was not read, and the
    /// bytes read, unchanged, for one that was. So it must accept any body
    /// (axum's `Router` and hyper-util's client do) and be `Clone` (the
    /// read request is sent on the service that was ready, and a clone
    /// takes its place).
    ///
    /// A body that cannot be read for certain is refused, never passed:
    /// over `limit` (`413 body_too_large`), compressed (`415
    /// unsupported_encoding`), not JSON or plain `multipart/form-data`, or
    /// naming the model twice (`400 model_unreadable`); a model the key may
    /// not use is `403 model_not_allowed`.
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
    ///
    /// let mut keys = KeySet::new();
    /// keys.add(NewKey::new("team-a", "sk-team-a").models(["gpt-4o-mini"]))?;
    /// let layer = ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"), keys)
    ///     .read_model_bodies(proxy_auth::DEFAULT_BODY_LIMIT);
    /// let app: Router = Router::new()
    ///     .route("/v1/chat/completions", post(|| async { "..." }))
    ///     .layer(layer);
    /// # let _ = app;
    /// # Ok::<(), proxy_auth::KeySetError>(())
    /// ```
    pub fn read_model_bodies(self, limit: usize) -> ProxyAuthLayer<ReadsBodies> {
        let mut layer = ProxyAuthLayer {
            policy: self.policy,
            options: self.options,
            reads: std::marker::PhantomData,
        };
        layer.options_mut().body_limit = limit;
        layer
    }
}

pin_project! {
    /// The request body the inner service of a layer built with
    /// [`read_model_bodies`](ProxyAuthLayer::read_model_bodies) gets: the
    /// request's own body, or the bytes the layer read to check its model
    /// (and the trailers, if any), unchanged.
    pub struct ModelBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Streamed { #[pin] body: B },
        Read { data: Option<Bytes>, trailers: Option<HeaderMap> },
    }
}

impl<B> ModelBody<B> {
    fn streamed(body: B) -> Self {
        ModelBody {
            kind: Kind::Streamed { body },
        }
    }

    fn read(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let data = (!data.is_empty()).then_some(data);
        ModelBody {
            kind: Kind::Read { data, trailers },
        }
    }

    /// Whether the layer read this body (to check its model).
    #[must_use]
    pub fn was_read(&self) -> bool {
        matches!(self.kind, Kind::Read { .. })
    }
}

impl<B: Body<Data = Bytes>> Body for ModelBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Streamed { body } => body.poll_frame(cx),
            KindProj::Read { data, trailers } => Poll::Ready(match data.take() {
                Some(data) => Some(Ok(Frame::data(data))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Streamed { body } => body.is_end_stream(),
            Kind::Read { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Streamed { body } => body.size_hint(),
            Kind::Read { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B> std::fmt::Debug for ModelBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelBody")
            .field("was_read", &self.was_read())
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ProxyAuth<S, ReadsBodies>
where
    S: Service<Request<ModelBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ModelResponseFuture<S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let options = &self.layer.options;
        let spend = Spend::taking(options);
        let mut admitted = Admitted::default();
        let decision = match self
            .layer
            .policy
            .judge(options, &request, spend, &mut admitted)
        {
            Verdict::Decided(decision) => decision,
            Verdict::ReadBody(pending) => match before_reading(&request, options.body_limit) {
                Before::Empty => pending.without_body(true, spend, &mut admitted),
                Before::Refuse(reason, detail) => pending.refuse(reason, detail.as_deref(), None),
                Before::Read => {
                    // The service that was polled ready sends the request
                    // once the body is read; a clone takes its place.
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    return ModelResponseFuture::reading(request, pending, ready, options);
                }
            },
        };
        // Feature `redis`: a shared rate is asked before the inner service
        // is called, by the service that was polled ready.
        #[cfg(feature = "redis")]
        if let Some(deferred) = admitted.deferred.take() {
            let clone = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, clone);
            return ModelResponseFuture::asking(crate::redis::service::Asking::new(
                *deferred,
                request.map(ModelBody::streamed),
                ready,
                decision,
                admitted,
                options,
            ));
        }
        match allow(
            decision,
            &mut admitted,
            request.map(ModelBody::streamed),
            options,
        ) {
            Outcome::Inner(request) => {
                ModelResponseFuture::inner(self.inner.call(request), admitted)
            }
            Outcome::Answer(response) => ModelResponseFuture::ready(response),
        }
    }
}

/// What the head says before a body is read.
enum Before {
    /// The body is empty: nothing to read.
    Empty,
    /// Refused from the head alone: compressed, or longer than the limit.
    Refuse(RejectReason, Option<String>),
    Read,
}

fn before_reading<B: Body>(request: &Request<B>, limit: usize) -> Before {
    if request.body().is_end_stream() {
        return Before::Empty;
    }
    let encoding = request
        .headers()
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("?").trim())
        .find(|v| !v.eq_ignore_ascii_case("identity"));
    if let Some(encoding) = encoding {
        let shown = encoding.chars().take(32).collect();
        return Before::Refuse(RejectReason::UnsupportedEncoding, Some(shown));
    }
    match request.body().size_hint().exact() {
        Some(0) => Before::Empty,
        Some(n) if n > limit as u64 => {
            Before::Refuse(RejectReason::BodyTooLarge, Some(limit.to_string()))
        }
        _ => Before::Read,
    }
}

/// What a read body says of its model, by its content type.
pub(crate) fn model_in(headers: &HeaderMap, body: &[u8]) -> Named<'static> {
    let mut types = headers.get_all(http::header::CONTENT_TYPE).iter();
    let content_type = match (types.next(), types.next()) {
        (_, Some(_)) => return Named::Unreadable("the request has more than one Content-Type"),
        (Some(value), None) => match value.to_str() {
            Ok(value) => Some(value),
            Err(_) => return Named::Unreadable("the request's Content-Type is not ASCII"),
        },
        (None, None) => None,
    };
    let media = content_type.map(|t| t.split(';').next().unwrap_or("").trim());
    if media.is_some_and(|m| m.eq_ignore_ascii_case("multipart/form-data")) {
        return match content_type.and_then(multipart::boundary) {
            Some(boundary) => multipart::model(boundary, body),
            None => Named::Unreadable(
                "the multipart/form-data Content-Type has no single valid boundary",
            ),
        };
    }
    if media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        // Read as a form by form parsers and as JSON by lenient JSON
        // upstreams: both readings must agree.
        let form = form_model(body);
        return match (form, json::parse(body)) {
            (Named::Unreadable(why), _) | (_, Some(Named::Unreadable(why))) => {
                Named::Unreadable(why)
            }
            (form, None) => form,
            (Named::None, Some(json)) => json,
            (form, Some(Named::None)) => form,
            (Named::Model(a), Some(Named::Model(b))) if a == b => Named::Model(a),
            (Named::Model(_), Some(Named::Model(_))) => {
                Named::Unreadable("the body names one model as form data and another as JSON")
            }
        };
    }
    // JSON whatever else the declared type: many APIs parse a JSON body
    // sent as text/plain, so a body that is JSON is judged as JSON, and one
    // that is not is refused.
    match json::model(body) {
        Named::Unreadable(_) if media.is_some_and(|m| !is_json(m)) => {
            Named::Unreadable("the body is neither JSON nor multipart/form-data")
        }
        named => named,
    }
}

/// The `model` field of an `application/x-www-form-urlencoded` body: names
/// decoded (`+` is a space) and compared in any ASCII case; two of them, or
/// bytes that are not UTF-8 once decoded, cannot be read for certain.
fn form_model(body: &[u8]) -> Named<'static> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Named::Unreadable("the form body is not UTF-8");
    };
    let decode = |s: &str| -> Option<String> {
        let spaced = s.replace('+', " ");
        let decoded = crate::scope::path::percent_decode(&spaced);
        (!decoded.contains('\u{fffd}')).then_some(decoded)
    };
    let mut found = Named::None;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(name) = decode(name) else {
            return Named::Unreadable("the form body has a name that is not UTF-8");
        };
        if !name.eq_ignore_ascii_case("model") {
            continue;
        }
        if !matches!(found, Named::None) {
            return Named::Unreadable("the form body names the model more than once");
        }
        match decode(value) {
            Some(model) if !model.is_empty() => found = Named::Model(model.into()),
            _ => return Named::Unreadable("the form body's model is not a plain model name"),
        }
    }
    found
}

fn is_json(media: &str) -> bool {
    media.eq_ignore_ascii_case("application/json") || media.to_ascii_lowercase().ends_with("+json")
}

impl Pending {
    /// The decision once the body's model is known: in scope, the key's
    /// limits are spent from.
    pub(crate) fn with_body_model(
        mut self,
        named: Named<'_>,
        spend: Spend,
        admitted: &mut Admitted,
    ) -> crate::Decision {
        match named {
            Named::None => self.allow(spend, admitted),
            Named::Unreadable(why) => self.refuse(RejectReason::ModelUnreadable, None, Some(why)),
            Named::Model(model) => {
                let allowed = self
                    .identity
                    .entry
                    .as_ref()
                    .is_some_and(|entry| entry.scope.allows_model(&model));
                if !allowed {
                    return self.refuse(RejectReason::ModelNotAllowed, Some(&model), None);
                }
                self.identity.model = Some(Arc::from(&*model));
                self.allow(spend, admitted)
            }
        }
    }
}

#[cfg(test)]
mod tests;
