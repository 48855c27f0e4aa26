//! The official OpenAI, Anthropic and Google Gen AI Python SDKs against the
//! built forward example's 403s (keys and scopes from a
//! `PROXY_CONFIG_FILE`, upstream: `tests/it/upstream.rs`): a call in scope
//! goes through to the upstream; a model or a route out of scope makes each
//! SDK raise its permission error (`PermissionDeniedError`, Google's
//! `ClientError` with `PERMISSION_DENIED`) carrying the proxy's reason and
//! message, and never reaches the upstream.

use std::path::Path;

use crate::common;
use crate::sdk::{self, Proxy};
use crate::upstream;

const CONFIG: &str = r#"auth_mode = "strict"
api_key = "sk-proxy-admin-0123"

[[keys]]
label = "openai-team"
key = "sk-openai-team-0123"
models = ["gpt-4o-mini"]
routes = ["/v1/chat/completions"]

[[keys]]
label = "anthropic-team"
key = "sk-anthropic-team-0123"
models = ["claude-3-5-*"]

[[keys]]
label = "google-team"
key = "sk-google-team-0123"
models = ["gemini-2.0-flash*"]
"#;

/// One call of `tests/it/sdk/scopes.py`: its one JSON line.
async fn call(
    python: &Path,
    proxy: &Proxy,
    sdk: &str,
    model: &str,
    what: &str,
) -> serde_json::Value {
    let base = match sdk {
        "openai" => format!("http://{}/v1", proxy.addr),
        _ => format!("http://{}", proxy.addr),
    };
    let key = format!("sk-{sdk}-team-0123");
    let mut lines = sdk::run(python, "scopes.py", &[sdk, &base, &key, model, what]).await;
    assert_eq!(lines.len(), 1, "{sdk} {model} {what}: {lines:?}");
    lines.remove(0)
}

/// Asserts that `line` is the SDK's permission error for `reason`, with the
/// proxy's message naming `named` (the model or the path). (The OpenAI SDK
/// shows the body as a Python dict, apostrophes escaped.)
fn assert_refused(line: &serde_json::Value, error: &str, code: &str, reason: &str, named: &str) {
    assert_eq!(line["kind"], "error", "{line}");
    assert_eq!(line["type"], error, "{line}");
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["code"], code, "{line}");
    assert_eq!(line["marker"], reason, "{line}");
    let message = line["message"].as_str().unwrap();
    assert!(
        message.contains("key scopes (proxy-auth)") && message.contains(&format!("\"{named}\"")),
        "{line}"
    );
    assert!(!message.contains("-0123"), "no key in {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_raise_their_permission_error_for_a_key_out_of_scope() {
    let Some(python) = common::installed_or_skip(
        sdk::python(&["openai", "anthropic", "google.genai"]),
        ".ci/forward.sh",
    ) else {
        return;
    };
    let upstream = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let proxy = Proxy::start(&upstream.url(), &file);
    let reached = |path: &str| {
        upstream
            .requests()
            .iter()
            .filter(|r| r.path_and_query.starts_with(path))
            .count()
    };

    // OpenAI: its model streams through; another model, or a route the key
    // may not call, is a PermissionDeniedError with the proxy's code.
    let ok = call(&python, &proxy, "openai", "gpt-4o-mini", "generate").await;
    assert_eq!(ok["kind"], "ok", "{ok}");
    let refused = call(&python, &proxy, "openai", "gpt-4o", "generate").await;
    assert_refused(
        &refused,
        "PermissionDeniedError",
        "model_not_allowed",
        "model_not_allowed",
        "gpt-4o",
    );
    let refused = call(&python, &proxy, "openai", "gpt-4o-mini", "list").await;
    assert_refused(
        &refused,
        "PermissionDeniedError",
        "route_not_allowed",
        "route_not_allowed",
        "/v1/models",
    );
    assert_eq!(reached("/v1/chat/completions"), 1);
    assert_eq!(reached("/v1/models"), 0);

    // Anthropic: a prefix pattern; its error type is `permission_error`.
    let ok = call(
        &python,
        &proxy,
        "anthropic",
        "claude-3-5-haiku-latest",
        "generate",
    )
    .await;
    assert_eq!(ok["kind"], "ok", "{ok}");
    let refused = call(
        &python,
        &proxy,
        "anthropic",
        "claude-3-opus-latest",
        "generate",
    )
    .await;
    assert_refused(
        &refused,
        "PermissionDeniedError",
        "permission_error",
        "model_not_allowed",
        "claude-3-opus-latest",
    );
    assert_eq!(reached("/v1/messages"), 1);

    // Google: the model is in the path; the key comes in x-goog-api-key.
    let refused = call(&python, &proxy, "google", "gemini-1.5-pro", "generate").await;
    assert_refused(
        &refused,
        "ClientError",
        "PERMISSION_DENIED",
        "model_not_allowed",
        "gemini-1.5-pro",
    );
    assert_eq!(reached("/v1beta/models/gemini-1.5-pro"), 0);
    // In scope, the call reaches the upstream (whose canned answer is not a
    // Gemini response: what the SDK makes of it is not the point).
    let _ = call(&python, &proxy, "google", "gemini-2.0-flash", "generate").await;
    assert_eq!(
        reached("/v1beta/models/gemini-2.0-flash:generateContent"),
        1
    );

    // One refusal log line per 403, naming labels, never keys.
    assert_eq!(proxy.log_lines(&["model_not_allowed"]), 3);
    assert_eq!(proxy.log_lines(&["route_not_allowed"]), 1);
    for line in proxy.log.lock().unwrap().iter() {
        assert!(!line.contains("-0123"), "{line}");
    }
}
