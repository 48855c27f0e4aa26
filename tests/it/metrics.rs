//! Feature `metrics`: the counters as an operator sees them. The axum
//! example is served over real HTTP with the Prometheus exporter installed,
//! a known mix of requests is sent, and `/metrics` is scraped and parsed.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::Request;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use proxy_auth::{
    KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};
use tokio::net::TcpListener;
use tower::{service_fn, Layer, ServiceExt};

use crate::common;

/// One request on a fresh connection; the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    header: Option<(&str, &str)>,
) -> (u16, String) {
    let reply = common::http1(addr, method, path, header.as_slice()).await;
    (reply.status, reply.body)
}

/// `proxy_auth_requests_total` series from a Prometheus text page, keyed by
/// `outcome/reason/source`.
fn requests_total(page: &str) -> BTreeMap<String, u64> {
    let mut series = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("proxy_auth_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap();
        let labels: BTreeMap<&str, &str> = labels
            .split(',')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (name, value.trim_matches('"'))
            })
            .collect();
        let id = format!(
            "{}/{}/{}",
            labels["outcome"], labels["reason"], labels["source"]
        );
        let previous = series.insert(id, value.trim().parse().unwrap());
        assert!(previous.is_none(), "one line per series: {line}");
    }
    series
}

/// Alone in a child process: the exporter is the process's recorder, which
/// every layer that serves its first request after it is installed counts
/// into, so the other tests of this binary would add to the exact counts.
#[tokio::test]
async fn scrape_after_a_known_mix_of_requests() {
    if common::rerun_alone(module_path!(), "scrape_after_a_known_mix_of_requests") {
        return;
    }
    let mut keys = KeySet::new();
    keys.insert("alice", "sk-alice").unwrap();
    let shared = SharedSecurityConfig::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-test"),
        keys,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = crate::common::axum_app(shared.clone(), None);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let bearer = Some(("authorization", "Bearer sk-test"));
    let mut sent = Vec::new();
    let mut send = |method, path, header, status| {
        sent.push((method, path, header, status));
    };
    send("GET", "/healthz", None, 200);
    send("GET", "/healthz", None, 200);
    send("OPTIONS", "/v1/models", None, 200);
    send("GET", "/v1/models", None, 401);
    send("GET", "/v1/models", None, 401);
    send("GET", "/metrics", None, 401); // the scrape needs the key too
    send("GET", "/v1/models", Some(("x-api-key", "wrong")), 401);
    send("GET", "/v1/models", Some(("x-api-key", "wrong")), 401);
    send(
        "GET",
        "/v1/models",
        Some(("authorization", "Bearer nope")),
        401,
    );
    send("GET", "/v1/models", bearer, 200);
    send("POST", "/v1/chat/completions", bearer, 200);
    send("GET", "/v1/models", Some(("x-api-key", "sk-test")), 200);
    send(
        "GET",
        "/v1beta/models",
        Some(("x-goog-api-key", "sk-alice")),
        200,
    );
    for (method, path, header, status) in sent {
        assert_eq!(
            http(addr, method, path, header).await.0,
            status,
            "{method} {path} {header:?}"
        );
    }
    // Auth off, then on with no key at all: the two remaining reasons.
    shared
        .store(ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-test"))
        .unwrap();
    assert_eq!(http(addr, "GET", "/v1/models", None).await.0, 200);
    shared
        .store(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""))
        .unwrap();
    shared.store_keys(KeySet::new());
    assert_eq!(
        http(addr, "GET", "/v1/models", Some(("x-api-key", "sk-test")))
            .await
            .0,
        401
    );
    assert_eq!(http(addr, "GET", "/v1/models", None).await.0, 401);
    shared
        .store(ProxySecurityConfig::new(
            ProxyAuthMode::AllExceptHealth,
            "sk-test",
        ))
        .unwrap();

    let (status, page) = http(addr, "GET", "/metrics", bearer).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("# TYPE proxy_auth_requests_total counter"),
        "{page}"
    );
    let expected: BTreeMap<String, u64> = [
        ("allowed/preflight/none", 1),
        ("allowed/auth_off/none", 1),
        ("allowed/exempt_path/none", 2),
        // Two requests above plus this scrape, counted before it renders.
        ("allowed/key/authorization", 3),
        ("allowed/key/x-api-key", 1),
        ("allowed/key/x-goog-api-key", 1),
        ("allowed/key/query", 0),
        ("rejected/missing_key/none", 3),
        ("rejected/invalid_key/authorization", 1),
        ("rejected/invalid_key/x-api-key", 2),
        ("rejected/invalid_key/x-goog-api-key", 0),
        ("rejected/invalid_key/query", 0),
        ("rejected/no_key_configured/none", 1),
        ("rejected/no_key_configured/authorization", 0),
        ("rejected/no_key_configured/x-api-key", 1),
        ("rejected/no_key_configured/x-goog-api-key", 0),
        ("rejected/no_key_configured/query", 0),
    ]
    .into_iter()
    .map(|(id, n)| (id.to_string(), n))
    // A key out of its scope or at its limit: registered at 0 for every
    // source, never seen here (no key in this test has scopes or limits).
    .chain(
        [
            "model_not_allowed",
            "route_not_allowed",
            "ip_not_allowed",
            "model_unreadable",
            "body_too_large",
            "unsupported_encoding",
            "rate_limited",
            "concurrency_limited",
        ]
        .into_iter()
        .flat_map(|reason| {
            ["authorization", "x-api-key", "x-goog-api-key", "query"]
                .map(|source| (format!("rejected/{reason}/{source}"), 0))
        }),
    )
    .collect();
    assert_eq!(requests_total(&page), expected, "{page}");
    // Off by default: no per-key series, so no label cardinality.
    assert!(!page.contains("proxy_auth_key_requests_total"), "{page}");
}

/// Per-key counts and the query source, against a recorder of this thread
/// only (so the exporter test above is not disturbed).
#[tokio::test(flavor = "current_thread")]
async fn key_labels_only_when_asked_for() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let mut keys = KeySet::new();
    keys.insert("alice", "sk-alice").unwrap();
    keys.insert("bob", "sk-bob").unwrap();
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin");
    let inner = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    });
    let counted = ProxyAuthLayer::with_keys(config.clone(), keys.clone())
        .query_key(true)
        .metrics_key_labels(true)
        .layer(inner);
    let uncounted = ProxyAuthLayer::with_keys(config, keys).layer(inner);
    let get = |uri: &str, key: Option<&str>| {
        let mut builder = Request::get(uri);
        if let Some(key) = key {
            builder = builder.header("x-api-key", key);
        }
        builder.body(()).unwrap()
    };
    for (uri, key) in [
        ("/a", Some("sk-alice")),
        ("/a", Some("sk-alice")),
        ("/b", Some("sk-bob")),
        ("/c", Some("sk-admin")),
        ("/d?key=sk-bob", None),
        ("/e?key=nope", None),
    ] {
        counted.clone().oneshot(get(uri, key)).await.unwrap();
    }
    uncounted
        .clone()
        .oneshot(get("/f", Some("sk-alice")))
        .await
        .unwrap();

    let mut by_label = BTreeMap::new();
    let mut totals = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            panic!("only counters")
        };
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        match key.name() {
            "proxy_auth_key_requests_total" => {
                by_label.insert(labels.join(","), n);
            }
            "proxy_auth_requests_total" if n > 0 => {
                *totals.entry(labels.join(",")).or_insert(0) += n;
            }
            "proxy_auth_requests_total" => {}
            other => panic!("unexpected metric {other}"),
        }
    }
    // The api_key ("/c") has no label; the uncounted layer adds none.
    assert_eq!(
        by_label,
        BTreeMap::from([("label=alice".to_string(), 2), ("label=bob".to_string(), 2)])
    );
    assert_eq!(
        totals,
        BTreeMap::from([
            ("outcome=allowed,reason=key,source=query".to_string(), 1),
            ("outcome=allowed,reason=key,source=x-api-key".to_string(), 5),
            (
                "outcome=rejected,reason=invalid_key,source=query".to_string(),
                1
            ),
        ])
    );
}
