//! What the layer logs, captured per test on a `current_thread` runtime
//! (see [`common::Logs`] for why that sees every event).

use http::StatusCode;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};

use crate::common::{self, get, Sent};

/// Runs `f` on this thread and returns what it logged.
async fn logged<R>(f: impl std::future::Future<Output = R>) -> (R, String) {
    let logs = common::Logs::new(tracing::Level::TRACE);
    let _capturing = logs.set_default();
    let result = f.await;
    (result, logs.text())
}

async fn send(config: &ProxySecurityConfig, path: &str, headers: &[(&str, &str)]) -> Sent {
    common::send(ProxyAuthLayer::new(config.clone()), get(path, headers)).await
}

// Auth on + empty (or blank) configured key: every request that
// needs a key is denied, with one error line per request.
#[tokio::test(flavor = "current_thread")]
async fn an_empty_configured_key_denies_and_logs_an_error_per_request() {
    for key in ["", "   ", "\t\n"] {
        for config in [
            ProxySecurityConfig::new(ProxyAuthMode::Strict, key),
            ProxySecurityConfig::new(ProxyAuthMode::Auto, key).allow_lan_access(true),
            ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, key),
        ] {
            let requests: [&[(&str, &str)]; 4] = [
                &[],
                &[("authorization", "Bearer ")],
                &[("x-api-key", "")],
                &[("x-goog-api-key", "anything")],
            ];
            let (outcomes, logs) = logged(async {
                let mut all = Vec::new();
                for headers in requests {
                    all.push(send(&config, "/v1/models", headers).await);
                }
                all
            })
            .await;
            for sent in &outcomes {
                assert_eq!(sent.status, StatusCode::UNAUTHORIZED);
                assert_eq!(sent.reason(), Some("no_key_configured"));
                assert!(sent.body.contains("no API key configured"), "{}", sent.body);
            }
            let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
            assert_eq!(
                errors.len(),
                outcomes.len(),
                "one error per request:\n{logs}"
            );
            for line in errors {
                assert!(
                    line.contains("auth is enabled but the api key is empty"),
                    "{line}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn rejections_are_logged_with_reason_and_header_but_no_key() {
    let configured = "sk-configured-SECRET-1111";
    let presented = "sk-presented-SECRET-2222";
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, configured);
    let (outcomes, logs) = logged(async {
        let mut all = Vec::new();
        for (name, value) in [
            ("authorization", format!("Bearer {presented}")),
            ("x-api-key", presented.to_owned()),
            ("x-goog-api-key", presented.to_owned()),
            ("authorization", configured[..12].to_owned()),
        ] {
            all.push(
                send(
                    &config,
                    &format!("/v1/{name}?key={presented}"),
                    &[(name, &value)],
                )
                .await,
            );
        }
        all
    })
    .await;
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 4, "{logs}");
    assert!(
        warnings[0].contains("reason=\"invalid_key\"")
            && warnings[0].contains("header=\"authorization\""),
        "{logs}"
    );
    assert!(warnings[1].contains("header=\"x-api-key\""), "{logs}");
    for sent in &outcomes {
        assert_eq!(sent.status, StatusCode::UNAUTHORIZED);
        assert_eq!(sent.reason(), Some("invalid_key"));
        assert!(!sent.body.contains("SECRET"), "{}", sent.body);
    }
    // Neither key, nor any part of it, nor the query string that held one.
    assert!(!logs.contains("SECRET"), "{logs}");
}

#[tokio::test(flavor = "current_thread")]
async fn accepted_requests_log_nothing_above_debug() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-ok");
    let (outcome, logs) = logged(send(&config, "/v1", &[("x-api-key", "sk-ok")])).await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert!(!logs.contains("WARN") && !logs.contains("ERROR"), "{logs}");
}
