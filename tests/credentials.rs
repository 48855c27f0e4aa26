//! Credential stripping and `?key=` query keys: both off by default.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode, Uri};
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{service_fn, Layer, ServiceExt};

const KEY: &str = "sk-proxy";

#[derive(Debug, Default, Clone)]
struct Forwarded {
    uri: Option<Uri>,
    headers: Vec<(String, String)>,
}

async fn forward(
    layer: ProxyAuthLayer,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Forwarded) {
    let seen = Arc::new(Mutex::new(Forwarded::default()));
    let inner = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            *seen.lock().unwrap() = Forwarded {
                uri: Some(req.uri().clone()),
                headers: req
                    .headers()
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
            };
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        })
    };
    let mut builder = Request::post(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = layer
        .layer(inner)
        .oneshot(builder.body(String::new()).unwrap())
        .await
        .unwrap();
    let reason = response
        .headers()
        .get("x-proxy-auth-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let forwarded = seen.lock().unwrap().clone();
    (response.status(), reason, forwarded)
}

fn strict() -> ProxyAuthLayer {
    ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY))
}

fn header_names(f: &Forwarded) -> Vec<&str> {
    f.headers.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn by_default_credentials_reach_the_inner_service() {
    let (status, _, forwarded) =
        forward(strict(), "/v1/x", &[("authorization", "Bearer sk-proxy")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header_names(&forwarded).contains(&"authorization"));
}

#[tokio::test]
async fn stripping_removes_every_key_header() {
    let layer = strict().strip_credentials(true);
    let (status, _, forwarded) = forward(
        layer,
        "/v1/x?alt=sse",
        &[
            ("authorization", "Bearer sk-proxy"),
            ("x-api-key", "sk-proxy"),
            ("x-goog-api-key", "other"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let names = header_names(&forwarded);
    assert_eq!(names, ["content-type"], "{forwarded:?}");
    assert_eq!(forwarded.uri.unwrap(), "/v1/x?alt=sse");
}

#[tokio::test]
async fn stripping_leaves_unauthenticated_passes_alone() {
    // Mode off: the client's own headers are its business.
    let off = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Off, KEY))
        .strip_credentials(true);
    let (_, _, forwarded) =
        forward(off, "/v1/x", &[("authorization", "Bearer upstream-key")]).await;
    assert!(header_names(&forwarded).contains(&"authorization"));
}

#[tokio::test]
async fn query_keys_are_off_by_default() {
    let (status, reason, _) = forward(
        strict(),
        "/v1beta/models/m:generateContent?key=sk-proxy",
        &[],
    )
    .await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("missing_key"))
    );
}

#[tokio::test]
async fn query_key_is_the_last_source() {
    let layer = || strict().query_key(true);
    let path = "/v1beta/models/m:generateContent";
    assert_eq!(
        forward(layer(), &format!("{path}?key={KEY}"), &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        forward(layer(), &format!("{path}?alt=sse&key={KEY}"), &[])
            .await
            .0,
        StatusCode::OK
    );
    // A header comes first, even a wrong one.
    let (status, reason, _) = forward(
        layer(),
        &format!("{path}?key={KEY}"),
        &[("x-goog-api-key", "wrong")],
    )
    .await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("invalid_key"))
    );
    // Empty, repeated, wrong.
    for query in ["key=", &format!("key={KEY}&key={KEY}"), "key=wrong"] {
        let (status, reason, _) = forward(layer(), &format!("{path}?{query}"), &[]).await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_key")),
            "{query}"
        );
    }
    // Not percent-decoded: an encoded key is a different string.
    let (status, _, _) = forward(layer(), &format!("{path}?key=sk%2Dproxy"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn query_key_rejections_use_the_gemini_shape() {
    let response = strict()
        .query_key(true)
        .layer(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }))
        .oneshot(
            Request::get("/anything?key=wrong")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    use http_body_util::BodyExt;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["status"], "UNAUTHENTICATED");
    assert!(json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("key query parameter"));
    assert!(!String::from_utf8_lossy(&body).contains("wrong"));
}

#[tokio::test]
async fn stripping_removes_the_query_key_and_keeps_the_rest() {
    let layer = || strict().query_key(true).strip_credentials(true);
    let cases = [
        (
            "/v1beta/m:generateContent?key=sk-proxy",
            "/v1beta/m:generateContent",
        ),
        (
            "/v1beta/m:generateContent?alt=sse&key=sk-proxy",
            "/v1beta/m:generateContent?alt=sse",
        ),
        (
            "/v1beta/m:generateContent?key=sk-proxy&alt=sse&x=1",
            "/v1beta/m:generateContent?alt=sse&x=1",
        ),
        (
            "http://upstream.example/v1beta/m?alt=sse&key=sk-proxy",
            "http://upstream.example/v1beta/m?alt=sse",
        ),
    ];
    for (sent, expected) in cases {
        let (status, _, forwarded) = forward(layer(), sent, &[]).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(forwarded.uri.unwrap().to_string(), expected, "{sent}");
    }
    // Authenticated by a header: a key-looking query parameter goes too.
    let (_, _, forwarded) = forward(
        layer(),
        "/m?key=sk-proxy&alt=sse",
        &[("x-goog-api-key", KEY)],
    )
    .await;
    // The header was the source; the query's copy is removed as well.
    assert_eq!(forwarded.uri.unwrap().to_string(), "/m?alt=sse");
}
