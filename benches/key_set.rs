//! Cost of matching a presented key against key sets of 1 to 100,000 named
//! keys, against a constant-time linear scan, the obvious alternative.
//!
//! ```sh
//! cargo bench --bench key_set
//! ```
//!
//! Each case judges one prepared request with `ProxyAuthLayer::check` (the
//! full decision: header lookup, default-key compare, digest, set lookup),
//! so the figures are the layer's per-request decision cost.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::Request;
use proxy_auth::{KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
use subtle::ConstantTimeEq;

const SIZES: [usize; 5] = [0, 1, 10, 1_000, 100_000];

fn key(i: usize) -> String {
    format!("sk-{i:032x}")
}

fn request(key: &str) -> Request<()> {
    Request::get("/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .body(())
        .expect("valid request")
}

fn layer_with(n: usize) -> ProxyAuthLayer {
    let mut set = KeySet::new();
    for i in 0..n {
        set.insert(format!("user-{i}"), &key(i))
            .expect("distinct keys");
    }
    ProxyAuthLayer::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-default-key-0000000000000000"),
        set,
    )
}

/// What a hand-written multi-key check that stays constant-time has to do
/// without digests: compare against every key, no early exit.
fn linear_ct_scan(keys: &[Vec<u8>], presented: &[u8]) -> Option<usize> {
    let mut found = None;
    for (i, k) in keys.iter().enumerate() {
        // Same-length keys, so the length check reveals nothing here.
        if bool::from(k.as_slice().ct_eq(presented)) {
            found = Some(i);
        }
    }
    found
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_set");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let layer = layer_with(n);
        let named = request(&key(n.saturating_sub(1)));
        let unknown = request(&key(usize::MAX >> 8));
        let default = request("sk-default-key-0000000000000000");
        if n > 0 {
            assert!(layer.check(&named).is_allowed());
        }
        assert!(!layer.check(&unknown).is_allowed());
        assert!(layer.check(&default).is_allowed());

        if n > 0 {
            group.bench_with_input(BenchmarkId::new("accept_named", n), &named, |b, r| {
                b.iter(|| layer.check(black_box(r)))
            });
        }
        group.bench_with_input(BenchmarkId::new("accept_default", n), &default, |b, r| {
            b.iter(|| layer.check(black_box(r)))
        });
        group.bench_with_input(BenchmarkId::new("reject_unknown", n), &unknown, |b, r| {
            b.iter(|| layer.check(black_box(r)))
        });

        if n > 0 && n <= 1_000 {
            let keys: Vec<Vec<u8>> = (0..n).map(|i| key(i).into_bytes()).collect();
            let presented = key(n - 1).into_bytes();
            group.bench_with_input(BenchmarkId::new("linear_ct_scan", n), &presented, |b, p| {
                b.iter(|| linear_ct_scan(black_box(&keys), black_box(p)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
