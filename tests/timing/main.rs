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
//! Those runs (`warm.rs`) keep the configured key in L1. The cold-pool
//! rounds (`cold.rs`) ask the length question where a server's key lives:
//! many long-lived instances per class, caches evicted before every call
//! (the walk and the pools sized from this machine's caches), a 4 KiB
//! presented key against configured keys of different sizes. A round counts
//! only if it catches both a naive `==` and a deliberately bucketed
//! comparison (a key buffer sized after the key); a round whose controls
//! are not yet seen gathers more samples, within a time budget. Where no
//! round sees them, the machine cannot tell and the test says `skipped:`
//! with the cache sizes; a round that sees them and catches ours fails.
//!
//! `cargo test` runs the `ci_` tests: a few seconds, built to be robust on a
//! loaded 2-core machine (see SECURITY.md). The cold rounds need an
//! optimized build and say `skipped:` in a debug one; `.ci/run` runs this
//! binary with `--release`. The full runs, with 1,000,000 samples per test
//! (200,000 per cold-pool subject) and figures tables, are ignored by
//! default:
//!
//! ```text
//! cargo test --release --test timing                # what .ci/run runs
//! cargo test --release --test timing -- --ignored --nocapture --test-threads 1
//! # only the cold pools (about 3 minutes):
//! cargo test --release --test timing -- full_cold_pool_run --ignored --nocapture --test-threads 1
//! # PROXY_AUTH_EVICT_KIB=n sets the eviction walk (0: none), to see what it adds
//! ```

#[path = "../it/model.rs"]
mod model;

mod cold;
mod stats;
mod warm;

use std::sync::Mutex;
use std::time::Duration;

use http::Request;

use stats::{analyse, print, Report, Welch};
use warm::*;

/// dudect's threshold.
const THRESHOLD: f64 = 4.5;

/// The configured key: the shape `generate_api_key` makes (35 bytes).
const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// Timing runs must not overlap each other inside this test binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn request(header: &str, value: &str) -> Request<()> {
    Request::post("/v1/chat/completions")
        .header(header, value)
        .body(())
        .expect("valid request")
}

/// `KEY` for 35 bytes, a longer key of the same alphabet otherwise.
fn key_of(len: usize) -> String {
    KEY.bytes().cycle().take(len).map(char::from).collect()
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

/// Our comparison and our reject path show no leak at the CI sample count
/// (under the three-runs rule of [`no_leak`], counting only runs whose A/A
/// control was clean: [`no_leak_where_seen`]). Where load makes the control
/// itself go over, the row says `skipped:` with the figures.
#[test]
fn ci_ours_shows_no_leak() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let controls = controls();
    let mut reports = Vec::new();
    for (name, f, pair, _) in ours().into_iter().filter(|run| run.3) {
        let (control_name, control_f, control_pair) = controls
            .iter()
            .find(|c| c.0 == control_for(name))
            .expect("every row has its A/A control");
        match no_leak_where_seen(
            name,
            f,
            &pair,
            (control_name, *control_f, control_pair),
            CI_SAMPLES,
        ) {
            Seen::Clean(report) => reports.push(report),
            Seen::Leak(attempts) => panic!(
                "{name}: |t| over {THRESHOLD} in 3 runs of {CI_SAMPLES} samples, each with its A/A control under it: {attempts:?}"
            ),
            Seen::CannotTell(runs) => {
                let figures: Vec<String> = runs
                    .iter()
                    .map(|(ours, control)| format!("{:.1} vs A/A {:.1}", ours.t_max, control.t_max))
                    .collect();
                skip(&format!(
                    "ci_ours_shows_no_leak: {name}: this machine cannot tell now: its A/A control ({control_name}) was over {THRESHOLD} too in {} of 6 runs (|t| max, ours vs A/A: {})",
                    runs.len(),
                    figures.join(", ")
                ));
            }
        }
    }
    print(&reports);
}

/// The CI budget of the cold rounds: batches of 8,000 samples per subject
/// (about 0.3 s a batch in a release build on the 2-core build machine),
/// up to 4 batches a round, up to 6 rounds, and no batch started after
/// 60 s. A round whose controls are seen ends at its first batch on every
/// machine measured so far (SECURITY.md, "How each promise is tested").
const CI_COLD: cold::Budget = cold::Budget {
    batch: 8_000,
    batches: 4,
    rounds: 6,
    time: Duration::from_secs(60),
};

/// Says on the terminal, past the test harness's capture of `print!`, that
/// a test could not tell and passes without a verdict.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// In a debug build the cold rounds cannot say anything that matters: the
/// unoptimized 4 KiB comparison costs 40-70 µs a call, and the few µs of
/// cache misses the question is about drown in its noise (the bucketed
/// control, a known leak, was seen at |t| 12-19 against the 13.5 needed on
/// the build machine, and 6-11.5 on another). Users ship optimized builds,
/// and `.ci/run` runs this binary with `--release`.
fn optimized_build_or_skip(test: &str) -> bool {
    if cfg!(debug_assertions) {
        skip(&format!(
            "{test}: a debug build cannot see the cache misses this test asks about; \
             run `cargo test --release --test timing` (.ci/run does)"
        ));
        return false;
    }
    true
}

/// With the configured keys cold, a 4 KiB presented key takes no longer
/// against a 4096-byte configured key than against a 64-byte one, in
/// rounds where the harness catches both `==` and the bucketed comparison.
/// Where no round sees both controls within the budget, the machine cannot
/// tell, and the test says `skipped: <why, with the cache sizes>`; a round
/// that sees them and catches ours still fails it.
#[test]
fn ci_cold_keys_hide_their_length() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !optimized_build_or_skip("ci_cold_keys_hide_their_length") {
        return;
    }
    let ours: [cold::Ours; 1] = [("ours check", cold::ours_check)];
    match cold::verdict("64 vs 4096", (64, 4096), &ours, CI_COLD) {
        cold::Verdict::Clean => {}
        cold::Verdict::Leak(why) => panic!("{why}"),
        cold::Verdict::Blind(why) => skip(&why),
    }
}

/// The verdict has teeth: handed the bucketed comparison (the old,
/// leaky buffer) in the place of ours, the same rounds and rules call it a
/// leak. Blind machines skip, as above.
#[test]
fn ci_cold_rounds_catch_the_old_comparison() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !optimized_build_or_skip("ci_cold_rounds_catch_the_old_comparison") {
        return;
    }
    let stand_in: [cold::Ours; 1] = [("bucketed, as ours", cold::bucketed)];
    match cold::verdict("64 vs 4096", (64, 4096), &stand_in, CI_COLD) {
        cold::Verdict::Leak(_) => {}
        cold::Verdict::Clean => {
            panic!("the cold rounds passed a comparison that leaks the key's buffer size")
        }
        cold::Verdict::Blind(why) => skip(&why),
    }
}

// ---------------------------------------------------------------------------
// The full runs: ignored by default; their figures are in SECURITY.md.

fn full_samples() -> usize {
    std::env::var("PROXY_AUTH_TIMING_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
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

/// Samples per batch of a full cold round.
fn full_cold_samples() -> usize {
    std::env::var("PROXY_AUTH_COLD_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000)
}

/// The cold-pool rounds at `PROXY_AUTH_COLD_SAMPLES` (default 200,000) per
/// subject: our check and our whole 401, for 64 vs 4096 and 35 vs 2048
/// bytes, and an A/A control; the same rules as the CI test, but a blind
/// machine fails the run, as whoever runs it by hand wants a verdict.
#[test]
#[ignore = "minutes long; run with --release, see the module docs"]
fn full_cold_pool_run() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let budget = cold::Budget {
        batch: full_cold_samples(),
        batches: 1,
        rounds: 5,
        time: Duration::from_secs(3600),
    };
    let ours: [cold::Ours; 3] = [
        ("ours check", cold::ours_check),
        ("ours 401", cold::ours_call),
        ("A/A control, check", cold::ours_aa),
    ];
    let mut failures = Vec::new();
    for (label, lengths) in [("64 vs 4096", (64, 4096)), ("35 vs 2048", (35, 2048))] {
        match cold::verdict(label, lengths, &ours, budget) {
            cold::Verdict::Clean => {}
            cold::Verdict::Leak(why) | cold::Verdict::Blind(why) => failures.push(why),
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
