use super::message::{body, every_ignored, message};
use super::*;
use crate::sources::Sources;
use crate::ProxyAuthMode;

fn rejection(
    reason: RejectReason,
    source: Option<KeySource>,
    problem: Option<KeyProblem>,
) -> Rejection {
    Rejection::of_key(
        reason,
        source,
        problem,
        ProxyAuthMode::Strict,
        ProxyAuthMode::Strict,
    )
}

const SOURCES: [KeySource; 4] = [
    KeySource::Authorization,
    KeySource::XApiKey,
    KeySource::XGoogApiKey,
    KeySource::QueryKey,
];
const PROBLEMS: [Option<KeyProblem>; 7] = [
    None,
    Some(KeyProblem::Empty),
    Some(KeyProblem::Duplicate),
    Some(KeyProblem::NotAscii),
    Some(KeyProblem::Expired),
    Some(KeyProblem::MalformedBearer),
    Some(KeyProblem::OtherScheme),
];

/// Every rejection the decision can make, in every mode, with every set of
/// ignored sources.
fn every_rejection() -> Vec<Rejection> {
    let mut all = vec![
        rejection(RejectReason::MissingKey, None, None),
        rejection(RejectReason::NoKeyConfigured, None, None),
    ];
    for source in SOURCES {
        all.push(rejection(RejectReason::NoKeyConfigured, Some(source), None));
        for problem in PROBLEMS {
            all.push(rejection(RejectReason::InvalidKey, Some(source), problem));
        }
    }
    let modes = [
        (ProxyAuthMode::Strict, ProxyAuthMode::Strict),
        (
            ProxyAuthMode::AllExceptHealth,
            ProxyAuthMode::AllExceptHealth,
        ),
        (ProxyAuthMode::AllExceptHealth, ProxyAuthMode::Auto),
    ];
    let mut out = Vec::new();
    for r in all {
        for (mode, configured_mode) in modes {
            for ignored in every_ignored() {
                if r.source.is_some_and(|s| ignored.contains(s)) {
                    continue;
                }
                out.push(Rejection {
                    mode,
                    configured_mode,
                    ignored,
                    ..r.clone()
                });
            }
        }
    }
    out
}

#[test]
fn shape_detection() {
    let missing = rejection(RejectReason::MissingKey, None, None);
    assert_eq!(
        ApiShape::detect(&missing, "/v1/chat/completions"),
        ApiShape::OpenAi
    );
    assert_eq!(
        ApiShape::detect(&missing, "/v1/messages"),
        ApiShape::Anthropic
    );
    assert_eq!(
        ApiShape::detect(&missing, "/v1beta/models/gemini-pro:generateContent"),
        ApiShape::Gemini
    );
    assert_eq!(
        ApiShape::detect(&missing, "/v1/models/x:streamGenerateContent"),
        ApiShape::Gemini
    );
    let from = |source, ignored: &[KeySource]| {
        let mut r = rejection(RejectReason::InvalidKey, Some(source), None);
        for &s in ignored {
            r.ignored.insert(s);
        }
        r
    };
    for source in [KeySource::XApiKey, KeySource::Authorization] {
        let r = from(source, &[KeySource::XApiKey]);
        assert_eq!(
            ApiShape::detect(&r, "/v1/chat/completions"),
            ApiShape::Anthropic
        );
    }
    let r = from(
        KeySource::Authorization,
        &[KeySource::XApiKey, KeySource::XGoogApiKey],
    );
    assert_eq!(ApiShape::detect(&r, "/v1/messages"), ApiShape::Gemini);
    let r = from(KeySource::Authorization, &[]);
    assert_eq!(ApiShape::detect(&r, "/v1/x:y"), ApiShape::OpenAi);
    let r = from(KeySource::QueryKey, &[]);
    assert_eq!(
        ApiShape::detect(&r, "/v1/chat/completions"),
        ApiShape::Gemini
    );
}

#[test]
fn every_body_is_valid_json_in_its_shape_and_names_the_facts() {
    let sources = Sources::default().with_query(true);
    for r in every_rejection() {
        for shape in [ApiShape::OpenAi, ApiShape::Anthropic, ApiShape::Gemini] {
            let text = body(&r, shape, &sources);
            let json: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            let error = &json["error"];
            let facts = match shape {
                ApiShape::OpenAi => {
                    assert_eq!(error["code"], r.reason.as_str());
                    assert_eq!(error["type"], "invalid_request_error");
                    error["proxy_auth"].clone()
                }
                ApiShape::Anthropic => {
                    assert_eq!(json["type"], "error");
                    assert_eq!(error["type"], "authentication_error");
                    error["proxy_auth"].clone()
                }
                ApiShape::Gemini => {
                    assert_eq!(error["code"], 401);
                    assert_eq!(error["status"], "UNAUTHENTICATED");
                    let info = &error["details"][0];
                    assert_eq!(info["domain"], "proxy-auth");
                    assert_eq!(info["reason"], r.reason.as_str().to_ascii_uppercase());
                    info["metadata"].clone()
                }
            };
            assert_eq!(facts["mode"], r.mode.as_str(), "{text}");
            assert_eq!(facts["configured_mode"], r.configured_mode.as_str());
            assert_eq!(facts["header"], r.source.map_or("none", KeySource::as_str));
            assert_eq!(
                facts["problem"],
                r.problem.map_or("none", KeyProblem::as_str)
            );
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("(proxy-auth)"), "{message}");
            assert!(
                message.contains(&format!("Auth mode: {}", r.mode)),
                "{message}"
            );
        }
    }
}

#[test]
fn the_three_pitfalls_are_answered_by_the_message() {
    let sources = Sources::default();
    // auto with LAN access, no key: which mode, and why local clients too.
    let mut r = rejection(RejectReason::MissingKey, None, None);
    r.mode = ProxyAuthMode::AllExceptHealth;
    r.configured_mode = ProxyAuthMode::Auto;
    let m = message(&r, &sources);
    assert!(
        m.contains("from auth_mode=auto with allow_lan_access=true")
            && m.contains("local ones too"),
        "{m}"
    );
    // A stale Authorization beside the right x-api-key: both named.
    let mut r = rejection(
        RejectReason::InvalidKey,
        Some(KeySource::Authorization),
        None,
    );
    r.ignored.insert(KeySource::XApiKey);
    let m = message(&r, &sources);
    assert!(
        m.contains("the Authorization header holds an API key that is not valid"),
        "{m}"
    );
    assert!(m.contains("Also sent but not read: x-api-key"), "{m}");
    // Bearer<key>: told apart from a wrong key.
    let r = rejection(
        RejectReason::InvalidKey,
        Some(KeySource::Authorization),
        Some(KeyProblem::MalformedBearer),
    );
    let m = message(&r, &sources);
    assert!(
        m.contains("starts with 'Bearer' but not with 'Bearer <key>'"),
        "{m}"
    );
}

#[test]
fn the_missing_key_message_follows_the_layers_sources() {
    let r = rejection(RejectReason::MissingKey, None, None);
    let m = message(&r, &Sources::default());
    assert!(
        m.contains("Send it as 'Authorization: Bearer <key>', in the x-api-key header, or in the x-goog-api-key header."),
        "{m}"
    );
    let only = Sources::new([KeySource::XApiKey], false).unwrap();
    let m = message(&r, &only);
    assert!(m.contains("Send it in the x-api-key header."), "{m}");
}

#[test]
fn distinct_rejections_get_distinct_messages_and_the_cache_returns_what_body_writes() {
    let sources = Sources::default().with_query(true);
    let bodies = Bodies::default();
    let mut seen = std::collections::HashMap::new();
    for r in every_rejection() {
        for shape in [ApiShape::OpenAi, ApiShape::Anthropic, ApiShape::Gemini] {
            let cached = bodies.get(&r, shape, &sources);
            assert_eq!(cached, body(&r, shape, &sources).as_bytes(), "{r:?}");
            assert_eq!(bodies.get(&r, shape, &sources), cached, "cached once");
            let previous = seen.insert(cached.clone(), (r.clone(), shape));
            assert!(previous.is_none(), "{previous:?} and {r:?} share a body");
        }
    }
}

#[test]
fn request_ids_are_echoed_only_when_safe() {
    let parts = |headers: &[(&str, &str)], uri: &str| {
        let mut request = http::Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    };
    let p = parts(&[("x-request-id", "req-42")], "/");
    assert_eq!(request_id(&p).unwrap(), "req-42");
    let p = parts(
        &[
            ("x-request-id", "req-sk-secret"),
            ("authorization", "Bearer sk-secret"),
        ],
        "/",
    );
    assert!(request_id(&p).is_none(), "holds the presented key");
    let p = parts(&[("x-request-id", "sk-q1")], "/?key=sk-q1");
    assert!(request_id(&p).is_none(), "holds the query key");
    let long = "r".repeat(129);
    let p = parts(&[("x-request-id", &long)], "/");
    assert!(request_id(&p).is_none(), "too long");
    let p = parts(&[("x-request-id", "two words")], "/");
    assert!(request_id(&p).is_none(), "not a token");
}
