//! What an existing proxy needs to drop its own auth for the layer: nested
//! routers judged by the path the client sent, its own error format, its
//! own header rules, its own per-key data, one atomic store of its own
//! config, and a check before serving.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::routing::{get as axum_get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use proxy_auth::{
    ApiShape, Authenticated, ClientUri, Decision, KeySet, KeySource, NewKey, ProxyAuthLayer,
    ProxyAuthMode, ProxySecurityConfig, Rejection, SharedSecurityConfig, UnusableKey,
};
use tower::{service_fn, Layer, ServiceExt};

use crate::common::{answer, get, request, send, Logs, KEY};

fn strict() -> ProxySecurityConfig {
    ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// An Anthropic-compatible proxy with its routes nested under `/v1`, and
/// the layer on the nested router.
fn nested(layer: ProxyAuthLayer) -> Router {
    let v1 = Router::new()
        .route("/messages", post(|| async { "message" }))
        .route("/healthz", axum_get(|| async { "ok" }))
        .layer(layer);
    Router::new().nest("/v1", v1)
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn inside_router_nest_the_layer_judges_and_logs_the_path_the_client_sent() {
    let logs = Logs::new(tracing::Level::WARN);
    let _guard = logs.set_default();
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(
        ProxyAuthMode::AllExceptHealth,
        KEY,
    ))
    .exempt_paths(["/v1/healthz"]);
    let app = nested(layer);
    // Exempt as written, full path: axum's OriginalUri is read.
    let health = answer(app.clone(), get::<Body>("/v1/healthz", &[])).await;
    assert_eq!(health.status, StatusCode::OK);
    // The Anthropic shape for /v1/messages, chosen by the full path.
    let refused = answer(app, request::<Body>(Method::POST, "/v1/messages", &[])).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&refused.body)["type"], "error", "{}", refused.body);
    assert!(
        logs.text().contains("path=\"/v1/messages\""),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn any_server_passes_the_clients_path_as_a_client_uri() {
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(
        ProxyAuthMode::AllExceptHealth,
        KEY,
    ))
    .exempt_paths(["/v1/healthz"]);
    // A router that cut `/v1` off and kept what the client sent.
    let mut inner = get::<String>("/healthz", &[]);
    inner
        .extensions_mut()
        .insert(ClientUri("/v1/healthz".parse().unwrap()));
    assert!(send(layer.clone(), inner).await.reached_inner());
    let mut messages = request::<String>(Method::POST, "/messages", &[]);
    messages
        .extensions_mut()
        .insert(ClientUri("/v1/messages".parse().unwrap()));
    let refused = send(layer, messages).await;
    assert_eq!(
        json(&refused.body)["type"],
        "error",
        "Anthropic shape by the client's path"
    );
}

#[tokio::test]
async fn a_pinned_error_shape_is_used_whatever_the_client_sends() {
    let layer = ProxyAuthLayer::new(strict()).error_shape(ApiShape::Anthropic);
    for headers in [
        vec![("authorization", "Bearer wrong")],
        vec![("x-goog-api-key", "wrong")],
        vec![],
    ] {
        let refused = send(layer.clone(), get("/v1/chat/completions", &headers)).await;
        let body = json(&refused.body);
        assert_eq!(body["type"], "error", "{headers:?}: {}", refused.body);
        assert_eq!(body["error"]["type"], "authentication_error");
    }
}

#[tokio::test]
async fn the_proxys_own_response_keeps_the_marker_and_the_verdict() {
    let layer = ProxyAuthLayer::new(strict()).rejection_response(|rejection, parts| {
        let body = format!(
            r#"{{"success":false,"code":"{}","path":"{}"}}"#,
            rejection.reason,
            parts.uri.path()
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = StatusCode::FORBIDDEN;
        // Even if the author writes the marker, the layer's value wins.
        response
            .headers_mut()
            .insert("x-proxy-auth-error", "whatever".parse().unwrap());
        response
    });
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = service
        .oneshot(
            Request::get("/v1/x")
                .header("x-api-key", "nope")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "the status is the author's"
    );
    assert_eq!(response.headers()["x-proxy-auth-error"], "invalid_key");
    let rejection = response
        .extensions()
        .get::<Rejection>()
        .expect("the verdict");
    assert_eq!(rejection.source, Some(KeySource::XApiKey));
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        &body[..],
        br#"{"success":false,"code":"invalid_key","path":"/v1/x"}"#
    );
}

#[tokio::test]
async fn every_refusal_carries_its_rejection_for_outer_layers() {
    let service = ProxyAuthLayer::new(strict()).layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let response = service.oneshot(Request::new(())).await.unwrap();
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason.as_str(), "missing_key");
    assert_eq!(rejection.status(), response.status());
}

#[tokio::test]
async fn an_author_chooses_the_key_sources_and_their_order_and_the_rules_hold() {
    let layer =
        ProxyAuthLayer::new(strict()).key_sources([KeySource::XApiKey, KeySource::Authorization]);
    // x-api-key first now.
    let sent = send(
        layer.clone(),
        get(
            "/v1",
            &[("authorization", "Bearer stale"), ("x-api-key", KEY)],
        ),
    )
    .await;
    assert!(sent.reached_inner());
    assert_eq!(
        sent.identity().map(|a| a.source),
        None,
        "no insert_identity"
    );
    // First present still: a wrong x-api-key is not skipped for a right Bearer.
    let sent = send(
        layer.clone(),
        get(
            "/v1",
            &[
                ("x-api-key", "stale"),
                ("authorization", &format!("Bearer {KEY}")),
            ],
        ),
    )
    .await;
    assert_eq!(sent.reason(), Some("invalid_key"));
    // Duplicates still refused.
    let sent = send(
        layer.clone(),
        get("/v1", &[("x-api-key", KEY), ("x-api-key", KEY)]),
    )
    .await;
    assert_eq!(sent.reason(), Some("invalid_key"));
    // A source left out is never read, and the refusal says it was sent.
    let sent = send(layer, get("/v1", &[("x-goog-api-key", KEY)])).await;
    assert_eq!(sent.reason(), Some("missing_key"));
    let message = json(&sent.body)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("Also sent but not read: x-goog-api-key"),
        "{message}"
    );
}

#[tokio::test]
async fn another_scheme_in_authorization_can_count_as_absent() {
    let basic = ("authorization", "Basic dXNlcjpwYXNz");
    // Default: a present Authorization is judged, whatever its scheme.
    let default = send(
        ProxyAuthLayer::new(strict()),
        get("/v1", &[basic, ("x-api-key", KEY)]),
    )
    .await;
    assert_eq!(default.reason(), Some("invalid_key"));
    let absent = ProxyAuthLayer::new(strict()).other_schemes_absent(true);
    let sent = send(absent.clone(), get("/v1", &[basic, ("x-api-key", KEY)])).await;
    assert!(
        sent.reached_inner(),
        "Basic is for another layer; x-api-key is read"
    );
    // Bearer and bare values are still keys, and repetition is still refused.
    let sent = send(
        absent.clone(),
        get(
            "/v1",
            &[("authorization", "Bearer wrong"), ("x-api-key", KEY)],
        ),
    )
    .await;
    assert_eq!(sent.reason(), Some("invalid_key"));
    let sent = send(absent, get("/v1", &[basic, basic, ("x-api-key", KEY)])).await;
    assert_eq!(sent.reason(), Some("invalid_key"));
}

#[derive(Debug, PartialEq)]
struct Tenant {
    id: u32,
    budget_cents: u64,
}

#[tokio::test]
async fn a_keys_own_data_reaches_the_handler_with_the_identity() {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", "sk-team-a").data(Tenant {
        id: 7,
        budget_cents: 12_000,
    }))
    .unwrap();
    let layer = ProxyAuthLayer::with_keys(strict(), keys).insert_identity(true);
    let app: Router = Router::new()
        .route(
            "/v1/chat/completions",
            post(|Extension(who): Extension<Authenticated>| async move {
                let tenant = who.data::<Tenant>().expect("the key's tenant");
                format!("{}:{}", tenant.id, tenant.budget_cents)
            }),
        )
        .layer(layer);
    let response = answer(
        app,
        request::<Body>(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-team-a")],
        ),
    )
    .await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (StatusCode::OK, "7:12000")
    );
}

#[tokio::test]
async fn config_and_keys_are_stored_as_one_step() {
    // A = strict with a named key, B = off with none. A request sees A or
    // B; a mix (A's mode, B's keys) would refuse it as no_key_configured.
    let a = || {
        let mut keys = KeySet::new();
        keys.insert("n1", "sk-n1").unwrap();
        (ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys)
    };
    let b = || {
        (
            ProxySecurityConfig::new(ProxyAuthMode::Off, ""),
            KeySet::new(),
        )
    };
    let (config, keys) = a();
    let shared = SharedSecurityConfig::with_keys(config, keys);
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (shared, stop) = (shared.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut flip = false;
            while !stop.load(Ordering::Relaxed) {
                let (config, keys) = if flip { a() } else { b() };
                shared.store_with_keys(config, keys).unwrap();
                flip = !flip;
            }
        })
    };
    let request = Request::get("/v1")
        .header("x-api-key", "sk-n1")
        .body(())
        .unwrap();
    for _ in 0..20_000 {
        if let Decision::Reject(rejection) = layer.check(&request) {
            panic!("a mixed config: {rejection:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[tokio::test]
async fn a_config_that_lets_nobody_in_is_found_before_serving() {
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""));
    let err = layer.check_keys().unwrap_err();
    assert_eq!(
        err,
        UnusableKey::NoKey {
            mode: ProxyAuthMode::Strict
        }
    );
    assert!(err.to_string().contains("Set api_key"), "{err}");
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sha256:12"));
    assert_eq!(shared.check_keys(), Err(UnusableKey::BadDigest));
    shared.store(strict()).unwrap();
    assert_eq!(shared.check_keys(), Ok(()));
}
