//! What the layer logs, captured per test on a `current_thread` runtime
//! (see [`common::Logs`] for why that sees every event).

use crate::common;

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{service_fn, Layer, ServiceExt};

/// Runs `f` on this thread and returns what it logged.
async fn logged<R>(f: impl std::future::Future<Output = R>) -> (R, String) {
    let logs = common::Logs::new(tracing::Level::TRACE);
    let _capturing = logs.set_default();
    let result = f.await;
    (result, logs.text())
}

async fn send(
    config: &ProxySecurityConfig,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let service =
        ProxyAuthLayer::new(config.clone()).layer(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("inner")))
        }));
    let response = service
        .oneshot(builder.body(String::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let reason = response
        .headers()
        .get("x-proxy-auth-error")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, reason, String::from_utf8(body.to_vec()).unwrap())
}

// Rule 5: auth on + empty (or blank) configured key: every request that
// needs a key is denied, with one error line per request.
#[tokio::test(flavor = "current_thread")]
async fn rule5_empty_configured_key_denies_and_logs_an_error_per_request() {
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
            for (status, reason, body) in &outcomes {
                assert_eq!(*status, StatusCode::UNAUTHORIZED);
                assert_eq!(reason, "no_key_configured");
                assert!(body.contains("no API key configured"), "{body}");
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
    for (status, reason, body) in &outcomes {
        assert_eq!(*status, StatusCode::UNAUTHORIZED);
        assert_eq!(reason, "invalid_key");
        assert!(!body.contains("SECRET"), "{body}");
    }
    // Neither key, nor any part of it, nor the query string that held one.
    assert!(!logs.contains("SECRET"), "{logs}");
}

#[tokio::test(flavor = "current_thread")]
async fn accepted_requests_log_nothing_above_debug() {
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-ok");
    let (outcome, logs) = logged(send(&config, "/v1", &[("x-api-key", "sk-ok")])).await;
    assert_eq!(outcome.0, StatusCode::OK);
    assert!(!logs.contains("WARN") && !logs.contains("ERROR"), "{logs}");
}
