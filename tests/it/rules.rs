//! One test (or a few) per rule of the crate's contract, through the public
//! API and `tower::ServiceExt::oneshot`, as a user's service would run.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use proxy_auth::{
    Authenticated, KeySource, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
    SharedSecurityConfig,
};
use tower::{service_fn, Layer, Service, ServiceExt};

use crate::common::{self, get, request, KEY};

struct Outcome {
    status: StatusCode,
    reason: Option<String>,
    www_authenticate: Option<String>,
    body: String,
    inner_called: bool,
    authenticated_by: Option<KeySource>,
}

/// Sends one request through a fresh layer built from `layer`, recording
/// whether the inner service was reached and what extension it saw. The
/// request also goes through the default layer (no `insert_identity`),
/// which must give the same answer and no extension.
async fn send_with(layer: ProxyAuthLayer, request: Request<String>) -> Outcome {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    let plain = send_once(layer.clone().insert_identity(false), copy).await;
    let outcome = send_once(layer.insert_identity(true), request).await;
    assert_eq!(
        (
            plain.status,
            &plain.reason,
            &plain.body,
            plain.inner_called,
            plain.authenticated_by
        ),
        (
            outcome.status,
            &outcome.reason,
            &outcome.body,
            outcome.inner_called,
            None
        ),
        "the default layer answers alike, without the extension"
    );
    outcome
}

async fn send_once(layer: ProxyAuthLayer, request: Request<String>) -> Outcome {
    let sent = common::send(layer, request).await;
    Outcome {
        status: sent.status,
        reason: sent.reason().map(str::to_owned),
        www_authenticate: sent.header("www-authenticate").map(str::to_owned),
        inner_called: sent.reached_inner(),
        authenticated_by: sent.identity().map(|identity| identity.source),
        body: sent.body,
    }
}

async fn send(config: &ProxySecurityConfig, request: Request<String>) -> Outcome {
    send_with(ProxyAuthLayer::new(config.clone()), request).await
}

fn config(mode: ProxyAuthMode, key: &str) -> ProxySecurityConfig {
    ProxySecurityConfig::new(mode, key)
}

fn assert_passed(outcome: &Outcome) {
    assert_eq!(outcome.status, StatusCode::OK, "body: {}", outcome.body);
    assert!(outcome.inner_called);
    assert_eq!(outcome.body, "inner");
}

fn assert_rejected(outcome: &Outcome, reason: &str) {
    assert_eq!(outcome.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        outcome.reason.as_deref(),
        Some(reason),
        "body: {}",
        outcome.body
    );
    assert!(
        !outcome.inner_called,
        "a rejected request must not reach the inner service"
    );
}

/// Every mode, with and without LAN access: the full set of configurations.
fn every_config(key: &str) -> Vec<ProxySecurityConfig> {
    let mut all = Vec::new();
    for mode in ProxyAuthMode::ALL {
        for lan in [false, true] {
            all.push(config(mode, key).allow_lan_access(lan));
        }
    }
    all
}

// A preflight is never judged.
#[tokio::test]
async fn options_passes_in_every_mode_without_a_key() {
    for key in [KEY, ""] {
        for config in every_config(key) {
            for path in ["/v1/chat/completions", "/healthz"] {
                let outcome = send(&config, request(Method::OPTIONS, path, &[])).await;
                assert_passed(&outcome);
            }
            // Even with a wrong key attached, a preflight is not judged.
            assert_passed(
                &send(
                    &config,
                    request(Method::OPTIONS, "/v1", &[("x-api-key", "nope")]),
                )
                .await,
            );
        }
    }
}

#[tokio::test]
async fn effective_off_passes_everything() {
    for config in [
        config(ProxyAuthMode::Off, KEY),
        config(ProxyAuthMode::Auto, KEY).allow_lan_access(false),
    ] {
        assert_eq!(config.effective_auth_mode(), ProxyAuthMode::Off);
        for req in [
            get("/v1/models", &[]),
            get("/healthz", &[]),
            get("/v1/models", &[("authorization", "Bearer wrong")]),
            request(Method::POST, "/v1/messages", &[("x-api-key", "")]),
        ] {
            let outcome = send(&config, req).await;
            assert_passed(&outcome);
            assert_eq!(
                outcome.authenticated_by, None,
                "nothing was authenticated in off mode"
            );
        }
    }
    // Off with an empty key is fine too: no key is needed.
    assert_passed(&send(&config(ProxyAuthMode::Off, ""), get("/v1", &[])).await);
}

// By default, exactly /healthz (query aside) and nothing that resembles it.
#[tokio::test]
async fn all_except_health_exempts_only_healthz() {
    for config in [
        config(ProxyAuthMode::AllExceptHealth, KEY),
        config(ProxyAuthMode::Auto, KEY).allow_lan_access(true),
    ] {
        assert_passed(&send(&config, get("/healthz", &[])).await);
        assert_passed(&send(&config, get("/healthz?probe=1", &[])).await);
        for path in [
            "/v1/models",
            "/healthz/",
            "/HEALTHZ",
            "/healthzz",
            "/",
            "/%68ealthz",
        ] {
            assert_rejected(&send(&config, get(path, &[])).await, "missing_key");
        }
        let outcome = send(
            &config,
            get("/v1/models", &[("authorization", &format!("Bearer {KEY}"))]),
        )
        .await;
        assert_passed(&outcome);
    }
}

#[tokio::test]
async fn exempt_paths_are_configurable() {
    let config = config(ProxyAuthMode::AllExceptHealth, KEY);
    let layer = || ProxyAuthLayer::new(config.clone()).exempt_paths(["/readyz", "/livez"]);
    assert_passed(&send_with(layer(), get("/readyz", &[])).await);
    assert_passed(&send_with(layer(), get("/livez", &[])).await);
    // Replacing the list replaces /healthz too.
    assert_rejected(
        &send_with(layer(), get("/healthz", &[])).await,
        "missing_key",
    );
    let none = ProxyAuthLayer::new(config.clone()).exempt_paths(Vec::<String>::new());
    assert_rejected(&send_with(none, get("/healthz", &[])).await, "missing_key");
}

#[tokio::test]
async fn strict_requires_the_key_for_healthz() {
    let config = config(ProxyAuthMode::Strict, KEY);
    assert_rejected(&send(&config, get("/healthz", &[])).await, "missing_key");
    let outcome = send(&config, get("/healthz", &[("x-api-key", KEY)])).await;
    assert_passed(&outcome);
    assert_eq!(outcome.authenticated_by, Some(KeySource::XApiKey));
    // Custom exempt paths do not apply in strict mode either.
    let layer = ProxyAuthLayer::new(config.clone()).exempt_paths(["/readyz"]);
    assert_rejected(&send_with(layer, get("/readyz", &[])).await, "missing_key");
}

// An empty configured key is tested in logging.rs, which also captures the
// error log line it must produce.

// The first key header present (authorization, x-api-key, x-goog-api-key,
// in that order) is the one judged, right or wrong.
#[tokio::test]
async fn the_first_present_key_header_is_judged() {
    let config = config(ProxyAuthMode::Strict, KEY);
    let bearer = format!("Bearer {KEY}");
    // Each source alone works and is reported.
    for (name, value, source) in [
        ("authorization", bearer.as_str(), KeySource::Authorization),
        ("x-api-key", KEY, KeySource::XApiKey),
        ("x-goog-api-key", KEY, KeySource::XGoogApiKey),
    ] {
        let outcome = send(&config, get("/v1", &[(name, value)])).await;
        assert_passed(&outcome);
        assert_eq!(outcome.authenticated_by, Some(source));
    }
    // Priority: authorization > x-api-key > x-goog-api-key.
    let outcome = send(
        &config,
        get("/v1", &[("x-goog-api-key", "wrong"), ("x-api-key", KEY)]),
    )
    .await;
    assert_eq!(outcome.authenticated_by, Some(KeySource::XApiKey));
    let outcome = send(
        &config,
        get("/v1", &[("x-api-key", "wrong"), ("authorization", &bearer)]),
    )
    .await;
    assert_eq!(outcome.authenticated_by, Some(KeySource::Authorization));
    // A present but wrong, empty or non-ASCII earlier header is not skipped.
    for bad in ["wrong", "", "Bearer ", "Bearer wrong"] {
        let outcome = send(
            &config,
            get(
                "/v1",
                &[
                    ("authorization", bad),
                    ("x-api-key", KEY),
                    ("x-goog-api-key", KEY),
                ],
            ),
        )
        .await;
        assert_rejected(&outcome, "invalid_key");
    }
    let outcome = send(
        &config,
        get("/v1", &[("x-api-key", "wrong"), ("x-goog-api-key", KEY)]),
    )
    .await;
    assert_rejected(&outcome, "invalid_key");
    assert!(
        outcome.body.contains("x-api-key header"),
        "{}",
        outcome.body
    );
    let mut req = get("/v1", &[("x-api-key", KEY)]);
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_bytes("Bearer ключ".as_bytes()).unwrap(),
    );
    assert_rejected(&send(&config, req).await, "invalid_key");
}

#[tokio::test]
async fn key_header_names_are_case_insensitive() {
    let config = config(ProxyAuthMode::Strict, KEY);
    for name in [
        "Authorization",
        "AUTHORIZATION",
        "X-Api-Key",
        "X-GOOG-API-KEY",
    ] {
        let value = if name.eq_ignore_ascii_case("authorization") {
            format!("Bearer {KEY}")
        } else {
            KEY.to_owned()
        };
        let mut req = get("/v1", &[]);
        req.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
        assert_passed(&send(&config, req).await);
    }
}

#[tokio::test]
async fn bearer_prefix_is_optional_case_insensitive_and_stripped_once() {
    let config = config(ProxyAuthMode::Strict, KEY);
    for accepted in [
        format!("Bearer {KEY}"),
        format!("bearer {KEY}"),
        format!("BEARER {KEY}"),
        KEY.to_owned(),
    ] {
        assert_passed(&send(&config, get("/v1", &[("authorization", &accepted)])).await);
    }
    for refused in [
        format!("Bearer{KEY}"),
        format!("Bearer  {KEY}"),
        format!("Bearer\t{KEY}"),
        format!("Bearer Bearer {KEY}"),
        format!("Basic {KEY}"),
        format!("Token {KEY}"),
    ] {
        assert_rejected(
            &send(&config, get("/v1", &[("authorization", &refused)])).await,
            "invalid_key",
        );
    }
    // Stripped once only: a key that itself starts with "Bearer " works when
    // sent with the scheme.
    let odd = config_with_key("Bearer inner");
    assert_passed(
        &send(
            &odd,
            get("/v1", &[("authorization", "Bearer Bearer inner")]),
        )
        .await,
    );
    assert_rejected(
        &send(&odd, get("/v1", &[("authorization", "Bearer inner")])).await,
        "invalid_key",
    );
}

fn config_with_key(key: &str) -> ProxySecurityConfig {
    config(ProxyAuthMode::Strict, key)
}

#[tokio::test]
async fn an_empty_presented_key_never_matches() {
    for configured in [KEY, "", " "] {
        let config = config(ProxyAuthMode::Strict, configured);
        for (name, value) in [
            ("authorization", ""),
            ("authorization", "Bearer "),
            ("x-api-key", ""),
            ("x-goog-api-key", ""),
        ] {
            let outcome = send(&config, get("/v1", &[(name, value)])).await;
            assert_eq!(
                outcome.status,
                StatusCode::UNAUTHORIZED,
                "{configured:?} {name}: {value:?}"
            );
            assert!(!outcome.inner_called);
        }
    }
}

// Constant time is covered by `compare` unit tests for correctness
// and by tests/timing/ for timing. Here: keys that share a prefix or are a
// prefix of each other never match.
#[tokio::test]
async fn prefixes_and_extensions_of_the_key_do_not_match() {
    let config = config(ProxyAuthMode::Strict, KEY);
    for wrong in [
        &KEY[..KEY.len() - 1],
        &format!("{KEY}0"),
        &KEY[..3],
        &format!("{}X", &KEY[..KEY.len() - 1]),
    ] {
        assert_rejected(
            &send(&config, get("/v1", &[("x-api-key", wrong)])).await,
            "invalid_key",
        );
    }
}

// OpenAI's, Anthropic's or Gemini's error shape, chosen by path or header.
#[tokio::test]
async fn rejections_take_each_apis_error_shape() {
    let config = config(ProxyAuthMode::Strict, KEY);
    let json = |o: &Outcome| serde_json::from_str::<serde_json::Value>(&o.body).unwrap();

    let openai = send(
        &config,
        request(
            Method::POST,
            "/v1/chat/completions",
            &[("authorization", "Bearer wrong")],
        ),
    )
    .await;
    assert_rejected(&openai, "invalid_key");
    assert_eq!(openai.www_authenticate.as_deref(), Some("Bearer"));
    let body = json(&openai);
    assert_eq!(body["error"]["code"], "invalid_key");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization header"));

    for anthropic in [
        send(&config, request(Method::POST, "/v1/messages", &[])).await,
        send(
            &config,
            request(Method::POST, "/anything", &[("x-api-key", "wrong")]),
        )
        .await,
    ] {
        assert_eq!(anthropic.status, StatusCode::UNAUTHORIZED);
        let body = json(&anthropic);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "authentication_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proxy-auth"));
    }

    for gemini in [
        send(
            &config,
            request(
                Method::POST,
                "/v1beta/models/gemini-2.5-pro:generateContent",
                &[],
            ),
        )
        .await,
        send(
            &config,
            request(Method::POST, "/anything", &[("x-goog-api-key", "wrong")]),
        )
        .await,
    ] {
        assert_eq!(gemini.status, StatusCode::UNAUTHORIZED);
        let body = json(&gemini);
        assert_eq!(body["error"]["code"], 401);
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    }

    let missing = send(&config, get("/v1/models", &[])).await;
    assert_rejected(&missing, "missing_key");
    assert_eq!(json(&missing)["error"]["code"], "missing_key");
    assert_rejected(
        &send(&config_with_key(""), get("/v1/models", &[])).await,
        "no_key_configured",
    );
}

// The tower contract: poll_ready passes through; layer and service are Clone.
#[tokio::test]
async fn poll_ready_is_the_inner_services() {
    use std::task::{Context, Poll};

    #[derive(Clone)]
    struct Gate(Arc<AtomicUsize>);
    impl Service<Request<String>> for Gate {
        type Response = Response<String>;
        type Error = &'static str;
        type Future = std::future::Ready<Result<Response<String>, &'static str>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            match self.0.load(Ordering::SeqCst) {
                0 => Poll::Pending,
                1 => Poll::Ready(Ok(())),
                _ => Poll::Ready(Err("inner failed")),
            }
        }
        fn call(&mut self, _: Request<String>) -> Self::Future {
            std::future::ready(Ok(Response::new("inner".into())))
        }
    }

    let state = Arc::new(AtomicUsize::new(0));
    let mut service =
        ProxyAuthLayer::new(config(ProxyAuthMode::Off, KEY)).layer(Gate(state.clone()));
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(service.poll_ready(&mut cx).is_pending());
    state.store(1, Ordering::SeqCst);
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    state.store(2, Ordering::SeqCst);
    assert!(matches!(
        service.poll_ready(&mut cx),
        Poll::Ready(Err("inner failed"))
    ));
}

#[tokio::test]
async fn layer_and_service_are_clone() {
    let layer = ProxyAuthLayer::new(config(ProxyAuthMode::Strict, KEY));
    let service = layer.clone().layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let copy = service.clone();
    let response = copy.oneshot(get("/", &[("x-api-key", KEY)])).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = service.oneshot(get("/", &[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn hot_reload_takes_effect_on_the_next_request() {
    let shared = SharedSecurityConfig::new(config(ProxyAuthMode::Strict, "sk-old"));
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    assert_passed(&send_with(layer.clone(), get("/v1", &[("x-api-key", "sk-old")])).await);

    shared
        .store(config(ProxyAuthMode::Strict, "sk-new"))
        .unwrap();
    assert_rejected(
        &send_with(layer.clone(), get("/v1", &[("x-api-key", "sk-old")])).await,
        "invalid_key",
    );
    assert_passed(&send_with(layer.clone(), get("/v1", &[("x-api-key", "sk-new")])).await);

    shared.update(|c| c.auth_mode = ProxyAuthMode::Off).unwrap();
    assert_passed(&send_with(layer.clone(), get("/v1", &[])).await);

    shared
        .update(|c| {
            c.auth_mode = ProxyAuthMode::Auto;
            c.allow_lan_access = true;
        })
        .unwrap();
    assert_passed(&send_with(layer.clone(), get("/healthz", &[])).await);
    assert_rejected(
        &send_with(layer.clone(), get("/v1", &[])).await,
        "missing_key",
    );

    // A service built before the change also sees it (no rebuild needed).
    let mut service = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    shared
        .store(config(ProxyAuthMode::Strict, "sk-third"))
        .unwrap();
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get("/v1", &[("x-api-key", "sk-third")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn check_explains_without_calling_the_inner_service() {
    use proxy_auth::{Allowed, Decision, RejectReason};
    let layer = ProxyAuthLayer::new(config(ProxyAuthMode::AllExceptHealth, KEY));
    assert_eq!(
        layer.check(&get::<()>("/healthz", &[])),
        Decision::Allow(Allowed::ExemptPath)
    );
    assert!(matches!(
        layer.check(&get::<()>("/v1", &[("x-goog-api-key", KEY)])),
        Decision::Allow(Allowed::Key(who)) if who.source == KeySource::XGoogApiKey && who.label.is_none()
    ));
    let Decision::Reject(rejection) = layer.check(&get::<()>("/v1", &[("x-api-key", "no")])) else {
        panic!("wrong key must be rejected");
    };
    assert_eq!(rejection.reason, RejectReason::InvalidKey);
    assert_eq!(rejection.source, Some(KeySource::XApiKey));
    assert_eq!(rejection.mode, ProxyAuthMode::AllExceptHealth);
}

#[tokio::test]
async fn identity_extension_only_when_asked() {
    let seen = Arc::new(Mutex::new(None));
    let inner = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            *seen.lock().unwrap() = Some(req.extensions().get::<Authenticated>().is_some());
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        })
    };
    let service = ProxyAuthLayer::new(config(ProxyAuthMode::Strict, KEY)).layer(inner);
    service
        .oneshot(get("/", &[("x-api-key", KEY)]))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(false));
}
