//! The official OpenAI and Anthropic Python SDKs against the built forward
//! example's 429s (keys and limits from a `PROXY_CONFIG_FILE`, upstream:
//! `tests/it/upstream.rs`): with `rpm = 120, burst = 1` two calls back to
//! back both succeed, the second retried after the proxy's wait; with
//! `max_retries=0` the SDK raises `RateLimitError` with the proxy's
//! message; a wait of minutes makes both raise at once, without retrying.
//!
//! What is asserted is what the servers saw (how many attempts reached the
//! proxy and the upstream, the proxy's one log line per 429, the wait the
//! 429 carried) and one lower bound the SDKs guarantee: a retry is sent no
//! earlier than the `retry-after-ms` it was told. Nothing asserts an upper
//! bound on time.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::common;
use crate::sdk::{self, Proxy};
use crate::upstream;

/// The config file: one key per scenario, so their states stay apart.
fn config(slow_burst: u32) -> String {
    let mut text = String::from("auth_mode = \"strict\"\napi_key = \"sk-proxy-admin-0123\"\n");
    for sdk in ["openai", "anthropic"] {
        for mode in ["retry", "once"] {
            text.push_str(&format!(
                "[[keys]]\nlabel = \"{sdk}-{mode}\"\nkey = \"sk-{sdk}-{mode}-0123\"\nrpm = 120\nburst = 1\n"
            ));
        }
    }
    text.push_str(&format!(
        "[[keys]]\nlabel = \"slow\"\nkey = \"sk-slow-0123\"\nrpm = 1\nburst = {slow_burst}\n"
    ));
    text
}

/// One run of `tests/it/sdk/limits.py`: its JSON lines.
async fn run(
    python: &Path,
    sdk: &str,
    proxy: SocketAddr,
    key: &str,
    mode: &str,
) -> Vec<serde_json::Value> {
    let base = match sdk {
        "openai" => format!("http://{proxy}/v1"),
        _ => format!("http://{proxy}"),
    };
    sdk::run(python, "limits.py", &[sdk, &base, key, mode]).await
}

/// The proxy's 429 log lines for `label`.
fn limit_lines(proxy: &Proxy, label: &str) -> usize {
    proxy.log_lines(&["the key is at its limit", &format!("label=\"{label}\"")])
}

fn of_kind<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

fn statuses(lines: &[serde_json::Value]) -> Vec<u64> {
    of_kind(lines, "attempt")
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect()
}

/// A direct request with `key`: its status and `x-should-retry`.
async fn direct(proxy: SocketAddr, key: &str) -> (StatusCode, Option<String>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let request = Request::get(format!("http://{proxy}/v1/models"))
        .header("authorization", format!("Bearer {key}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("x-should-retry")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = response.into_body().collect().await;
    (status, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_back_off_from_the_proxys_429s_as_told() {
    let Some(python) =
        common::installed_or_skip(sdk::python(&["openai", "anthropic"]), ".ci/forward.sh")
    else {
        return;
    };
    let upstream = upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    std::fs::write(&file, config(3)).unwrap();
    let proxy = Proxy::start(&upstream.url(), &file);

    for sdk in ["openai", "anthropic"] {
        // Default retries: both calls succeed; the second was refused once
        // and retried no earlier than the proxy said.
        let label = format!("{sdk}-retry");
        let lines = run(
            &python,
            sdk,
            proxy.addr,
            &format!("sk-{label}-0123"),
            "retry",
        )
        .await;
        assert_eq!(of_kind(&lines, "ok").len(), 2, "{sdk}: {lines:?}");
        assert_eq!(statuses(&lines), [200, 429, 200], "{sdk}: {lines:?}");
        let attempts = of_kind(&lines, "attempt");
        let refused = attempts[1];
        assert_eq!(refused["marker"], "rate_limited");
        assert_eq!(refused["retry_after"], "1");
        let wait_ms: f64 = refused["retry_after_ms"].as_str().unwrap().parse().unwrap();
        assert!(wait_ms > 0.0 && wait_ms <= 500.0, "{sdk}: {wait_ms}");
        let gap = attempts[2]["sent"].as_f64().unwrap() - refused["received"].as_f64().unwrap();
        assert!(
            gap * 1000.0 >= wait_ms - 1.0,
            "{sdk} retried {gap:.3} s after a 429 that said {wait_ms} ms"
        );
        eprintln!(
            "{sdk}: retried {:.0} ms after a 429 saying {wait_ms} ms",
            gap * 1000.0
        );
        assert_eq!(
            limit_lines(&proxy, &label),
            1,
            "{sdk}: one 429 at the proxy"
        );

        // No retries: the second call raises the SDK's RateLimitError with
        // the proxy's message.
        let label = format!("{sdk}-once");
        let lines = run(
            &python,
            sdk,
            proxy.addr,
            &format!("sk-{label}-0123"),
            "no_retry",
        )
        .await;
        assert_eq!(statuses(&lines), [200, 429], "{sdk}: {lines:?}");
        let errors = of_kind(&lines, "error");
        assert_eq!(errors.len(), 1, "{sdk}: {lines:?}");
        assert_eq!(errors[0]["type"], "RateLimitError");
        assert_eq!(errors[0]["status"], 429);
        let message = errors[0]["message"].as_str().unwrap();
        assert!(
            message.contains("Rate limited by the proxy (proxy-auth), not by the upstream")
                && message.contains(&format!("the key labelled \"{label}\"")),
            "{sdk}: {message}"
        );
        assert!(!message.contains("0123"), "{sdk}: no key in {message}");
        assert_eq!(limit_lines(&proxy, &label), 1);
    }
    let models = || {
        let seen = upstream.requests();
        for request in &seen {
            let headers = format!("{:?}", request.headers);
            for client_key in ["sk-openai", "sk-anthropic", "sk-slow"] {
                assert!(!headers.contains(client_key), "{headers}");
            }
        }
        seen.iter()
            .filter(|r| r.path_and_query == "/v1/models")
            .count()
    };
    // 2 + 1 accepted calls per SDK reached the upstream, no 429 did.
    assert_eq!(models(), 6);

    // A wait of minutes: the slow key spends its burst of 3 at 1 rpm, then
    // the file lowers its burst to 1; the debt carries, so the wait is
    // about 3 minutes, past what the SDKs honour.
    for _ in 0..3 {
        assert_eq!(direct(proxy.addr, "sk-slow-0123").await.0, StatusCode::OK);
    }
    std::fs::write(&file, config(1)).unwrap();
    // Refused requests spend nothing, so polling for the reload is free.
    let mut reloaded = false;
    for _ in 0..100 {
        if direct(proxy.addr, "sk-slow-0123").await.1.as_deref() == Some("false") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the proxy never took the edited file");
    let before = limit_lines(&proxy, "slow");
    for sdk in ["openai", "anthropic"] {
        let lines = run(&python, sdk, proxy.addr, "sk-slow-0123", "long").await;
        assert_eq!(statuses(&lines), [429], "{sdk} retried: {lines:?}");
        let attempt = of_kind(&lines, "attempt")[0];
        assert_eq!(attempt["should_retry"], "false");
        let wait_ms: f64 = attempt["retry_after_ms"].as_str().unwrap().parse().unwrap();
        assert!(wait_ms > 60_000.0, "{sdk}: {wait_ms}");
        assert_eq!(
            of_kind(&lines, "error")[0]["type"],
            "RateLimitError",
            "{sdk}"
        );
    }
    assert_eq!(
        limit_lines(&proxy, "slow") - before,
        2,
        "one attempt per SDK"
    );
    // The log names labels, never keys.
    for line in proxy.log.lock().unwrap().iter() {
        assert!(!line.contains("-0123"), "{line}");
    }
    assert_eq!(models(), 6 + 3, "and the three direct calls");
}
