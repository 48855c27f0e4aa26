//! The layer over real HTTP: the axum example's router and a plain hyper
//! server on ephemeral loopback ports, spoken to with raw HTTP/1.1.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod axum_example;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("server answered within 10 s")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

async fn serve_axum_example(config: ProxySecurityConfig) -> (SocketAddr, SharedSecurityConfig) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = SharedSecurityConfig::new(config);
    let app = axum_example::app(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shared)
}

#[tokio::test]
async fn axum_example_over_http() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-test");
    let (addr, shared) = serve_axum_example(config).await;

    let health = http(addr, "GET", "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(json(&health), serde_json::json!({ "status": "ok" }));

    let missing = http(addr, "GET", "/v1/models", &[]).await;
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

    let ok = http(
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
    let goog = http(
        addr,
        "GET",
        "/v1beta/models",
        &[("X-Goog-Api-Key", "sk-test")],
    )
    .await;
    assert_eq!(json(&goog)["authenticated_by"], "x-goog-api-key");
    let shadowed = http(
        addr,
        "GET",
        "/v1beta/models",
        &[("x-api-key", "bad"), ("x-goog-api-key", "sk-test")],
    )
    .await;
    assert_eq!(shadowed.status, 401);
    assert!(shadowed.head.contains("x-proxy-auth-error: invalid_key"));

    let preflight = http(addr, "OPTIONS", "/v1/chat/completions", &[]).await;
    assert_eq!(preflight.status, 200);
    assert_eq!(json(&preflight)["method"], "OPTIONS");

    // Hot reload through the handle the router was built with.
    shared.update(|c| c.auth_mode = ProxyAuthMode::Strict);
    assert_eq!(http(addr, "GET", "/healthz", &[]).await.status, 401);
    assert_eq!(
        http(addr, "GET", "/healthz", &[("x-api-key", "sk-test")])
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

    let ok = http(addr, "GET", "/", &[("x-api-key", "sk-h")]).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "upstream"));
    let denied = http(addr, "GET", "/v1/messages", &[("x-api-key", "nope")]).await;
    assert_eq!(denied.status, 401);
    assert!(denied.head.contains("content-type: application/json"));
    assert!(denied
        .head
        .contains(&format!("content-length: {}", denied.body.len())));
    assert_eq!(json(&denied)["error"]["type"], "authentication_error");
}
