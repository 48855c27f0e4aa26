//! The limits through the layer, on this thread's stopped clock: refill
//! without sleeping, exact headers, state across policies.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, Layer, Service, ServiceExt};

use super::test_clock;
use super::*;
use crate::decision::Policy;
use crate::{
    Decision, KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, RejectReason,
    ResponseBody, SharedSecurityConfig,
};

type Answer = Response<ResponseBody<Full<Bytes>>>;

fn ok_service(
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone
{
    service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Full::from("ok"))) })
}

fn config() -> ProxySecurityConfig {
    ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin")
}

fn keys(new: NewKey) -> KeySet {
    let mut keys = KeySet::new();
    keys.add(new).unwrap();
    keys
}

fn request(key: &str, path: &str) -> Request<()> {
    Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .unwrap()
}

/// One request through `layer`, answered at once by the services here.
fn send(layer: &ProxyAuthLayer, key: &str, path: &str) -> Answer {
    layer
        .layer(ok_service())
        .oneshot(request(key, path))
        .now_or_never()
        .expect("answered at once")
        .unwrap()
}

fn header<'a>(response: &'a Answer, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn body(response: Answer) -> serde_json::Value {
    let bytes = response
        .into_body()
        .collect()
        .now_or_never()
        .unwrap()
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn rate_and_burst_then_refill_on_the_clock() {
    test_clock::set(Duration::from_secs(100));
    let layer =
        ProxyAuthLayer::with_keys(config(), keys(NewKey::new("ci", "sk-ci").rpm(120).burst(1)));
    assert_eq!(
        send(&layer, "sk-ci", "/v1/chat/completions").status(),
        StatusCode::OK
    );
    test_clock::advance(Duration::from_millis(100));
    let refused = send(&layer, "sk-ci", "/v1/chat/completions");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "x-proxy-auth-error"), Some("rate_limited"));
    assert_eq!(
        header(&refused, "retry-after"),
        Some("1"),
        "0.4 s rounded up"
    );
    assert_eq!(header(&refused, "retry-after-ms"), Some("400"));
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some("\"rpm\";q=120;w=60")
    );
    assert_eq!(header(&refused, "ratelimit"), Some("\"rpm\";r=0;t=1"));
    assert_eq!(header(&refused, "x-ratelimit-limit-requests"), Some("120"));
    assert_eq!(
        header(&refused, "x-ratelimit-remaining-requests"),
        Some("0")
    );
    assert_eq!(
        header(&refused, "x-ratelimit-reset-requests"),
        Some("400ms")
    );
    assert_eq!(
        header(&refused, "x-should-retry"),
        None,
        "a wait the SDKs honour"
    );
    let rejection = refused.extensions().get::<crate::Rejection>().unwrap();
    assert_eq!(
        rejection.limit,
        Some(Limited {
            kind: LimitKind::Rate,
            limit: 120,
            burst: 1,
            wait: Some(Duration::from_millis(400)),
            remaining: 0,
            reset: Some(Duration::from_millis(400)),
            budget: crate::Budget::Local,
        })
    );
    assert_eq!(rejection.label.as_deref(), Some("ci"));
    // Not a nanosecond early, then exactly one.
    test_clock::advance(Duration::from_millis(400) - Duration::from_nanos(1));
    assert_eq!(
        send(&layer, "sk-ci", "/v1/chat/completions").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    test_clock::advance(Duration::from_nanos(1));
    assert_eq!(send(&layer, "sk-ci", "/v1").status(), StatusCode::OK);
    assert_eq!(
        send(&layer, "sk-ci", "/v1").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn a_burst_passes_back_to_back_and_refills_one_per_interval() {
    test_clock::set(Duration::from_secs(5));
    let layer =
        ProxyAuthLayer::with_keys(config(), keys(NewKey::new("b", "sk-b").rpm(60).burst(3)));
    for _ in 0..3 {
        assert_eq!(send(&layer, "sk-b", "/v1").status(), StatusCode::OK);
    }
    let refused = send(&layer, "sk-b", "/v1");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after-ms"), Some("1000"));
    assert_eq!(header(&refused, "x-ratelimit-reset-requests"), Some("3s"));
    assert_eq!(header(&refused, "ratelimit"), Some("\"rpm\";r=0;t=3"));
    test_clock::advance(Duration::from_secs(2));
    assert_eq!(send(&layer, "sk-b", "/v1").status(), StatusCode::OK);
    assert_eq!(send(&layer, "sk-b", "/v1").status(), StatusCode::OK);
    assert_eq!(
        send(&layer, "sk-b", "/v1").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn check_reports_a_limit_without_spending_from_it() {
    test_clock::set(Duration::from_secs(1));
    let layer = ProxyAuthLayer::with_keys(
        config(),
        keys(NewKey::new("c", "sk-c").rpm(60).burst(2).max_concurrent(1)),
    );
    for _ in 0..100 {
        assert!(layer.check(&request("sk-c", "/v1")).is_allowed());
    }
    assert_eq!(send(&layer, "sk-c", "/v1").status(), StatusCode::OK);
    assert_eq!(send(&layer, "sk-c", "/v1").status(), StatusCode::OK);
    for _ in 0..3 {
        let Decision::Reject(rejection) = layer.check(&request("sk-c", "/v1")) else {
            panic!("the burst is spent");
        };
        assert_eq!(rejection.reason, RejectReason::RateLimited);
        assert_eq!(rejection.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(rejection.limit.unwrap().wait, Some(Duration::from_secs(1)));
    }
    // check() holds no slot either.
    test_clock::advance(Duration::from_secs(60));
    let held = send(&layer, "sk-c", "/v1");
    let Decision::Reject(rejection) = layer.check(&request("sk-c", "/v1")) else {
        panic!("the one slot is held");
    };
    assert_eq!(rejection.reason, RejectReason::ConcurrencyLimited);
    drop(held);
    assert!(layer.check(&request("sk-c", "/v1")).is_allowed());
}

#[test]
fn a_refused_key_spends_nothing_and_an_unknown_one_has_no_state() {
    test_clock::set(Duration::from_secs(1));
    let new = NewKey::new("r", "sk-r")
        .routes(["/v1/chat"])
        .rpm(60)
        .burst(1)
        .max_concurrent(1);
    let layer = ProxyAuthLayer::with_keys(config(), keys(new));
    for _ in 0..5 {
        assert_eq!(
            send(&layer, "sk-r", "/v1/files").status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send(&layer, "sk-wrong", "/v1/chat").status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        send(&layer, "sk-r", "/v1/chat/completions").status(),
        StatusCode::OK
    );
    // Only the one key's limiter exists; the admin key has none.
    let policy = Policy::build(config(), keys(NewKey::new("r", "sk-r").rpm(1)), None);
    assert!(policy.limiter_of(None).is_none());
    assert!(policy.limiter_of(Some("r")).is_some());
}

#[test]
fn defaults_and_overrides_field_by_field() {
    let defaults = Limits::new(Some(60), Some(10), Some(4)).unwrap();
    let mut set = KeySet::new();
    set.add(NewKey::new("own-rate", "sk-1").rpm(600)).unwrap();
    set.add(NewKey::new("own-slots", "sk-2").max_concurrent(1))
        .unwrap();
    set.add(NewKey::new("plain", "sk-3")).unwrap();
    let policy = Policy::build(config().limits(defaults), set, None);
    let limits = |label| policy.limiter_of(label).unwrap().limits;
    assert_eq!(
        limits(Some("own-rate")),
        Limits::new(Some(600), None, Some(4)).unwrap(),
        "its own rpm, burst = its rpm"
    );
    assert_eq!(
        limits(Some("own-slots")),
        Limits::new(Some(60), Some(10), Some(1)).unwrap()
    );
    assert_eq!(limits(Some("plain")), defaults);
    assert_eq!(limits(None), defaults, "the plain api_key");
    // The default api_key is limited too.
    test_clock::set(Duration::from_secs(1));
    let layer = ProxyAuthLayer::new(config().limits(Limits::new(Some(60), Some(1), None).unwrap()));
    assert_eq!(send(&layer, "sk-admin", "/v1").status(), StatusCode::OK);
    let refused = send(&layer, "sk-admin", "/v1");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let message = body(refused)["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("the proxy's api_key may make 60 requests per minute"),
        "{message}"
    );
}

#[test]
fn invalid_limits_are_errors_never_an_unlimited_key() {
    let mut set = KeySet::new();
    for new in [
        NewKey::new("a", "sk-a").rpm(0),
        NewKey::new("a", "sk-a").max_concurrent(0),
        NewKey::new("a", "sk-a").burst(5),
        NewKey::new("a", "sk-a").rpm(MAX + 1),
        NewKey::new("a", "sk-a").rpm(10).burst(0),
    ] {
        let err = set.add(new).unwrap_err();
        assert!(matches!(err, crate::KeySetError::BadLimits { .. }), "{err}");
        assert!(err.to_string().contains("\"a\""), "{err}");
    }
    assert!(set.is_empty());
    let err: Result<ProxySecurityConfig, _> =
        serde_json::from_str(r#"{"api_key":"k","limits":{"rpm":0}}"#);
    assert!(err.unwrap_err().to_string().contains("rpm = 0"));
    let err: Result<ProxySecurityConfig, _> =
        serde_json::from_str(r#"{"api_key":"k","limits":{"rpm":1,"bust":2}}"#);
    assert!(err.unwrap_err().to_string().contains("unknown field"));
    let err: Result<KeySet, _> = serde_json::from_str(r#"[{"label":"x","key":"sk-x","burst":3}]"#);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("burst is set without rpm"));
}

#[test]
fn serde_forms_round_trip() {
    let config: ProxySecurityConfig =
        serde_json::from_str(r#"{"api_key":"k","limits":{"rpm":60,"max_concurrent":4}}"#).unwrap();
    assert_eq!(config.limits, Limits::new(Some(60), None, Some(4)).unwrap());
    let json = serde_json::to_string(&config).unwrap();
    assert!(
        json.contains(r#""limits":{"rpm":60,"burst":60,"max_concurrent":4}"#),
        "{json}"
    );
    let plain =
        serde_json::to_string(&ProxySecurityConfig::new(ProxyAuthMode::Strict, "k")).unwrap();
    assert!(!plain.contains("limits"), "{plain}");
    let set: KeySet = serde_json::from_str(
        r#"[{"label":"x","key":"sk-x","rpm":120,"burst":1,"max_concurrent":2}]"#,
    )
    .unwrap();
    assert_eq!(
        set.get("x").unwrap().limits(),
        Limits::new(Some(120), Some(1), Some(2)).unwrap()
    );
    let again: KeySet = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
    assert_eq!(
        again.get("x").unwrap().limits(),
        set.get("x").unwrap().limits()
    );
}

#[test]
fn state_is_kept_across_unrelated_changes_and_freed_on_removal() {
    let shared = SharedSecurityConfig::with_keys(
        config().limits(Limits::new(Some(60), None, None).unwrap()),
        keys(
            NewKey::new("ci", "sk-ci")
                .rpm(60)
                .burst(1)
                .max_concurrent(2),
        ),
    );
    let limiter =
        |shared: &SharedSecurityConfig, label| shared.policy().limiter_of(label).cloned().unwrap();
    let first = limiter(&shared, Some("ci"));
    let admin = limiter(&shared, None);
    // A rotation of other keys, a new config, the same set written anew.
    shared
        .update_keys(|k| k.insert("other", "sk-other"))
        .unwrap();
    shared
        .update(|c| c.auth_mode = ProxyAuthMode::AllExceptHealth)
        .unwrap();
    shared
        .store_with_keys(
            config().limits(Limits::new(Some(60), None, None).unwrap()),
            keys(
                NewKey::new("ci", "sk-ci-rotated")
                    .rpm(60)
                    .burst(1)
                    .max_concurrent(2),
            ),
        )
        .unwrap();
    assert!(limiter(&shared, Some("ci")).shares_state_with(&first));
    assert!(limiter(&shared, None).shares_state_with(&admin));
    // Its own limits changed: still its state (no fresh burst), and the
    // requests in flight still counted.
    shared
        .update_keys(|k| k.add(NewKey::new("ci", "sk-ci").rpm(30).max_concurrent(8)))
        .unwrap();
    let changed = limiter(&shared, Some("ci"));
    assert_eq!(
        changed.limits,
        Limits::new(Some(30), None, Some(8)).unwrap()
    );
    assert!(changed.shares_state_with(&first));
    // Removed: freed with the last policy that held it.
    let weak: Weak<InFlight> = Arc::downgrade(first.in_flight().unwrap());
    drop((first, changed));
    shared
        .update_keys(|k| {
            k.remove("ci");
            Ok(())
        })
        .unwrap();
    assert!(shared.policy().limiter_of(Some("ci")).is_none());
    assert!(weak.upgrade().is_none(), "the removed key's state is freed");
}

#[test]
fn a_concurrency_slot_is_held_by_the_body_to_its_end() {
    let layer =
        ProxyAuthLayer::with_keys(config(), keys(NewKey::new("s", "sk-s").max_concurrent(1)));
    let mut first = send(&layer, "sk-s", "/v1");
    assert_eq!(first.status(), StatusCode::OK);
    let refused = send(&layer, "sk-s", "/v1");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&refused, "x-proxy-auth-error"),
        Some("concurrency_limited")
    );
    assert_eq!(header(&refused, "retry-after"), Some("1"));
    assert_eq!(header(&refused, "retry-after-ms"), Some("1000"));
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some("\"concurrency\";q=1;qu=\"concurrent-requests\"")
    );
    assert_eq!(
        header(&refused, "x-ratelimit-limit-requests"),
        None,
        "not a rate"
    );
    // Read to its end (the body itself still alive): the slot is free.
    let body = first.body_mut();
    while let Some(frame) = body.frame().now_or_never().unwrap() {
        frame.unwrap();
    }
    let second = send(&layer, "sk-s", "/v1");
    assert_eq!(second.status(), StatusCode::OK);
    // Dropped unread (a client that hung up): free too.
    drop(second);
    assert_eq!(send(&layer, "sk-s", "/v1").status(), StatusCode::OK);
}

#[test]
fn a_dropped_or_failed_future_gives_its_slot_back() {
    let layer =
        ProxyAuthLayer::with_keys(config(), keys(NewKey::new("s", "sk-s").max_concurrent(1)));
    // Never answers: the future is dropped before it is ready.
    let pending = service_fn(|_: Request<()>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let mut service = layer.layer(pending);
    let future = service.call(request("sk-s", "/v1"));
    assert!(!layer.check(&request("sk-s", "/v1")).is_allowed());
    drop(future);
    assert!(layer.check(&request("sk-s", "/v1")).is_allowed());
    // Fails: the error gives it back at once.
    let failing =
        service_fn(|_: Request<()>| async { Err::<Response<Full<Bytes>>, _>("upstream down") });
    let mut service = layer.layer(failing);
    let mut future = Box::pin(service.call(request("sk-s", "/v1")));
    assert!(future.as_mut().now_or_never().unwrap().is_err());
    assert!(layer.check(&request("sk-s", "/v1")).is_allowed());
}

#[test]
fn every_shape_names_the_label_and_the_limit_never_the_key() {
    test_clock::set(Duration::from_secs(1));
    let layer = ProxyAuthLayer::with_keys(
        config(),
        keys(
            NewKey::new("team \"a\"", "sk-secret-team-a")
                .rpm(60)
                .burst(1),
        ),
    );
    let request_with = |name: &'static str, path: &str| {
        let request = Request::post(path)
            .header(name, "sk-secret-team-a")
            .body(())
            .unwrap();
        layer
            .layer(ok_service())
            .oneshot(request)
            .now_or_never()
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        request_with("authorization", "/v1").status(),
        StatusCode::OK
    );
    let openai = request_with("authorization", "/v1/chat/completions");
    let anthropic = request_with("x-api-key", "/v1/messages");
    let gemini = request_with("x-goog-api-key", "/v1beta/models/g:generateContent");
    for response in [&openai, &anthropic, &gemini] {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(response, "content-type"), Some("application/json"));
    }
    let openai = body(openai);
    let error = &openai["error"];
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert_eq!(error["proxy_auth"]["reason"], "rate_limited");
    assert_eq!(error["proxy_auth"]["label"], "team \"a\"");
    assert_eq!(error["proxy_auth"]["limit"], "rpm");
    assert_eq!(error["proxy_auth"]["value"], 60);
    assert_eq!(error["proxy_auth"]["wait_ms"], 1000);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("not by the upstream"), "{message}");
    assert!(message.contains(r#"the key labelled "team \"a\"" may make 60 requests per minute, 1 of them back to back"#), "{message}");
    assert!(message.contains("retry in 1000 ms"), "{message}");
    let anthropic = body(anthropic);
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "rate_limit_error");
    let gemini = body(gemini);
    assert_eq!(gemini["error"]["code"], 429);
    assert_eq!(gemini["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(gemini["error"]["details"][0]["reason"], "RATE_LIMITED");
    assert_eq!(gemini["error"]["details"][0]["metadata"]["value"], "60");
    assert_eq!(gemini["error"]["details"][1]["retryDelay"], "1.000s");
    for text in [
        openai.to_string(),
        anthropic.to_string(),
        gemini.to_string(),
    ] {
        assert!(!text.contains("sk-secret"), "{text}");
    }
}

#[test]
fn a_wait_longer_than_the_sdks_honour_says_do_not_retry() {
    // rpm alone never makes a wait over a minute; a debt carried into a
    // smaller burst does: 5 requests at 1 rpm, then burst 1.
    test_clock::set(Duration::from_secs(10));
    let shared = SharedSecurityConfig::with_keys(
        config(),
        keys(NewKey::new("slow", "sk-slow").rpm(1).burst(5)),
    );
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    for _ in 0..5 {
        assert_eq!(send(&layer, "sk-slow", "/v1").status(), StatusCode::OK);
    }
    shared
        .update_keys(|k| k.add(NewKey::new("slow", "sk-slow").rpm(1).burst(1)))
        .unwrap();
    let refused = send(&layer, "sk-slow", "/v1");
    assert_eq!(header(&refused, "retry-after"), Some("300"));
    assert_eq!(header(&refused, "x-should-retry"), Some("false"));
    assert_eq!(header(&refused, "x-ratelimit-reset-requests"), Some("5m0s"));
}

#[test]
fn accepted_responses_get_ietf_fields_only_when_asked() {
    test_clock::set(Duration::from_secs(1));
    let set = keys(NewKey::new("h", "sk-h").rpm(60).burst(3).max_concurrent(2));
    let plain = ProxyAuthLayer::with_keys(config(), set.clone());
    let accepted = send(&plain, "sk-h", "/v1");
    assert!(accepted
        .headers()
        .keys()
        .all(|name| !name.as_str().contains("ratelimit")));
    let asked = ProxyAuthLayer::with_keys(config(), set).rate_limit_headers(true);
    let accepted = send(&asked, "sk-h", "/v1");
    assert_eq!(
        header(&accepted, "ratelimit-policy"),
        Some("\"rpm\";q=60;w=60, \"concurrency\";q=2;qu=\"concurrent-requests\"")
    );
    assert_eq!(
        header(&accepted, "ratelimit"),
        Some("\"rpm\";r=2;t=1, \"concurrency\";r=1")
    );
    assert_eq!(header(&accepted, "x-ratelimit-limit-requests"), None);
}

#[test]
fn slots_are_counted_by_the_limiter() {
    let limiter = KeyLimiter::build(Limits::new(None, None, Some(2)).unwrap(), None).unwrap();
    let a = limiter.admit(Spend::TakeAndReport).unwrap();
    assert!(a.slot.is_held());
    assert_eq!(a.report.as_ref().unwrap().concurrency, Some((2, 1)));
    let b = limiter.admit(Spend::Take).unwrap();
    assert!(b.report.is_none(), "a report only when asked for");
    assert_eq!(
        limiter.admit(Spend::Take).unwrap_err().kind,
        LimitKind::Concurrency
    );
    drop((a, b));
    assert_eq!(limiter.in_flight().unwrap().current(), 0);
    // Refused by the rate after the slot was taken: the slot is given back.
    test_clock::set(Duration::from_secs(1));
    let both = KeyLimiter::build(Limits::new(Some(60), Some(1), Some(1)).unwrap(), None).unwrap();
    let held = both.admit(Spend::Take).unwrap();
    drop(held);
    assert_eq!(both.admit(Spend::Take).unwrap_err().kind, LimitKind::Rate);
    assert_eq!(both.in_flight().unwrap().current(), 0);
}
