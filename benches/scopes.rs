//! What scopes cost: the accept path of a named key with a route and a
//! path-model check against the same key without scopes, and reading the
//! model of a JSON body per KiB.
//!
//! ```sh
//! cargo bench --bench scopes
//! ```
//!
//! The accept cases run the whole service (`call` and its future, as
//! tests/memory/alloc.rs counts them) over a service that answers at once;
//! the body cases run a layer built with `read_model_bodies` over a service
//! that drops the body, with bodies of 1, 16 and 256 KiB whose `model` is
//! their first field.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Full;
use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use tower::{Layer, Service};

#[derive(Clone, Copy)]
struct Inner;

impl<B> Service<Request<B>> for Inner {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        ready(Ok(Response::new(Full::default())))
    }
}

/// Polls a future that is ready at once (every one here is, but the read
/// of a body, which the body's own readiness decides).
fn now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Which scopes the benchmarked key has.
#[derive(Clone, Copy)]
struct Scoped {
    routes: bool,
    models: bool,
}

const NONE: Scoped = Scoped {
    routes: false,
    models: false,
};
const BOTH: Scoped = Scoped {
    routes: true,
    models: true,
};

fn layer(scoped: Scoped) -> ProxyAuthLayer {
    let mut keys = KeySet::new();
    let mut key = NewKey::new("team-a", "sk-team-a-0123456789abcdef0123");
    if scoped.models {
        key = key.models(["gemini-1.5-*", "gpt-4o-mini"]);
    }
    if scoped.routes {
        key = key.routes(["/v1beta/models", "/v1/chat/completions"]);
    }
    keys.add(key).expect("a valid key");
    ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"),
        keys,
    )
}

fn gemini() -> Request<Full<Bytes>> {
    Request::post("/v1beta/models/gemini-1.5-flash:generateContent")
        .header("x-goog-api-key", "sk-team-a-0123456789abcdef0123")
        .body(Full::default())
        .expect("a valid request")
}

fn chat(kib: usize) -> Request<Full<Bytes>> {
    let filler = "x".repeat(kib * 1024);
    let body =
        format!(r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{filler}"}}]}}"#);
    Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-team-a-0123456789abcdef0123")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scopes");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, scoped) in [
        ("accept/no scopes", NONE),
        (
            "accept/route",
            Scoped {
                routes: true,
                models: false,
            },
        ),
        (
            "accept/path model",
            Scoped {
                routes: false,
                models: true,
            },
        ),
        ("accept/route + path model", BOTH),
    ] {
        let mut service = layer(scoped).layer(Inner);
        let response = now(service.call(gemini())).expect("infallible");
        assert!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                gemini,
                |r| black_box(now(service.call(r))),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    for kib in [1, 16, 256] {
        let mut service = layer(BOTH).read_model_bodies(1 << 20).layer(Inner);
        let response = now(service.call(chat(kib))).expect("infallible");
        assert!(
            response.status().is_success(),
            "{kib} KiB: {}",
            response.status()
        );
        group.throughput(Throughput::Bytes((kib * 1024) as u64));
        group.bench_with_input(
            BenchmarkId::new("json body model", format!("{kib} KiB")),
            &kib,
            |b, &kib| {
                b.iter_batched(
                    || chat(kib),
                    |r| black_box(now(service.call(r))),
                    criterion::BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
