//! Per-key scopes through the layer and an axum router: routes, client
//! networks (the connection's address, and what trusted proxies report),
//! models from the path, the query and the body, each refusal with its 403
//! and reason, and the body handed on byte for byte.

use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::extract::Request as AxumRequest;
use axum::Router;
use http::{Method, Request, StatusCode};
use proptest::prelude::*;
use proxy_auth::{
    Authenticated, ClientAddr, Decision, KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode,
    ProxySecurityConfig, ReadsBodies, RejectReason,
};

use crate::common::{answer, get, send, Answer};

const TEAM: &str = "sk-team-a-0123456789abcdef";
const OPEN: &str = "sk-open-0123456789abcdef";

fn keys() -> KeySet {
    let mut keys = KeySet::new();
    keys.add(
        NewKey::new("team-a", TEAM)
            .models(["gpt-4o-mini", "claude-3-5-*"])
            .routes(["/v1/chat/completions", "/v1/messages", "/v1/models"])
            .allowed_ips(["127.0.0.0/8", "10.1.0.0/16"]),
    )
    .unwrap();
    keys.add(NewKey::new("open", OPEN)).unwrap();
    keys
}

fn layer() -> ProxyAuthLayer {
    ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-admin"),
        keys(),
    )
    .insert_identity(true)
}

/// The router an LLM gateway would have: every path answers with what
/// it received (the model the check saw, the body's bytes).
fn app(layer: ProxyAuthLayer<ReadsBodies>) -> Router {
    Router::new()
        .fallback(|request: AxumRequest| async move {
            let model = request
                .extensions()
                .get::<Authenticated>()
                .and_then(|a| a.model.as_deref().map(str::to_owned))
                .unwrap_or_default();
            let body = to_bytes(request.into_body(), usize::MAX).await.unwrap();
            format!("{model}|{}", String::from_utf8_lossy(&body))
        })
        .layer(layer)
}

fn from(
    peer: &str,
    method: Method,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::from(body.to_owned())).unwrap();
    request
        .extensions_mut()
        .insert(ClientAddr(peer.parse().unwrap()));
    request
}

async fn chat(model_json: &str) -> Answer {
    let request = from(
        "127.0.0.1:5000",
        Method::POST,
        "/v1/chat/completions",
        TEAM,
        &[("content-type", "application/json")],
        model_json,
    );
    answer(app(layer().read_model_bodies(1 << 20)), request).await
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn routes_narrow_a_key_on_slash_boundaries_and_refuse_paths_an_upstream_reads_otherwise() {
    let at = |path: &str| from("127.0.0.1:1", Method::GET, path, TEAM, &[], "");
    let service = app(layer().read_model_bodies(1 << 20));
    for (path, status) in [
        ("/v1/models", 200),
        ("/v1/chat/completions", 200),
        ("/v1/chat/completions/x", 200),
        ("/v1/embeddings", 403),
        ("/v1/modelsx", 403),
        ("/v1/chat/completions/../../embeddings", 403),
        ("/v1/chat/completions/%2e%2e/%2e%2e/embeddings", 403),
        ("/v1/chat/completions/..%2f..%2fembeddings", 403),
    ] {
        let response = answer(service.clone(), at(path)).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{path}: {}",
            response.body
        );
        if status == 403 {
            assert_eq!(
                response.header("x-proxy-auth-error"),
                Some("route_not_allowed")
            );
            assert!(response.body.contains("team-a"), "{}", response.body);
        }
    }
    // Exempt paths and preflights are not the scopes' business.
    let health = answer(
        service.clone(),
        from("203.0.113.1:1", Method::GET, "/healthz", "", &[], ""),
    )
    .await;
    assert_eq!(health.status, StatusCode::OK);
    let preflight = answer(
        service,
        from(
            "203.0.113.1:1",
            Method::OPTIONS,
            "/v1/embeddings",
            "",
            &[],
            "",
        ),
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
}

#[tokio::test]
async fn client_networks_come_from_the_connection_or_a_trusted_proxy() {
    let service = |layer: ProxyAuthLayer| app(layer.read_model_bodies(1 << 20));
    let models = |peer: &str, xff: Option<&str>| {
        let headers: Vec<(&str, &str)> = xff.map(|v| ("x-forwarded-for", v)).into_iter().collect();
        from(peer, Method::GET, "/v1/models", TEAM, &headers, "")
    };
    let plain = service(layer());
    assert_eq!(
        answer(plain.clone(), models("10.1.2.3:1", None))
            .await
            .status,
        StatusCode::OK
    );
    let outside = answer(plain.clone(), models("203.0.113.9:1", None)).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    assert_eq!(outside.header("x-proxy-auth-error"), Some("ip_not_allowed"));
    assert!(outside.body.contains("203.0.113.9"), "{}", outside.body);
    // Forwarding headers from anyone but a trusted proxy are ignored.
    let spoofed = answer(plain, models("203.0.113.9:1", Some("127.0.0.1"))).await;
    assert_eq!(spoofed.status, StatusCode::FORBIDDEN);
    let behind = service(layer().trusted_proxies(["192.0.2.0/24".parse().unwrap()]));
    let via_proxy = answer(behind.clone(), models("192.0.2.10:1", Some("10.1.9.9"))).await;
    assert_eq!(via_proxy.status, StatusCode::OK);
    let via_proxy_outside = answer(
        behind,
        models("192.0.2.10:1", Some("10.1.9.9, 198.51.100.4")),
    )
    .await;
    assert_eq!(
        via_proxy_outside.status,
        StatusCode::FORBIDDEN,
        "the rightmost untrusted hop"
    );
    // No address known: refused, and the log-facing note says why.
    let mut unknown = models("127.0.0.1:1", None);
    unknown.extensions_mut().remove::<ClientAddr>();
    let refused = answer(app(layer().read_model_bodies(1 << 20)), unknown).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("does not pass the connection's address"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn the_body_model_is_checked_and_the_body_reaches_the_handler_unchanged() {
    let body = r#"{"model":"claude-3-5-sonnet","messages":[{"role":"user","content":"hi"}]}"#;
    let ok = chat(body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body, format!("claude-3-5-sonnet|{body}"));
    let refused = chat(r#"{"model":"gpt-4o","messages":[]}"#).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        refused.header("x-proxy-auth-error"),
        Some("model_not_allowed")
    );
    let json = json(&refused.body);
    assert_eq!(json["error"]["type"], "permission_error");
    assert_eq!(json["error"]["proxy_auth"]["detail"], "gpt-4o");
    // A key without models is never buffered; no model is recorded.
    let open = from(
        "203.0.113.1:1",
        Method::POST,
        "/v1/chat/completions",
        OPEN,
        &[],
        r#"{"model":"o1"}"#,
    );
    let response = answer(app(layer().read_model_bodies(1 << 20)), open).await;
    assert_eq!(response.body, r#"|{"model":"o1"}"#);
}

#[tokio::test]
async fn bodies_parsers_would_read_differently_are_refused_never_passed() {
    for body in [
        r#"{"model":"gpt-4o-mini","model":"gpt-4o"}"#,
        r#"{"model":"gpt-4o","model":"gpt-4o-mini"}"#,
        r#"{"model":"gpt-4o-mini","mod\u0065l":"gpt-4o"}"#,
        r#"{"model":"gpt-4o-mini"}{"model":"gpt-4o"}"#,
        "\u{feff}{\"model\":\"gpt-4o-mini\"}",
        r#"{"model":"gpt-4o-mini",}"#,
        r#"{"model":"gpt-4o-mini\ud800"}"#,
    ] {
        let response = chat(body).await;
        assert_eq!(
            response.header("x-proxy-auth-error"),
            Some("model_unreadable"),
            "{body}"
        );
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
    }
    let multipart = |form: &str| {
        from(
            "127.0.0.1:1",
            Method::POST,
            "/v1/chat/completions",
            TEAM,
            &[("content-type", "multipart/form-data; boundary=B")],
            form,
        )
    };
    let service = app(layer().read_model_bodies(1 << 20));
    let twice = "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini\r\n--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--B--\r\n";
    let encoded_name = "--B\r\nContent-Disposition: form-data; name*=UTF-8''model\r\n\r\ngpt-4o\r\n--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini\r\n--B--\r\n";
    for form in [twice, encoded_name] {
        let response = answer(service.clone(), multipart(form)).await;
        assert_eq!(
            response.header("x-proxy-auth-error"),
            Some("model_unreadable"),
            "{form:?}"
        );
    }
    let good =
        "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-mini\r\n--B--\r\n";
    let response = answer(service, multipart(good)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body, format!("gpt-4o-mini|{good}"));
}

#[tokio::test]
async fn path_and_query_models_are_judged_and_check_reports_them() {
    // Routes come first: the Gemini path is not one of team-a's.
    let mut gemini = get::<String>(
        "/v1beta/models/gemini-pro:generateContent",
        &[("x-goog-api-key", TEAM)],
    );
    gemini
        .extensions_mut()
        .insert(ClientAddr("127.0.0.1:1".parse::<SocketAddr>().unwrap()));
    let Decision::Reject(r) = layer().check(&gemini) else {
        panic!("out of its routes")
    };
    assert_eq!(r.reason, RejectReason::RouteNotAllowed);
    // A key limited to models only: the path's model decides.
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", TEAM).models(["gemini-1.5-*"]))
        .unwrap();
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys,
    );
    let flash = get::<String>(
        "/v1beta/models/gemini-1.5-flash:streamGenerateContent",
        &[("x-goog-api-key", TEAM)],
    );
    assert!(layer.check(&flash).is_allowed());
    let realtime = get::<String>(
        "/v1/realtime?model=gpt-4o-realtime",
        &[("authorization", &format!("Bearer {TEAM}"))],
    );
    let Decision::Reject(r) = layer.check(&realtime) else {
        panic!("the query's model")
    };
    assert_eq!(
        (r.reason, r.detail.as_deref()),
        (RejectReason::ModelNotAllowed, Some("gpt-4o-realtime"))
    );
    match layer.check(&gemini) {
        Decision::Reject(r) => {
            assert_eq!(r.reason, RejectReason::ModelNotAllowed);
            assert_eq!(r.detail.as_deref(), Some("gemini-pro"));
            assert_eq!(r.label.as_deref(), Some("team-a"));
        }
        other => panic!("{other:?}"),
    }
    let sent = send(layer, gemini).await;
    assert_eq!(sent.status, StatusCode::FORBIDDEN);
    let body = json(&sent.body);
    assert_eq!(
        body["error"]["status"], "PERMISSION_DENIED",
        "{}",
        sent.body
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever JSON-like body a client sends, the model the check saw is
    /// the top-level model a standard JSON parser reads from the body the
    /// handler got, or the request was refused.
    #[test]
    fn the_model_checked_is_the_model_forwarded_or_the_request_is_refused(
        parts in proptest::collection::vec(
            prop_oneof![
                Just(r#""model":"gpt-4o-mini""#.to_owned()),
                Just(r#""model":"gpt-4o""#.to_owned()),
                Just(r#""mod\u0065l":"gpt-4o""#.to_owned()),
                Just(r#""Model":"gpt-4o""#.to_owned()),
                Just(r#""model":"claude-3-5-\u0073onnet""#.to_owned()),
                Just(r#""model":1"#.to_owned()),
                Just(r#""messages":[{"model":"gpt-4o"}]"#.to_owned()),
                Just(r#""stream":true"#.to_owned()),
                Just(r#""x":"}""#.to_owned()),
            ],
            0..4,
        ),
        trailing in prop_oneof![Just(""), Just(" "), Just(","), Just("}"), Just("\n")],
    ) {
        let body = format!("{{{}}}{trailing}", parts.join(","));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let response = runtime.block_on(chat(&body));
        if response.status == StatusCode::OK {
            let (seen, forwarded) = response.body.split_once('|').unwrap();
            prop_assert_eq!(forwarded, body.as_str(), "byte for byte");
            let parsed: serde_json::Value = serde_json::from_str(forwarded).expect("a passed body is JSON");
            let model = parsed.get("model").and_then(|m| m.as_str()).unwrap_or("");
            prop_assert_eq!(seen, model);
            prop_assert!(model.is_empty() || model == "gpt-4o-mini" || model.starts_with("claude-3-5-"));
        } else {
            prop_assert!(response.status.is_client_error(), "{}", response.status);
        }
    }
}

#[tokio::test]
async fn a_path_that_could_hide_or_move_the_model_is_refused() {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", TEAM).models(["gpt-4o-mini", "gemini-1.5-flash"]))
        .unwrap();
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys,
    );
    let service = app(layer.clone().read_model_bodies(1 << 20));
    for path in [
        // A path model beside dot segments: a URL parser resolves it to
        // /v1/chat/completions, whose body's model was never read.
        "/v1/models/gpt-4o-mini:x/../../chat/completions",
        "/v1/models/gpt-4o-mini:x/%2e%2e/%2e%2e/chat/completions",
        // A Gemini model hidden from the check but not from a decoder.
        "/v1beta/models%2Fgemini-ultra:generateContent",
        "/v1beta/models/x/../gemini-ultra:generateContent",
        "/v1beta/models//gemini-ultra:generateContent",
        "/v1beta/models/gemini-1.5-flash:x:generateContent",
    ] {
        let request = from(
            "127.0.0.1:1",
            Method::POST,
            path,
            TEAM,
            &[("content-type", "application/json")],
            r#"{"model":"gpt-4o"}"#,
        );
        let response = answer(service.clone(), request).await;
        assert!(
            response.status.is_client_error(),
            "{path}: {}",
            response.status
        );
        assert_eq!(
            response.header("x-proxy-auth-error"),
            Some("model_unreadable"),
            "{path}"
        );
    }
    // Azure deployments and legacy engines name the model in the path too.
    for (path, status) in [
        (
            "/openai/deployments/gpt-4o/chat/completions",
            StatusCode::FORBIDDEN,
        ),
        (
            "/openai/deployments/gpt-4o-mini/chat/completions",
            StatusCode::OK,
        ),
        ("/v1/engines/davinci/completions", StatusCode::FORBIDDEN),
    ] {
        let request = from("127.0.0.1:1", Method::POST, path, TEAM, &[], "{}");
        assert_eq!(
            answer(service.clone(), request).await.status,
            status,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_heads_only_layer_and_its_check_refuse_a_body_they_cannot_see() {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", TEAM).models(["gpt-4o-mini"]))
        .unwrap();
    let layer = ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys,
    );
    // HTTP/2 sends a body without mentioning it in the head, on any method.
    let mut h2_get = get::<String>(
        "/v1/models",
        &[("authorization", &format!("Bearer {TEAM}"))],
    );
    *h2_get.version_mut() = http::Version::HTTP_2;
    *h2_get.body_mut() = r#"{"model":"gpt-4o"}"#.to_owned();
    let Decision::Reject(r) = layer.check(&h2_get) else {
        panic!("check must agree with the service")
    };
    assert_eq!(r.reason, RejectReason::ModelUnreadable);
    assert_eq!(
        send(layer.clone(), h2_get).await.reason(),
        Some("model_unreadable")
    );
    // An HTTP/1.1 GET without Content-Length has no body.
    let h1_get = get::<String>(
        "/v1/models",
        &[("authorization", &format!("Bearer {TEAM}"))],
    );
    assert!(layer.check(&h1_get).is_allowed());
    assert!(send(layer, h1_get).await.reached_inner());
}
