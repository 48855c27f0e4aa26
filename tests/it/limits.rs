//! Per-key limits through real servers: a concurrency slot held across a
//! whole SSE stream of the forward example and freed when the client hangs
//! up, a rate limit's state kept across reloads of a watched file and freed
//! when the key leaves it. Changes are waited for by polling against a
//! deadline; no test asserts how long anything took.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxy_auth::{KeySet, NewKey, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tokio::net::TcpListener;

use crate::forward_example;
use crate::upstream::{self, UPSTREAM_KEY};

const DEADLINE: Duration = Duration::from_secs(10);

/// The forward example with the named `keys`, in this process.
async fn start_proxy(keys: KeySet, upstream: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-proxy-admin-0123");
    let shared = SharedSecurityConfig::with_keys(config, keys);
    let upstream = forward_example::Upstream::new(upstream, Some(UPSTREAM_KEY)).unwrap();
    let service = crate::common::forward_app(shared, upstream).unwrap();
    tokio::spawn(forward_example::serve(
        listener,
        service,
        std::future::pending(),
    ));
    addr
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn post(proxy: SocketAddr, path: &str, key: &str) -> Request<Empty<Bytes>> {
    Request::post(format!("http://{proxy}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("x-events", "40")
        .header("x-pause-ms", "25")
        .body(Empty::new())
        .unwrap()
}

/// A short request with `key`: its status and `x-proxy-auth-error`.
async fn status(proxy: SocketAddr, key: &str) -> (StatusCode, Option<String>) {
    let response = client()
        .request(post(proxy, "/v1/models", key))
        .await
        .unwrap();
    let marker = response
        .headers()
        .get("x-proxy-auth-error")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = response.status();
    let _ = response.into_body().collect().await;
    (status, marker)
}

/// Polls until `key` is let through again (refused requests spend nothing).
async fn until_accepted(proxy: SocketAddr, key: &str) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if status(proxy, key).await.0 == StatusCode::OK {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_holds_its_slot_to_the_end_and_a_hang_up_frees_it() {
    let upstream = upstream::start().await;
    let mut keys = KeySet::new();
    keys.add(NewKey::new("one-at-a-time", "sk-one-0123").max_concurrent(1))
        .unwrap();
    let proxy = start_proxy(keys, &upstream.url()).await;

    // A whole stream, read event by event: refused beside it at every event.
    let response = client()
        .request(post(proxy, "/v1/chat/completions", "sk-one-0123"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut events = 0;
    while let Some(frame) = body.frame().await {
        if frame.unwrap().is_data() {
            events += 1;
            if events % 10 == 1 && events < 30 {
                let (refused, marker) = status(proxy, "sk-one-0123").await;
                assert_eq!(
                    refused,
                    StatusCode::TOO_MANY_REQUESTS,
                    "during event {events}"
                );
                assert_eq!(marker.as_deref(), Some("concurrency_limited"));
            }
        }
    }
    assert!(events > 10, "{events}");
    // Read to its end: the slot is free for the next request.
    drop(body);
    assert!(until_accepted(proxy, "sk-one-0123").await);

    // A client that hangs up mid-stream frees it too.
    let stream = client()
        .request(post(proxy, "/v1/chat/completions", "sk-one-0123"))
        .await
        .unwrap();
    let mut body = stream.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(
        status(proxy, "sk-one-0123").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    drop(body);
    assert!(
        until_accepted(proxy, "sk-one-0123").await,
        "the hung-up stream's slot was never given back"
    );
}

#[cfg(feature = "watch")]
#[tokio::test(flavor = "current_thread")]
async fn a_watched_file_keeps_each_keys_state_across_reloads_and_frees_it_on_removal() {
    use proxy_auth::watch::watch_file;
    use proxy_auth::{Decision, ProxyAuthLayer, RejectReason};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    let file = |extra: &str, with_ci: bool| {
        let ci = "[[keys]]\nlabel = \"ci\"\nkey = \"sk-ci-0123\"\nrpm = 1\nburst = 2\n";
        format!(
            "auth_mode = \"strict\"\napi_key = \"sk-admin\"\nlimits = {{ rpm = 1, burst = 1 }}\n{}{extra}",
            if with_ci { ci } else { "" }
        )
    };
    std::fs::write(&path, file("", true)).unwrap();
    let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "x"));
    let _watch = watch_file(shared.clone(), &path).unwrap();
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    let service = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    let send = |key: &str| {
        let request = crate::common::get::<()>("/v1/models", &[("x-api-key", key)]);
        let service = service.clone();
        async move {
            tower::ServiceExt::oneshot(service, request)
                .await
                .unwrap()
                .status()
        }
    };
    let peek = |key: &str| {
        layer.check(&crate::common::get::<()>(
            "/v1/models",
            &[("x-api-key", key)],
        ))
    };
    let limited = |decision: Decision| match decision {
        Decision::Reject(r) => r.reason == RejectReason::RateLimited,
        Decision::Allow(_) => false,
    };

    // Spend ci's burst and the admin key's (the file's default limits).
    for _ in 0..2 {
        assert_eq!(send("sk-ci-0123").await, StatusCode::OK);
    }
    assert_eq!(send("sk-admin").await, StatusCode::OK);
    assert!(limited(peek("sk-ci-0123")) && limited(peek("sk-admin")));

    // Unrelated edits: another key, then a new mode. Nobody gets a fresh burst.
    std::fs::write(
        &path,
        file("[[keys]]\nlabel = \"new\"\nkey = \"sk-new-0123\"\n", true),
    )
    .unwrap();
    assert!(wait_for(|| shared.keys().get("new").is_some()).await);
    std::fs::write(
        &path,
        file("[[keys]]\nlabel = \"new\"\nkey = \"sk-new-0123\"\n", true)
            .replace("strict", "all_except_health"),
    )
    .unwrap();
    assert!(wait_for(|| shared.effective_auth_mode() == ProxyAuthMode::AllExceptHealth).await);
    assert!(
        limited(peek("sk-ci-0123")),
        "a reload handed ci a fresh burst"
    );
    assert!(
        limited(peek("sk-admin")),
        "a reload handed api_key a fresh burst"
    );
    assert_eq!(send("sk-new-0123").await, StatusCode::OK);

    // Removed, then added back: its old state is gone with it.
    std::fs::write(&path, file("", false)).unwrap();
    assert!(wait_for(|| shared.keys().get("ci").is_none()).await);
    std::fs::write(&path, file("", true)).unwrap();
    assert!(wait_for(|| shared.keys().get("ci").is_some()).await);
    assert_eq!(send("sk-ci-0123").await, StatusCode::OK);
    assert_eq!(send("sk-ci-0123").await, StatusCode::OK);
    assert_eq!(send("sk-ci-0123").await, StatusCode::TOO_MANY_REQUESTS);
}

/// Polls `done` against the deadline, yielding to the file's follower task.
#[cfg(feature = "watch")]
async fn wait_for(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// With key labels on, a key with a concurrency limit has a gauge of its
/// requests in flight, and its 429s are counted by reason.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread")]
async fn with_key_labels_a_gauge_follows_each_keys_requests_in_flight() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use proxy_auth::ProxyAuthLayer;
    use tower::ServiceExt;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let mut keys = KeySet::new();
    keys.add(NewKey::new("two", "sk-two-0123").max_concurrent(2))
        .unwrap();
    let config = ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin");
    let service = tower::Layer::layer(
        &ProxyAuthLayer::with_keys(config, keys).metrics_key_labels(true),
        tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
        }),
    );
    let send = || {
        let request = crate::common::get::<()>("/v1/models", &[("x-api-key", "sk-two-0123")]);
        service.clone().oneshot(request)
    };
    let observed = || {
        let mut gauge = None;
        let mut limited = 0;
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            match (key.name(), value) {
                ("proxy_auth_key_in_flight", DebugValue::Gauge(v)) => {
                    assert_eq!(labels, ["label=two"]);
                    gauge = Some(v.into_inner());
                }
                ("proxy_auth_requests_total", DebugValue::Counter(n))
                    if labels.iter().any(|l| l == "reason=concurrency_limited") =>
                {
                    limited += n;
                }
                _ => {}
            }
        }
        (gauge, limited)
    };
    let first = send().await.unwrap();
    assert_eq!(observed(), (Some(1.0), 0));
    let second = send().await.unwrap();
    assert_eq!(observed(), (Some(2.0), 0));
    assert_eq!(
        send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A snapshot drains what it reads: only the 429's count is new here.
    assert_eq!(observed().1, 1);
    drop(first);
    assert_eq!(observed(), (Some(1.0), 0));
    drop(second);
    assert_eq!(observed(), (Some(0.0), 0));
}

/// A file with a limit that cannot be right is a bad file: an error with
/// its line at start, never a key left unlimited.
#[cfg(feature = "watch")]
#[tokio::test(flavor = "current_thread")]
async fn a_watched_file_with_a_bad_limit_is_refused_with_its_line() {
    use proxy_auth::watch::watch_file;

    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        ("api_key = \"k\"\nlimits = { rpm = 0 }\n", "rpm = 0"),
        (
            "api_key = \"k\"\nlimits = { burst = 5 }\n",
            "burst is set without rpm",
        ),
        (
            "api_key = \"k\"\n[[keys]]\nlabel = \"ci\"\nkey = \"sk-ci-0123\"\nmax_concurrent = 0\n",
            "max_concurrent = 0",
        ),
        (
            "api_key = \"k\"\n[[keys]]\nlabel = \"ci\"\nkey = \"sk-ci-0123\"\nrpm = 2000000\n",
            "more than 1000000",
        ),
    ] {
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, text).unwrap();
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "x"));
        let err = watch_file(shared, &path).expect_err(text).to_string();
        assert!(err.contains(says) && err.contains("auth.toml:"), "{err}");
        assert!(!err.contains("sk-ci-0123"), "{err}");
    }
}
