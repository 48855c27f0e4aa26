use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, ServiceExt};

use super::*;
use crate::{KeySet, NewKey, ProxyAuthMode, ProxySecurityConfig, REJECTION_HEADER};

/// What the inner service saw: the body's bytes and whether the layer read it.
type Seen = Arc<Mutex<Option<(Bytes, bool)>>>;

fn keys() -> KeySet {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", "sk-team-a").models(["gpt-4o-mini", "claude-3-5-*"]))
        .unwrap();
    keys.add(NewKey::new("open", "sk-open")).unwrap();
    keys
}

fn layer() -> ProxyAuthLayer<HeadsOnly> {
    ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys(),
    )
}

async fn send_reading(
    limit: usize,
    request: Request<Full<Bytes>>,
) -> (Response<Bytes>, Option<(Bytes, bool)>) {
    let seen: Seen = Arc::default();
    let inner_seen = Arc::clone(&seen);
    let service = layer().read_model_bodies(limit).layer(service_fn(
        move |request: Request<ModelBody<Full<Bytes>>>| {
            let seen = Arc::clone(&inner_seen);
            async move {
                let was_read = request.body().was_read();
                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                *seen.lock().unwrap() = Some((bytes, was_read));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        },
    ));
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().take();
    (Response::from_parts(parts, bytes), seen)
}

fn post(key: &str, path: &str, content_type: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn reason(response: &Response<Bytes>) -> Option<&str> {
    response
        .headers()
        .get(REJECTION_HEADER)
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_allowed_body_model_reaches_the_inner_service_byte_for_byte() {
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let (response, seen) = send_reading(
        1 << 20,
        post(
            "sk-team-a",
            "/v1/chat/completions",
            "application/json",
            body,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen, Some((Bytes::from_static(body.as_bytes()), true)));
}

#[tokio::test]
async fn a_body_model_out_of_scope_is_a_403_naming_model_and_label() {
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    let (response, seen) = send_reading(
        1 << 20,
        post(
            "sk-team-a",
            "/v1/chat/completions",
            "application/json",
            body,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&response), Some("model_not_allowed"));
    assert!(seen.is_none(), "the inner service is not called");
    let text = String::from_utf8(response.body().to_vec()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"team-a\"") && message.contains("\"gpt-4o\""),
        "{message}"
    );
    assert!(!text.contains("sk-team-a"), "never the key: {text}");
    assert_eq!(json["error"]["proxy_auth"]["label"], "team-a");
}

#[tokio::test]
async fn keys_without_models_are_streamed_never_read() {
    let body = r#"{"model":"anything"}"#;
    let (response, seen) = send_reading(
        1 << 20,
        post("sk-open", "/v1/chat/completions", "application/json", body),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(seen, Some((Bytes::from_static(body.as_bytes()), false)));
}

#[tokio::test]
async fn bodies_the_check_cannot_read_for_certain_are_refused() {
    let cases = [
        (
            r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#,
            "application/json",
            "model_unreadable",
            400,
        ),
        (
            "model=gpt-4o",
            "application/x-www-form-urlencoded",
            "model_not_allowed",
            403,
        ),
        (
            r#"{"model":"gpt-4o-mini","x":"&model=gpt-4o&"}"#,
            "application/x-www-form-urlencoded",
            "model_unreadable",
            400,
        ),
        (
            "model=gpt-4o-mini&MODEL=gpt-4o",
            "application/x-www-form-urlencoded",
            "model_unreadable",
            400,
        ),
        (
            r#"{"model":"gpt-4o-mini","MODEL":"gpt-4o"}"#,
            "application/json",
            "model_unreadable",
            400,
        ),
        (
            "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--b--",
            "multipart/form-data; boundary=b",
            "model_not_allowed",
            403,
        ),
        (
            "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--",
            "multipart/form-data",
            "model_unreadable",
            400,
        ),
    ];
    for (body, content_type, expected, status) in cases {
        let (response, seen) = send_reading(
            1 << 20,
            post("sk-team-a", "/v1/audio/transcriptions", content_type, body),
        )
        .await;
        assert_eq!(
            (reason(&response), response.status().as_u16()),
            (Some(expected), status),
            "{body}"
        );
        assert!(seen.is_none());
    }
    let allowed =
        "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nclaude-3-5-sonnet\r\n--b--";
    let (response, _) = send_reading(
        1 << 20,
        post(
            "sk-team-a",
            "/v1/x",
            "multipart/form-data; boundary=b",
            allowed,
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn over_the_limit_is_413_and_compressed_is_415() {
    let body = r#"{"model":"gpt-4o-mini","pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let (response, seen) = send_reading(
        16,
        post(
            "sk-team-a",
            "/v1/chat/completions",
            "application/json",
            body,
        ),
    )
    .await;
    assert_eq!(
        (response.status(), reason(&response)),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    assert!(seen.is_none());
    let mut gzipped = post(
        "sk-team-a",
        "/v1/chat/completions",
        "application/json",
        body,
    );
    gzipped
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let (response, _) = send_reading(1 << 20, gzipped).await;
    assert_eq!(
        (response.status(), reason(&response)),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_encoding")
        )
    );
}

#[tokio::test]
async fn the_path_and_query_model_are_judged_without_reading() {
    let gemini = post(
        "sk-team-a",
        "/v1beta/models/gemini-pro:generateContent",
        "application/json",
        r#"{"contents":[]}"#,
    );
    let (response, _) = send_reading(1 << 20, gemini).await;
    assert_eq!(reason(&response), Some("model_not_allowed"));
    let allowed = post(
        "sk-team-a",
        "/v1beta/models/claude-3-5-x:generateContent",
        "application/json",
        r#"{"model":"gpt-4o"}"#,
    );
    let (response, seen) = send_reading(1 << 20, allowed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        seen.map(|s| s.1),
        Some(false),
        "a path model: the body is not read"
    );
    let query = post(
        "sk-team-a",
        "/v1/realtime?model=gpt-4o",
        "application/json",
        "{}",
    );
    let (response, _) = send_reading(1 << 20, query).await;
    assert_eq!(reason(&response), Some("model_not_allowed"));
    // Query and body both name a model: both must be allowed.
    let both = post(
        "sk-team-a",
        "/v1/x?model=gpt-4o-mini",
        "application/json",
        r#"{"model":"gpt-4o"}"#,
    );
    let (response, _) = send_reading(1 << 20, both).await;
    assert_eq!(reason(&response), Some("model_not_allowed"));
}

#[tokio::test]
async fn a_layer_that_reads_heads_only_refuses_a_body_it_cannot_see() {
    let service = layer().layer(service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    }));
    let body = post(
        "sk-team-a",
        "/v1/chat/completions",
        "application/json",
        r#"{"model":"gpt-4o-mini"}"#,
    );
    let response = service.clone().oneshot(body).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()[REJECTION_HEADER], "model_unreadable");
    let empty = Request::get("/v1/models")
        .header("authorization", "Bearer sk-team-a")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        service.oneshot(empty).await.unwrap().status(),
        StatusCode::OK
    );
}
