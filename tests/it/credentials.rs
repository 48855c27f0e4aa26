//! Credential stripping (on by default) and `?key=` query keys (off by default).

use std::convert::Infallible;

use http::{Method, Request, Response, StatusCode, Uri};
use proxy_auth::{
    Decision, KeyProblem, KeySource, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
};
use tower::{service_fn, Layer, ServiceExt};

use crate::common::{self, request};

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
    send(layer, Method::POST, uri, headers).await
}

/// [`forward`] with the method given.
async fn send(
    layer: ProxyAuthLayer,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, Forwarded) {
    let sent = common::send(layer, request(method, uri, headers)).await;
    let forwarded = sent
        .seen
        .first()
        .map(|seen| Forwarded {
            uri: Some(seen.uri.clone()),
            headers: seen
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        })
        .unwrap_or_default();
    (sent.status, sent.reason().map(str::to_owned), forwarded)
}

fn strict() -> ProxyAuthLayer {
    ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY))
}

fn header_names(f: &Forwarded) -> Vec<&str> {
    f.headers.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn by_default_credentials_are_stripped_and_can_be_kept() {
    let headers = [
        ("authorization", "Bearer sk-proxy"),
        ("x-api-key", "sk-proxy"),
    ];
    let (status, _, forwarded) = forward(strict(), "/v1/x?key=sk-proxy&a=1", &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header_names(&forwarded).is_empty(), "{forwarded:?}");
    assert_eq!(forwarded.uri.unwrap(), "/v1/x?a=1");
    let keep = strict().strip_credentials(false);
    let (status, _, forwarded) = forward(keep, "/v1/x?key=sk-proxy", &headers).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_names(&forwarded), ["authorization", "x-api-key"]);
    assert_eq!(forwarded.uri.unwrap(), "/v1/x?key=sk-proxy");
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
    // Mode off, a preflight, an exempt path: the layer authenticated
    // nothing, so the client's own headers and query are its business.
    let off = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Off, KEY));
    let exempting = ProxyAuthLayer::new(ProxySecurityConfig::new(
        ProxyAuthMode::AllExceptHealth,
        KEY,
    ));
    let headers = [
        ("authorization", "Bearer upstream-key"),
        ("proxy-authorization", "Basic dXNlcjpwYXNz"),
    ];
    for query_key in [false, true] {
        for (what, layer, method, uri) in [
            ("mode off", off.clone(), Method::POST, "/v1/x?key=a&KEY=b"),
            ("preflight", strict(), Method::OPTIONS, "/v1/x?key=a&KEY=b"),
            (
                "exempt path",
                exempting.clone(),
                Method::GET,
                "/healthz?key=a&KEY=b",
            ),
        ] {
            let layer = layer.query_key(query_key).strip_credentials(true);
            let (status, _, forwarded) = send(layer, method, uri, &headers).await;
            assert_eq!(status, StatusCode::OK, "{what}");
            assert_eq!(
                header_names(&forwarded),
                ["authorization", "proxy-authorization"],
                "{what}"
            );
            assert_eq!(forwarded.uri.unwrap(), uri, "{what}");
        }
    }
}

#[tokio::test]
async fn stripping_removes_proxy_authorization() {
    for query_key in [false, true] {
        let layer = || strict().query_key(query_key).strip_credentials(true);
        let mut sources = vec![
            ("/v1/x", ("authorization", "Bearer sk-proxy")),
            ("/v1/x", ("x-api-key", KEY)),
            ("/v1/x", ("x-goog-api-key", KEY)),
        ];
        if query_key {
            // The query is a source only with query_key; a neutral header
            // stands in for the key header.
            sources.push(("/v1/x?key=sk-proxy", ("accept", "*/*")));
        }
        for (uri, key_header) in sources {
            for proxy_authorization in [KEY, "Bearer sk-proxy", "Basic dXNlcjpwYXNz"] {
                let (status, _, forwarded) = forward(
                    layer(),
                    uri,
                    &[
                        ("proxy-authorization", proxy_authorization),
                        key_header,
                        ("content-type", "application/json"),
                    ],
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{key_header:?}");
                let names = header_names(&forwarded);
                assert!(
                    !names.contains(&"proxy-authorization"),
                    "{key_header:?}: {forwarded:?}"
                );
                assert!(names.contains(&"content-type"), "{forwarded:?}");
            }
        }
        // Never a key source: the proxy's key in it alone authenticates
        // nothing, and without stripping it passes untouched.
        let (status, reason, _) = forward(
            layer(),
            "/v1/x",
            &[("proxy-authorization", "Bearer sk-proxy")],
        )
        .await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("missing_key"))
        );
    }
    let (_, _, forwarded) = forward(
        strict().strip_credentials(false),
        "/v1/x",
        &[
            ("x-api-key", KEY),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
        ],
    )
    .await;
    assert!(header_names(&forwarded).contains(&"proxy-authorization"));
}

/// Every spelling of the key parameter, percent-decoded once and in any
/// ASCII case.
const KEY_PARAM_SPELLINGS: [&str; 8] = [
    "key",
    "KEY",
    "Key",
    "kEy",
    "k%65y",
    "%6B%65%79",
    "%4b%45%59",
    "%4B%65y",
];

/// Names that are not the key parameter, whatever an upstream makes of them.
const NOT_KEY_PARAMS: &str = "keys=1&key%00=2&monkey=3&%2565y=4&ke%2By=5&apikey=6&key_=7";

#[tokio::test]
async fn stripping_removes_every_spelling_of_the_key_param() {
    for query_key in [false, true] {
        let layer = || strict().query_key(query_key).strip_credentials(true);
        // Authenticated by a header: every copy in the query goes, with or
        // without query_key, and the rest keeps its bytes and order.
        let all: Vec<String> = KEY_PARAM_SPELLINGS
            .iter()
            .map(|name| format!("{name}={KEY}"))
            .collect();
        let sent = format!("/v1/x?a=%41&{}&{NOT_KEY_PARAMS}&b=+", all.join("&"));
        let (status, _, forwarded) = forward(layer(), &sent, &[("x-api-key", KEY)]).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(
            forwarded.uri.unwrap().to_string(),
            format!("/v1/x?a=%41&{NOT_KEY_PARAMS}&b=+"),
            "query_key {query_key}"
        );
        for name in KEY_PARAM_SPELLINGS {
            for (sent, expected) in [
                (format!("/v1/x?{name}={KEY}"), "/v1/x".to_owned()),
                (
                    format!("/v1/x?keys=k&{name}={KEY}&{NOT_KEY_PARAMS}"),
                    format!("/v1/x?keys=k&{NOT_KEY_PARAMS}"),
                ),
                (
                    format!("http://h/v1/x?{NOT_KEY_PARAMS}&{name}"),
                    format!("http://h/v1/x?{NOT_KEY_PARAMS}"),
                ),
            ] {
                let (status, _, forwarded) =
                    forward(layer(), &sent, &[("authorization", "Bearer sk-proxy")]).await;
                assert_eq!(status, StatusCode::OK, "{sent}");
                assert_eq!(forwarded.uri.unwrap().to_string(), expected, "{sent}");
            }
        }
        // No key parameter: the URI reaches the inner service as sent.
        let sent = format!("/v1/x?{NOT_KEY_PARAMS}&x=%zz&y=%");
        let (_, _, forwarded) = forward(layer(), &sent, &[("x-api-key", KEY)]).await;
        assert_eq!(forwarded.uri.unwrap().to_string(), sent);
    }
    // With query_key, a key read from any spelling is stripped too.
    for name in KEY_PARAM_SPELLINGS {
        let layer = strict().query_key(true).strip_credentials(true);
        let (status, _, forwarded) =
            forward(layer, &format!("/v1/x?alt=sse&{name}={KEY}&keys=k"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(forwarded.uri.unwrap(), "/v1/x?alt=sse&keys=k", "{name}");
    }
}

#[tokio::test]
async fn every_spelling_of_the_key_param_is_read_with_query_key_only() {
    for name in KEY_PARAM_SPELLINGS {
        let uri = format!("/v1beta/models/m:generateContent?{name}={KEY}");
        let (status, reason, _) = forward(strict().query_key(true), &uri, &[]).await;
        assert_eq!((status, reason), (StatusCode::OK, None), "{uri}");
        let (status, reason, _) = forward(strict(), &uri, &[]).await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("missing_key")),
            "{uri}"
        );
        let request = Request::get(&uri).body(()).unwrap();
        assert!(
            matches!(strict().query_key(true).check(&request),
                Decision::Allow(proxy_auth::Allowed::Key(who)) if who.source == KeySource::QueryKey),
            "{uri}"
        );
    }
    // Names that are not the key parameter are never read.
    let uri = format!("/v1?keys={KEY}&key%00={KEY}&monkey={KEY}&%2565y={KEY}&ke%2By={KEY}");
    let (status, reason, _) = forward(strict().query_key(true), &uri, &[]).await;
    assert_eq!(
        (status, reason.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("missing_key")),
        "{uri}"
    );
}

#[tokio::test]
async fn two_spellings_of_the_key_param_are_a_duplicate() {
    let layer = || strict().query_key(true);
    for query in [
        format!("key={KEY}&KEY={KEY}"),
        "key=a&KEY=a".to_owned(),
        format!("Key={KEY}&k%65y=other"),
        format!("%6B%65%79=&key={KEY}"),
        format!("alt=sse&KEY={KEY}&x=1&kEy"),
    ] {
        let uri = format!("/v1beta/models/m:generateContent?{query}");
        let (status, reason, _) = forward(layer(), &uri, &[]).await;
        assert_eq!(
            (status, reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_key")),
            "{query}"
        );
        let request = Request::get(&uri).body(()).unwrap();
        match layer().check(&request) {
            Decision::Reject(r) => assert_eq!(
                (r.source, r.problem),
                (Some(KeySource::QueryKey), Some(KeyProblem::Duplicate)),
                "{query}"
            ),
            other => panic!("{query}: {other:?}"),
        }
    }
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

#[tokio::test]
async fn stripping_reaches_the_clients_uri_a_router_kept() {
    use proxy_auth::ClientUri;
    let layer = strict().query_key(true).insert_identity(true);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |request: http::Request<String>| {
            *seen.lock().unwrap() = request.extensions().get::<ClientUri>().cloned();
            async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
        })
    };
    let mut request = common::request::<String>(Method::GET, "/x?key=sk-proxy&a=1", &[]);
    *request.uri_mut() = format!("/x?key={KEY}&a=1").parse().unwrap();
    request
        .extensions_mut()
        .insert(ClientUri(format!("/v1/x?key={KEY}&a=1").parse().unwrap()));
    let response = tower::ServiceExt::oneshot(tower::Layer::layer(&layer, inner), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let kept = seen
        .lock()
        .unwrap()
        .take()
        .expect("the extension reaches the inner service");
    assert_eq!(kept.0, "/v1/x?a=1", "the key is gone from the kept URI too");
}
