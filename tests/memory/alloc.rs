//! Heap allocations per request, counted exactly by the binary's global
//! allocator (see `main.rs`).
//!
//! Each count covers one whole request as a server makes it: `poll_ready`,
//! `call`, polling the response future to completion and dropping the
//! response; the request itself is built before counting starts. The layer's
//! share is the wrapped service's count minus the bare inner service's.
//! Counters are per thread, so tests running in parallel do not see each
//! other's allocations, and every count is taken after one warm-up request
//! on the same thread (first-use costs such as `tracing`'s callsite
//! registration or `arc-swap`'s per-thread slot are not per-request).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Future, Ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use proxy_auth::{
    Authenticated, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};
use tower::{Layer, Service};

use crate::allocations;

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// Answers every request with an empty 200 at once, allocating nothing.
#[derive(Clone, Copy, Debug)]
struct Inner;

impl<B> Service<Request<B>> for Inner {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        drop(request);
        ready(Ok(Response::new(Empty::new())))
    }
}

/// Serves one request through `service` and returns the response's status
/// and the allocations the whole request made (see the module docs).
fn serve<S, B, RB>(service: &mut S, request: Request<B>) -> (StatusCode, u64)
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Debug,
{
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let (status, count) = allocations(|| {
        assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let future = pin!(service.call(request));
        let Poll::Ready(result) = future.poll(&mut cx) else {
            panic!("the services here answer on the first poll");
        };
        let response = result.expect("the services here do not fail");
        let status = response.status();
        drop(response);
        status
    });
    (status, count)
}

/// `serve`, after one identical warm-up request on this thread.
fn serve_warm<S, B, RB>(service: &mut S, make: impl Fn() -> Request<B>) -> (StatusCode, u64)
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Debug,
{
    serve(service, make());
    serve(service, make())
}

fn request(method: Method, path: &str, header: Option<(&'static str, String)>) -> Request<()> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8045")
        .header("content-type", "application/json");
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(()).expect("valid request")
}

fn accepted_requests() -> Vec<(&'static str, Request<()>)> {
    let api = "/v1/chat/completions";
    vec![
        (
            "authorization bearer",
            request(
                Method::POST,
                api,
                Some(("authorization", format!("Bearer {KEY}"))),
            ),
        ),
        (
            "x-api-key",
            request(Method::POST, api, Some(("x-api-key", KEY.into()))),
        ),
        (
            "x-goog-api-key",
            request(Method::POST, api, Some(("x-goog-api-key", KEY.into()))),
        ),
        ("exempt /healthz", request(Method::GET, "/healthz", None)),
        ("OPTIONS", request(Method::OPTIONS, api, None)),
    ]
}

fn config() -> ProxySecurityConfig {
    ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY)
}

/// The number of allocations of the bare inner service, which every layer
/// count below is compared with.
fn bare_count() -> u64 {
    let (status, count) = serve_warm(&mut Inner, || request(Method::GET, "/", None));
    assert_eq!(status, StatusCode::OK);
    count
}

fn assert_accepts_without_allocating(layer: &ProxyAuthLayer, what: &str) {
    let bare = bare_count();
    assert_eq!(bare, 0, "the bare inner service itself allocates");
    let mut service = layer.layer(Inner);
    for (name, _) in accepted_requests() {
        let make = || {
            accepted_requests()
                .into_iter()
                .find(|(n, _)| *n == name)
                .expect("named request exists")
                .1
        };
        let (status, count) = serve_warm(&mut service, make);
        assert_eq!(status, StatusCode::OK, "{what}, {name}");
        assert_eq!(
            count - bare,
            0,
            "{what}: the layer allocated {} times accepting a request with {name}",
            count - bare
        );
    }
}

#[test]
fn accept_path_allocates_nothing_with_new() {
    assert_accepts_without_allocating(&ProxyAuthLayer::new(config()), "new");
}

#[test]
fn accept_path_allocates_nothing_with_from_shared() {
    let shared = SharedSecurityConfig::new(config());
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    assert_accepts_without_allocating(&layer, "from_shared");

    // Reloading allocates in the writer (the new compiled config), never in
    // the requests judged against it afterwards.
    shared
        .store(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY))
        .unwrap();
    let mut service = layer.layer(Inner);
    let bearer = || {
        request(
            Method::POST,
            "/v1/chat/completions",
            Some(("authorization", format!("Bearer {KEY}"))),
        )
    };
    let (status, count) = serve(&mut service, bearer());
    assert_eq!(
        (status, count),
        (StatusCode::OK, 0),
        "first request after a store"
    );
}

#[test]
fn auth_off_allocates_nothing() {
    for layer in [
        ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Auto, KEY)),
        ProxyAuthLayer::from_shared(ProxySecurityConfig::new(ProxyAuthMode::Off, KEY).into()),
    ] {
        let (status, count) = serve_warm(&mut layer.layer(Inner), || {
            request(Method::POST, "/v1/chat/completions", None)
        });
        assert_eq!((status, count), (StatusCode::OK, bare_count()));
    }
}

/// The counter does see allocations in the layer: the opt-in identity
/// extension costs exactly three (the boxed extensions map, its table and
/// the boxed value), and the extension reaches the inner service.
#[test]
fn insert_identity_is_counted() {
    let bare = bare_count();
    for layer in [
        ProxyAuthLayer::new(config()),
        ProxyAuthLayer::from_shared(config().into()),
    ] {
        let mut service = layer.clone().insert_identity(true).layer(Inner);
        let (status, count) = serve_warm(&mut service, || {
            request(Method::POST, "/v1", Some(("x-api-key", KEY.into())))
        });
        assert_eq!(status, StatusCode::OK);
        assert_eq!(count - bare, IDENTITY_ALLOCATIONS);
        // And it is really there for the inner service to read.
        let mut seen = None;
        let mut probe =
            layer
                .clone()
                .insert_identity(true)
                .layer(tower::service_fn(|r: Request<()>| {
                    seen = r.extensions().get::<Authenticated>().cloned();
                    ready(Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())))
                }));
        serve(
            &mut probe,
            request(Method::POST, "/v1", Some(("x-api-key", KEY.into()))),
        );
        drop(probe);
        assert!(seen.is_some());
    }
}

const IDENTITY_ALLOCATIONS: u64 = 3;

/// Reading a key parameter in any spelling allocates nothing, and neither
/// does stripping a request whose query holds no key parameter (headers
/// and `Proxy-Authorization` are removed in place); only rebuilding a URI
/// without its key parameter does, and the counter sees that.
/// A key with scopes: a route, a path model and a client network are
/// checked without allocating (the identity, which would carry the model,
/// is not inserted).
#[test]
fn a_scope_check_on_a_path_model_allocates_nothing() {
    use proxy_auth::{ClientAddr, KeySet, NewKey};
    let bare = bare_count();
    let mut keys = KeySet::new();
    keys.add(
        NewKey::new("team-a", "sk-team-a")
            .models(["gemini-1.5-*"])
            .routes(["/v1beta/models"])
            .allowed_ips(["127.0.0.0/8"]),
    )
    .expect("a valid key");
    let layer = ProxyAuthLayer::with_keys(config(), keys);
    let mut service = layer.layer(Inner);
    let make = || {
        let mut request = request(
            Method::POST,
            "/v1beta/models/gemini-1.5-flash:generateContent",
            Some(("x-goog-api-key", "sk-team-a".into())),
        );
        request
            .extensions_mut()
            .insert(ClientAddr("127.0.0.1:4000".parse().expect("an address")));
        request
    };
    let (status, count) = serve_warm(&mut service, make);
    // The request's own extension (ClientAddr) is built before counting.
    assert_eq!((status, count - bare), (StatusCode::OK, 0));
}

#[test]
fn key_params_are_read_and_skipped_without_allocating() {
    let bare = bare_count();
    let with = |uri: &str, headers: &[(&'static str, &str)]| {
        let mut request = request(Method::POST, uri, None);
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("valid value"));
        }
        request
    };
    let layer = ProxyAuthLayer::new(config());
    for uri in [
        format!("/v1?alt=sse&KEY={KEY}&keys=1"),
        format!("/v1?k%65y={KEY}"),
        format!("/v1?%4B%45%59={KEY}&monkey=2"),
    ] {
        // Reading allocates nothing; removing the parameter from the URI
        // (strip_credentials, on by default) rebuilds it, which does.
        let mut service = layer
            .clone()
            .query_key(true)
            .strip_credentials(false)
            .layer(Inner);
        let (status, count) = serve_warm(&mut service, || with(&uri, &[]));
        assert_eq!((status, count - bare), (StatusCode::OK, 0), "{uri}");
    }
    let headers = [
        ("x-api-key", KEY),
        ("proxy-authorization", "Basic dXNlcjpwYXNz"),
    ];
    for query_key in [false, true] {
        let mut service = layer
            .clone()
            .query_key(query_key)
            .strip_credentials(true)
            .layer(Inner);
        let uri = "/v1?alt=sse&keys=1&key%00=2&monkey=3&%2565y=4";
        let (status, count) = serve_warm(&mut service, || with(uri, &headers));
        assert_eq!((status, count - bare), (StatusCode::OK, 0), "{uri}");
        let uri = "/v1?alt=sse&KEY=copy";
        let (status, count) = serve_warm(&mut service, || with(uri, &headers));
        assert_eq!(status, StatusCode::OK);
        assert!(count > bare, "rebuilding {uri} allocates");
    }
}

/// A rejection allocates exactly the 401's header map (its index table and
/// its entries); the JSON bodies and header values are built once per
/// process. Asserted exactly, for every reason, every API shape of the body
/// and every source, so a change to the rejection path shows up here.
#[test]
fn rejection_path_allocation_counts() {
    let bare = bare_count();
    let wrong_same_len = format!("Bearer {}X", &KEY[..KEY.len() - 1]);
    type Case<'a> = (&'a str, &'a str, Option<(&'static str, String)>);
    let cases: Vec<Case<'_>> = vec![
        ("missing key (OpenAI shape)", "/v1/chat/completions", None),
        ("missing key (Anthropic shape)", "/v1/messages", None),
        (
            "missing key (Gemini shape)",
            "/v1beta/models/g:generateContent",
            None,
        ),
        (
            "wrong key, same length (authorization)",
            "/v1/chat/completions",
            Some(("authorization", wrong_same_len)),
        ),
        (
            "wrong key, other length (x-api-key)",
            "/v1/messages",
            Some(("x-api-key", "sk-short".into())),
        ),
        (
            "wrong key (x-goog-api-key)",
            "/v1beta/models",
            Some(("x-goog-api-key", "sk-short".into())),
        ),
        (
            "empty key",
            "/v1/chat/completions",
            Some(("authorization", "Bearer".into())),
        ),
        (
            "non-ASCII key",
            "/v1/chat/completions",
            Some(("x-api-key", "sk-\u{e9}".into())),
        ),
        ("wrong query key", "/v1beta/models?key=sk-short", None),
    ];
    let mut layers = Vec::new();
    for query_key in [false, true] {
        layers.push(ProxyAuthLayer::new(config()).query_key(query_key));
        layers.push(ProxyAuthLayer::from_shared(config().into()).query_key(query_key));
    }
    // No key configured: the other reason, and an error log per request.
    layers.push(ProxyAuthLayer::new(ProxySecurityConfig::new(
        ProxyAuthMode::Strict,
        "",
    )));
    for layer in layers {
        let mut service = layer.layer(Inner);
        for (name, path, header) in &cases {
            let make = || request(Method::POST, path, header.clone());
            let (status, first) = serve_warm(&mut service, make);
            let (_, second) = serve(&mut service, make());
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
            assert_eq!(first, second, "{name}: count is not deterministic");
            assert_eq!(first - bare, REJECTION_ALLOCATIONS, "{name}");
        }
    }
    eprintln!("rejection: {REJECTION_ALLOCATIONS} allocations, every case");
}

/// Two for the response's header map (a clone of a prebuilt one: its
/// index table and its entries), three for the `Rejection` in the
/// response's extensions (the extensions' map, its table, the boxed value).
/// The body is a prebuilt `Bytes`, shared.
const REJECTION_ALLOCATIONS: u64 = 5;

/// For the README's comparison, not a property of this crate: tower-http's
/// bearer check allocates nothing on accept either, while an axum `from_fn`
/// middleware boxes its future and the rest of the stack on every request.
#[test]
fn peers_for_comparison() {
    let bare = bare_count();
    let bearer = || {
        request(
            Method::POST,
            "/v1",
            Some(("authorization", format!("Bearer {KEY}"))),
        )
        .map(|()| axum::body::Body::empty())
    };
    #[allow(deprecated)]
    let mut tower_http =
        tower_http::validate_request::ValidateRequestHeaderLayer::bearer(KEY).layer(Inner);
    let (status, count) = serve_warm(&mut tower_http, bearer);
    assert_eq!(status, StatusCode::OK);
    eprintln!("tower-http bearer, accept: {} allocations", count - bare);

    let mut from_fn = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            next.run(request).await
        },
    )
    .layer(Inner);
    let (status, count) = serve_warm(&mut from_fn, bearer);
    assert_eq!(status, StatusCode::OK);
    eprintln!(
        "axum from_fn (pass-through), accept: {} allocations",
        count - bare
    );
    assert!(count > bare, "the counter missed from_fn's boxed future");
}

/// A key with a rate and a concurrency limit is let through without an
/// allocation: a compare-and-swap on its rate, one on its count of requests
/// in flight, and its slot (a reference count) through the response.
#[test]
fn a_limited_keys_accept_path_allocates_nothing() {
    let bare = bare_count();
    let mut keys = proxy_auth::KeySet::new();
    keys.add(
        proxy_auth::NewKey::new("limited", KEY)
            .rpm(proxy_auth::limit::MAX)
            .max_concurrent(4),
    )
    .expect("a valid key");
    for layer in [
        ProxyAuthLayer::with_keys(config(), keys.clone()),
        ProxyAuthLayer::from_shared(SharedSecurityConfig::with_keys(config(), keys)),
    ] {
        let mut service = layer.layer(Inner);
        let (status, count) = serve_warm(&mut service, || {
            request(
                Method::POST,
                "/v1/chat/completions",
                Some(("authorization", format!("Bearer {KEY}"))),
            )
        });
        assert_eq!((status, count - bare), (StatusCode::OK, 0));
    }
}

/// A 429 allocates exactly this many, for both limits and every API shape;
/// see [`LIMITED_ALLOCATIONS`].
#[test]
fn the_429_paths_allocation_count() {
    let bare = bare_count();
    let mut keys = proxy_auth::KeySet::new();
    keys.add(proxy_auth::NewKey::new("rate", KEY).rpm(1).burst(1))
        .expect("a valid key");
    let other = "sk-fedcba9876543210fedcba9876543210";
    keys.add(proxy_auth::NewKey::new("slots", other).max_concurrent(1))
        .expect("a valid key");
    let mut service = ProxyAuthLayer::with_keys(config(), keys).layer(Inner);
    let (status, _) = serve(
        &mut service,
        request(Method::POST, "/v1", Some(("x-api-key", KEY.into()))),
    );
    assert_eq!(status, StatusCode::OK, "the one request of the burst");
    for (header, path) in [
        ("authorization", "/v1/chat/completions"),
        ("x-api-key", "/v1/messages"),
        ("x-goog-api-key", "/v1beta/models/g:generateContent"),
    ] {
        let value = if header == "authorization" {
            format!("Bearer {KEY}")
        } else {
            KEY.to_owned()
        };
        let make = || request(Method::POST, path, Some((header, value.clone())));
        let (status, first) = serve_warm(&mut service, make);
        let (_, second) = serve(&mut service, make());
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{header}");
        assert_eq!(first, second, "{header}: not deterministic");
        assert_eq!(first - bare, LIMITED_ALLOCATIONS, "{header}");
    }
    eprintln!("429 (rate): {LIMITED_ALLOCATIONS} allocations, every shape");

    // A concurrency 429: the one slot is held by a response kept alive.
    let held = {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut future = Box::pin(service.call(request(
            Method::POST,
            "/v1",
            Some(("x-api-key", other.into())),
        )));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => response,
            _ => panic!("the inner service answers at once"),
        }
    };
    let make = || request(Method::POST, "/v1", Some(("x-api-key", other.into())));
    let (status, count) = serve_warm(&mut service, make);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    eprintln!(
        "429 (concurrency): {} allocations (rate: {LIMITED_ALLOCATIONS}, 401: {REJECTION_ALLOCATIONS})",
        count - bare
    );
    assert_eq!(count - bare, LIMITED_ALLOCATIONS);
    drop(held);
}

/// Three for the `Rejection` in the response's extensions, as for every
/// refusal; two for the response's header map (its index table and its
/// entries); one for the buffer that holds the body and every header value
/// (the values are slices of it, nothing is formatted apart), and one for
/// the shared handle `Bytes` puts on a buffer it is asked to slice. The
/// 401's five, plus the buffer and its handle: a 429 names a label and a
/// wait, so its body cannot be written once per layer like a 401's.
const LIMITED_ALLOCATIONS: u64 = 7;
