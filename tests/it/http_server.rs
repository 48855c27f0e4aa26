//! The layer over real HTTP: the axum example's router and a plain hyper
//! server on ephemeral loopback ports, spoken to over HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::common;
use crate::common::http1;

fn json(reply: &common::Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

async fn serve_axum_example(config: ProxySecurityConfig) -> (SocketAddr, SharedSecurityConfig) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = SharedSecurityConfig::new(config);
    let app = crate::common::axum_app(shared.clone(), None);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shared)
}

#[tokio::test]
async fn axum_example_over_http() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-test");
    let (addr, shared) = serve_axum_example(config).await;

    let health = http1(addr, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(json(&health), serde_json::json!({ "status": "ok" }));

    let missing = http1(addr, "GET", "/v1/models", &[]).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.head.contains("x-proxy-auth-error: missing_key"),
        "{}",
        missing.head
    );
    assert!(
        missing.head.contains("www-authenticate: bearer"),
        "{}",
        missing.head
    );

    let ok = http1(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer sk-test")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let body = json(&ok);
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/v1/chat/completions");
    assert_eq!(body["authenticated_by"], "authorization");
    assert_eq!(body["effective_auth_mode"], "all_except_health");

    // Header priority, visible from the outside.
    let goog = http1(
        addr,
        "GET",
        "/v1beta/models",
        &[("X-Goog-Api-Key", "sk-test")],
    )
    .await;
    assert_eq!(json(&goog)["authenticated_by"], "x-goog-api-key");
    let shadowed = http1(
        addr,
        "GET",
        "/v1beta/models",
        &[("x-api-key", "bad"), ("x-goog-api-key", "sk-test")],
    )
    .await;
    assert_eq!(shadowed.status, 401);
    assert!(shadowed.head.contains("x-proxy-auth-error: invalid_key"));

    let preflight = http1(addr, "OPTIONS", "/v1/chat/completions", &[]).await;
    assert_eq!(preflight.status, 200);
    assert_eq!(json(&preflight)["method"], "OPTIONS");

    // Hot reload through the handle the router was built with.
    shared
        .update(|c| c.auth_mode = ProxyAuthMode::Strict)
        .unwrap();
    assert_eq!(http1(addr, "GET", "/healthz", &[]).await.status, 401);
    assert_eq!(
        http1(addr, "GET", "/healthz", &[("x-api-key", "sk-test")])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn axum_route_layer_protects_only_its_routes() {
    use axum::routing::get;
    let app: axum::Router = axum::Router::new()
        .route("/private", get(|| async { "private" }))
        .route_layer(ProxyAuthLayer::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            "k",
        )))
        .route("/public", get(|| async { "public" }));
    let get = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(get("/public")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone().oneshot(get("/private")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // route_layer does not run for unmatched routes: a 404, not a 401.
    assert_eq!(
        app.oneshot(get("/nowhere")).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn hyper_server_through_hyper_util() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(ProxyAuthLayer::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            "sk-h",
        )))
        .service_fn(|_: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream"))))
        });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let ok = http1(addr, "GET", "/", &[("x-api-key", "sk-h")]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "upstream"));
    let denied = http1(addr, "GET", "/v1/messages", &[("x-api-key", "nope")]).await;
    assert_eq!(denied.status, 401);
    assert!(denied.head.contains("content-type: application/json"));
    assert!(denied
        .head
        .contains(&format!("content-length: {}", denied.body.len())));
    assert_eq!(json(&denied)["error"]["type"], "authentication_error");
}
