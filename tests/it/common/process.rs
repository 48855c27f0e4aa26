//! A test run alone in a process of its own: for the rare test whose subject
//! is process-wide state that every other test of this binary touches too.

use std::process::Command;

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
