//! Per-key limits (`proxy_auth::limit`): what a limit adds to the accept
//! path, the 429 against the 401, and 16 threads on one limited key, with
//! governor's limiter and tower-governor's keyed layer doing the same job
//! in the same run. Figures and method: benches/README.md, "Per-key limits".
//!
//! ```sh
//! cargo bench --bench limits              # criterion, paired, scaling (~90 s)
//! LIMITS_PAIRED_SECS=5 LIMITS_ROUNDS=3 cargo bench --bench limits   # quicker
//! ```
//!
//! The limits' largest rate (1,000,000 rpm, burst 1,000,000) passes every
//! request of a short run, so a limited key is timed on its accept path: a
//! fresh layer (fresh state) is built every 200,000 requests, untimed.

#[path = "common/mod.rs"]
mod common;

use common::drive;

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::num::NonZeroU32;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::Body;
use criterion::{black_box, Criterion};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{Layer, Service};
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";
const PLAIN: &str = "sk-plain-0123456789abcdef01234567";
const RATE: &str = "sk-rate-0123456789abcdef012345678";
const SLOTS: &str = "sk-slots-0123456789abcdef01234567";
const SPENT: &str = "sk-spent-0123456789abcdef01234567";
const FULL: &str = "sk-full-0123456789abcdef012345678";
const WRONG: &str = "sk-wrong-0123456789abcdef01234567";
/// Requests after which a limited key's layer is built anew.
const FRESH_EVERY: u64 = 200_000;

/// Answers an empty 200 at once (axum's `Body::empty()` boxes a
/// zero-sized body: no allocation).
#[derive(Clone, Copy, Debug)]
struct Inner;

impl<B> Service<Request<B>> for Inner {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        drop(request);
        ready(Ok(Response::new(Body::empty())))
    }
}

fn request(key: Option<&str>) -> Request<Body> {
    let path = "/v1/chat/completions";
    match key {
        Some(key) => common::openai_request(
            Method::POST,
            path,
            &[("authorization", format!("Bearer {key}"))],
        ),
        None => common::openai_request(Method::POST, path, &[]),
    }
}

/// The key set every layer here judges against.
fn keys() -> KeySet {
    let max = proxy_auth::limit::MAX;
    let mut keys = KeySet::new();
    let add = |keys: &mut KeySet, new| keys.add(new).expect("a valid key");
    add(&mut keys, NewKey::new("plain", PLAIN));
    add(
        &mut keys,
        NewKey::new("rate+slots", KEY).rpm(max).max_concurrent(max),
    );
    add(&mut keys, NewKey::new("rate", RATE).rpm(max));
    add(&mut keys, NewKey::new("slots", SLOTS).max_concurrent(max));
    add(&mut keys, NewKey::new("spent", SPENT).rpm(1).burst(1));
    add(&mut keys, NewKey::new("full", FULL).max_concurrent(1));
    keys
}

fn layer() -> ProxyAuthLayer {
    let config = ProxySecurityConfig::new(
        ProxyAuthMode::AllExceptHealth,
        "sk-admin-unused-0123456789abcdef",
    );
    ProxyAuthLayer::with_keys(config, keys())
}

/// The API key as tower-governor's key: the `Authorization` value (a
/// `HeaderValue` clone shares its bytes).
#[derive(Clone)]
struct ApiKeyHeader;

impl KeyExtractor for ApiKeyHeader {
    type Key = HeaderValue;

    fn extract<T>(&self, req: &Request<T>) -> Result<HeaderValue, GovernorError> {
        req.headers()
            .get(header::AUTHORIZATION)
            .cloned()
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// A boxed service answering one request with a status: the same
/// indirection for every case.
type Call = Box<dyn FnMut(&mut Context<'_>, Request<Body>) -> StatusCode + Send>;

fn boxed<S, RB>(mut service: S) -> Call
where
    S: Service<Request<Body>, Response = Response<RB>> + Send + 'static,
    S::Error: Debug,
{
    Box::new(move |cx, request| {
        let response = drive(&mut service, cx, request);
        let status = response.status();
        drop(black_box(response));
        status
    })
}

/// The services compared, each made fresh (fresh limiter state) on demand.
#[derive(Clone, Copy, Debug)]
enum Subject {
    Bare,
    /// This layer, a key with no limits.
    Plain,
    /// This layer, a key with `rpm` and `max_concurrent`.
    Limited,
    /// This layer, a key with `rpm` only.
    RateOnly,
    /// This layer, a key with `max_concurrent` only.
    SlotsOnly,
    /// This layer (no limits) inside tower-governor keyed by the API key:
    /// authentication plus a per-key rate, the other way round.
    TowerGovernor,
}

impl Subject {
    fn key(self) -> &'static str {
        match self {
            Subject::Limited => KEY,
            Subject::RateOnly => RATE,
            Subject::SlotsOnly => SLOTS,
            _ => PLAIN,
        }
    }

    fn make(self) -> Call {
        // Both layered cases hand axum's `Body` out, as tower-governor
        // requires of its inner service: the same mapping for both.
        let to_body = |r: Response<proxy_auth::ResponseBody<Body>>| r.map(Body::new);
        match self {
            Subject::Bare => boxed(Inner),
            Subject::Plain | Subject::Limited | Subject::RateOnly | Subject::SlotsOnly => {
                boxed(tower::util::MapResponseLayer::new(to_body).layer(layer().layer(Inner)))
            }
            Subject::TowerGovernor => {
                let config = GovernorConfigBuilder::default()
                    .per_nanosecond(1)
                    .burst_size(u32::MAX)
                    .key_extractor(ApiKeyHeader)
                    .finish()
                    .expect("a valid quota");
                let auth = tower::util::MapResponseLayer::new(to_body).layer(layer().layer(Inner));
                boxed(GovernorLayer::new(config).layer(auth))
            }
        }
    }
}

fn criterion_cases(c: &mut Criterion) {
    let waker = Waker::noop();
    let mut group = c.benchmark_group("limits");
    let cases: [(&str, &str, StatusCode); 8] = [
        ("accept, key without limits", PLAIN, StatusCode::OK),
        (
            "accept, key with rpm and max_concurrent",
            KEY,
            StatusCode::OK,
        ),
        ("accept, key with rpm", RATE, StatusCode::OK),
        ("accept, key with max_concurrent", SLOTS, StatusCode::OK),
        ("reject 401, wrong key", WRONG, StatusCode::UNAUTHORIZED),
        ("reject 401, missing key", "", StatusCode::UNAUTHORIZED),
        ("reject 429, rate", SPENT, StatusCode::TOO_MANY_REQUESTS),
        (
            "reject 429, concurrency",
            FULL,
            StatusCode::TOO_MANY_REQUESTS,
        ),
    ];
    for (name, key, expect) in cases {
        let key = (!key.is_empty()).then_some(key);
        let mut service = layer().layer(Inner);
        let mut cx = Context::from_waker(waker);
        // The spent and full keys: spend the one request, hold the one slot.
        let held = drive(&mut service, &mut cx, request(key));
        let mut served = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(64);
                    served += n;
                    if served >= FRESH_EVERY && expect == StatusCode::OK {
                        served = 0;
                        service = layer().layer(Inner);
                    }
                    let batch: Vec<_> = (0..n).map(|_| request(key)).collect();
                    let start = Instant::now();
                    for request in batch {
                        let response = drive(&mut service, &mut cx, request);
                        black_box(response.status());
                    }
                    total += start.elapsed();
                    done += n;
                }
                total
            })
        });
        assert_eq!(
            drive(&mut service, &mut cx, request(key)).status(),
            expect,
            "{name}"
        );
        drop(held);
    }
    let governor = governor::RateLimiter::direct(governor::Quota::per_second(NonZeroU32::MAX));
    group.bench_function("governor direct limiter, check (pass)", |b| {
        b.iter(|| black_box(governor.check()).is_ok())
    });
    let keyed = governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::MAX));
    let key = HeaderValue::from_static("Bearer sk-0123456789abcdef0123456789abcdef");
    group.bench_function("governor keyed limiter, check_key (pass)", |b| {
        b.iter(|| black_box(keyed.check_key(&key)).is_ok())
    });
    group.finish();
}

/// Paired: batches of the limited key right next to batches of the plain
/// key, the difference per request kept; a slowdown from elsewhere on the
/// machine hits both halves of a pair.
fn paired(secs: u64) -> Vec<(String, Vec<f64>)> {
    const BATCH: usize = 64;
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let subjects = [
        Subject::Limited,
        Subject::RateOnly,
        Subject::SlotsOnly,
        Subject::TowerGovernor,
    ];
    let mut diffs: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let mut plain = Subject::Plain.make();
    let mut bare = Subject::Bare.make();
    let mut served = 0u64;
    let mut flip = false;
    let mut services: Vec<Call> = subjects.iter().map(|s| s.make()).collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let time = |call: &mut Call, key: Option<&str>, cx: &mut Context<'_>| {
        let batch: Vec<_> = (0..BATCH).map(|_| request(key)).collect();
        let start = Instant::now();
        for request in batch {
            black_box(call(cx, request));
        }
        start.elapsed().as_nanos() as f64 / BATCH as f64
    };
    while Instant::now() < deadline {
        for (i, subject) in subjects.iter().enumerate() {
            served += BATCH as u64;
            if served > FRESH_EVERY {
                served = 0;
                services = subjects.iter().map(|s| s.make()).collect();
            }
            let reference = match subject {
                Subject::TowerGovernor => &mut bare,
                _ => &mut plain,
            };
            // Which half of the pair runs first alternates.
            flip = !flip;
            let (a, b) = if flip {
                let a = time(&mut services[i], Some(subject.key()), &mut cx);
                (a, time(reference, Some(PLAIN), &mut cx))
            } else {
                let b = time(reference, Some(PLAIN), &mut cx);
                (time(&mut services[i], Some(subject.key()), &mut cx), b)
            };
            diffs[i].push(a - b);
        }
    }
    let names = [
        "key with rpm and max_concurrent, over the same layer's key without limits",
        "key with rpm only, over the key without limits",
        "key with max_concurrent only, over the key without limits",
        "tower-governor keyed (over this layer without limits), over the bare service",
    ];
    names.iter().map(|n| n.to_string()).zip(diffs).collect()
}

fn quantile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// `threads` threads, each with its own service over one shared layer (one
/// key's state), each serving `per_thread` prebuilt requests: the wall
/// time of the whole, with fresh state.
fn scaling(subject: Subject, threads: usize, per_thread: usize) -> f64 {
    let mut best = f64::MAX;
    {
        // One layer for all threads: their services share its state.
        let services: Vec<Call> = match subject {
            Subject::Plain | Subject::Limited | Subject::RateOnly | Subject::SlotsOnly => {
                let layer = layer();
                let to_body = |r: Response<proxy_auth::ResponseBody<Body>>| r.map(Body::new);
                (0..threads)
                    .map(|_| {
                        boxed(tower::util::MapResponseLayer::new(to_body).layer(layer.layer(Inner)))
                    })
                    .collect()
            }
            Subject::TowerGovernor => {
                let config = Arc::new(
                    GovernorConfigBuilder::default()
                        .per_nanosecond(1)
                        .burst_size(u32::MAX)
                        .key_extractor(ApiKeyHeader)
                        .finish()
                        .expect("a valid quota"),
                );
                let governor = GovernorLayer::new(config);
                let layer = layer();
                let to_body = |r: Response<proxy_auth::ResponseBody<Body>>| r.map(Body::new);
                (0..threads)
                    .map(|_| {
                        boxed(governor.layer(
                            tower::util::MapResponseLayer::new(to_body).layer(layer.layer(Inner)),
                        ))
                    })
                    .collect()
            }
            Subject::Bare => (0..threads).map(|_| boxed(Inner)).collect(),
        };
        let barrier = Arc::new(Barrier::new(threads + 1));
        let handles: Vec<_> = services
            .into_iter()
            .map(|mut call| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    // Built on the thread that serves and frees them.
                    let requests: Vec<_> = (0..per_thread)
                        .map(|_| request(Some(subject.key())))
                        .collect();
                    let waker = Waker::noop();
                    let mut cx = Context::from_waker(waker);
                    barrier.wait();
                    let start = Instant::now();
                    for request in requests {
                        assert_eq!(call(&mut cx, request), StatusCode::OK);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        // From the first thread's start to the last one's end (the main
        // thread may be scheduled late after the barrier).
        let spans: Vec<(Instant, Instant)> = handles
            .into_iter()
            .map(|h| h.join().expect("a bench thread"))
            .collect();
        let first = spans.iter().map(|s| s.0).min().expect("a thread");
        let last = spans.iter().map(|s| s.1).max().expect("a thread");
        best = best.min(last.duration_since(first).as_secs_f64());
    }
    (threads * per_thread) as f64 / best / 1e6
}

/// [`scaling`] for each subject, `rounds` rounds in turn (the subjects'
/// order rotating, so none always runs first), best of each.
fn scaling_rounds(threads: usize, per_thread: usize, rounds: usize) -> [f64; 3] {
    let subjects = [Subject::Plain, Subject::Limited, Subject::TowerGovernor];
    let mut best = [0.0f64; 3];
    for round in 0..rounds {
        for i in 0..3 {
            let at = (i + round) % 3;
            best[at] = best[at].max(scaling(subjects[at], threads, per_thread));
        }
    }
    best
}

fn main() {
    if !common::selected("limits") {
        return;
    }
    let secs = common::env_or("LIMITS_PAIRED_SECS", 15);
    let rounds = common::env_or("LIMITS_ROUNDS", 5) as usize;
    // LIMITS_PARTS=criterion,paired,scaling (default: all three).
    let parts = std::env::var("LIMITS_PARTS").unwrap_or_else(|_| "criterion,paired,scaling".into());
    if parts.contains("criterion") {
        let mut criterion = Criterion::default()
            .configure_from_args()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        criterion_cases(&mut criterion);
        criterion.final_summary();
    }
    if parts.contains("paired") {
        println!("\n| paired case | median [IQR] (ns per request) | pairs |");
        println!("|---|---:|---:|");
    }
    for (name, mut d) in if parts.contains("paired") {
        paired(secs)
    } else {
        Vec::new()
    } {
        let (q1, m, q3) = (
            quantile(&mut d, 0.25),
            quantile(&mut d, 0.5),
            quantile(&mut d, 0.75),
        );
        println!("| {name} | {m:+.1} [{q1:+.1}, {q3:+.1}] | {} |", d.len());
    }

    if !parts.contains("scaling") {
        return;
    }
    println!("\n| threads on one key | without limits (M req/s) | rpm + max_concurrent (M req/s) | tower-governor keyed (M req/s) |");
    println!("|---:|---:|---:|---:|");
    // The same 160,000 requests in all, however many threads share them.
    for threads in [1, 2, 4, 16] {
        let [plain, limited, governor] = scaling_rounds(threads, 160_000 / threads, rounds);
        println!("| {threads} | {plain:.2} | {limited:.2} | {governor:.2} |");
    }
}
