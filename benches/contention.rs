//! Does judging requests scale across threads while the config is reloaded?
//!
//! N reader threads (1, 2, ... up to the machine's core count) judge
//! accepted requests in a loop through one shared config, while a writer
//! thread stores a new config every millisecond. Reported per row: calls per
//! second per reader thread, and the ratio of the N-thread figure to the
//! 1-thread one (1.0 = perfect scaling; the target is >= 0.9 at 2 threads).
//!
//! The `check:` rows run the crate's own decision through
//! `ProxyAuthLayer::check` on a borrowed request, so they differ only in
//! how the config is reached:
//!
//! - `fixed`: `ProxyAuthLayer::new`, no reload possible (the ceiling);
//! - `arc-swap`: `ProxyAuthLayer::from_shared`, what the crate ships;
//! - `RwLock<Arc>`: read-lock, clone the `Arc`, unlock, judge;
//! - `RwLock (held)`: judge while holding the read lock, as the usual
//!   `Arc<RwLock<Config>>` middleware does;
//! - `Mutex<Arc>`: lock, clone the `Arc`, unlock, judge.
//!
//! The `call:` rows drive a whole `ProxyAuth` service per thread (as each
//! hyper connection has its own clone) around a trivial inner service;
//! requests are built and freed outside the timed part.
//!
//! ```text
//! cargo bench --bench contention
//! CONTENTION_MS=300 CONTENTION_ROUNDS=9 cargo bench --bench contention   # the defaults
//! ```

#[path = "common/mod.rs"]
mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tower::{Layer, Service};

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// The config stored on the writer's `n`th turn: the mode flips, the key
/// stays, so every request is accepted under every version.
fn config(n: u64) -> ProxySecurityConfig {
    let mode = if n % 2 == 0 {
        ProxyAuthMode::Strict
    } else {
        ProxyAuthMode::AllExceptHealth
    };
    ProxySecurityConfig::new(mode, KEY)
}

/// One way of keeping the config where request threads can read it.
trait Storage: Send + Sync + 'static {
    /// Judges `request` against the current config.
    fn judge(&self, request: &Request<()>) -> bool;
    /// Replaces the config; `false` when this storage cannot be reloaded.
    fn store(&self, config: ProxySecurityConfig) -> bool;
    /// The layer to build a `ProxyAuth` service from, for storages the
    /// crate offers.
    fn layer(&self) -> Option<&ProxyAuthLayer> {
        None
    }
}

struct Fixed(ProxyAuthLayer);
impl Storage for Fixed {
    fn judge(&self, request: &Request<()>) -> bool {
        self.0.check(request).is_allowed()
    }
    fn store(&self, _: ProxySecurityConfig) -> bool {
        false
    }
    fn layer(&self) -> Option<&ProxyAuthLayer> {
        Some(&self.0)
    }
}

struct Swap(SharedSecurityConfig, ProxyAuthLayer);
impl Storage for Swap {
    fn judge(&self, request: &Request<()>) -> bool {
        self.1.check(request).is_allowed()
    }
    fn store(&self, config: ProxySecurityConfig) -> bool {
        self.0
            .store(config)
            .expect("no listen-address guard is set");
        true
    }
    fn layer(&self) -> Option<&ProxyAuthLayer> {
        Some(&self.1)
    }
}

struct RwArc(RwLock<Arc<ProxyAuthLayer>>);
impl Storage for RwArc {
    fn judge(&self, request: &Request<()>) -> bool {
        let layer = Arc::clone(&self.0.read().expect("no writer panics"));
        layer.check(request).is_allowed()
    }
    fn store(&self, config: ProxySecurityConfig) -> bool {
        let layer = Arc::new(ProxyAuthLayer::new(config));
        *self.0.write().expect("no reader panics") = layer;
        true
    }
}

struct RwHeld(RwLock<ProxyAuthLayer>);
impl Storage for RwHeld {
    fn judge(&self, request: &Request<()>) -> bool {
        let layer = self.0.read().expect("no writer panics");
        layer.check(request).is_allowed()
    }
    fn store(&self, config: ProxySecurityConfig) -> bool {
        let layer = ProxyAuthLayer::new(config);
        *self.0.write().expect("no reader panics") = layer;
        true
    }
}

struct MutexArc(Mutex<Arc<ProxyAuthLayer>>);
impl Storage for MutexArc {
    fn judge(&self, request: &Request<()>) -> bool {
        let layer = Arc::clone(&self.0.lock().expect("no writer panics"));
        layer.check(request).is_allowed()
    }
    fn store(&self, config: ProxySecurityConfig) -> bool {
        let layer = Arc::new(ProxyAuthLayer::new(config));
        *self.0.lock().expect("no reader panics") = layer;
        true
    }
}

/// How reader threads exercise a storage.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Mode {
    /// `ProxyAuthLayer::check` on a borrowed request: only the decision, so
    /// the storages differ in nothing but how the config is reached.
    Check,
    /// The whole service: `poll_ready`, `call`, poll, on requests built
    /// (and freed) outside the timed part, as in `benches/overhead.rs`.
    Call,
}

fn storages() -> Vec<(&'static str, Mode, Arc<dyn Storage>)> {
    let shared = SharedSecurityConfig::new(config(0));
    let layer = || ProxyAuthLayer::new(config(0));
    let swap = || {
        let shared = SharedSecurityConfig::new(config(0));
        Arc::new(Swap(shared.clone(), ProxyAuthLayer::from_shared(shared)))
    };
    vec![
        (
            "check: fixed (new, no reload)",
            Mode::Check,
            Arc::new(Fixed(layer())),
        ),
        (
            "check: arc-swap (from_shared)",
            Mode::Check,
            Arc::new(Swap(shared.clone(), ProxyAuthLayer::from_shared(shared))),
        ),
        (
            "check: RwLock<Arc>",
            Mode::Check,
            Arc::new(RwArc(RwLock::new(Arc::new(layer())))),
        ),
        (
            "check: RwLock (held)",
            Mode::Check,
            Arc::new(RwHeld(RwLock::new(layer()))),
        ),
        (
            "check: Mutex<Arc>",
            Mode::Check,
            Arc::new(MutexArc(Mutex::new(Arc::new(layer())))),
        ),
        ("call: ProxyAuth, new", Mode::Call, Arc::new(Fixed(layer()))),
        ("call: ProxyAuth, from_shared", Mode::Call, swap()),
    ]
}

/// Requests per timed chunk.
const CHUNK: usize = 256;

fn accepted_request() -> Request<()> {
    Request::get("/v1/chat/completions")
        .header("host", "127.0.0.1:8045")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {KEY}"))
        .body(())
        .expect("valid request")
}

/// One reader thread: judges requests until `stop`, returns the calls made
/// and the time spent making them.
fn read(storage: &dyn Storage, mode: Mode, stop: &AtomicBool, start: &Barrier) -> (u64, Duration) {
    let (mut calls, mut busy) = (0u64, Duration::ZERO);
    match mode {
        Mode::Check => {
            let request = accepted_request();
            start.wait();
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                for _ in 0..CHUNK {
                    assert!(storage.judge(black_box(&request)), "request rejected");
                }
                busy += began.elapsed();
                calls += CHUNK as u64;
            }
        }
        Mode::Call => {
            let mut service = storage
                .layer()
                .expect("a crate storage")
                .layer(common::Parking);
            let waker = Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut batch = Vec::with_capacity(CHUNK);
            start.wait();
            while !stop.load(Ordering::Relaxed) {
                common::clear_parked();
                batch.extend((0..CHUNK).map(|_| accepted_request()));
                let began = Instant::now();
                for request in batch.drain(..) {
                    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
                    let future = pin!(service.call(request));
                    let Poll::Ready(Ok(response)) = future.poll(&mut cx) else {
                        panic!("ProxyAuth around a ready service answers at once");
                    };
                    assert_eq!(response.status(), StatusCode::OK, "request rejected");
                }
                busy += began.elapsed();
                calls += CHUNK as u64;
            }
        }
    }
    (calls, busy)
}

struct Run {
    /// Calls per second, per reader thread (mean over the readers).
    per_thread: f64,
    /// Configs stored per second.
    stores: f64,
}

fn run(storage: &Arc<dyn Storage>, mode: Mode, readers: usize, duration: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(readers + 2));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (storage, stop, start) = (storage.clone(), stop.clone(), start.clone());
            thread::spawn(move || read(&*storage, mode, &stop, &start))
        })
        .collect();
    let writer = {
        let (storage, stop, start) = (storage.clone(), stop.clone(), start.clone());
        thread::spawn(move || {
            start.wait();
            let mut stores = 0u64;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
                if storage.store(config(stores + 1)) {
                    stores += 1;
                }
            }
            stores
        })
    };
    start.wait();
    let began = Instant::now();
    thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    // Each reader's rate over the time it spent judging (for `Check` that
    // is all of its time; for `Call` building requests is left out).
    let per_thread: f64 = threads
        .into_iter()
        .map(|t| {
            let (calls, busy) = t.join().expect("reader panicked");
            calls as f64 / busy.as_secs_f64()
        })
        .sum::<f64>()
        / readers as f64;
    let elapsed = began.elapsed().as_secs_f64();
    let stores = writer.join().expect("writer panicked");
    Run {
        per_thread,
        stores: stores as f64 / elapsed,
    }
}

fn main() {
    if !common::selected("contention") {
        return;
    }
    let duration = Duration::from_millis(common::env_or("CONTENTION_MS", 300));
    let rounds = common::env_or("CONTENTION_ROUNDS", 9).max(1);
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let mut counts = vec![1];
    let mut n = 2;
    while n < cores {
        counts.push(n);
        n *= 2;
    }
    if cores > 1 {
        counts.push(cores);
    }

    println!(
        "contention: {cores} cores, readers {counts:?}, writer stores every 1 ms, \
         {rounds} rounds of {duration:?}, median per cell"
    );
    let mut header = String::from("| readers run | config storage |");
    let mut rule = String::from("|---|---|");
    for n in &counts {
        header.push_str(&format!(" {n} thr: M calls/s/thread |"));
        rule.push_str("---:|");
    }
    for n in &counts[1..] {
        header.push_str(&format!(
            " {n} thr / 1 thr | {n} thr / 1 thr, vs no reload |"
        ));
        rule.push_str("---:|---:|");
    }
    header.push_str(" stores/s |");
    rule.push_str("---:|");

    // Rounds are the outer loop and every ratio is taken within a round,
    // so a slowdown from elsewhere on the machine that lasts a few seconds
    // lands on all rows and both thread counts alike.
    let rows = storages();
    // per_thread[row][count][round]
    let mut per_thread = vec![vec![Vec::new(); counts.len()]; rows.len()];
    let mut stores = vec![Vec::new(); rows.len()];
    for _ in 0..rounds {
        for (row, (_, mode, storage)) in rows.iter().enumerate() {
            for (i, &n) in counts.iter().enumerate() {
                let r = run(storage, *mode, n, duration);
                per_thread[row][i].push(r.per_thread);
                stores[row].push(r.stores);
            }
        }
    }
    // The scaling ratio of `row` at `counts[i]` in every round.
    let scaling = |row: usize, i: usize| -> Vec<f64> {
        per_thread[row][i]
            .iter()
            .zip(&per_thread[row][0])
            .map(|(n, one)| n / one)
            .collect()
    };
    // The reference for each row: the first (no-reload) row of its mode.
    let baseline = |row: usize| -> usize {
        let mode = rows[row].1 as u8;
        rows.iter()
            .position(|(_, m, _)| *m as u8 == mode)
            .expect("a row of every mode")
    };

    println!("\n{header}\n{rule}");
    for (row, (name, ..)) in rows.iter().enumerate() {
        let (what, storage_name) = name.split_once(": ").unwrap_or(("", name));
        let mut line = format!("| {what} | {storage_name} |");
        for calls in &per_thread[row] {
            line.push_str(&format!(" {:.2} |", common::median(calls.clone()) / 1e6));
        }
        for i in 1..counts.len() {
            let own = scaling(row, i);
            let reference = scaling(baseline(row), i);
            let relative = own.iter().zip(&reference).map(|(a, b)| a / b).collect();
            line.push_str(&format!(
                " {:.2} | {:.2} |",
                common::median(own.clone()),
                common::median(relative)
            ));
        }
        line.push_str(&format!(" {:.0} |", common::median(stores[row].clone())));
        println!("{line}");
    }
}
