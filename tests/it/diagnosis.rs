//! The first refusal answers the troubleshooting guide's questions by
//! itself: who refused, in which mode and why, which header was read and
//! which were ignored, what was wrong with its shape, and which log line is
//! the request's; never a key, its length or a part of it.

use proxy_auth::{
    Decision, KeyProblem, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};
use tokio::net::TcpListener;

use crate::common::{get, http1, send, Logs, Reply, KEY};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn message(body: &str) -> String {
    json(body)["error"]["message"].as_str().unwrap().to_owned()
}

/// `auto` with LAN access on, as the desktop proxy's users run it.
fn auto_lan() -> ProxySecurityConfig {
    ProxySecurityConfig::new(ProxyAuthMode::Auto, KEY).allow_lan_access(true)
}

/// The axum example on a loopback port.
async fn example(config: ProxySecurityConfig) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::common::axum_app(SharedSecurityConfig::new(config), None);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .head
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn the_mode_and_what_auto_resolved_from_are_in_the_first_refusal() {
    let sent = send(ProxyAuthLayer::new(auto_lan()), get("/v1/models", &[])).await;
    assert_eq!(sent.reason(), Some("missing_key"));
    assert_eq!(
        sent.header("x-proxy-auth-mode"),
        Some("all_except_health; from=auto; allow_lan_access=true")
    );
    let body = json(&sent.body);
    assert_eq!(body["error"]["proxy_auth"]["mode"], "all_except_health");
    assert_eq!(body["error"]["proxy_auth"]["configured_mode"], "auto");
    let said = message(&sent.body);
    assert!(
        said.contains("from auth_mode=auto with allow_lan_access=true")
            && said.contains("local ones too"),
        "{said}"
    );
    let strict = send(
        ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY)),
        get("/healthz", &[]),
    )
    .await;
    assert_eq!(strict.header("x-proxy-auth-mode"), Some("strict"));
    assert!(message(&strict.body).contains("health checks included"));
}

#[tokio::test]
async fn a_key_header_sent_but_not_read_is_named_beside_the_one_read() {
    let sent = send(
        ProxyAuthLayer::new(auto_lan()),
        get(
            "/v1/models",
            &[("authorization", "Bearer stale"), ("x-api-key", KEY)],
        ),
    )
    .await;
    assert_eq!(sent.reason(), Some("invalid_key"));
    let body = json(&sent.body);
    assert_eq!(body["error"]["proxy_auth"]["header"], "authorization");
    assert_eq!(
        body["error"]["proxy_auth"]["ignored"],
        serde_json::json!(["x-api-key"])
    );
    let message = message(&sent.body);
    assert!(
        message.contains("the Authorization header holds an API key that is not valid"),
        "{message}"
    );
    assert!(
        message.contains("Also sent but not read: x-api-key (only the first present of authorization, x-api-key, x-goog-api-key is read)"),
        "{message}"
    );
}

#[tokio::test]
async fn malformed_schemes_are_told_apart_from_a_wrong_key_in_body_log_and_check() {
    let logs = Logs::new(tracing::Level::WARN);
    let _guard = logs.set_default();
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY));
    let cases = [
        (format!("Bearer{KEY}"), KeyProblem::MalformedBearer),
        (format!("Bearer  {KEY}"), KeyProblem::MalformedBearer),
        (format!("Bearer\t{KEY}"), KeyProblem::MalformedBearer),
        ("Basic dXNlcjpwYXNz".to_owned(), KeyProblem::OtherScheme),
    ];
    for (value, problem) in &cases {
        let request = get::<String>("/v1/models", &[("authorization", value)]);
        match layer.check(&request) {
            Decision::Reject(r) => assert_eq!(r.problem, Some(*problem), "{value:?}"),
            other => panic!("{value:?}: {other:?}"),
        }
        let sent = send(layer.clone(), request).await;
        let body = json(&sent.body);
        assert_eq!(
            body["error"]["proxy_auth"]["problem"],
            problem.as_str(),
            "{value:?}"
        );
        assert!(!sent.body.contains(KEY), "never the key: {}", sent.body);
    }
    let text = logs.text();
    assert_eq!(
        text.matches("problem=\"malformed_bearer\"").count(),
        3,
        "{text}"
    );
    assert_eq!(
        text.matches("problem=\"other_scheme\"").count(),
        1,
        "{text}"
    );
    assert!(!text.contains(KEY), "never the key in a log line: {text}");
}

#[tokio::test]
async fn the_request_id_is_logged_and_echoed() {
    let logs = Logs::new(tracing::Level::WARN);
    let _guard = logs.set_default();
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY));
    let sent = send(
        layer.clone(),
        get("/v1/models", &[("x-request-id", "req-7f3a")]),
    )
    .await;
    assert_eq!(sent.header("x-request-id"), Some("req-7f3a"));
    assert!(
        logs.text().contains("request_id=\"req-7f3a\""),
        "{}",
        logs.text()
    );
    // Not when it holds the key the request sent.
    logs.clear();
    let id = format!("id-{KEY}");
    let sent = send(
        layer,
        get(
            "/v1/models",
            &[
                ("x-api-key", KEY),
                ("x-request-id", &id),
                ("x-goog-api-key", "x"),
            ],
        ),
    )
    .await;
    assert!(sent.reached_inner());
    let sent = send(
        ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-other")),
        get("/v1/models", &[("x-api-key", KEY), ("x-request-id", &id)]),
    )
    .await;
    assert_eq!(sent.header("x-request-id"), None);
    assert!(!logs.text().contains(KEY), "{}", logs.text());
}

#[tokio::test]
async fn a_wrong_key_of_any_length_gets_the_same_answer() {
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, KEY));
    let mut bodies = Vec::new();
    for wrong in ["x", "sk-short", &"k".repeat(300), &KEY[..KEY.len() - 1]] {
        let sent = send(layer.clone(), get("/v1/models", &[("x-api-key", wrong)])).await;
        assert!(
            !sent.body.contains(wrong) || wrong.len() < 3,
            "never the presented key"
        );
        bodies.push((sent.body, sent.headers.get("content-length").cloned()));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn the_running_example_answers_each_pitfall_in_its_first_response() {
    let addr = example(auto_lan()).await;
    // auto + LAN access, a local client without a key.
    let reply = http1(addr, "GET", "/v1/models", &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        header(&reply, "x-proxy-auth-mode"),
        Some("all_except_health; from=auto; allow_lan_access=true")
    );
    assert!(
        message(&reply.body).contains("local ones too"),
        "{}",
        reply.body
    );
    // A stale Authorization beside the right x-api-key.
    let reply = http1(
        addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer stale"), ("x-api-key", KEY)],
    )
    .await;
    assert!(
        message(&reply.body).contains("Also sent but not read: x-api-key"),
        "{}",
        reply.body
    );
    // Bearer<key>.
    let glued = format!("Bearer{KEY}");
    let reply = http1(addr, "GET", "/v1/models", &[("Authorization", &glued)]).await;
    assert_eq!(
        json(&reply.body)["error"]["proxy_auth"]["problem"],
        "malformed_bearer"
    );
    assert!(!reply.body.contains(KEY) && !reply.head.contains(KEY));
    // Which log line is mine: the id comes back.
    let reply = http1(
        addr,
        "POST",
        "/v1/chat/completions",
        &[("x-request-id", "trace-42")],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(header(&reply, "x-request-id"), Some("trace-42"));
}
