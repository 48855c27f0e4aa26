//! Tests that drive an outside program (PostgreSQL's server binaries,
//! Chromium and chromedriver, the OpenAI SDK's venv) all decide alike what
//! to do when it is not installed.

use std::io::Write;

/// The environment variable that `.ci/run`'s runner sets to `true`.
const CI: &str = "CI";

/// What a test needs from outside, or why it cannot run: `found` is what to
/// use, or what is missing. Missing, the test says on the terminal
///
/// ```text
/// skipped: <test>: <why> (<installer> installs it)
/// ```
///
/// and passes without a verdict (`.ci/run` counts these lines), except when
/// `CI` is `true`: `.ci/run` has run `installer` before the tests, so there
/// a missing program is a failure.
///
/// ```ignore
/// let Some(python) = common::installed_or_skip(sdk_python(), ".ci/forward.sh") else {
///     return;
/// };
/// ```
pub fn installed_or_skip<T>(found: Result<T, String>, installer: &str) -> Option<T> {
    let why = match found {
        Ok(found) => return Some(found),
        Err(why) => why,
    };
    if std::env::var(CI).is_ok_and(|ci| ci == "true") {
        panic!("{why}, under {CI}=true, where .ci/run has run {installer} first");
    }
    // libtest names each test's thread after the test.
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => format!("{name}: "),
        _ => String::new(),
    };
    // Written to the process's stderr itself: libtest captures a passing
    // test's `print!` and `eprint!`, which would hide the skip.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}{why} ({installer} installs it)"
    );
    None
}
