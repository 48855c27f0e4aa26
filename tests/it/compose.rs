//! The layer inside the stacks proxies build: tower-http's Trace, Cors and
//! Timeout directly outside it, in a `ServiceBuilder`, in `axum::Router::layer`
//! and behind a hyper-util server. Cors outside auth is the documented
//! order: a browser then sees the 401 (with CORS headers) instead of a CORS
//! error, and preflights are answered before auth sees them.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::layer::util::{Identity, Stack};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::common::{get, header, reason, request, KEY};

const ORIGIN: &str = "http://app.example";
const FRAMES: [&str; 4] = [
    "data: one\n\n",
    "data: two\n\n",
    "data: three\n\n",
    "data: [DONE]\n\n",
];

fn auth() -> ProxyAuthLayer {
    ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY))
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE])
        .expose_headers([proxy_auth::REJECTION_HEADER])
}

/// The stack every test puts around the inner service: Trace, Cors and
/// Timeout outside auth, in the documented order.
type Stacked = ServiceBuilder<
    Stack<ProxyAuthLayer, Stack<TimeoutLayer, Stack<CorsLayer, Stack<Trace, Identity>>>>,
>;
type Trace = TraceLayer<SharedClassifier<ServerErrorsAsFailures>>;

fn outside_and_auth() -> Stacked {
    ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(cors())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(auth())
}

/// An SSE-style body: several frames with pauses between them.
fn sse_body() -> Body {
    Body::from_stream(stream::unfold(0, |i| async move {
        let frame = FRAMES.get(i)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Some((
            Ok::<_, Infallible>(Bytes::from_static(frame.as_bytes())),
            i + 1,
        ))
    }))
}

async fn streaming_inner(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(sse_body()))
}

fn preflight() -> Request<Body> {
    request(
        Method::OPTIONS,
        "/v1/chat/completions",
        &[
            ("origin", ORIGIN),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
    )
}

/// Checks one stack, whatever its concrete type: a preflight and a keyless
/// 401 both carry the CORS headers, a keyed request streams through.
async fn check_stack<S, B>(service: S)
where
    S: tower::Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let response = service.clone().oneshot(preflight()).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert_eq!(reason(&response), None, "preflights never reach auth's 401");

    let keyless = get("/v1/chat/completions", &[("origin", ORIGIN)]);
    let response = service.clone().oneshot(keyless).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert_eq!(
        header(&response, "access-control-expose-headers").as_deref(),
        Some("x-proxy-auth-error")
    );
    assert_eq!(reason(&response).as_deref(), Some("missing_key"));

    let bearer = format!("Bearer {KEY}");
    let keyed = get(
        "/v1/chat/completions",
        &[("origin", ORIGIN), ("authorization", &bearer)],
    );
    let response = service.oneshot(keyed).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = std::pin::pin!(response.into_body());
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    assert_eq!(frames, FRAMES, "each frame arrives as sent, in order");
}

#[tokio::test]
async fn trace_cors_timeout_outside_auth_in_a_service_builder() {
    let service = outside_and_auth().service(service_fn(streaming_inner));
    check_stack(service).await;
}

#[tokio::test]
async fn the_same_stack_in_axum_router_layer() {
    let router = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::get(|| async { sse_body() }),
        )
        .layer(outside_and_auth());
    check_stack(router).await;
}

#[tokio::test]
async fn the_same_stack_behind_a_hyper_util_server() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let stack = outside_and_auth()
        .map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new))
        .service(service_fn(streaming_inner));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(stack.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    // A real HTTP/1.1 client connection per request.
    let client = |request: Request<Body>| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await
    };
    let response = client(preflight()).await.unwrap();
    assert!(response.status().is_success());
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );

    let response = client(get(
        "/v1/chat/completions",
        &[("origin", ORIGIN), ("host", "x")],
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "missing_key");

    let bearer = format!("Bearer {KEY}");
    let response = client(get(
        "/v1/chat/completions",
        &[("authorization", &bearer), ("host", "x")],
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = std::pin::pin!(response.into_body());
    let mut received = String::new();
    let mut chunks = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            chunks += 1;
            received.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert_eq!(received, FRAMES.concat(), "the stream arrives unchanged");
    assert!(
        chunks >= 2,
        "the frames were streamed, not buffered into one ({chunks})"
    );
    server.abort();
}
