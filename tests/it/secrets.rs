//! Secrets never leak: `Debug`/`Display` of every public type, every
//! rejection (status line, headers, JSON body) and every log line emitted
//! while rejecting must not contain the configured key or the presented one.
//!
//! Log lines are captured with a `tracing-subscriber` fmt layer at TRACE, all
//! targets, fields included, so a key passed as any field would show.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Request, Uri};
use http_body_util::BodyExt;
use proxy_auth::{
    Authenticated, Decision, KeyProblem, KeySet, KeySource, ProxyAuthLayer, ProxyAuthMode,
    ProxySecurityConfig, RejectReason, SharedSecurityConfig,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::common;
use crate::model;

/// The configured key. Every marker below is a distinctive part of a key:
/// finding one anywhere means (part of) a key leaked.
const CONFIGURED: &str = "sk-CONFIGURED-secret-7Q2x";
/// A key a client presents.
const PRESENTED: &str = "sk-PRESENTED-secret-9Zp4";
/// Keys in a `KeySet`: one valid, one expired (which clients present).
const NAMED: &str = "sk-NAMED-secret-3Kv8";
const EXPIRED: &str = "sk-EXPIRED-secret-5Wm1";
const MARKERS: [&str; 8] = [
    "CONFIGURED-secret",
    "PRESENTED-secret",
    "NAMED-secret",
    "EXPIRED-secret",
    "secret-7Q2",
    "secret-9Zp",
    "secret-3Kv",
    "secret-5Wm",
];

fn leaked(text: &str) -> Vec<&'static str> {
    MARKERS
        .iter()
        .copied()
        .filter(|m| text.contains(m))
        .collect()
}

/// Runs `f` with every tracing event at any level it logs on this thread
/// captured as text (see [`common::Logs`] for why none is missed while other
/// tests run).
fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, String) {
    let logs = common::Logs::new(tracing::Level::TRACE);
    let result = logs.during(f);
    (result, logs.text())
}

/// Requests that get rejected for every reason and problem, with the key in
/// every header, in the query (Gemini clients put it there), and near
/// misses of the configured key.
fn hostile_requests() -> Vec<Request<()>> {
    let near_miss = {
        let mut k = CONFIGURED.to_owned();
        k.pop();
        k.push('y');
        k
    };
    let header_sets: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![],
        vec![("authorization", format!("Bearer {PRESENTED}").into_bytes())],
        vec![("authorization", format!("Basic {PRESENTED}").into_bytes())],
        vec![("authorization", format!("Bearer  {PRESENTED}").into_bytes())],
        vec![("authorization", near_miss.clone().into_bytes())],
        vec![("x-api-key", PRESENTED.as_bytes().to_vec())],
        vec![("x-goog-api-key", near_miss.into_bytes())],
        vec![("x-api-key", format!("{PRESENTED}\u{e9}").into_bytes())],
        vec![("x-api-key", [PRESENTED.as_bytes(), b"\xff"].concat())],
        vec![("x-api-key", Vec::new())],
        vec![("x-api-key", EXPIRED.as_bytes().to_vec())],
        vec![("authorization", format!("Bearer {EXPIRED}").into_bytes())],
        vec![
            ("authorization", format!("Bearer {CONFIGURED}").into_bytes()),
            ("authorization", format!("Bearer {PRESENTED}").into_bytes()),
        ],
        vec![
            ("x-goog-api-key", PRESENTED.as_bytes().to_vec()),
            ("x-goog-api-key", CONFIGURED.as_bytes().to_vec()),
        ],
    ];
    let uris = [
        "/v1/chat/completions".to_owned(),
        "/v1/messages".to_owned(),
        format!("/v1beta/models/gemini-pro:generateContent?key={PRESENTED}"),
        format!("http://proxy.local/v1/models?api_key={CONFIGURED}"),
        format!("/v1beta/models?key={EXPIRED}&alt=sse"),
        format!("/v1beta/models?key={PRESENTED}&key={CONFIGURED}"),
    ];
    let mut requests = Vec::new();
    for uri in &uris {
        for headers in &header_sets {
            let mut request = Request::new(());
            *request.method_mut() = Method::POST;
            *request.uri_mut() = Uri::try_from(uri.as_str()).expect("valid uri");
            for (name, value) in headers {
                request.headers_mut().append(
                    *name,
                    HeaderValue::from_bytes(value).expect("valid header value"),
                );
            }
            requests.push(request);
        }
    }
    requests
}

fn key_set() -> KeySet {
    let mut keys = KeySet::new();
    keys.insert("named", NAMED).expect("valid key");
    keys.insert_expiring(
        "expired",
        EXPIRED,
        SystemTime::now() - Duration::from_secs(60),
    )
    .expect("valid key");
    keys
}

#[test]
fn rejections_and_their_log_lines_never_contain_a_key() {
    let configs = [
        ProxySecurityConfig::new(ProxyAuthMode::Strict, CONFIGURED),
        ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, format!(" {CONFIGURED}\n")),
        // Triggers the "configured key is not ASCII" warning.
        ProxySecurityConfig::new(ProxyAuthMode::Strict, format!("{CONFIGURED}-ключ")),
        // Triggers the "no key configured" error line.
        ProxySecurityConfig::new(ProxyAuthMode::Strict, ""),
        // Triggers the "malformed digest" error line.
        ProxySecurityConfig::new(ProxyAuthMode::Strict, format!("sha256:{CONFIGURED}")),
        // A digest key.
        ProxySecurityConfig::new(ProxyAuthMode::Strict, proxy_auth::key_digest(CONFIGURED)),
    ];
    let mut rejections = 0;
    let mut seen = String::new();
    let ((), logs) = capture_logs(|| {
        for config in &configs {
            for variant in 0..4 {
                let layer = match variant {
                    0 => ProxyAuthLayer::new(config.clone()),
                    1 => ProxyAuthLayer::from_shared(SharedSecurityConfig::new(config.clone())),
                    // Named keys (the expired one is presented), query keys
                    // and stripping on.
                    2 => ProxyAuthLayer::with_keys(config.clone(), key_set())
                        .query_key(true)
                        .strip_credentials(true)
                        .insert_identity(true),
                    _ => ProxyAuthLayer::from_shared(SharedSecurityConfig::with_keys(
                        config.clone(),
                        key_set(),
                    ))
                    .query_key(true),
                };
                let mut service = layer.clone().layer(model::Echo);
                for request in hostile_requests() {
                    let decision = layer.check(&request);
                    seen.push_str(&format!("{decision:?} {decision:#?}\n"));
                    if let Decision::Reject(r) = decision {
                        seen.push_str(&format!("{} {:?} {:?}\n", r.reason, r.source, r.problem));
                    }
                    let future = service.call(request);
                    seen.push_str(&format!("{future:?}\n"));
                    let response = model::now(future).expect("infallible");
                    assert_eq!(response.status(), 401, "every hostile request is refused");
                    rejections += 1;
                    seen.push_str(&format!("{response:?}\n"));
                    let body = model::now(response.into_body().collect())
                        .expect("rejection body is infallible")
                        .to_bytes();
                    seen.push_str(&String::from_utf8_lossy(&body));
                    seen.push('\n');
                }
            }
        }
    });

    let in_responses = leaked(&seen);
    assert!(
        in_responses.is_empty(),
        "responses or Debug output leak {in_responses:?}:\n{seen}"
    );
    let in_logs = leaked(&logs);
    assert!(in_logs.is_empty(), "log lines leak {in_logs:?}:\n{logs}");

    // The logs must really have been captured, or the check above is empty.
    let lines: Vec<&str> = logs.lines().collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        count("proxy auth refused the request") + count("api key is empty"),
        rejections,
        "one log line per rejection:\n{logs}"
    );
    for needle in [
        "reason=\"invalid_key\"",
        "problem=\"duplicate\"",
        "problem=\"expired\"",
        "problem=\"not_ascii\"",
        "header=\"query\"",
        "problem=\"malformed_bearer\"",
        "problem=\"other_scheme\"",
        "contains non-ASCII",
        "is not followed by 64 hex characters",
    ] {
        assert!(count(needle) > 0, "no log line has {needle}:\n{logs}");
    }
    assert!(
        count("path=\"/v1beta/models/gemini-pro:generateContent\"") > 0,
        "the path is logged without its query:\n{logs}"
    );
}

#[test]
fn debug_and_display_of_public_types_hide_keys() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, CONFIGURED);
    let shared = SharedSecurityConfig::new(config.clone());
    let fixed_layer = ProxyAuthLayer::new(config.clone()).exempt_paths(["/healthz", "/ready"]);
    let shared_layer = ProxyAuthLayer::from_shared(shared.clone()).insert_identity(true);
    let service = fixed_layer.clone().layer(model::Echo);
    let shared_service = shared_layer.clone().layer(model::Echo);

    let mut text = String::new();
    let show = |text: &mut String, what: &dyn std::fmt::Debug| {
        text.push_str(&format!("{what:?}\n{what:#?}\n"));
    };
    show(&mut text, &config);
    show(
        &mut text,
        &ProxySecurityConfig::new(ProxyAuthMode::Auto, format!("  {PRESENTED}  "))
            .allow_lan_access(true),
    );
    show(&mut text, &shared);
    show(&mut text, &shared.load());
    show(&mut text, &shared.load().api_key);
    show(&mut text, &proxy_auth::ApiKey::new(format!(" {PRESENTED}")));
    show(&mut text, &fixed_layer);
    show(&mut text, &shared_layer);
    show(&mut text, &service);
    show(&mut text, &shared_service);
    for mode in ProxyAuthMode::ALL {
        show(&mut text, &mode);
    }
    for source in [
        KeySource::Authorization,
        KeySource::XApiKey,
        KeySource::XGoogApiKey,
    ] {
        show(&mut text, &source);
    }
    for problem in [
        KeyProblem::Empty,
        KeyProblem::Duplicate,
        KeyProblem::NotAscii,
        KeyProblem::Expired,
    ] {
        show(&mut text, &problem);
    }
    text.push_str(&format!("{}\n", KeySource::QueryKey));
    // Named keys: the set, the layer and handle holding it, what a match
    // reports (decision and the `Authenticated` extension the inner
    // service sees), and every `KeySetError` made from secret input.
    let keys = key_set();
    show(&mut text, &keys);
    text.push_str(&serde_json::to_string(&keys).expect("serializable"));
    let named_layer = ProxyAuthLayer::with_keys(config.clone(), keys.clone()).insert_identity(true);
    show(&mut text, &named_layer);
    show(
        &mut text,
        &SharedSecurityConfig::with_keys(config.clone(), keys.clone()),
    );
    let named_request = || {
        Request::get("/v1/models")
            .header("x-api-key", NAMED)
            .body(())
            .expect("valid request")
    };
    show(&mut text, &named_layer.check(&named_request()));
    let mut spy = named_layer.layer(tower::service_fn(|request: Request<()>| async move {
        let identity = request.extensions().get::<Authenticated>().cloned();
        Ok::<_, std::convert::Infallible>(http::Response::new(format!("{identity:?}")))
    }));
    let response = model::now(spy.call(named_request())).expect("infallible");
    let identity = response.into_body().into_inner().expect("inner body");
    assert!(identity.contains("named"), "{identity}");
    text.push_str(&identity);
    let mut errors = KeySet::new();
    errors.insert("named", NAMED).expect("valid key");
    for result in [
        errors.insert(" ", NAMED),
        errors.insert("dup", NAMED),
        errors.insert("bad", &format!("sha256:{NAMED}")),
        errors.insert("blank", " "),
    ] {
        let error = result.expect_err("refused");
        show(&mut text, &error);
        text.push_str(&format!("{error}\n"));
    }
    text.push_str(&proxy_auth::key_digest(NAMED));
    for reason in [
        RejectReason::MissingKey,
        RejectReason::InvalidKey,
        RejectReason::NoKeyConfigured,
    ] {
        show(&mut text, &reason);
        text.push_str(&format!("{reason}\n"));
    }
    let request = Request::get("/v1/models")
        .header("authorization", format!("Bearer {CONFIGURED}"))
        .body(())
        .expect("valid request");
    show(&mut text, &fixed_layer.check(&request));
    show(&mut text, &shared_layer.check(&request));
    text.push_str(&format!(
        "{} {}\n",
        KeySource::Authorization,
        ProxyAuthMode::Strict
    ));

    let leaks = leaked(&text);
    assert!(leaks.is_empty(), "Debug/Display leak {leaks:?}:\n{text}");
    // Sanity: the redaction marker is what stands in for the key.
    assert!(text.contains("<redacted>"), "{text}");
}

/// The leak detector must be able to fail: the presented and the
/// configured key, and near misses of them, are all found.
#[test]
fn the_leak_detector_finds_keys() {
    assert_eq!(
        leaked(&format!("key={CONFIGURED}")),
        ["CONFIGURED-secret", "secret-7Q2"]
    );
    assert_eq!(
        leaked(&format!("Bearer {PRESENTED}")),
        ["PRESENTED-secret", "secret-9Zp"]
    );
    assert!(leaked(&CONFIGURED.replace('x', "y")).contains(&"CONFIGURED-secret"));
    assert!(leaked("sk-redacted <redacted>").is_empty());
    // And the log capture really captures this crate's target.
    let ((), logs) = capture_logs(|| {
        let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "k"));
        let request = Request::get("/x").body(()).expect("valid request");
        let response = model::now(layer.layer(model::Echo).call(request)).expect("infallible");
        assert_eq!(response.status(), 401);
    });
    assert!(
        logs.contains("proxy_auth") && logs.contains("missing_key"),
        "{logs}"
    );
}
