//! Instructions per request, counted by valgrind's callgrind: the same
//! cases as `overhead`, in a unit that does not move when the machine is
//! busy.
//!
//! Each case runs in a child process under callgrind twice, serving 0 and
//! then `N` requests (built and dropped the same way in every case); the
//! difference divided by `N` is the instructions one request costs, and the
//! bare inner service's figure is subtracted to give the layer's share.
//! Instructions are not nanoseconds (a cache miss costs no instruction), so
//! this complements the timed benches rather than replacing them.
//!
//! ```text
//! cargo bench --bench instructions        # needs valgrind (apt-get install valgrind)
//! ```

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Empty;
use proxy_auth::{
    KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};
use tower::{Layer, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";
const CASE_VAR: &str = "PROXY_AUTH_INSN_CASE";
const COUNT_VAR: &str = "PROXY_AUTH_INSN_N";

#[derive(Clone, Copy)]
struct Inner;

impl Service<Request<()>> for Inner {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        drop(black_box(request));
        ready(Ok(Response::new(Empty::new())))
    }
}

fn request(headers: &[(&'static str, String)]) -> Request<()> {
    common::openai_request(Method::POST, "/v1/chat/completions", headers)
}

/// Serves `n` requests from `make` through `service`; returns the last status.
fn run<S, B>(mut service: S, n: u64, make: impl Fn() -> Request<()>) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut status = StatusCode::OK;
    for _ in 0..n {
        let request = make();
        assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
        let future = pin!(service.call(request));
        let Poll::Ready(Ok(response)) = future.poll(&mut cx) else {
            panic!("the service answers at once");
        };
        status = response.status();
        drop(black_box(response));
    }
    status
}

/// What is sent: each has its bare baseline, so building the request (and
/// its header values) cancels out.
const REQUESTS: [&str; 6] = [
    "bearer",
    "goog_key",
    "missing",
    "wrong_same_len",
    "preflight",
    "gemini_named",
];

/// (service, request) pairs measured besides the bare baselines.
const CASES: [(&str, &str); 13] = [
    ("new", "bearer"),
    ("shared", "bearer"),
    ("new", "goog_key"),
    ("new", "preflight"),
    ("new", "missing"),
    ("shared", "missing"),
    ("new", "wrong_same_len"),
    ("tower_http_bearer", "bearer"),
    ("tower_http_bearer", "missing"),
    // A named key on a Gemini path, without and with scopes.
    ("named", "gemini_named"),
    ("named_route", "gemini_named"),
    ("named_model", "gemini_named"),
    ("named_route_model", "gemini_named"),
];

const NAMED_KEY: &str = "sk-team-a-0123456789abcdef0123";

/// A layer with one named key, with a route and a model scope or not.
fn named(routes: bool, models: bool) -> ProxyAuthLayer {
    let mut key = NewKey::new("team-a", NAMED_KEY);
    if models {
        key = key.models(["gemini-1.5-*", "gpt-4o-mini"]);
    }
    if routes {
        key = key.routes(["/v1beta/models", "/v1/chat/completions"]);
    }
    let mut keys = KeySet::new();
    keys.add(key).expect("a valid key");
    ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys,
    )
}

fn make(kind: &str) -> Request<()> {
    match kind {
        "bearer" => request(&[("authorization", format!("Bearer {KEY}"))]),
        "goog_key" => request(&[("x-goog-api-key", KEY.to_string())]),
        "missing" => request(&[]),
        "wrong_same_len" => request(&[(
            "authorization",
            format!("Bearer {}X", &KEY[..KEY.len() - 1]),
        )]),
        "gemini_named" => {
            let mut gemini = request(&[("x-goog-api-key", NAMED_KEY.to_string())]);
            *gemini.uri_mut() =
                http::Uri::from_static("/v1beta/models/gemini-1.5-flash:generateContent");
            gemini
        }
        "preflight" => {
            let mut preflight = request(&[]);
            *preflight.method_mut() = Method::OPTIONS;
            preflight
        }
        other => panic!("unknown request {other}"),
    }
}

/// One case, in the child process: `service` serving `n` + 1 requests of
/// `kind` (the first one also in the 0 run, so one-time set-up such as the
/// 401 table or arc-swap's thread slot cancels out).
fn child(service: &str, kind: &str, n: u64) {
    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let requests = || make(kind);
    let status = match service {
        "bare" => run(Inner, n + 1, requests),
        "new" => run(ProxyAuthLayer::new(config()).layer(Inner), n + 1, requests),
        "shared" => run(
            ProxyAuthLayer::from_shared(SharedSecurityConfig::new(config())).layer(Inner),
            n + 1,
            requests,
        ),
        "named" => run(named(false, false).layer(Inner), n + 1, requests),
        "named_route" => run(named(true, false).layer(Inner), n + 1, requests),
        "named_model" => run(named(false, true).layer(Inner), n + 1, requests),
        "named_route_model" => run(named(true, true).layer(Inner), n + 1, requests),
        "tower_http_bearer" => {
            #[allow(deprecated)]
            let layer = ValidateRequestHeaderLayer::bearer(KEY);
            run(layer.layer(Inner), n + 1, requests)
        }
        other => panic!("unknown service {other}"),
    };
    let accepted =
        service == "bare" || matches!(kind, "bearer" | "goog_key" | "preflight" | "gemini_named");
    assert_eq!(
        status == StatusCode::OK,
        accepted,
        "{service} {kind}: {status}"
    );
}

/// Instructions callgrind counted for one child run.
fn count(service: &str, kind: &str, n: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .env(CASE_VAR, format!("{service}/{kind}"))
        .env(COUNT_VAR, n.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{service} {kind}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        let n = std::env::var(COUNT_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (service, kind) = case.split_once('/').expect("service/request");
        child(service, kind, n);
        return;
    }
    if !common::selected("instructions") || std::env::args().any(|a| a == "--list") {
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skipped: valgrind not found (apt-get install valgrind)");
        return;
    }
    let n = common::env_or("PROXY_AUTH_INSN_REQUESTS", 20_000);
    let per_request = |service: &str, kind: &str| {
        let zero = count(service, kind, 0)?;
        let many = count(service, kind, n)?;
        Some((many - zero) as f64 / n as f64)
    };
    let mut bare = std::collections::HashMap::new();
    for kind in REQUESTS {
        let Some(insn) = per_request("bare", kind) else {
            println!("callgrind failed");
            return;
        };
        bare.insert(kind, insn);
    }
    println!("\n| service | request | instructions per request | layer's share (minus bare, same request) |");
    println!("|---|---|---:|---:|");
    for (service, kind) in CASES {
        let Some(insn) = per_request(service, kind) else {
            println!("callgrind failed");
            return;
        };
        println!(
            "| {service} | {kind} | {insn:.0} | {:+.0} |",
            insn - bare[kind]
        );
    }
    println!("\n({n} requests per case, callgrind; bare: {bare:.0?})");
}
