//! Timing-leak tests in the style of dudect (Reparaz, Balasch, Verbauwhede,
//! "Dude, is my code constant time?", 2017): two classes of inputs are run
//! in a random interleaved order, each sample's time is recorded, and
//! Welch's t-test asks whether the two classes' mean times differ. dudect's
//! verdict: |t| > 4.5 is a leak; below it, none was found at that sample
//! count.
//!
//! Pairs of classes, all with keys that are wrong:
//! - position: the presented key differs from the configured one at its
//!   first byte, or at its last byte (same length);
//! - length: the same presented key against a configured key of the same
//!   length, or of another length.
//!
//! Each pair is measured on the key comparison (`ProxyAuthLayer::check`:
//! header lookup, `Bearer` stripping, comparison; also with a `sha256:`
//! digest key and a `KeySet` key) and on the whole layer's reject path
//! (`Service::call` up to the finished 401). The same harness is run on
//! deliberately naive `==` comparisons to show it finds leaks, and on two
//! identical classes (A/A) to show what it reports when there is nothing.
//!
//! Those runs keep the configured key in L1. The cold-pool rounds (see
//! "Cold pools" below) ask the length question where a server's key lives:
//! many long-lived instances per class, caches evicted before every call,
//! a 4 KiB presented key against configured keys of different sizes. A
//! round counts only if it catches both a naive `==` and a deliberately
//! bucketed comparison (a key buffer sized after the key); if no round
//! does, the test fails as inconclusive rather than passing.
//!
//! `cargo test` runs the `ci_` tests: a few seconds, built to be robust on a
//! loaded 2-core machine (see SECURITY.md, "Timing"). The full runs, with
//! 1,000,000 samples per test (200,000 per cold-pool subject) and figures
//! tables, are ignored by default:
//!
//! ```text
//! cargo test --release --test timing -- --ignored --nocapture --test-threads 1
//! # only the cold pools (about 3 minutes):
//! cargo test --release --test timing -- full_cold_pool_run --ignored --nocapture --test-threads 1
//! ```

mod model;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use proxy_auth::{
    Decision, KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, RejectReason,
};
use tower_layer::Layer;
use tower_service::Service;

/// dudect's threshold.
const THRESHOLD: f64 = 4.5;

/// The configured key: the shape `generate_api_key` makes (35 bytes).
const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// Timing runs must not overlap each other inside this test binary.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------
// Statistics.

/// Welch's t-test accumulated online (Welford), one accumulator per class.
#[derive(Clone, Copy, Default)]
struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let delta = x - self.mean[class];
        self.mean[class] += delta / self.n[class];
        self.m2[class] += delta * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let var = |c: usize| self.m2[c] / (self.n[c] - 1.0);
        let se = (var(0) / self.n[0] + var(1) / self.n[1]).sqrt();
        if se == 0.0 {
            return 0.0;
        }
        (self.mean[0] - self.mean[1]) / se
    }
}

/// The verdict on one pair of classes.
#[derive(Clone, Debug)]
struct Report {
    name: String,
    samples: usize,
    /// |t| on all samples.
    t_all: f64,
    /// dudect's statistic: the largest |t| over the uncropped test and the
    /// tests cropped at the percentiles in `CROPS`.
    t_max: f64,
    /// Mean time per call of each class, in nanoseconds (for the table only;
    /// nothing asserts on durations).
    mean_ns: [f64; 2],
}

/// dudect crops measurements above a set of percentiles, because preemption
/// and interrupts add long, rare outliers that hide a small, steady
/// difference; the statistic is the largest |t| over the crops.
const CROPS: [f64; 5] = [0.50, 0.75, 0.90, 0.95, 0.99];

fn analyse(name: &str, samples: &[(usize, u64)], per_sample: usize) -> Report {
    let mut sorted: Vec<u64> = samples.iter().map(|&(_, t)| t).collect();
    sorted.sort_unstable();
    let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let cuts: Vec<u64> = CROPS.iter().map(|&p| at(p)).collect();
    let mut all = Welch::default();
    let mut cropped = vec![Welch::default(); cuts.len()];
    for &(class, t) in samples {
        all.push(class, t as f64);
        for (welch, &cut) in cropped.iter_mut().zip(&cuts) {
            if t <= cut {
                welch.push(class, t as f64);
            }
        }
    }
    let t_max = cropped
        .iter()
        .map(|w| w.t().abs())
        .fold(all.t().abs(), f64::max);
    Report {
        name: name.to_owned(),
        samples: samples.len(),
        t_all: all.t().abs(),
        t_max,
        mean_ns: [
            all.mean[0] / per_sample as f64,
            all.mean[1] / per_sample as f64,
        ],
    }
}

/// xorshift64*: the class of each sample is drawn from a fixed-seed
/// sequence, independent of anything the machine does.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bit(&mut self) -> usize {
        (self.next() >> 63) as usize
    }

    /// A draw below `n` (small `n`), from the high bits: xorshift64*'s
    /// low bits are its weakest.
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

/// Runs `samples` measurements. For each, a class is drawn and `make`
/// builds the inputs of *both* classes outside the timed region, in an order
/// that alternates independently of the class; `run` is timed on the drawn
/// class's input; its output and the other input are dropped outside the
/// timed region. So everything but the timed run does the same work for
/// either class (see the note above `ours_check` for why that matters).
fn measure<P, R>(
    name: &str,
    samples: usize,
    per_sample: usize,
    make: impl Fn(usize) -> P,
    mut run: impl FnMut(P) -> R,
) -> Report {
    let mut sample = |class: usize, own_first: bool| -> u64 {
        let (own, other) = if own_first {
            let own = make(class);
            (own, make(1 - class))
        } else {
            let other = make(1 - class);
            (make(class), other)
        };
        // Let the preparation's stores drain before the clock starts.
        fence(Ordering::SeqCst);
        let start = Instant::now();
        let result = run(black_box(own));
        let elapsed = start.elapsed();
        drop(black_box(result));
        drop(other);
        elapsed.as_nanos() as u64
    };
    // Warm up caches, branch predictors and the allocator with both classes.
    for i in 0..samples.min(1_000) {
        sample(i % 2, i % 4 < 2);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let class = rng.bit();
        out.push((class, sample(class, i % 2 == 0)));
    }
    analyse(name, &out, per_sample)
}

// ---------------------------------------------------------------------------
// What is measured.

/// How many calls one sample times: enough to lift a call well above the
/// clock's resolution and `Instant::now()`'s own cost. A sample of the whole
/// reject path is already microseconds long, so it times fewer calls.
const PER_SAMPLE: usize = 16;
const PER_SAMPLE_LAYER: usize = 4;

fn request(header: &str, value: &str) -> Request<()> {
    Request::post("/v1/chat/completions")
        .header(header, value)
        .body(())
        .expect("valid request")
}

/// A strict layer with `key` as `api_key`, or, for `named:<key>`, with no
/// `api_key` and `<key>` as the one entry of a `KeySet`. The key string gets
/// the same allocation size whatever its length, so the two classes'
/// configs take the same room.
fn layer(key: &str) -> ProxyAuthLayer {
    let mut api_key = String::with_capacity(2 * LONG);
    match key.strip_prefix("named:") {
        Some(named) => {
            let mut keys = KeySet::new();
            keys.insert("k", named).expect("valid key");
            ProxyAuthLayer::with_keys(
                ProxySecurityConfig::new(ProxyAuthMode::Strict, api_key),
                keys,
            )
        }
        None => {
            api_key.push_str(key);
            ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, api_key))
        }
    }
}

// Every sample builds fresh layers (or key buffers) and requests for both
// classes outside the timed region, and times only its own class's. Each
// shortcut here showed up as a false leak in a million samples:
// - one long-lived layer per class puts the two classes' configs at fixed,
//   different addresses (|t| up to 49);
// - building only the sample's own layer makes the allocator's state depend
//   on the class, as a 35-byte and a 23-byte key come from different size
//   classes (|t| = 190 on the reject path);
// - building both layers but only the own class's request, or picking the
//   used layer by index, made two identical classes (an A/A test) differ by
//   |t| up to 9.
// None is a property of the layer (a server allocates its key once). With
// the preparation identical for both classes, and key strings of one
// allocation size, only the class's key and data differ in the timed run.

/// The key comparison as the layer does it, without building a response.
fn ours_check(name: &str, samples: usize, keys: [&str; 2], presented: [&str; 2]) -> Report {
    measure(
        name,
        samples,
        PER_SAMPLE,
        |c| (layer(keys[c]), request("x-api-key", presented[c])),
        |(layer, request)| {
            for _ in 0..PER_SAMPLE {
                black_box(layer.check(black_box(&request)));
            }
            (layer, request)
        },
    )
}

fn bearer_requests(presented: &str, count: usize) -> Vec<Request<()>> {
    (0..count)
        .map(|_| request("authorization", &format!("Bearer {presented}")))
        .collect()
}

/// The whole reject path: `call` up to the finished 401 (headers and JSON
/// body built, the rejection logged to the no-op default subscriber).
fn ours_layer(name: &str, samples: usize, keys: [&str; 2], presented: [&str; 2]) -> Report {
    measure(
        name,
        samples,
        PER_SAMPLE_LAYER,
        |c| {
            let service = layer(keys[c]).layer(model::Echo);
            (service, bearer_requests(presented[c], PER_SAMPLE_LAYER))
        },
        |(mut service, requests)| {
            let responses: Vec<_> = requests
                .into_iter()
                .map(|r| model::now(service.call(r)))
                .collect();
            (service, responses)
        },
    )
}

/// A deliberately naive check: the same header lookup, then `==`.
fn naive_check(name: &str, samples: usize, keys: [&str; 2], presented: [&str; 2]) -> Report {
    measure(
        name,
        samples,
        PER_SAMPLE,
        |c| {
            (
                keys[c].as_bytes().to_vec(),
                request("x-api-key", presented[c]),
            )
        },
        |(key, request)| {
            for _ in 0..PER_SAMPLE {
                let headers = black_box(&request).headers();
                black_box(headers.get("x-api-key").map(|v| v.as_bytes() == &key[..]));
            }
            (key, request)
        },
    )
}

/// The textbook naive comparison: a byte loop that stops at the first
/// difference.
fn naive_loop(name: &str, samples: usize, presented: [&str; 2]) -> Report {
    fn early_exit_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        for (x, y) in a.iter().zip(b) {
            if x != y {
                return false;
            }
        }
        true
    }
    measure(
        name,
        samples,
        PER_SAMPLE,
        |c| request("x-api-key", presented[c]),
        |request| {
            for _ in 0..PER_SAMPLE {
                let headers = black_box(&request).headers();
                black_box(
                    headers
                        .get("x-api-key")
                        .map(|v| early_exit_eq(v.as_bytes(), KEY.as_bytes())),
                );
            }
            request
        },
    )
}

/// A deliberately naive whole service: the `Authorization` value compared
/// with the expected one by `==` (as `HeaderValue`s, i.e. their bytes), a
/// 401 with `WWW-Authenticate` otherwise.
#[derive(Clone)]
struct NaiveAuth {
    expected: HeaderValue,
}

impl Service<Request<()>> for NaiveAuth {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        if request.headers().get(AUTHORIZATION) == Some(&self.expected) {
            return model::Echo.call(request);
        }
        let mut response = Response::new(String::from("unauthorized"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        std::future::ready(Ok(response))
    }
}

fn naive_layer(name: &str, samples: usize, keys: [&str; 2], presented: [&str; 2]) -> Report {
    measure(
        name,
        samples,
        PER_SAMPLE_LAYER,
        |c| {
            let service = NaiveAuth {
                expected: HeaderValue::try_from(format!("Bearer {}", keys[c]))
                    .expect("valid header value"),
            };
            (service, bearer_requests(presented[c], PER_SAMPLE_LAYER))
        },
        |(mut service, requests)| {
            let responses: Vec<_> = requests
                .into_iter()
                .map(|r| model::now(service.call(r)))
                .collect();
            (service, responses)
        },
    )
}

/// A pair of classes: the configured keys and the presented keys of class A
/// and class B.
struct Pair {
    keys: [String; 2],
    presented: [String; 2],
}

impl Pair {
    fn keys(&self) -> [&str; 2] {
        [&self.keys[0], &self.keys[1]]
    }
    fn presented(&self) -> [&str; 2] {
        [&self.presented[0], &self.presented[1]]
    }
}

/// Same configured key; the presented one is wrong at its first byte (A) or
/// at its last byte (B).
fn position(len: usize) -> Pair {
    let key = key_of(len);
    let first = format!("X{}", &key[1..]);
    let last = format!("{}X", &key[..len - 1]);
    Pair {
        keys: [key.clone(), key],
        presented: [first, last],
    }
}

/// The same presented key, wrong at its last byte, against a configured key
/// of its length (A) and one 12 bytes shorter (B).
fn length(len: usize) -> Pair {
    let key = key_of(len);
    let last = format!("{}X", &key[..len - 1]);
    Pair {
        keys: [key.clone(), key[..len - 12].to_owned()],
        presented: [last.clone(), last],
    }
}

/// `pair` with its configured keys written differently (as a digest, or as
/// a named key).
fn configured_as(mut pair: Pair, how: impl Fn(&str) -> String) -> Pair {
    pair.keys = [how(&pair.keys[0]), how(&pair.keys[1])];
    pair
}

/// `KEY` for 35 bytes, a longer key of the same alphabet otherwise.
fn key_of(len: usize) -> String {
    KEY.bytes().cycle().take(len).map(char::from).collect()
}

/// The length of keys `generate_api_key` makes.
const KEY_LEN: usize = 35;
/// A long key, where a leak of `==` (memcmp) by position is large.
const LONG: usize = 1024;

fn print(reports: &[Report]) {
    eprintln!(
        "{:<40} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "test", "samples", "|t| all", "|t| max", "ns/call A", "ns/call B"
    );
    for r in reports {
        eprintln!(
            "{:<40} {:>9} {:>9.2} {:>9.2} {:>10.1} {:>10.1}",
            r.name, r.samples, r.t_all, r.t_max, r.mean_ns[0], r.mean_ns[1]
        );
    }
}

type Run = fn(&str, usize, [&str; 2], [&str; 2]) -> Report;

fn run(name: &str, f: Run, pair: &Pair, samples: usize) -> Report {
    f(name, samples, pair.keys(), pair.presented())
}

fn loop_run(name: &str, samples: usize, _keys: [&str; 2], presented: [&str; 2]) -> Report {
    naive_loop(name, samples, presented)
}

/// Our side of every measurement, and whether CI runs it (the 1 KiB ones
/// are slow in a debug build and add nothing the 35-byte ones do not test).
fn ours() -> Vec<(&'static str, Run, Pair, bool)> {
    vec![
        (
            "ours check: position",
            ours_check as Run,
            position(KEY_LEN),
            true,
        ),
        ("ours check: length", ours_check, length(KEY_LEN), true),
        (
            "ours check: position, 1 KiB",
            ours_check,
            position(LONG),
            false,
        ),
        ("ours check: length, 1 KiB", ours_check, length(LONG), false),
        (
            "ours layer 401: position",
            ours_layer,
            position(KEY_LEN),
            true,
        ),
        ("ours layer 401: length", ours_layer, length(KEY_LEN), true),
        (
            "ours check: sha256: digest key, position",
            ours_check,
            configured_as(position(KEY_LEN), proxy_auth::key_digest),
            false,
        ),
        (
            "ours check: KeySet key, position",
            ours_check,
            configured_as(position(KEY_LEN), |k| format!("named:{k}")),
            false,
        ),
        (
            "ours check: KeySet key, length",
            ours_check,
            configured_as(length(KEY_LEN), |k| format!("named:{k}")),
            false,
        ),
    ]
}

/// The naive comparisons that CI requires the harness to catch.
fn naive_caught_in_ci() -> Vec<(&'static str, Run, Pair)> {
    vec![
        (
            "naive == check: length",
            naive_check as Run,
            length(KEY_LEN),
        ),
        (
            "naive == check: position, 1 KiB",
            naive_check,
            position(LONG),
        ),
        ("naive == layer: length, 1 KiB", naive_layer, length(LONG)),
        (
            "naive early-exit loop: position",
            loop_run,
            position(KEY_LEN),
        ),
    ]
}

// ---------------------------------------------------------------------------
// Cold pools: the configured key's memory, not only its bytes.
//
// Everything above builds fresh layers for every sample, so the configured
// key is always in L1, where touching 1 or 64 of its cache lines costs the
// same. A server's key is built once and sits in memory that other work
// evicts between two requests, and that is where a buffer sized after the
// key shows: a 4 KiB presented key walks 1 line of a 64-byte buffer but 64
// lines of a 4096-byte one, and out of cache the second costs more. So here:
// - each class has `POOL` long-lived instances (layers, or control keys),
//   allocated interleaved (A0, B0, A1, B1, ...) so that neither class sits
//   at systematically different addresses; each pair's order and a spacer
//   before it are drawn at random, and the pools are rebuilt every
//   `REBUILD_EVERY` samples, so no one layout decides a round;
// - each sample draws the class at random, then an instance of that class
//   at random (two independent draws);
// - before the clock starts, the caches are evicted by walking a buffer
//   larger than L2 (`EVICT_BYTES`), then the request is copied and its
//   presented key read, so only the instances are cold; all of that is the
//   same for both classes;
// - one sample times one call: a second call on the same instance would find
//   its key warm, which is what hid the leak from the harness above.
// The presented key is the same 4 KiB for both classes, wrong at its last
// byte; only the configured key's length differs (64 vs 4096 bytes, the
// smallest and the largest of the old power-of-two capacities).

/// Instances per class. 32 x 4 KiB is 128 KiB, four times L1d, so even
/// without eviction the long class cannot stay in L1; and with 32 instances
/// a class's mean is over 32 addresses, so no single allocation's place
/// (page offset, cache set) decides it.
const POOL: usize = 32;

/// The presented key's length, and the longest configured key.
const PRESENTED_LEN: usize = 4096;

/// The least eviction walk: four times the L2 of the build machine (1 MiB
/// per core, AMD EPYC; server parts have 1-2 MiB), so an instance touched in
/// an earlier sample is back in L3 or memory. One read per cache line.
const EVICT_BYTES: usize = 4 << 20;

/// What a probe hands back, dropped after the clock stops.
enum Leftover {
    Request(#[allow(dead_code)] Request<()>),
    Response(#[allow(dead_code)] Response<proxy_auth::ResponseBody<String>>),
}

/// One instance of a class: a configured key and the code that judges a
/// request against it.
type Probe = Box<dyn FnMut(Request<()>) -> Leftover>;

/// One thing measured: how to build an instance for a configured key, and
/// the current pool of instances per class.
struct Subject {
    name: String,
    keys: [String; 2],
    build: fn(&str) -> Probe,
    pools: [Vec<Probe>; 2],
    /// Allocations of random sizes between the pairs, kept as long as the
    /// pool, so that instances do not sit at a regular stride.
    spacers: Vec<Vec<u8>>,
}

impl Subject {
    fn new(name: String, keys: [&str; 2], build: fn(&str) -> Probe) -> Self {
        Subject {
            name,
            keys: keys.map(str::to_owned),
            build,
            pools: [Vec::new(), Vec::new()],
            spacers: Vec::new(),
        }
    }

    /// Drops the pools and builds new ones: `POOL` pairs, each pair's two
    /// instances one right after the other, in a random order, after a
    /// spacer of 0 to 63 cache lines.
    fn rebuild(&mut self, rng: &mut Rng) {
        self.pools = [Vec::with_capacity(POOL), Vec::with_capacity(POOL)];
        self.spacers = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            self.spacers.push(vec![0u8; 64 * rng.below(64)]);
            let first = rng.bit();
            for class in [first, 1 - first] {
                self.pools[class].push((self.build)(&self.keys[class]));
            }
        }
    }
}

/// A strict layer with `key` as `api_key`; the key string has the same
/// allocation size for every key length.
fn pooled_layer(key: &str) -> ProxyAuthLayer {
    let mut api_key = String::with_capacity(PRESENTED_LEN);
    api_key.push_str(key);
    ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, api_key))
}

/// Ours, through the public API: `ProxyAuthLayer::check`.
fn cold_ours_check(key: &str) -> Probe {
    let layer = pooled_layer(key);
    Box::new(move |request| {
        black_box(layer.check(black_box(&request)));
        Leftover::Request(request)
    })
}

/// Ours, the whole reject path: `Service::call` up to the finished 401.
fn cold_ours_call(key: &str) -> Probe {
    let mut service = pooled_layer(key).layer(model::Echo);
    Box::new(move |request| {
        let response = model::now(service.call(black_box(request)));
        Leftover::Response(response.expect("infallible"))
    })
}

/// The naive control: the same header lookup, then `==`.
fn cold_naive(key: &str) -> Probe {
    let key = key.as_bytes().to_vec();
    Box::new(move |request| {
        let headers = black_box(&request).headers();
        black_box(headers.get("x-api-key").map(|v| v.as_bytes() == &key[..]));
        Leftover::Request(request)
    })
}

/// The bucketed control: the same header lookup, then a comparison that is
/// constant-time in every other respect but keeps the key in a buffer sized
/// after it.
fn cold_bucketed(key: &str) -> Probe {
    let key = Bucketed::new(key.as_bytes());
    Box::new(move |request| {
        let headers = black_box(&request).headers();
        black_box(headers.get("x-api-key").map(|v| key.matches(v.as_bytes())));
        Leftover::Request(request)
    })
}

/// DELIBERATELY LEAKY REFERENCE, not the crate's code: a copy of the
/// comparison `src/compare.rs` had before its fixed 4 KiB buffer. The key
/// is zero-padded to `max(len, 64).next_power_of_two()` bytes and a
/// comparison reads as many bytes as were presented, wrapping around that
/// buffer: constant in the presented length and in the position of a
/// difference, but the number of cache lines read follows the configured
/// key's capacity bucket. The harness must catch it, or it has no teeth.
struct Bucketed {
    padded: Box<[u8]>,
    len: usize,
}

impl Bucketed {
    fn new(key: &[u8]) -> Self {
        let capacity = key.len().max(64).next_power_of_two();
        let mut padded = vec![0u8; capacity].into_boxed_slice();
        padded[..key.len()].copy_from_slice(key);
        Bucketed {
            padded,
            len: key.len(),
        }
    }

    fn matches(&self, presented: &[u8]) -> bool {
        fn word(bytes: &[u8]) -> u64 {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(&bytes[..8]);
            u64::from_ne_bytes(buf)
        }
        let mask = self.padded.len() - 1;
        let mut diff: u64 = 0;
        let mut offset = 0;
        let mut chunks = presented.chunks_exact(8);
        for chunk in &mut chunks {
            let at = offset & mask;
            diff |= word(chunk) ^ word(&self.padded[at..at + 8]);
            offset += 8;
        }
        for (i, &byte) in chunks.remainder().iter().enumerate() {
            diff |= u64::from(byte ^ self.padded[(offset + i) & mask]);
        }
        black_box(diff | (presented.len() ^ self.len) as u64) == 0
    }
}

/// Reads one byte per cache line of `buffer`: over a buffer larger than
/// L2, that pushes out whatever was cached before; over a small one, it
/// brings it in.
fn touch(buffer: &[u8]) {
    let mut sum = 0u8;
    let mut i = 0;
    while i < buffer.len() {
        sum = sum.wrapping_add(buffer[i]);
        i += 64;
    }
    black_box(sum);
}

/// A copy of `template` for one call (the header values are shared, not
/// copied), with its presented key read once so it is in cache for either
/// class.
fn fresh_request(template: &Request<()>) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = template.method().clone();
    *request.uri_mut() = template.uri().clone();
    *request.headers_mut() = template.headers().clone();
    if let Some(value) = request.headers().get("x-api-key") {
        touch(value.as_bytes());
    }
    request
}

/// The configured keys of the two classes (64 and 4096 bytes, or others of
/// different old capacity buckets) and the presented key: the longer
/// configured key with its last byte wrong, so the naive `==` compares all
/// of it in one class and stops at the length in the other.
fn cold_keys(short: usize, long: usize) -> ([String; 2], String) {
    let key = key_of(long);
    let presented = format!("{}X", &key[..long - 1]);
    ([key[..short].to_owned(), key], presented)
}

/// Samples per subject between two rebuilds of its pools.
const REBUILD_EVERY: usize = 500;

/// One round: every subject measured `samples` times, interleaved sample
/// by sample (so all see the same machine, load included). The pools are
/// rebuilt every `REBUILD_EVERY` samples: with one build per round, the
/// places the allocator gave the 32 instances of a class are a fixed
/// effect of that round, and at 50,000 samples two classes with the same
/// key (A/A) differed by |t| = 21, then 7.9 and 8.4. Rebuilt, with the pair
/// order and spacers drawn at random, the layout is one more random
/// variable that both classes share.
fn cold_round(subjects: &mut [Subject], presented: &str, samples: usize, seed: u64) -> Vec<Report> {
    let template = request("x-api-key", presented);
    let evict_buffer = vec![1u8; evict_bytes()];
    let mut rng = Rng(seed);
    let mut out: Vec<Vec<(usize, u64)>> = subjects
        .iter()
        .map(|_| Vec::with_capacity(samples))
        .collect();
    let warm_up = samples.min(200);
    for step in 0..warm_up + samples {
        if step % REBUILD_EVERY == 0 {
            for subject in subjects.iter_mut() {
                subject.rebuild(&mut rng);
            }
        }
        for (subject, out) in subjects.iter_mut().zip(&mut out) {
            let class = rng.bit();
            let index = rng.below(POOL);
            touch(&evict_buffer);
            let request = fresh_request(&template);
            let probe = &mut subject.pools[class][index];
            fence(Ordering::SeqCst);
            let start = Instant::now();
            let leftover = probe(black_box(request));
            let elapsed = start.elapsed();
            drop(black_box(leftover));
            if step >= warm_up {
                out.push((class, elapsed.as_nanos() as u64));
            }
        }
    }
    subjects
        .iter()
        .zip(&out)
        .map(|(subject, samples)| analyse(&subject.name, samples, 1))
        .collect()
}

/// `PROXY_AUTH_EVICT_KIB` if set (0 turns eviction off, to see what it
/// adds); otherwise twice this machine's L2 as Linux reports it, at least
/// `EVICT_BYTES`.
fn evict_bytes() -> usize {
    if let Some(kib) = std::env::var("PROXY_AUTH_EVICT_KIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        return kib << 10;
    }
    l2_bytes().map_or(EVICT_BYTES, |l2| (2 * l2).clamp(EVICT_BYTES, 64 << 20))
}

fn l2_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        if read("level")?.trim() != "2" {
            return None;
        }
        let size = read("size")?;
        let kib: usize = size.trim().strip_suffix('K')?.parse().ok()?;
        Some(kib << 10)
    })
}

/// How far over the threshold both controls must be for a round to count.
/// Our comparison before its fix was the bucketed control behind a longer
/// path (header search, `is_key_text`), and measured at 0.7 to 0.9 of the
/// control's |t| in the same rounds (at 8,000 samples, debug 16.2-19.2 vs
/// 22.7-24.7, release 38.6-45.9 vs 42.7-57.8). So a control at 13.5 stands
/// for a leak ours would show at 9.5 or more; the statistic wanders by a
/// few units between runs (A/A rows reach 3.5), so such a leak stays over
/// 4.5. At 9, a round with the caches left warm counted once (bucketed
/// 10.7 after 6.6): too weak a leak to vouch for ours. A control under the
/// margin means the machine (or the build) hides a leak of this size, and
/// the round says nothing about ours. Measured with eviction, debug build:
/// 15.7 to 33 at 5,000 samples, 19.9 to 24.7 at 8,000 (`CI_COLD_SAMPLES`);
/// release: 43 to 230.
const COLD_CONCLUSIVE: f64 = 3.0 * THRESHOLD;

/// Rounds tried before the harness is declared blind.
const COLD_ROUNDS: usize = 5;

/// One of ours in a cold round, and how a probe of it is built.
type Ours = (&'static str, fn(&str) -> Probe);

/// Outside the timed region: the layer compares the 4 KiB presented key
/// (it accepts the long configured key itself) and rejects the presented
/// one as a wrong key, not as a malformed one, so what is timed is the
/// comparison.
fn check_cold_setup(keys: [&str; 2], presented: &str) {
    for key in keys {
        let layer = pooled_layer(key);
        let decision = layer.check(&request("x-api-key", presented));
        assert!(
            matches!(&decision, Decision::Reject(r)
                if r.reason == RejectReason::InvalidKey && r.problem.is_none()),
            "a {}-byte key: the presented key must be compared and rejected, got {decision:?}",
            key.len()
        );
        assert!(
            matches!(layer.check(&request("x-api-key", key)), Decision::Allow(_)),
            "a {}-byte configured key must be accepted",
            key.len()
        );
    }
}

/// Rounds of the two controls and `ours`, configured keys of `short` and
/// `long` bytes, until every one of ours has a clean conclusive round.
///
/// A round is conclusive when both controls are over `COLD_CONCLUSIVE`;
/// otherwise it is retried. In a conclusive round each of ours must be under
/// the threshold; one that is over is measured again in the next round, and
/// over in three conclusive rounds is a leak (the three-runs rule of
/// [`no_leak`]). Every round's table is printed; `Err` says what failed,
/// with the reports.
fn cold_verdict(
    label: &str,
    (short, long): (usize, usize),
    ours: &[Ours],
    samples: usize,
) -> Result<(), String> {
    let (keys, presented) = cold_keys(short, long);
    let keys = [keys[0].as_str(), keys[1].as_str()];
    check_cold_setup(keys, &presented);
    let mut pending: Vec<(Ours, Vec<Report>)> = ours.iter().map(|&o| (o, Vec::new())).collect();
    let mut blind = Vec::new();
    for round in 0..COLD_ROUNDS {
        let name = |what: &str| format!("{label}: {what}");
        let mut subjects = vec![
            Subject::new(name("naive =="), keys, cold_naive),
            Subject::new(name("bucketed"), keys, cold_bucketed),
        ];
        for ((what, build), _) in &pending {
            subjects.push(Subject::new(name(what), keys, *build));
        }
        let seed = 0x9e37_79b9_7f4a_7c15 ^ ((round as u64) << 32);
        let mut reports = cold_round(&mut subjects, &presented, samples, seed);
        print(&reports);
        let ours_reports = reports.split_off(2);
        if reports
            .iter()
            .any(|control| control.t_max < COLD_CONCLUSIVE)
        {
            blind.push(reports);
            continue;
        }
        let mut still = Vec::new();
        for ((subject, mut over), report) in pending.into_iter().zip(ours_reports) {
            if report.t_max < THRESHOLD {
                continue;
            }
            over.push(report);
            if over.len() == 3 {
                return Err(format!(
                    "{label}: {}: |t| over {THRESHOLD} in 3 conclusive rounds: {over:?}",
                    subject.0
                ));
            }
            still.push((subject, over));
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
    }
    Err(format!(
        "{label}: inconclusive: the harness could not see the bucketed control \
         (both controls over {COLD_CONCLUSIVE} is required) in {} of {COLD_ROUNDS} rounds: \
         {blind:?}; still open: {pending:?}",
        blind.len(),
        pending = pending
            .iter()
            .map(|((what, _), over)| (what, over))
            .collect::<Vec<_>>()
    ))
}

// ---------------------------------------------------------------------------
// CI: short, and robust on a loaded machine.

/// CI sample count per test of ours.
const CI_SAMPLES: usize = 20_000;
/// CI sample count per naive test: they are cheap (under 1.5 µs a call even
/// in a debug build), and more samples widen the margin by which a leak is
/// found.
const CI_NAIVE_SAMPLES: usize = 50_000;

/// How far over the threshold a naive leak must be in CI. The leaks picked
/// for CI give |t| from about 80 to thousands at `CI_NAIVE_SAMPLES` in a
/// debug build, so this margin survives a loaded machine.
const CI_LEAK_MARGIN: f64 = 3.0 * THRESHOLD;

/// The harness has teeth: in a CI-sized run it finds `==` leaking the
/// key's length (a check, and a whole `==` service), `==` leaking the
/// position of the first difference in a long key, and an early-exit loop
/// leaking it in a 35-byte key.
#[test]
fn ci_harness_detects_naive_comparisons() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut reports = Vec::new();
    for (name, f, pair) in naive_caught_in_ci().iter() {
        // Up to three runs, the mirror image of `no_leak`: a real leak is
        // clearly over the threshold in at least one of them. The weakest
        // row (`==` inside the whole service, where the leak is a few
        // percent of a debug-build request) was seen at |t| = 13.3 once in
        // about 30 runs while usually far above; one run is not enough.
        let mut attempts = Vec::new();
        let caught = loop {
            let report = run(name, *f, pair, CI_NAIVE_SAMPLES);
            let over = report.t_max > CI_LEAK_MARGIN;
            attempts.push(report);
            if over || attempts.len() == 3 {
                break over;
            }
        };
        assert!(
            caught,
            "{name}: |t| not clearly over {CI_LEAK_MARGIN} in 3 runs: the harness lost its teeth ({attempts:?})"
        );
        reports.extend(attempts.pop());
    }
    print(&reports);
}

/// Measures a pair up to three times; `Ok` with the clean run's report, or
/// `Err` with all three if every one is over the threshold.
///
/// Why three: dudect's statistic is the largest |t| over the uncropped test
/// and five crops, and on a loaded 2-core machine two *identical* classes
/// (the A/A rows of the full run) were seen reaching |t| = 5.6 at a million
/// samples. Load hits both classes alike on average, but not always within
/// one run. A real leak is over the threshold every time (the naive rows are
/// in the hundreds to thousands); noise rarely three times in a row.
fn no_leak(name: &str, f: Run, pair: &Pair, samples: usize) -> Result<Report, Vec<Report>> {
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let report = run(name, f, pair, samples);
        if report.t_max < THRESHOLD {
            return Ok(report);
        }
        attempts.push(report);
    }
    Err(attempts)
}

/// Our comparison and our reject path show no leak at the CI sample count
/// (under the three-runs rule of [`no_leak`]).
#[test]
fn ci_ours_shows_no_leak() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut reports = Vec::new();
    for (name, f, pair, _) in ours().into_iter().filter(|run| run.3) {
        match no_leak(name, f, &pair, CI_SAMPLES) {
            Ok(report) => reports.push(report),
            Err(attempts) => panic!(
                "{name}: |t| over {THRESHOLD} in 3 runs of {CI_SAMPLES} samples: {attempts:?}"
            ),
        }
    }
    print(&reports);
}

/// CI sample count per subject of a cold round: three subjects, one call
/// each per sample, about 8 s a round in a debug build on the 2-core build
/// machine, 16 s with a busy loop on the other core (most of it the
/// eviction walk).
const CI_COLD_SAMPLES: usize = 8_000;

/// With the configured keys cold, a 4 KiB presented key takes no longer
/// against a 4096-byte configured key than against a 64-byte one, in
/// rounds where the harness catches both `==` and the bucketed comparison.
#[test]
fn ci_cold_keys_hide_their_length() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ours: [Ours; 1] = [("ours check", cold_ours_check)];
    if let Err(why) = cold_verdict("64 vs 4096", (64, 4096), &ours, CI_COLD_SAMPLES) {
        panic!("{why}");
    }
}

// ---------------------------------------------------------------------------
// The full run: ignored by default; its figures are in the README.

fn full_samples() -> usize {
    std::env::var("PROXY_AUTH_TIMING_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

/// Two identical classes: what the harness reports when there is nothing
/// to find, on this machine, now.
fn controls() -> Vec<(&'static str, Run, Pair)> {
    let same = |len| {
        let key = key_of(len);
        let last = format!("{}X", &key[..len - 1]);
        Pair {
            keys: [key.clone(), key],
            presented: [last.clone(), last],
        }
    };
    vec![
        ("A/A control: check", ours_check as Run, same(KEY_LEN)),
        ("A/A control: check, 1 KiB", ours_check, same(LONG)),
        ("A/A control: layer 401", ours_layer, same(KEY_LEN)),
    ]
}

/// The A/A control measured like `row`: same subject, same key size.
fn control_for(row: &str) -> &'static str {
    if row.starts_with("ours layer") || row.starts_with("A/A control: layer") {
        "A/A control: layer 401"
    } else if row.contains("1 KiB") {
        "A/A control: check, 1 KiB"
    } else {
        "A/A control: check"
    }
}

/// Every pair at `PROXY_AUTH_TIMING_SAMPLES` (default 1,000,000) samples:
/// ours and the A/A controls must stay under 4.5 (three-runs rule), the
/// naive comparisons CI relies on must be over it, and the naive ones at the
/// real key length are reported. A failure names each flagged row as a leak
/// or, when its own A/A control went over too, as inconclusive.
#[test]
#[ignore = "minutes long; run with --release, see the module docs"]
fn full_dudect_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = full_samples();
    let mut reports = Vec::new();
    let mut leaks = Vec::new();
    let candidates = ours()
        .into_iter()
        .map(|(name, f, pair, _)| (name, f, pair))
        .chain(controls());
    for (name, f, pair) in candidates {
        match no_leak(name, f, &pair, n) {
            Ok(report) => reports.push(report),
            Err(attempts) => {
                reports.extend(attempts.iter().cloned());
                leaks.push(attempts);
            }
        }
    }
    print(&reports);
    let mut naive: Vec<Report> = naive_caught_in_ci()
        .iter()
        .map(|(name, f, pair)| run(name, *f, pair, n))
        .collect();
    let caught = naive.len();
    naive.push(run(
        "naive == check: position",
        naive_check,
        &position(KEY_LEN),
        n,
    ));
    naive.push(run(
        "naive == layer: position",
        naive_layer,
        &position(KEY_LEN),
        n,
    ));
    naive.push(run(
        "naive == layer: length",
        naive_layer,
        &length(KEY_LEN),
        n,
    ));
    print(&naive);
    // A flagged row is reported with the largest |t| its own A/A control
    // (two identical classes, same subject and key size) reached in this
    // run: when that too is over the threshold, the harness could not
    // tell this row's classes from noise here, which the report says
    // instead of passing the row.
    let worst_control = |row: &str| {
        let control = control_for(row);
        reports
            .iter()
            .filter(|r| r.name == control)
            .map(|r| r.t_max)
            .fold(0.0, f64::max)
    };
    let verdicts: Vec<String> = leaks
        .iter()
        .map(|attempts| {
            let name = &attempts[0].name;
            let t: Vec<String> = attempts.iter().map(|r| format!("{:.1}", r.t_max)).collect();
            let control = worst_control(name);
            let kind = if name.starts_with("A/A") {
                "the harness flags identical classes"
            } else if control > THRESHOLD {
                "inconclusive: its A/A control is over the threshold too"
            } else {
                "LEAK"
            };
            format!(
                "{name}: |t| max {} ({kind}; A/A control up to {control:.1})",
                t.join(", ")
            )
        })
        .collect();
    assert!(
        verdicts.is_empty(),
        "rows over {THRESHOLD} in 3 runs:\n{}",
        verdicts.join("\n")
    );
    for r in &naive[..caught] {
        assert!(r.t_max > THRESHOLD, "{} not detected: {r:?}", r.name);
    }
}

/// Samples per subject of a full cold round.
fn full_cold_samples() -> usize {
    std::env::var("PROXY_AUTH_COLD_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

/// Both classes get the same 4096-byte configured key, whichever class it
/// is built for (on separate instances, as always): what the cold-pool
/// harness reports when there is nothing to find.
fn cold_aa(_class_key: &str) -> Probe {
    cold_ours_check(&key_of(PRESENTED_LEN))
}

/// The cold-pool rounds at `PROXY_AUTH_COLD_SAMPLES` (default 200,000) per
/// subject: our check and our whole 401, for 64 vs 4096 and 35 vs 2048
/// bytes, and an A/A control; the same rules as the CI test.
#[test]
#[ignore = "minutes long; run with --release, see the module docs"]
fn full_cold_pool_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = full_cold_samples();
    let ours: [Ours; 3] = [
        ("ours check", cold_ours_check),
        ("ours 401", cold_ours_call),
        ("A/A control, check", cold_aa),
    ];
    let mut failures = Vec::new();
    for (label, lengths) in [("64 vs 4096", (64, 4096)), ("35 vs 2048", (35, 2048))] {
        if let Err(why) = cold_verdict(label, lengths, &ours, n) {
            failures.push(why);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn welch_t_is_right_on_known_data() {
    let mut w = Welch::default();
    for x in [1.0, 2.0, 3.0, 4.0] {
        w.push(0, x);
    }
    for x in [3.0, 4.0, 5.0, 6.0] {
        w.push(1, x);
    }
    // Means 2.5 and 4.5, variances 5/3 each: t = -2 / sqrt(5/6).
    assert!((w.t() - (-2.0 / (5.0f64 / 6.0).sqrt())).abs() < 1e-12);
    let report = analyse(
        "synthetic",
        &[(0, 10), (1, 20), (0, 11), (1, 21), (0, 9), (1, 19)],
        1,
    );
    assert!(report.t_all > THRESHOLD && report.t_max >= report.t_all);
}
