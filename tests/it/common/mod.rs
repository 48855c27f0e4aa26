//! Helpers shared by the test modules: requests, one request through a layer
//! ([`send`]) or any service ([`answer`]), an HTTP/1.1 client for servers on
//! loopback ports ([`http1`]), per-test log capture ([`Logs`]), child
//! processes (the built examples, a test alone in its own process) and the
//! one rule for tests whose outside program is missing
//! ([`installed_or_skip`]).

#![allow(dead_code)]

mod client;
mod logs;
mod process;
mod skip;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::header::AsHeaderName;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use proxy_auth::{Authenticated, ProxyAuthLayer};
use tower::{service_fn, Layer, ServiceExt};

pub use client::{http1, http1_within, Reply};
pub use logs::Logs;
pub use process::{example_binary, Printed};
// Only the metrics tests (feature `metrics`) need it so far.
#[allow(unused_imports)]
pub use process::rerun_alone;
pub use skip::installed_or_skip;

/// A key of the shape `generate_api_key` produces (35 bytes).
pub const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// A request with the given headers and an empty body.
pub fn request<B: Default>(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<B> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(B::default()).expect("valid test request")
}

pub fn get<B: Default>(path: &str, headers: &[(&str, &str)]) -> Request<B> {
    request(Method::GET, path, headers)
}

/// A response header as text, if present.
pub fn header<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The `x-proxy-auth-error` header: set only on the layer's own 401s.
pub fn reason<B>(response: &Response<B>) -> Option<String> {
    header(response, "x-proxy-auth-error")
}

/// A header of `headers` as text; the layer and the servers under test
/// only ever write visible ASCII.
fn text(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .map(|value| value.to_str().expect("a visible-ASCII header value"))
}

/// A whole response, as a client sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: impl AsHeaderName) -> Option<&str> {
        text(&self.headers, name)
    }
}

/// Sends `request` to `service` and reads the whole response.
pub async fn answer<S, B, RB>(service: S, request: Request<B>) -> Answer
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Error: std::fmt::Debug,
    RB: http_body::Body,
    RB::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.expect("the service answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the whole body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
    }
}

/// What the service behind the layer was handed.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The `Authenticated` extension (only with `insert_identity`).
    pub identity: Option<Authenticated>,
}

/// What [`send`] observed: the response, and every request the service
/// behind the layer was handed.
#[derive(Debug)]
pub struct Sent {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub seen: Vec<Seen>,
}

impl Sent {
    pub fn header(&self, name: impl AsHeaderName) -> Option<&str> {
        text(&self.headers, name)
    }

    /// The `x-proxy-auth-error` header: set only on the layer's own 401s.
    pub fn reason(&self) -> Option<&str> {
        self.header("x-proxy-auth-error")
    }

    /// Whether the request reached the inner service, exactly once.
    pub fn reached_inner(&self) -> bool {
        self.seen.len() == 1
    }

    /// The identity the inner service was handed, if it ran.
    pub fn identity(&self) -> Option<&Authenticated> {
        self.seen.first()?.identity.as_ref()
    }
}

/// Sends `request` through `layer` in front of a service that records what
/// it is handed and answers `200 inner`.
pub async fn send(layer: ProxyAuthLayer, request: Request<String>) -> Sent {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let seen = seen.clone();
        service_fn(move |request: Request<String>| {
            seen.lock().expect("seen lock").push(Seen {
                method: request.method().clone(),
                uri: request.uri().clone(),
                headers: request.headers().clone(),
                identity: request.extensions().get::<Authenticated>().cloned(),
            });
            async { Ok::<_, Infallible>(Response::new(String::from("inner"))) }
        })
    };
    let Answer {
        status,
        headers,
        body,
    } = answer(layer.layer(inner), request).await;
    let seen = std::mem::take(&mut *seen.lock().expect("seen lock"));
    Sent {
        status,
        headers,
        body,
        seen,
    }
}

/// The axum example's app as its `main` builds it, with no trusted proxies.
pub fn axum_app(
    shared: proxy_auth::SharedSecurityConfig,
    origins: Option<&crate::axum_example::server::cors::CorsOrigins>,
) -> axum::Router {
    let auth = crate::axum_example::server::layer(&shared, &[]);
    crate::axum_example::app(shared, auth, origins)
}

/// The forward example's service as its `main` builds it, with no trusted
/// proxies.
pub fn forward_app(
    shared: proxy_auth::SharedSecurityConfig,
    upstream: crate::forward_example::Upstream,
) -> Result<proxy_auth::ProxyAuth<crate::forward_example::Forward, proxy_auth::ReadsBodies>, String>
{
    let auth = crate::forward_example::server::layer(&shared, &[]);
    crate::forward_example::app(shared, auth, upstream)
}
