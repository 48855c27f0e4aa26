//! Hot reload under load: many concurrent requests go through a layer built
//! with `ProxyAuthLayer::from_shared` while another thread keeps swapping the
//! key and the mode with `SharedSecurityConfig::store` (and `update`).
//!
//! Every response must be exactly the answer of one config that was in force
//! while the request was in flight: the writer publishes a version number
//! after each store, each request reads it before and after, and its response
//! must match a config from that window. Four configs that differ in mode and
//! key are rotated, and the requests are chosen so that a mix of one config's
//! mode with another's key gives an answer none of them gives (`/healthz`
//! with key B under A's strict mode would be authenticated by B's key). No
//! panics and no 5xx are allowed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tower::{Layer, ServiceExt};

use crate::model;

const KA: &str = "sk-config-a-0123456789";
const KB: &str = "sk-config-b-9876543210";

/// The rotation: config `i` is in force after the writer's `i`-th swap
/// (index `i % 4`).
fn configs() -> [ProxySecurityConfig; 4] {
    [
        ProxySecurityConfig::new(ProxyAuthMode::Strict, KA),
        ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KB),
        ProxySecurityConfig::new(ProxyAuthMode::Off, KA),
        ProxySecurityConfig::new(ProxyAuthMode::Strict, ""),
    ]
}

/// The requests: (path, key header, key).
const REQUESTS: [(&str, Option<(&str, &str)>); 6] = [
    (
        "/v1/models",
        Some(("authorization", "Bearer sk-config-a-0123456789")),
    ),
    ("/v1/models", Some(("x-api-key", KB))),
    ("/v1/models", None),
    ("/healthz", None),
    ("/healthz", Some(("x-goog-api-key", KB))),
    ("/v1/models", Some(("x-goog-api-key", "sk-neither"))),
];

/// (status, x-proxy-auth-error, the Authenticated extension the inner
/// service saw).
type Outcome = (u16, &'static str, &'static str);

const OK_NONE: Outcome = (200, "", "none");
const MISSING: Outcome = (401, "missing_key", "");
const INVALID: Outcome = (401, "invalid_key", "");
const NO_KEY: Outcome = (401, "no_key_configured", "");

/// What each config answers to each request, written out by hand from the
/// rules rather than computed by the library.
const EXPECTED: [[Outcome; 6]; 4] = [
    // Strict, KA.
    [
        (200, "", "authorization"),
        INVALID,
        MISSING,
        MISSING,
        INVALID,
        INVALID,
    ],
    // AllExceptHealth, KB.
    [
        INVALID,
        (200, "", "x-api-key"),
        MISSING,
        OK_NONE,
        OK_NONE,
        INVALID,
    ],
    // Off.
    [OK_NONE; 6],
    // Strict, no key configured.
    [NO_KEY; 6],
];

fn request(kind: usize) -> Request<()> {
    let (path, header) = REQUESTS[kind];
    let mut builder = Request::get(path);
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(()).expect("static request is valid")
}

#[derive(Default, Debug)]
struct Stats {
    requests: usize,
    /// Responses whose window spanned at least one swap.
    raced: usize,
    /// How many responses matched each config.
    per_config: [usize; 4],
}

#[test]
fn every_response_matches_one_config_in_force() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 2_500;

    let configs = configs();
    let shared = SharedSecurityConfig::new(configs[0].clone());
    let version = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // The writer is a plain thread, so swaps really run in parallel with the
    // runtime's workers instead of between their polls.
    let writer = {
        let (shared, version, stop, configs) = (
            shared.clone(),
            version.clone(),
            stop.clone(),
            configs.clone(),
        );
        std::thread::spawn(move || {
            let mut swaps = 0usize;
            while !stop.load(SeqCst) && swaps < 1_000_000 {
                swaps += 1;
                let next = configs[swaps % 4].clone();
                if swaps % 10 == 0 {
                    shared.update(|config| *config = next.clone()).unwrap();
                } else {
                    shared.store(next).unwrap();
                }
                version.store(swaps, SeqCst);
                std::thread::sleep(Duration::from_micros(20));
            }
            swaps
        })
    };

    let service = ProxyAuthLayer::from_shared(shared.clone())
        .insert_identity(true)
        .layer(model::Echo);
    let stats = Arc::new(Mutex::new(Stats::default()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let (service, version, stats, failures) = (
                service.clone(),
                version.clone(),
                stats.clone(),
                failures.clone(),
            );
            clients.push(tokio::spawn(async move {
                for i in 0..PER_CLIENT {
                    let kind = (client + i) % REQUESTS.len();
                    let before = version.load(SeqCst);
                    let response = service
                        .clone()
                        .oneshot(request(kind))
                        .await
                        .expect("infallible");
                    let after = version.load(SeqCst);
                    let header = |name: &str| {
                        response
                            .headers()
                            .get(name)
                            .map_or("", |v| v.to_str().unwrap_or("<non-ascii>"))
                            .to_owned()
                    };
                    let got = (
                        response.status(),
                        header("x-proxy-auth-error"),
                        header("x-inner-auth"),
                    );
                    let matches = |c: usize| {
                        let (status, error, inner) = EXPECTED[c][kind];
                        got == (
                            StatusCode::from_u16(status).expect("valid status"),
                            error.to_owned(),
                            inner.to_owned(),
                        )
                    };
                    // The config used was stored at a version in
                    // before..=after+1: the writer publishes the number just
                    // after the store.
                    let in_window = (before..=after + 1).find(|v| matches(v % 4));
                    {
                        let mut stats = stats.lock().expect("stats lock");
                        stats.requests += 1;
                        stats.raced += usize::from(after > before);
                        match in_window {
                            Some(v) => stats.per_config[v % 4] += 1,
                            None => failures.lock().expect("failures lock").push(format!(
                                "request {:?} got {got:?} with versions {before}..={after}; \
                                 configs in force could only answer {:?}",
                                REQUESTS[kind],
                                (before..=after + 1)
                                    .map(|v| EXPECTED[v % 4][kind])
                                    .collect::<Vec<_>>()
                            )),
                        }
                    }
                    if response.status().is_server_error() {
                        failures
                            .lock()
                            .expect("failures lock")
                            .push(format!("5xx: {got:?}"));
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        for client in clients {
            client.await.expect("a client task panicked");
        }
    });
    stop.store(true, SeqCst);
    let swaps = writer.join().expect("the writer panicked");

    let failures = failures.lock().expect("failures lock");
    let stats = stats.lock().expect("stats lock");
    assert!(
        failures.is_empty(),
        "{} of {} responses matched no config in force (first 10):\n{}",
        failures.len(),
        stats.requests,
        failures[..failures.len().min(10)].join("\n")
    );
    assert_eq!(stats.requests, CLIENTS * PER_CLIENT);
    // The test only means something if swaps really interleaved with
    // requests and every config was seen serving.
    assert!(swaps >= 20, "only {swaps} swaps happened: {stats:?}");
    assert!(
        stats.per_config.iter().all(|&n| n > 0),
        "not every config served a request: {stats:?}"
    );
    assert!(stats.raced > 0, "no request overlapped a swap: {stats:?}");
    eprintln!("{swaps} swaps, {stats:?}");
}

/// The check must be able to fail: a response that mixes config A's mode
/// with config B's key (`/healthz` authenticated by B's key under strict)
/// matches no config, in any window.
#[test]
fn a_mixed_config_answer_is_caught() {
    let mixed = ProxySecurityConfig::new(ProxyAuthMode::Strict, KB);
    let layer = ProxyAuthLayer::new(mixed).insert_identity(true);
    let kind = 4;
    let response = model::now(layer.layer(model::Echo).oneshot(request(kind))).expect("infallible");
    let inner = response.headers()["x-inner-auth"].to_str().expect("ascii");
    let got = (response.status().as_u16(), "", inner);
    assert_eq!(got, (200, "", "x-goog-api-key"));
    assert!(EXPECTED.iter().all(|answers| answers[kind] != got));
}
