//! What counting a decision (feature `metrics`) adds to the accept path.
//!
//! Feature off and feature on are different builds, so one run cannot time
//! both. This bench times, in one run and in interleaved pairs (so a
//! slowdown from elsewhere on a shared machine hits both halves alike):
//!
//! - `accept_noop`: the layer's accept path with no recorder installed (the
//!   layer's handles are the facade's no-op counters): the feature's fixed
//!   cost, handle table load and label mapping included;
//! - `accept_prometheus`: the same with `metrics-exporter-prometheus`
//!   installed before the layer's first request;
//! - the counting primitives alone, with Prometheus installed: an increment
//!   through a cached handle (what the layer does) and `counter!` with
//!   static labels (the facade's per-call recorder lookup, the alternative
//!   the layer does not use).
//!
//! Every figure is the median difference (ns per request) against its pair:
//! the accept rows against the bare inner service, `accept_prometheus`
//! also against `accept_noop`, the primitives against an empty loop. For
//! the feature-off accept path, compare with `cargo bench --bench overhead`
//! (`new_accept_bearer`), a different build.
//!
//! ```text
//! cargo bench --features metrics --bench metrics
//! METRICS_BENCH_SECS=3 cargo bench --features metrics --bench metrics
//! ```

#[path = "common/mod.rs"]
mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusBuilder;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{Layer, Service};

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";
const BATCH: usize = 256;

fn request() -> Request<()> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header(header::HOST, "127.0.0.1:8045")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(())
        .expect("valid request")
}

/// A service timed per request: ns per call over one batch of fresh requests.
fn time_service<S>(service: &mut S, batch: &mut Vec<Request<()>>) -> f64
where
    S: Service<Request<()>, Response = Response<proxy_auth::ResponseBody<()>>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    common::clear_parked();
    batch.extend((0..BATCH).map(|_| request()));
    let began = Instant::now();
    for request in batch.drain(..) {
        assert!(service.poll_ready(&mut cx).is_ready());
        let Poll::Ready(Ok(response)) = pin!(service.call(request)).poll(&mut cx) else {
            panic!("the layer answers on the first poll");
        };
        assert_eq!(response.status(), StatusCode::OK);
        drop(black_box(response));
    }
    began.elapsed().as_nanos() as f64 / BATCH as f64
}

fn time_bare(batch: &mut Vec<Request<()>>) -> f64 {
    let mut inner = common::Parking;
    let mut cx = Context::from_waker(Waker::noop());
    common::clear_parked();
    batch.extend((0..BATCH).map(|_| request()));
    let began = Instant::now();
    for request in batch.drain(..) {
        assert!(inner.poll_ready(&mut cx).is_ready());
        let Poll::Ready(Ok(response)) = pin!(inner.call(request)).poll(&mut cx) else {
            unreachable!()
        };
        drop(black_box(response));
    }
    began.elapsed().as_nanos() as f64 / BATCH as f64
}

/// ns per call of `f`, over `n` calls.
fn time_loop(n: usize, mut f: impl FnMut()) -> f64 {
    let began = Instant::now();
    for _ in 0..n {
        f();
    }
    began.elapsed().as_nanos() as f64 / n as f64
}

/// Median of `a - b` over interleaved pairs (alternating which goes first).
fn paired(secs: u64, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let mut diffs = Vec::new();
    let mut a_alone = Vec::new();
    let began = Instant::now();
    let mut round = 0usize;
    while began.elapsed() < Duration::from_secs(secs) || diffs.len() < 20 {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        if round > 1 {
            diffs.push(x - y);
            a_alone.push(x);
        }
        round += 1;
    }
    (common::median(diffs), common::median(a_alone))
}

fn main() {
    if !common::selected("metrics") || std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs = common::env_or("METRICS_BENCH_SECS", 2);
    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let mut batch = Vec::with_capacity(BATCH);

    // Its first request registers its handles: with no recorder, no-ops.
    let mut noop = ProxyAuthLayer::new(config()).layer(common::Parking);
    time_service(&mut noop, &mut batch);

    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder in this process");
    let mut counted = ProxyAuthLayer::new(config()).layer(common::Parking);
    time_service(&mut counted, &mut batch);
    let mut batch2 = Vec::with_capacity(BATCH);

    println!("proxy-auth metrics bench: median of paired differences, ns per request ({secs} s per row; shared machine figures vary)");
    println!("| row | paired against | added (ns) | row alone (ns) |");
    println!("|---|---|---:|---:|");
    let row = |name: &str, against: &str, (added, alone): (f64, f64)| {
        println!("| {name} | {against} | {added:+.2} | {alone:.2} |");
    };
    let mut b1 = Vec::with_capacity(BATCH);
    row(
        "accept_noop",
        "bare",
        paired(
            secs,
            || time_service(&mut noop, &mut batch),
            || time_bare(&mut b1),
        ),
    );
    row(
        "accept_prometheus",
        "bare",
        paired(
            secs,
            || time_service(&mut counted, &mut batch),
            || time_bare(&mut b1),
        ),
    );
    row(
        "accept_prometheus",
        "accept_noop",
        paired(
            secs,
            || time_service(&mut counted, &mut batch),
            || time_service(&mut noop, &mut batch2),
        ),
    );

    const N: usize = 4096;
    let handle = metrics::counter!("bench_handle_total", "outcome" => "allowed", "reason" => "key", "source" => "authorization");
    let empty = || time_loop(N, || black_box(()));
    row(
        "cached handle increment (Prometheus)",
        "empty loop",
        paired(
            secs,
            || time_loop(N, || black_box(&handle).increment(1)),
            empty,
        ),
    );
    row(
        "counter! static labels (Prometheus)",
        "empty loop",
        paired(
            secs,
            || {
                time_loop(N, || {
                    metrics::counter!("bench_macro_total", "outcome" => "allowed", "reason" => "key", "source" => "authorization").increment(1)
                })
            },
            empty,
        ),
    );
    // Keep the exporter's counts observable, so nothing is optimized away.
    let page = prometheus.render();
    assert!(page.contains("proxy_auth_requests_total"));
    assert!(page.contains("bench_macro_total"));
}
