//! The integration tests: one test binary, one module per concern, so the
//! crate and its dev-dependencies are linked once rather than once per file.
//!
//! The modules run in parallel threads of one process, so none may change
//! process-wide state: logs are captured per test ([`common::Logs`]), metrics
//! go to a recorder local to the test's thread or, for the one test about
//! the process's Prometheus exporter, to a child process of its own
//! ([`common::rerun_alone`]), and no test sets environment variables or the
//! current directory (child processes get theirs through `Command`).
//!
//! Two other binaries stay apart: `tests/timing/` (it must not share its
//! process with parallel tests, and `.ci/run` runs it in release) and
//! `tests/memory/` (a global allocator that counts and inspects every
//! allocation of its process).

// The examples, each included once: the axum one installs the process's
// Prometheus recorder, which a second copy could not. Both include
// `examples/server/mod.rs`, as the two programs they are; here that
// makes two modules of one file.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/axum.rs"]
mod axum_example;
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../examples/forward.rs"]
mod forward_example;

mod common;
// The SDK venv and the forward example the SDK tests talk to.
mod sdk;
// Shared with `fuzz/` and `tests/timing/` (model) and `benches/` (upstream,
// pg), which include them by path.
mod model;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "redis")]
mod redis_server;
mod upstream;

mod adoption;
mod browser;
mod compose;
mod config_file;
mod cors;
mod credentials;
mod diagnosis;
mod example_server;
mod forward;
mod forward_process;
mod hostile_inputs;
mod http_server;
mod limits;
mod limits_sdk;
mod logging;
mod metrics;
mod misuse;
mod named_keys;
mod postgres;
mod postgres_policies;
mod proptest_model;
#[cfg(feature = "redis")]
mod redis;
mod reload_under_load;
mod rules;
mod scopes;
mod scopes_sdk;
mod secrets;
mod watch;
