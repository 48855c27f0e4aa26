//! Child processes: a test run alone in a process of its own (for the rare
//! test whose subject is process-wide state that every other test of this
//! binary touches too), and the built examples.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Set in the child to the name of the test it runs.
const ALONE: &str = "PROXY_AUTH_TEST_ALONE";

/// Runs the test `name` of `module` (pass `module_path!()`) again, alone, in
/// a child process of this test binary, and asserts that it passed there.
///
/// Returns `true` in the parent, which is done once the child passed, and
/// `false` in the child, which goes on to run the test's body:
///
/// ```ignore
/// if common::rerun_alone(module_path!(), "the_test") {
///     return;
/// }
/// ```
pub fn rerun_alone(module: &str, name: &str) -> bool {
    // libtest names tests by their path below the crate root.
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    };
    if std::env::var(ALONE).is_ok_and(|running| running == test) {
        return false;
    }
    let output = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, &test)
        .output()
        .expect("run the test binary again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by libtest if this test fails.
    println!("{test}, alone in process:\n{stdout}\n{stderr}");
    assert!(output.status.success(), "{test} failed in its own process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "the child process did not run {test}"
    );
    true
}

/// The built example `name` (`target/<profile>/examples/<name>`). `cargo
/// test` builds the examples beside the test binaries; when it did not
/// (`cargo test --test it`), or the binary is older than any source of the
/// example or the crate (it would test yesterday's program), it is built
/// here, with this binary's profile and features.
pub fn example_binary(name: &str) -> PathBuf {
    // One build at a time: tests needing the same example wait for it.
    static BUILDING: Mutex<()> = Mutex::new(());
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = ["src", "examples", "Cargo.toml", "Cargo.lock"].map(|p| manifest.join(p));
    if built.is_some_and(|built| sources.iter().all(|s| newest(s) <= built)) {
        return binary;
    }
    let features: Vec<&str> = [
        ("serde", cfg!(feature = "serde")),
        ("key-set", cfg!(feature = "key-set")),
        ("generate-key", cfg!(feature = "generate-key")),
        ("metrics", cfg!(feature = "metrics")),
        ("watch", cfg!(feature = "watch")),
        ("postgres", cfg!(feature = "postgres")),
    ]
    .into_iter()
    .filter_map(|(feature, on)| on.then_some(feature))
    .collect();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(manifest).args([
        "build",
        "--quiet",
        "--example",
        name,
        "--no-default-features",
    ]);
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    match profile_dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
        None => panic!("no profile directory in {}", exe.display()),
    }
    let output = cargo.output().expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(binary.exists(), "cargo built no {}", binary.display());
    binary
}

/// The newest modification time of `path` or of any file below it.
fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).expect("a source of the crate");
    let mut newest = meta.modified().expect("modification times");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("a readable directory") {
            newest = newest.max(self::newest(&entry.expect("a directory entry").path()));
        }
    }
    newest
}

/// What a child process prints on stdout, read by a thread of its own (the
/// child never blocks on a full pipe) and waited for with a bound that only
/// a hang or a changed banner exceeds.
pub struct Printed {
    state: Arc<(Mutex<Lines>, Condvar)>,
}

/// The lines so far, and whether stdout has closed.
type Lines = (Vec<String>, bool);

/// Long enough for a built example to start on a loaded machine.
const PRINT_WAIT: Duration = Duration::from_secs(60);

impl Printed {
    /// Starts reading `child`'s piped stdout.
    pub fn of(child: &mut Child) -> Printed {
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let state = Arc::new((Mutex::new((Vec::new(), false)), Condvar::new()));
        let writer = Arc::clone(&state);
        std::thread::spawn(move || {
            let (lines, changed) = &*writer;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().0.push(line);
                changed.notify_all();
            }
            lines.lock().unwrap().1 = true;
            changed.notify_all();
        });
        Printed { state }
    }

    /// The first line for which `find` says something, waiting for it.
    pub fn find<T>(&self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let (lines, changed) = &*self.state;
        let deadline = Instant::now() + PRINT_WAIT;
        let mut seen = 0;
        let mut guard = lines.lock().unwrap();
        loop {
            for line in &guard.0[seen..] {
                if let Some(found) = find(line) {
                    return found;
                }
            }
            seen = guard.0.len();
            let now = Instant::now();
            assert!(
                !guard.1 && now < deadline,
                "no {what} on stdout ({}); it printed:\n{}",
                if guard.1 { "it closed" } else { "timed out" },
                guard.0.join("\n")
            );
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// The address in an example's banner, `proxy-auth <example> example
    /// listening on http://<addr>`.
    pub fn listening(&self, example: &str) -> SocketAddr {
        let prefix = format!("proxy-auth {example} example listening on http://");
        self.find("listening banner", |line| {
            line.strip_prefix(prefix.as_str())?.trim().parse().ok()
        })
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.state.0.lock().unwrap().0.clone()
    }
}
