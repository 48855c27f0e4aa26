//! What the layer adds to one request, next to what its peers add.
//!
//! Every case wraps the same trivial inner service and is polled directly
//! (no runtime, a no-op waker). Requests are built before the timed part and
//! freed after it (the inner service parks them); `poll_ready`, `call`, the
//! poll to completion and dropping the response are timed.
//!
//! Two measurements, one run:
//!
//! 1. criterion, case after case: the usual report, and each case's median;
//! 2. paired: round after round, one batch of each case right next to one
//!    batch of the bare service, keeping the difference. This is the
//!    overhead figure in the README: on a shared machine, a slowdown from
//!    elsewhere that lasts seconds shifts one criterion case against
//!    another, but hits both halves of a pair alike.
//!
//! At the end a Markdown table of both is printed, with the targets.
//!
//! ```text
//! cargo bench --bench overhead
//! PAIRED_SECS=8 cargo bench --bench overhead    # the default
//! ```

#[path = "common/mod.rs"]
mod common;

use common::drive;

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::IntoResponse;
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Empty;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tower::{Layer, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;

const GROUP: &str = "overhead";
/// A key of the shape `generate_api_key` produces (35 bytes).
const KEY: &str = "sk-0123456789abcdef0123456789abcdef";
const WRONG_SAME_LEN: &str = "sk-0123456789abcdef0123456789abcdeX";
const WRONG_OTHER_LEN: &str = "sk-short";
/// A 401 body of the size of the layer's OpenAI-shaped `missing_key` one.
const FLOOR_BODY: &str = r#"{"error":{"message":"Rejected by the proxy's API-key check (proxy-auth): no API key was sent. Send it as 'Authorization: Bearer <key>', or in the x-api-key or x-goog-api-key header.","type":"invalid_request_error","param":null,"code":"missing_key"}}"#;

/// The floor: answers every request with an empty 200 at once.
///
/// It parks the request instead of dropping it: freeing a request's header
/// map costs as much as the whole layer and varies with the allocator's
/// state, so like building it, freeing it happens outside the timed part
/// (the next batch's setup empties the parking lot).
#[derive(Clone, Copy, Debug)]
struct Inner;

/// Requests per timed batch; the parking lot never grows during a batch.
const BATCH: u64 = 64;

/// Timed pairs of batches per case and round of the paired measurement.
const PAIRS: usize = 4;

thread_local! {
    static PARKED: RefCell<Vec<Request<Body>>> = RefCell::new(Vec::with_capacity(4 * BATCH as usize));
}

impl Service<Request<Body>> for Inner {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        PARKED.with(|parked| parked.borrow_mut().push(request));
        ready(Ok(Response::new(Empty::new())))
    }
}

/// Builds a request for the next timed call, after freeing the requests the
/// previous batch parked (untimed: criterion runs every setup of a batch
/// before timing it).
fn setup(make: &dyn Fn() -> Request<Body>) -> Request<Body> {
    PARKED.with(|parked| parked.borrow_mut().clear());
    make()
}

/// A request as an OpenAI-style client sends it, plus `extra` headers.
fn request(method: Method, path: &str, extra: &[(&'static str, String)]) -> Request<Body> {
    common::openai_request(method, path, extra)
}

fn bearer(key: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {key}"))]
}

/// The requests every layer is timed on, with the status the `ProxyAuth`
/// cases must answer.
fn cases() -> Vec<(&'static str, StatusCode, Make)> {
    let api = "/v1/chat/completions";
    vec![
        (
            "accept_bearer",
            StatusCode::OK,
            Rc::new(move || request(Method::POST, api, &bearer(KEY))),
        ),
        (
            "accept_goog_key",
            StatusCode::OK,
            Rc::new(move || request(Method::POST, api, &[("x-goog-api-key", KEY.to_string())])),
        ),
        (
            "exempt_healthz",
            StatusCode::OK,
            Rc::new(|| request(Method::GET, "/healthz", &[])),
        ),
        (
            "options_preflight",
            StatusCode::OK,
            Rc::new(move || request(Method::OPTIONS, api, &[])),
        ),
        (
            "reject_missing",
            StatusCode::UNAUTHORIZED,
            Rc::new(move || request(Method::POST, api, &[])),
        ),
        (
            "reject_wrong_same_len",
            StatusCode::UNAUTHORIZED,
            Rc::new(move || request(Method::POST, api, &bearer(WRONG_SAME_LEN))),
        ),
        (
            "reject_wrong_other_len",
            StatusCode::UNAUTHORIZED,
            Rc::new(move || request(Method::POST, api, &bearer(WRONG_OTHER_LEN))),
        ),
    ]
}

/// Builds one request of a case.
type Make = Rc<dyn Fn() -> Request<Body>>;

/// Serves one request, drops the response, returns its status.
type Call = Box<dyn FnMut(&mut Context<'_>, Request<Body>) -> StatusCode>;

/// One timed case: a service (behind a uniform, boxed call, the same
/// indirection for every case including the bare one) and its requests.
struct Case {
    id: String,
    make: Make,
    call: Call,
}

impl Case {
    /// Wraps `service`, after checking it answers `make()` with `expect`.
    fn new<S, RB>(id: &str, mut service: S, expect: StatusCode, make: &Make) -> Case
    where
        S: Service<Request<Body>, Response = Response<RB>> + 'static,
        S::Error: Debug,
        RB: 'static,
    {
        let waker = Waker::noop();
        let status = drive(&mut service, &mut Context::from_waker(waker), make()).status();
        assert_eq!(status, expect, "{id}: unexpected status");
        Case {
            id: id.to_string(),
            make: make.clone(),
            call: Box::new(move |cx, request| {
                let response = drive(&mut service, cx, request);
                let status = response.status();
                drop(black_box(response));
                status
            }),
        }
    }
}

/// Every service timed, the bare inner service first.
fn registry() -> Vec<Case> {
    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let accept: Make = Rc::new(|| request(Method::POST, "/v1/chat/completions", &bearer(KEY)));
    let missing: Make = Rc::new(|| request(Method::POST, "/v1/chat/completions", &[]));
    let mut all = vec![Case::new("bare", Inner, StatusCode::OK, &accept)];

    let new = ProxyAuthLayer::new(config());
    let shared = ProxyAuthLayer::from_shared(SharedSecurityConfig::new(config()));
    for (case, status, make) in cases() {
        all.push(Case::new(
            &format!("new_{case}"),
            new.layer(Inner),
            status,
            &make,
        ));
        all.push(Case::new(
            &format!("shared_{case}"),
            shared.layer(Inner),
            status,
            &make,
        ));
    }
    // `auto` without LAN access resolves to `off`.
    let off = ProxySecurityConfig::new(ProxyAuthMode::Auto, KEY);
    all.push(Case::new(
        "new_mode_off",
        ProxyAuthLayer::new(off.clone()).layer(Inner),
        StatusCode::OK,
        &accept,
    ));
    all.push(Case::new(
        "shared_mode_off",
        ProxyAuthLayer::from_shared(off.into()).layer(Inner),
        StatusCode::OK,
        &accept,
    ));

    // Deprecated in tower-http 0.6 as "too basic", yet it is what users
    // reach for, and the issue names it as the peer to beat.
    #[allow(deprecated)]
    let tower_http = ValidateRequestHeaderLayer::bearer(KEY);
    all.push(Case::new(
        "tower_http_bearer_accept",
        tower_http.layer(Inner),
        StatusCode::OK,
        &accept,
    ));
    all.push(Case::new(
        "tower_http_bearer_reject_missing",
        tower_http.layer(Inner),
        StatusCode::UNAUTHORIZED,
        &missing,
    ));

    let locked = Arc::new(tokio::sync::RwLock::new(PeerConfig {
        mode: ProxyAuthMode::AllExceptHealth,
        api_key: KEY.into(),
    }));
    let from_fn = from_fn_with_state(locked, from_fn_check);
    all.push(Case::new(
        "axum_from_fn_accept",
        from_fn.layer(Inner),
        StatusCode::OK,
        &accept,
    ));
    all.push(Case::new(
        "axum_from_fn_reject_missing",
        from_fn.layer(Inner),
        StatusCode::UNAUTHORIZED,
        &missing,
    ));

    // The floor of any rejection that keeps this crate's 401: no decision,
    // just drop the request and answer a prebuilt body with the same three
    // headers, cloned from a map built once (two allocations).
    let mut headers = http::HeaderMap::new();
    headers.insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
    headers.insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    headers.insert(
        proxy_auth::REJECTION_HEADER,
        "missing_key".parse().expect("valid"),
    );
    let floor = tower::service_fn(move |request: Request<Body>| {
        drop(request);
        let mut response = Response::new(Body::from(FLOOR_BODY));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        *response.headers_mut() = headers.clone();
        ready(Ok::<_, Infallible>(response))
    });
    all.push(Case::new(
        "floor_static_401_three_headers",
        floor,
        StatusCode::UNAUTHORIZED,
        &missing,
    ));
    all
}

fn benches(c: &mut Criterion, all: &mut [Case]) {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for Case { id, make, call } in all.iter_mut() {
        c.benchmark_group(GROUP).bench_function(id.as_str(), |b| {
            b.iter_batched(
                || setup(&**make),
                |request| call(&mut cx, request),
                BatchSize::NumIterations(BATCH),
            )
        });
    }

    // The decision alone, on a request that is only borrowed: what is left
    // of the overhead once moving the request and response is taken out.
    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let new = ProxyAuthLayer::new(config());
    let shared = ProxyAuthLayer::from_shared(SharedSecurityConfig::new(config()));
    for (id, layer) in [("check_only_new", &new), ("check_only_shared", &shared)] {
        let request = request(Method::POST, "/v1/chat/completions", &bearer(KEY));
        assert!(layer.check(&request).is_allowed());
        c.benchmark_group(GROUP).bench_function(id, |b| {
            b.iter(|| black_box(layer.check(black_box(&request))))
        });
    }
}

/// Times one batch of `case` (requests built first, untimed); ns per call.
fn slice(case: &mut Case, cx: &mut Context<'_>, batch: &mut Vec<Request<Body>>) -> f64 {
    PARKED.with(|parked| parked.borrow_mut().clear());
    batch.extend((0..BATCH).map(|_| (case.make)()));
    let began = Instant::now();
    for request in batch.drain(..) {
        black_box((case.call)(cx, request));
    }
    began.elapsed().as_nanos() as f64 / BATCH as f64
}

/// Overhead over bare, measured in pairs: round after round, each case runs
/// a few batches, each right next to one batch of the bare service
/// (alternating which goes first), and the differences are kept. A slowdown from elsewhere on the
/// machine (other builds, the hypervisor) that lasts longer than a couple of
/// batches hits both halves of a pair and cancels out, which criterion's one
/// case after the other cannot do. Returns each case's differences (ns).
fn paired(all: &mut [Case], budget: Duration) -> Vec<Vec<f64>> {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut batch = Vec::with_capacity(BATCH as usize);
    let (bare, cases) = all.split_first_mut().expect("the bare case comes first");
    let mut diffs = vec![Vec::new(); cases.len()];
    let began = Instant::now();
    let mut round = 0usize;
    while began.elapsed() < budget || round < 10 {
        for (i, case) in cases.iter_mut().enumerate() {
            // One untimed pair first: the case's and the bare service's code
            // and data are warm again after the other cases ran.
            for pair in 0..=PAIRS {
                let (case_ns, bare_ns) = if pair % 2 == 0 {
                    let c = slice(case, &mut cx, &mut batch);
                    (c, slice(bare, &mut cx, &mut batch))
                } else {
                    let b = slice(bare, &mut cx, &mut batch);
                    (slice(case, &mut cx, &mut batch), b)
                };
                if pair > 0 {
                    diffs[i].push(case_ns - bare_ns);
                }
            }
        }
        round += 1;
    }
    PARKED.with(|parked| parked.borrow_mut().clear());
    diffs
}

/// The `q`-quantile of `xs` (sorted in place), by nearest rank.
fn quantile(xs: &mut [f64], q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * q).round() as usize]
}

/// The config a typical proxy keeps behind a lock and checks in an axum
/// `from_fn` middleware.
struct PeerConfig {
    mode: ProxyAuthMode,
    api_key: String,
}

/// A hand-written axum check as proxies write it: read-lock the config,
/// take the first key header, strip `Bearer `, compare with `==`.
async fn from_fn_check(
    State(config): State<Arc<tokio::sync::RwLock<PeerConfig>>>,
    request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    let allowed = {
        let config = config.read().await;
        let exempt = request.method() == Method::OPTIONS
            || config.mode == ProxyAuthMode::Off
            || (config.mode == ProxyAuthMode::AllExceptHealth
                && request.uri().path() == "/healthz");
        let headers = request.headers();
        exempt || {
            let key = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
                .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                .or_else(|| headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()));
            key.is_some_and(|key| !config.api_key.is_empty() && key == config.api_key)
        }
    };
    if allowed {
        next.run(request).await
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// Where criterion saves its estimates, found the way criterion finds it
/// (short of asking `cargo metadata`).
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// The median (ns) criterion saved for `id`, if it was measured by this run.
fn median_ns(id: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_home()
        .join(GROUP)
        .join(id)
        .join("new")
        .join("estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    fresh.then(|| json["median"]["point_estimate"].as_f64())?
}

fn print_table(all: &[Case], paired: &mut [Vec<f64>], since: SystemTime) {
    let bare = median_ns("bare", since);
    println!(
        "\n| case | criterion median (ns) | criterion: minus bare (ns) | paired overhead over bare, median [IQR] (ns) |"
    );
    println!("|---|---:|---:|---:|");
    let mut overhead = std::collections::HashMap::new();
    for (i, case) in all.iter().enumerate() {
        let criterion = median_ns(&case.id, since);
        let fmt = |x: Option<f64>, sign: bool| match x {
            Some(x) if sign => format!("{x:+.1}"),
            Some(x) => format!("{x:.1}"),
            None => "-".into(),
        };
        let minus_bare = criterion.zip(bare).map(|(c, b)| c - b);
        let pair = match i {
            0 => "0 (reference)".to_string(),
            _ => {
                let d = &mut paired[i - 1];
                let median = quantile(d, 0.5);
                overhead.insert(case.id.as_str(), median);
                format!(
                    "{median:+.1} [{:+.1}, {:+.1}]",
                    quantile(d, 0.25),
                    quantile(d, 0.75)
                )
            }
        };
        println!(
            "| {} | {} | {} | {pair} |",
            case.id,
            fmt(criterion, false),
            fmt(minus_bare, true)
        );
    }
    println!(
        "\n({} pairs of {BATCH}-request batches per case)",
        paired.first().map_or(0, Vec::len)
    );
    for id in ["check_only_new", "check_only_shared"] {
        if let Some(median) = median_ns(id, since) {
            println!("{id} (ProxyAuthLayer::check on a borrowed request): {median:.1} ns");
        }
    }
    let (Some(&tower_http), Some(&tower_http_reject)) = (
        overhead.get("tower_http_bearer_accept"),
        overhead.get("tower_http_bearer_reject_missing"),
    ) else {
        return;
    };
    println!("\nTargets (paired overhead over bare, ratio to tower-http bearer's):");
    let target = |id: &str, peer: f64, limit: f64, peer_name: &str| {
        if let Some(&ours) = overhead.get(id) {
            let ratio = ours / peer;
            let verdict = if ratio <= limit { "met" } else { "MISSED" };
            println!(
                "  {id}: {ours:.1} ns = {ratio:.2} x {peer_name} ({peer:.1} ns); target <= {limit:.2}: {verdict}"
            );
        }
    };
    for prefix in ["new", "shared"] {
        target(
            &format!("{prefix}_accept_bearer"),
            tower_http,
            1.0,
            "tower-http accept",
        );
        target(
            &format!("{prefix}_accept_goog_key"),
            tower_http,
            1.5,
            "tower-http accept",
        );
        target(
            &format!("{prefix}_reject_missing"),
            tower_http_reject,
            2.0,
            "tower-http keyless reject",
        );
        target(
            &format!("{prefix}_reject_wrong_same_len"),
            tower_http_reject,
            2.0,
            "tower-http keyless reject",
        );
        target(
            &format!("{prefix}_reject_wrong_other_len"),
            tower_http_reject,
            2.0,
            "tower-http keyless reject",
        );
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .nresamples(20_000)
        .configure_from_args();
    let mut all = registry();
    benches(&mut c, &mut all);
    c.final_summary();
    // `--list`, `--test` (as `cargo test --benches` runs) and filters that
    // leave out the bare case skip the paired run and the table.
    if median_ns("bare", started).is_none() {
        return;
    }
    let secs = std::env::var("PAIRED_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut diffs = paired(&mut all, Duration::from_secs(secs));
    print_table(&all, &mut diffs, started);
}
