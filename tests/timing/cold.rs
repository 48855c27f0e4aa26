//! Cold pools: the configured key's memory, not only its bytes.
//!
//! The warm harness builds fresh layers for every sample, so the configured
//! key is always in L1, where touching 1 or 64 of its cache lines costs the
//! same. A server's key is built once and sits in memory that other work
//! evicts between two requests, and that is where a buffer sized after the
//! key shows: a 4 KiB presented key walks 1 line of a 64-byte buffer but 64
//! lines of a 4096-byte one, and out of cache the second costs more. So here:
//! - each class has a pool of long-lived instances (layers, or control
//!   keys), sized from the machine's L1d ([`Machine::pool`]), allocated
//!   interleaved (A0, B0, A1, B1, ...) so that neither class sits at
//!   systematically different addresses; each pair's order and a spacer
//!   before it are drawn at random, and the pools are rebuilt every
//!   `REBUILD_EVERY` samples, so no one layout decides a round;
//! - each sample draws the class at random, then an instance of that class
//!   at random (two independent draws);
//! - before the clock starts, the caches are evicted by walking a buffer
//!   sized from the machine's L2 ([`Machine::evict_bytes`]), then the request
//!   is copied and its presented key read, so only the instances are cold;
//!   all of that is the same for both classes;
//! - one sample times one call: a second call on the same instance would find
//!   its key warm, which is what hid the leak from the warm harness.
//!
//! The presented key is the same 4 KiB for both classes, wrong at its last
//! byte; only the configured key's length differs (64 vs 4096 bytes, the
//! smallest and the largest of the old power-of-two capacities).
//!
//! How much a round can see depends on the machine (cache sizes and
//! policies, load) and on the build: in a debug build the 4 KiB comparison's
//! own unoptimized work dwarfs the cache misses it is asked about. So a
//! round gathers samples in batches until both controls are seen or its
//! share of a time budget is spent, and [`verdict`] tells three outcomes
//! apart: no leak, a leak, and a machine that could not tell ("blind").

use std::hint::black_box;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use proxy_auth::{Decision, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, RejectReason};
use tower_layer::Layer;
use tower_service::Service;

use crate::model;
use crate::stats::{analyse, print, Report, Rng};
use crate::{key_of, request, THRESHOLD};

/// The presented key's length, and the longest configured key.
pub const PRESENTED_LEN: usize = 4096;

// ---------------------------------------------------------------------------
// The machine.

/// The data caches of the CPU the test runs on, as Linux reports them
/// (`/sys/devices/system/cpu/cpu0/cache`): one instance of each level, in
/// bytes, or `None` where the kernel does not say.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    pub l1d: Option<usize>,
    pub l2: Option<usize>,
    pub l3: Option<usize>,
}

/// Eviction walk when the L2 size is unknown: four times 2 MiB, the
/// largest L2 per core of current server parts.
const EVICT_UNKNOWN: usize = 8 << 20;
/// Bounds of the eviction walk.
const EVICT_MIN: usize = 4 << 20;
const EVICT_MAX: usize = 64 << 20;

impl Machine {
    pub fn read() -> Self {
        let mut machine = Machine {
            l1d: None,
            l2: None,
            l3: None,
        };
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return machine;
        };
        for entry in entries.flatten() {
            let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
            let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
            else {
                continue;
            };
            let Some(bytes) = parse_size(size.trim()) else {
                continue;
            };
            match (level.trim(), kind.trim()) {
                ("1", "Data") => machine.l1d = Some(bytes),
                ("2", "Data" | "Unified") => machine.l2 = Some(bytes),
                ("3", "Data" | "Unified") => machine.l3 = Some(bytes),
                _ => {}
            }
        }
        machine
    }

    /// `PROXY_AUTH_EVICT_KIB` if set (0 turns eviction off, to see what it
    /// adds). Otherwise four times this machine's L2: an L2 is 8- to 16-way
    /// with an adaptive replacement policy (Intel's keeps some lines through
    /// a walk of only twice its size), and four times its size flushes
    /// every line an earlier sample touched out of it; bounded to 4-64 MiB.
    /// The walk is not sized after L3: an L3 may be hundreds of MiB, and an
    /// instance in L3 is already far slower to read than one in L1 or L2,
    /// which is the difference the bucketed control has.
    pub fn evict_bytes(&self) -> usize {
        if let Some(kib) = std::env::var("PROXY_AUTH_EVICT_KIB")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        {
            return kib << 10;
        }
        self.l2
            .map_or(EVICT_UNKNOWN, |l2| (4 * l2).clamp(EVICT_MIN, EVICT_MAX))
    }

    /// Instances per class: enough 4 KiB keys to fill four times L1d (at
    /// least 32), so even without eviction the long class cannot stay in
    /// L1, and a class's mean is over many addresses, so no single
    /// allocation's place (page offset, cache set) decides it.
    pub fn pool(&self) -> usize {
        self.l1d
            .map_or(32, |l1d| (4 * l1d).div_ceil(PRESENTED_LEN).max(32))
    }

    /// "L1d 32 KiB, L2 1024 KiB, L3 32768 KiB; eviction walk 4096 KiB, 32
    /// instances per class", for reports.
    pub fn describe(&self) -> String {
        let kib =
            |size: Option<usize>| size.map_or("unknown".to_owned(), |b| format!("{} KiB", b >> 10));
        format!(
            "L1d {}, L2 {}, L3 {}; eviction walk {} KiB, {} instances per class",
            kib(self.l1d),
            kib(self.l2),
            kib(self.l3),
            self.evict_bytes() >> 10,
            self.pool()
        )
    }
}

/// `32K`, `1024K`, `2M` (sysfs writes sizes in KiB; a unit-less number is
/// bytes).
fn parse_size(size: &str) -> Option<usize> {
    let (digits, shift) = match size.as_bytes().last()? {
        b'K' => (&size[..size.len() - 1], 10),
        b'M' => (&size[..size.len() - 1], 20),
        _ => (size, 0),
    };
    digits.parse::<usize>().ok().map(|n| n << shift)
}

// ---------------------------------------------------------------------------
// What is measured.

/// What a probe hands back, dropped after the clock stops.
pub enum Leftover {
    Request(#[allow(dead_code)] Request<()>),
    Response(#[allow(dead_code)] Response<proxy_auth::ResponseBody<String>>),
}

/// One instance of a class: a configured key and the code that judges a
/// request against it.
pub type Probe = Box<dyn FnMut(Request<()>) -> Leftover>;

/// One of ours (or a stand-in) in a cold round, and how a probe of it is
/// built.
pub type Ours = (&'static str, fn(&str) -> Probe);

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

    /// Drops the pools and builds new ones: `pool` pairs, each pair's two
    /// instances one right after the other, in a random order, after a
    /// spacer of 0 to 63 cache lines.
    fn rebuild(&mut self, pool: usize, rng: &mut Rng) {
        self.pools = [Vec::with_capacity(pool), Vec::with_capacity(pool)];
        self.spacers = Vec::with_capacity(pool);
        for _ in 0..pool {
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
pub fn ours_check(key: &str) -> Probe {
    let layer = pooled_layer(key);
    Box::new(move |request| {
        black_box(layer.check(black_box(&request)));
        Leftover::Request(request)
    })
}

/// Ours, the whole reject path: `Service::call` up to the finished 401.
pub fn ours_call(key: &str) -> Probe {
    let mut service = pooled_layer(key).layer(model::Echo);
    Box::new(move |request| {
        let response = model::now(service.call(black_box(request)));
        Leftover::Response(response.expect("infallible"))
    })
}

/// Both classes get the same 4096-byte configured key, whichever class it
/// is built for (on separate instances, as always): what the cold-pool
/// harness reports when there is nothing to find.
pub fn ours_aa(_class_key: &str) -> Probe {
    ours_check(&key_of(PRESENTED_LEN))
}

/// The naive control: the same header lookup, then `==`.
fn naive(key: &str) -> Probe {
    let key = key.as_bytes().to_vec();
    Box::new(move |request| {
        let headers = black_box(&request).headers();
        black_box(headers.get("x-api-key").map(|v| v.as_bytes() == &key[..]));
        Leftover::Request(request)
    })
}

/// The bucketed control: the same header lookup, then a comparison that is
/// constant-time in every other respect but keeps the key in a buffer sized
/// after it. Public so a test can hand it to [`verdict`] in the place of
/// ours, to show that the verdict catches it.
pub fn bucketed(key: &str) -> Probe {
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
fn keys(short: usize, long: usize) -> ([String; 2], String) {
    let key = key_of(long);
    let presented = format!("{}X", &key[..long - 1]);
    ([key[..short].to_owned(), key], presented)
}

/// Outside the timed region: the layer compares the 4 KiB presented key
/// (it accepts the long configured key itself) and rejects the presented
/// one as a wrong key, not as a malformed one, so what is timed is the
/// comparison.
fn check_setup(keys: [&str; 2], presented: &str) {
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

// ---------------------------------------------------------------------------
// Rounds.

/// Samples per subject between two rebuilds of its pools. With one build
/// per round, the places the allocator gave a class's instances are a
/// fixed effect of that round, and at 50,000 samples two classes with the
/// same key (A/A) differed by |t| = 21, then 7.9 and 8.4. Rebuilt, with the
/// pair order and spacers drawn at random, the layout is one more random
/// variable that both classes share.
const REBUILD_EVERY: usize = 500;

/// One round: every subject measured sample by sample in turn (so all see
/// the same machine, load included), in batches, its samples kept so a
/// round can be extended.
struct Round<'a> {
    subjects: Vec<Subject>,
    template: Request<()>,
    evict: &'a [u8],
    pool: usize,
    rng: Rng,
    samples: Vec<Vec<(usize, u64)>>,
    steps: usize,
}

impl<'a> Round<'a> {
    fn new(
        subjects: Vec<Subject>,
        presented: &str,
        machine: &Machine,
        evict: &'a [u8],
        seed: u64,
    ) -> Self {
        let samples = subjects.iter().map(|_| Vec::new()).collect();
        let mut round = Round {
            subjects,
            template: request("x-api-key", presented),
            evict,
            pool: machine.pool(),
            rng: Rng(seed),
            samples,
            steps: 0,
        };
        // Warm-up: caches, branch predictors and the allocator see every
        // subject before anything is kept.
        round.run(200, false);
        round
    }

    /// `count` more samples per subject.
    fn extend(&mut self, count: usize) {
        self.run(count, true);
    }

    fn run(&mut self, count: usize, keep: bool) {
        for _ in 0..count {
            if self.steps % REBUILD_EVERY == 0 {
                for subject in &mut self.subjects {
                    subject.rebuild(self.pool, &mut self.rng);
                }
            }
            self.steps += 1;
            for (subject, out) in self.subjects.iter_mut().zip(&mut self.samples) {
                let class = self.rng.bit();
                let index = self.rng.below(subject.pools[class].len());
                touch(self.evict);
                let request = fresh_request(&self.template);
                let probe = &mut subject.pools[class][index];
                fence(Ordering::SeqCst);
                let start = Instant::now();
                let leftover = probe(black_box(request));
                let elapsed = start.elapsed();
                drop(black_box(leftover));
                if keep {
                    out.push((class, elapsed.as_nanos() as u64));
                }
            }
        }
    }

    fn reports(&self) -> Vec<Report> {
        self.subjects
            .iter()
            .zip(&self.samples)
            .map(|(subject, samples)| analyse(&subject.name, samples, 1))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The verdict.

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
/// the round says nothing about ours.
pub const CONCLUSIVE: f64 = 3.0 * THRESHOLD;

/// How long the rounds may look for a verdict, and in what steps.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Samples per subject added to a round at a time.
    pub batch: usize,
    /// Batches after which a round whose controls are still not seen is
    /// given up (its samples are not carried into the next round, whose
    /// pools and layout are new).
    pub batches: usize,
    /// Rounds at most.
    pub rounds: usize,
    /// Wall-clock time after which no new batch is started.
    pub time: Duration,
}

/// What the cold rounds found.
#[derive(Debug)]
pub enum Verdict {
    /// Every one of ours was under the threshold in a round whose controls
    /// were both seen.
    Clean,
    /// One of ours was over the threshold in three rounds whose controls
    /// were seen, or over in some and under in none when the budget ran
    /// out: a leak (or, for a control handed in as ours, teeth).
    Leak(String),
    /// No round (or not enough) saw both controls: this machine, in this
    /// build, cannot tell whether ours leaks. Never a pass, never a
    /// failure by chance.
    Blind(String),
}

/// Rounds of the two controls and `ours` with configured keys of `short`
/// and `long` bytes, until every one of ours has a clean conclusive round,
/// one is a leak, or the budget is spent.
///
/// A round grows by `budget.batch` samples per subject until both controls
/// are over [`CONCLUSIVE`] (the round counts), or it has had
/// `budget.batches` batches, or time is up (it does not count). Extending a
/// round until its controls are seen does not bias the verdict on ours: when
/// to stop depends on the controls only. In a round that counts, each of
/// ours must be under the threshold; one that is over is measured again in
/// the next round, and over in three rounds that count is a leak (noise
/// rarely goes over three times running, a leak of the control's size
/// always does). Every round's table is printed.
pub fn verdict(
    label: &str,
    (short, long): (usize, usize),
    ours: &[Ours],
    budget: Budget,
) -> Verdict {
    let started = Instant::now();
    let machine = Machine::read();
    let evict = vec![1u8; machine.evict_bytes()];
    let (keys, presented) = keys(short, long);
    let keys = [keys[0].as_str(), keys[1].as_str()];
    check_setup(keys, &presented);
    let mut pending: Vec<(Ours, Vec<Report>)> = ours.iter().map(|&o| (o, Vec::new())).collect();
    let mut blind: Vec<Vec<Report>> = Vec::new();
    for round in 0..budget.rounds {
        if started.elapsed() >= budget.time {
            break;
        }
        let name = |what: &str| format!("{label}: {what}");
        let mut subjects = vec![
            Subject::new(name("naive =="), keys, naive),
            Subject::new(name("bucketed"), keys, bucketed),
        ];
        for ((what, build), _) in &pending {
            subjects.push(Subject::new(name(what), keys, *build));
        }
        let seed = 0x9e37_79b9_7f4a_7c15 ^ ((round as u64) << 32);
        let mut round = Round::new(subjects, &presented, &machine, &evict, seed);
        let (mut reports, seen) = loop {
            round.extend(budget.batch);
            let reports = round.reports();
            let seen = reports[..2]
                .iter()
                .all(|control| control.t_max >= CONCLUSIVE);
            let batches = round.samples[0].len() / budget.batch;
            if seen || batches >= budget.batches || started.elapsed() >= budget.time {
                break (reports, seen);
            }
        };
        print(&reports);
        let ours_reports = reports.split_off(2);
        if !seen {
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
                return Verdict::Leak(format!(
                    "{label}: {}: |t| over {THRESHOLD} in 3 rounds whose controls were seen: {over:?}",
                    subject.0
                ));
            }
            still.push((subject, over));
        }
        pending = still;
        if pending.is_empty() {
            return Verdict::Clean;
        }
    }
    let caught: Vec<_> = pending
        .iter()
        .filter(|(_, over)| !over.is_empty())
        .collect();
    if !caught.is_empty() {
        return Verdict::Leak(format!(
            "{label}: over {THRESHOLD} in every round whose controls were seen, and the budget \
             ({budget:?}) ran out before a clean one: {:?}",
            caught
                .iter()
                .map(|((what, _), over)| (what, over))
                .collect::<Vec<_>>()
        ));
    }
    let controls: Vec<String> = blind
        .iter()
        .map(|r| {
            format!(
                "naive {:.1} / bucketed {:.1} at {} samples",
                r[0].t_max, r[1].t_max, r[0].samples
            )
        })
        .collect();
    Verdict::Blind(format!(
        "{label}: the harness could not see both controls over |t| {CONCLUSIVE} ({}) in {} rounds \
         within {:.0} s on this machine ({}), so it cannot tell whether ours leaks here",
        controls.join("; "),
        blind.len(),
        started.elapsed().as_secs_f64(),
        machine.describe()
    ))
}

#[test]
fn cache_sizes_parse_as_sysfs_writes_them() {
    assert_eq!(parse_size("32K"), Some(32 << 10));
    assert_eq!(parse_size("2048K"), Some(2 << 20));
    assert_eq!(parse_size("2M"), Some(2 << 20));
    assert_eq!(parse_size("64"), Some(64));
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("K"), None);
    let big = Machine {
        l1d: Some(48 << 10),
        l2: Some(2 << 20),
        l3: Some(480 << 20),
    };
    assert_eq!(big.pool(), 48);
    if std::env::var_os("PROXY_AUTH_EVICT_KIB").is_none() {
        assert_eq!(big.evict_bytes(), 8 << 20);
        let unknown = Machine {
            l1d: None,
            l2: None,
            l3: None,
        };
        assert_eq!((unknown.evict_bytes(), unknown.pool()), (8 << 20, 32));
    }
}
