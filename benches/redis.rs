//! Shared rates (feature `redis`) against a real `redis-server` on
//! loopback, started here (see `tests/it/redis_server.rs`; `.ci/redis.sh`
//! installs it), beside the local limiter doing the same job:
//!
//! 1. criterion: one accepted request of a key with a rate, local and
//!    shared (sequential, one request at a time);
//! 2. latency: each of `REDIS_BENCH_REQUESTS` (10,000) sequential requests
//!    timed on its own, p50/p99/max, local and shared;
//! 3. throughput: two replicas (two layers, each with its own connection)
//!    on one key, `REDIS_BENCH_TASKS` (32) tasks split between them for
//!    `REDIS_BENCH_SECS` (3) s, requests per second, local and shared.
//!
//! The key's rate is the largest (1,000,000 rpm, burst 1,000,000), so
//! nothing is refused: every request is on the accept path.
//!
//! ```text
//! cargo bench --bench redis --features redis
//! REDIS_BENCH_REQUESTS=20000 REDIS_BENCH_SECS=5 cargo bench --bench redis --features redis
//! ```

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/it/redis_server.rs"]
mod redis_server;

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::Criterion;
use http::{Request, Response, StatusCode};
use proxy_auth::redis::SharedRates;
use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{Layer, Service, ServiceExt};

const KEY: &str = "sk-bench-0123456789abcdef01234567";
const MAX: u32 = proxy_auth::limit::MAX;

#[derive(Clone, Copy, Debug)]
struct Inner;

impl<B> Service<Request<B>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        drop(request);
        ready(Ok(Response::new(String::new())))
    }
}

fn request() -> Request<String> {
    Request::post("/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(String::new())
        .expect("a valid request")
}

fn local() -> ProxyAuthLayer {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("bench", KEY).rpm(MAX).burst(MAX))
        .expect("a valid key");
    ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys)
}

/// A request handler of either layer: one request, its status.
type Send1 = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = StatusCode> + Send>>
        + Send
        + Sync,
>;

fn handler<L>(layer: L) -> Send1
where
    L: Layer<Inner> + Send + Sync + 'static,
    L::Service: Service<Request<String>, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request<String>>>::Future: Send,
    <L::Service as Service<Request<String>>>::Response: HasStatus,
{
    let service = layer.layer(Inner);
    Box::new(move || {
        let service = service.clone();
        Box::pin(async move {
            let response = service.oneshot(request()).await.expect("infallible");
            response.status()
        })
    })
}

trait HasStatus {
    fn status(&self) -> StatusCode;
}

impl<B> HasStatus for Response<B> {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn latencies(send: &Send1, n: u64) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let started = Instant::now();
        let status = send().await;
        took.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    took.sort();
    took
}

/// Requests per second through `a` and `b` at once, `tasks` tasks split
/// between them, for `secs`.
async fn throughput(a: Arc<Send1>, b: Arc<Send1>, tasks: u64, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    // A clock check, not a timer: the local layers' tasks never wait, and
    // a runtime whose workers never park drives no timer.
    let until = started + Duration::from_secs(secs);
    let mut joins = Vec::new();
    for t in 0..tasks {
        let send = if t % 2 == 0 { a.clone() } else { b.clone() };
        let done = done.clone();
        joins.push(tokio::spawn(async move {
            while Instant::now() < until {
                // Refusals (the burst spent) would be cheaper: not counted.
                if send().await == StatusCode::OK {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for join in joins {
        join.await.expect("a bench task");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if !common::selected("redis") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = match redis_server::installed() {
        Ok(bin) => bin,
        Err(why) => {
            println!("skipped: redis: {why} (.ci/redis.sh installs it)");
            return;
        }
    };
    let requests = common::env_or("REDIS_BENCH_REQUESTS", 10_000);
    let tasks = common::env_or("REDIS_BENCH_TASKS", 32);
    let secs = common::env_or("REDIS_BENCH_SECS", 3);
    let server = redis_server::RedisServer::start(bin);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let shared = |prefix: &str| {
        let rates = SharedRates::new(&server.url())
            .expect("a Redis URL")
            .prefix(prefix);
        local().shared_rates(rates)
    };

    let local_one = handler(local());
    let shared_one = handler(shared("bench-a:"));
    {
        let mut criterion = Criterion::default()
            .configure_from_args()
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        let mut group = criterion.benchmark_group("redis");
        for (name, send) in [("local", &local_one), ("shared", &shared_one)] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let started = Instant::now();
                        for _ in 0..iters {
                            criterion::black_box(send().await);
                        }
                        started.elapsed()
                    })
                })
            });
        }
        group.finish();
        criterion.final_summary();
    }

    println!("\n| limiter | requests | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    for (name, send) in [("local", &local_one), ("shared (Redis)", &shared_one)] {
        let took = runtime.block_on(latencies(send, requests));
        println!(
            "| {name} | {requests} | {:.1} µs | {:.1} µs | {:.1} µs |",
            percentile(&took, 0.5).as_secs_f64() * 1e6,
            percentile(&took, 0.99).as_secs_f64() * 1e6,
            took.last().expect("requests").as_secs_f64() * 1e6,
        );
    }

    println!("\n| two replicas on one key | tasks | requests/s |");
    println!("|---|---:|---:|");
    let locals = (Arc::new(handler(local())), Arc::new(handler(local())));
    let shareds = (
        Arc::new(handler(shared("bench-b:"))),
        Arc::new(handler(shared("bench-b:"))),
    );
    for (name, (a, b)) in [
        ("local (each its own)", locals),
        ("shared (Redis)", shareds),
    ] {
        let rate = runtime.block_on(throughput(a, b, tasks, secs));
        println!("| {name} | {tasks} | {rate:.0} |");
    }
}
