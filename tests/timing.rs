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
//! `cargo test` runs the `ci_` tests: a few seconds, built to be robust on a
//! loaded 2-core machine (see the README's Security section). The full run,
//! with 1,000,000 samples per test and a figures table, is ignored by default:
//!
//! ```text
//! cargo test --release --test timing -- --ignored --nocapture --test-threads 1
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
use proxy_auth::{KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
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
    fn bit(&mut self) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 63) as usize
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
        ("A/A control: layer 401", ours_layer, same(KEY_LEN)),
    ]
}

/// Every pair at `PROXY_AUTH_TIMING_SAMPLES` (default 1,000,000) samples:
/// ours and the A/A controls must stay under 4.5 (three-runs rule), the
/// naive comparisons CI relies on must be over it, and the naive ones at the
/// real key length are reported.
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
    assert!(leaks.is_empty(), "leaks found: {leaks:?}");
    for r in &naive[..caught] {
        assert!(r.t_max > THRESHOLD, "{} not detected: {r:?}", r.name);
    }
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
