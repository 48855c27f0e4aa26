//! A streaming reverse proxy for an OpenAI-, Anthropic- or Gemini-compatible
//! upstream, behind `ProxyAuthLayer`: the job the crate exists for.
//!
//! ```sh
//! cargo build --example forward
//! PROXY_AUTH_MODE=all_except_health PROXY_API_KEY=sk-proxy \
//!   PROXY_UPSTREAM=https://api.openai.com PROXY_UPSTREAM_KEY=$OPENAI_API_KEY \
//!   target/debug/examples/forward
//! curl -i localhost:8045/healthz                                  # 200, answered here
//! curl -i localhost:8045/v1/models                                # the proxy's 401: has x-proxy-auth-error: missing_key
//! curl -i localhost:8045/v1/models -H 'Authorization: Bearer sk-proxy' # forwarded with the upstream's key
//! # With a wrong PROXY_UPSTREAM_KEY, the same request gets the upstream's own
//! # 401: its body, and no x-proxy-auth-error header.
//! curl -N localhost:8045/v1/chat/completions -H 'Authorization: Bearer sk-proxy' \
//!   -H 'content-type: application/json' \
//!   -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! Settings: those of the other examples (`PROXY_LISTEN`, `PROXY_AUTH_MODE`,
//! `PROXY_API_KEY`, `PROXY_ALLOW_LAN_ACCESS`, `PROXY_TRUSTED_PROXIES`,
//! `PROXY_CONFIG_FILE` with `--features watch` for named keys with their
//! scopes and limits, `PROXY_DATABASE_URL` with `--features postgres`,
//! `PROXY_REDIS_URL` and `PROXY_REPLICAS` with `--features redis`;
//! `examples/server/mod.rs` reads them), plus `PROXY_UPSTREAM` (base URL,
//! `http://` or `https://`, may end in a path such as `/v1`, which is put
//! in front of every forwarded path) and `PROXY_UPSTREAM_KEY`. A key limited
//! to some models has its request body's `model` checked before it is
//! forwarded (the layer reads it whole, up to 2 MiB, refuses a larger one
//! with a 413, and forwards the bytes it read unchanged); other requests
//! stream as they come.
//!
//! # Design
//!
//! - **Keys.** The layer runs with `strip_credentials(true)` and
//!   `insert_identity(true)`: the client's key headers are gone before the
//!   forwarder sees the request, and the `Authenticated` extension says which
//!   header the client used. The upstream key goes in that same header
//!   (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`), so an SDK
//!   for any of the three APIs works unchanged. A request the layer let
//!   through without a key (only the exempt `/healthz`, answered here)
//!   gets no upstream key. In mode `off` (which `auto`
//!   is without LAN access) nothing is authenticated: there the key header the
//!   client sent picks where the upstream key goes, and the forwarder
//!   removes the three headers, `Proxy-Authorization` and any `key` query
//!   parameter (`KEY`, `k%65y`, ...) itself, so a client's key never goes
//!   upstream in any mode. `off` means anyone who
//!   reaches the proxy spends the upstream key: use `all_except_health` or
//!   `strict`.
//! - **Streaming.** Both bodies are passed frame by frame (hyper's
//!   `Incoming` in, hyper's `Incoming` out), never collected: SSE events
//!   reach the client as the upstream writes them, an upload of any size
//!   goes through in hyper's bounded buffers, and back-pressure flows both
//!   ways. `TCP_NODELAY` is set on both sockets so a small SSE event is not
//!   held back waiting for an ACK.
//! - **Hop-by-hop headers** (RFC 9110 §7.6.1): `Connection`, every header it
//!   names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`,
//!   `Transfer-Encoding` and `Upgrade` are removed in both directions; hyper
//!   frames each connection itself. `Host` is replaced by the upstream's.
//!   A `Via` header is added both ways (RFC 9110 §7.6.3). Consequence:
//!   protocol upgrades (WebSocket, such as OpenAI's realtime API) are not
//!   proxied. `X-Forwarded-For` is not added: the client's address is not
//!   the upstream provider's business.
//! - **Errors.** An upstream that cannot be reached within
//!   `Upstream::connect_timeout` (DNS, TCP and TLS together, 10 s by
//!   default) gets a `502` with a JSON body in the OpenAI error shape
//!   (`code`: `upstream_unreachable`) and `x-proxy-error:
//!   upstream_unreachable`; other failures before the upstream's response
//!   head get `502` and `upstream_failed`. There is no timeout on the
//!   response itself: a non-streaming completion may take minutes. An
//!   upstream that fails mid-body aborts the client's response, so the
//!   client sees a truncated stream, not a clean end.
//! - **Paths.** A path that `proxy_auth::check_path` refuses gets `400`
//!   with a JSON body that says why: a `.` or `..` segment as sent,
//!   percent-encoded once or twice (`%2e%2e`, `%252e%252e`) or with `;`
//!   parameters (`..;`), or an encoded `/` or `\` (`..%2f`, `..%5c`) or a
//!   `\`. An upstream that resolves or decodes them could serve a path
//!   outside the base URL's.
//! - **`OPTIONS`** is answered here with `204 No Content` and never
//!   forwarded, preflight or not, with or without a key: the layer lets
//!   every `OPTIONS` through without one (a CORS preflight carries none),
//!   so forwarding would hand the upstream unauthenticated requests (with
//!   their bodies and method-override headers). This example has no CORS
//!   layer: the `204` grants no origin, so a page's preflight gets no
//!   `Access-Control-Allow-*` header and its browser does not send the
//!   request.
//! - **Hang-ups and shutdown.** A client that hangs up mid-stream drops
//!   the upstream connection with it, so the provider stops generating
//!   (and billing) for nobody. On Ctrl-C the proxy stops accepting, closes
//!   idle connections, and lets open responses finish for up to 30 s.
//! - **Whose 401.** The upstream's responses, its 401s included, are passed
//!   through unchanged apart from hop-by-hop headers and `Via`. Only the
//!   layer's own 401s carry `x-proxy-auth-error`; that header alone tells
//!   an operator which side refused.
//! - `https://` upstreams use rustls with Mozilla's roots (webpki-roots),
//!   HTTP/2 or HTTP/1.1 by ALPN; `http://` upstreams HTTP/1.1.
//! - `/healthz` is answered here (exempt in `all_except_health`), never
//!   forwarded. `CONNECT` is refused with 405: this is not a forward proxy.
//! - [`app`] builds the service and [`serve`] runs it, so the crate's tests
//!   and benchmark start exactly what `main` starts; [`Forward`] is the same
//!   proxy without the layer.

// Every variable but the upstream's, read as the other examples read them.
#[allow(dead_code)]
#[path = "server/mod.rs"]
pub mod server;

use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use proxy_auth::{
    Authenticated, KeySource, ProxyAuth, ProxyAuthLayer, ProxyAuthMode, ReadsBodies,
    SharedSecurityConfig,
};
use tokio::net::TcpListener;
use tower::{Layer, Service};

pub use server::upstream::Upstream;

/// Errors of either body, boxed: the client's upload or the upstream's answer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every body the proxy sends: the upstream's, streamed, or its own JSON.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const X_PROXY_ERROR: HeaderName = HeaderName::from_static("x-proxy-error");
/// The key headers, and `Proxy-Authorization`: addressed to this proxy
/// (RFC 9110 §11.7.2), never to the upstream.
const KEY_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
    header::PROXY_AUTHORIZATION,
];

/// The forward example's service: `auth` (stripping the client's key,
/// naming its header) over [`Forward`]; `shared` is the config `auth`
/// reads.
pub fn app(
    shared: SharedSecurityConfig,
    auth: ProxyAuthLayer<ReadsBodies>,
    upstream: Upstream,
) -> Result<ProxyAuth<Forward, ReadsBodies>, String> {
    let auth = auth.strip_credentials(true).insert_identity(true);
    Ok(auth.layer(Forward::build(upstream, Some(shared))?))
}

/// The forwarding service on its own, without authentication.
#[derive(Clone)]
pub struct Forward {
    /// One reference count per request, whatever is inside.
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<TimeoutConnector<HttpsConnector<HttpConnector>>, ProxyBody>,
    upstream: Upstream,
    /// The layer's config, to know when it is `off`; `None`: no layer.
    auth: Option<SharedSecurityConfig>,
}

impl Forward {
    /// A client for `upstream`; fails only if rustls cannot be set up.
    pub fn new(upstream: Upstream) -> Result<Self, String> {
        Self::build(upstream, None)
    }

    /// `auth` is the config of the layer in front, so that only in mode
    /// `off` does a request the layer did not authenticate get the upstream
    /// key (one the layer let through without a key does not).
    fn build(upstream: Upstream, auth: Option<SharedSecurityConfig>) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        // The https connector hands plain http:// URIs to this one too.
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("cannot set up TLS for the upstream: {e}"))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let connector = TimeoutConnector {
            inner: https,
            timeout: upstream.connect_timeout,
        };
        Ok(Forward {
            inner: Arc::new(Inner {
                client: Client::builder(TokioExecutor::new()).build(connector),
                upstream,
                auth,
            }),
        })
    }

    /// Where the upstream key goes: where the layer found the client's key
    /// or, when nothing checks keys, where the client put one.
    fn key_source(&self, extensions: &http::Extensions, headers: &HeaderMap) -> Option<KeySource> {
        if let Some(auth) = extensions.get::<Authenticated>() {
            return Some(auth.source);
        }
        let auth_off = self
            .inner
            .auth
            .as_ref()
            .is_none_or(|shared| shared.effective_auth_mode() == ProxyAuthMode::Off);
        if !auth_off {
            return None;
        }
        [
            KeySource::Authorization,
            KeySource::XApiKey,
            KeySource::XGoogApiKey,
        ]
        .into_iter()
        .find(|source| headers.contains_key(source.as_str()))
    }

    async fn forward<B>(self, request: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if request.uri().path() == "/healthz" {
            return json(StatusCode::OK, serde_json::json!({ "status": "ok" }));
        }
        if request.method() == Method::CONNECT {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "CONNECT is not supported: this is a reverse proxy",
            );
        }
        if request.method() == Method::OPTIONS {
            // Answered here, whatever it carries: the layer lets every
            // OPTIONS through without a key (CORS preflights carry none), so
            // forwarding one would hand the upstream an unauthenticated
            // request, body and method-override headers included. No CORS
            // headers: this example grants no origin, so a browser's
            // preflight succeeds but its request is not sent.
            return no_content();
        }
        if let Err(problem) = proxy_auth::check_path(request.uri().path()) {
            // The upstream could resolve or decode it into another path and
            // climb out of the base URL's (`/v1/..%2fadmin`).
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("the path {problem}, so it is not forwarded"),
            );
        }
        let (mut parts, body) = request.into_parts();
        let Ok(uri) = self.inner.upstream.uri_for(parts.uri.path_and_query()) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "invalid request path",
            );
        };
        let key_source = self.key_source(&parts.extensions, &parts.headers);
        let client_version = parts.version;
        // What the server attached to the client's request (the identity,
        // hyper's upgrade and HTTP/2 protocol markers) is not for the
        // upstream client to act on.
        parts.extensions = http::Extensions::new();

        remove_hop_by_hop(&mut parts.headers);
        for name in &KEY_HEADERS {
            parts.headers.remove(name);
        }
        parts.headers.remove(header::HOST);
        if let Some((name, value)) = key_source.and_then(|s| self.inner.upstream.key_header(s)) {
            parts.headers.insert(name, value);
        }
        parts.headers.append(header::VIA, via(client_version));
        parts.uri = uri;
        // The client picks HTTP/1.1 or HTTP/2 per connection (ALPN); an h2
        // client's version on an h1 upstream connection would be refused.
        parts.version = Version::HTTP_11;
        let upstream_request = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());

        match self.inner.client.request(upstream_request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                parts.headers.append(header::VIA, via(parts.version));
                parts.version = client_version;
                Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
            }
            Err(e) => {
                let (kind, what) = if e.is_connect() {
                    ("upstream_unreachable", "the upstream could not be reached")
                } else {
                    ("upstream_failed", "the upstream failed before answering")
                };
                let cause = causes(&e);
                tracing::warn!(target: "proxy_auth::forward", upstream = %self.inner.upstream, %cause, "{what}");
                error(StatusCode::BAD_GATEWAY, kind, &format!("{what}: {cause}"))
            }
        }
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The pool opens connections on demand; there is nothing to wait for.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

/// RFC 9110 §7.6.1: fields meant for this connection only. Names listed in
/// `Connection` are dropped first, since they are hop-by-hop too.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_10 => "1.0 proxy-auth",
        Version::HTTP_2 => "2 proxy-auth",
        Version::HTTP_3 => "3 proxy-auth",
        _ => "1.1 proxy-auth",
    })
}

/// "client error (Connect): tcp connect error: Connection refused": the
/// chain says what went wrong; hyper's errors hold no header values.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(value.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `204 No Content`, the proxy's answer to every `OPTIONS`.
fn no_content() -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The proxy's own error, in the OpenAI error shape most SDKs print, marked
/// with `x-proxy-error` so it is never mistaken for the upstream's.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<ProxyBody> {
    let mut response = json(
        status,
        serde_json::json!({ "error": { "message": message, "type": "proxy_error", "param": null, "code": kind } }),
    );
    response
        .headers_mut()
        .insert(X_PROXY_ERROR, HeaderValue::from_static(kind));
    response
}

/// Bounds the whole connection set-up (DNS, TCP, TLS): hyper-util's own
/// connect timeout stops at TCP, and a host that accepts but never completes
/// the TLS handshake would otherwise hold the request forever.
#[derive(Clone)]
struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> Service<Uri> for TimeoutConnector<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(format!("no connection within {timeout:?}").into()),
            }
        })
    }
}

/// How long open responses (SSE streams included) may run on after a
/// shutdown signal before the process exits anyway.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `service` on `listener` (HTTP/1.1 and HTTP/2) until `shutdown`
/// resolves; then stops accepting, lets open responses finish for up to
/// [`DRAIN`] (closing idle keep-alive connections at once), and returns.
pub async fn serve<S, B>(listener: TcpListener, service: S, shutdown: impl Future<Output = ()>)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: retrying at once would spin.
                    tracing::warn!(target: "proxy_auth::forward", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Each request carries its connection's address, for keys with
        // `allowed_ips`.
        let service = TowerToHyperService::new(server::with_client_addr(peer, service.clone()));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        // A client that hangs up mid-stream ends its connection with an
        // error; there is nothing to report.
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(target: "proxy_auth::forward", "responses still open after {DRAIN:?}; exiting anyway");
    }
}

#[tokio::main]
async fn main() {
    server::settings::init_logging();
    let upstream = Upstream::from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}");
        std::process::exit(2);
    });
    let settings = server::settings::from_env_or_exit();
    let server = server::Server::start_with("forward", settings).await;
    println!(
        "forward: forwarding to {upstream} (upstream key: {})",
        if upstream.has_key() { "set" } else { "none" }
    );
    let service = app(server.shared.clone(), server.layer(), upstream).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    serve(server.listener, service, server::ctrl_c()).await;
}
