//! What a test logs, captured for that test alone while the other tests of
//! the binary run (and log) on other threads.
//!
//! A [`Logs`] is a `tracing` subscriber of its own that a test makes the
//! default on its own threads: the thread that runs it ([`Logs::set_default`],
//! enough for a `current_thread` runtime and the tasks it spawns), or every
//! thread of a multi-thread runtime ([`Logs::runtime`]). No global subscriber
//! is installed, so nothing another test logs lands here.
//!
//! `tracing` caches per call site whether any subscriber wants it. While only
//! one subscriber is registered, that cache is filled from the default of
//! whichever thread reaches a call site first: a thread with no subscriber
//! would mark the site "never", and a capture on another thread would then
//! miss its events. [`Logs::new`] first registers one subscriber that lives
//! as long as the process (and wants nothing), so there are always at least
//! two, and the cache combines every live subscriber's answer: "sometimes",
//! decided again for each event by the subscriber of the thread it happens on
//! (tracing-core 0.1.36's single-dispatcher short path; tokio-rs/tracing#3611).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::dispatcher::{DefaultGuard, Dispatch};

/// A `tracing` writer that keeps what was written.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }

    pub fn clear(&self) {
        self.0.lock().expect("capture lock").clear();
    }
}

/// One test's log capture: every event at `level` or above, every target,
/// as `fmt` writes it without colours (`<time> LEVEL target: message k=v`).
#[derive(Clone)]
pub struct Logs {
    capture: Capture,
    dispatch: Dispatch,
}

impl Logs {
    pub fn new(level: tracing::Level) -> Logs {
        // Registered before any capture, and never dropped (see the module
        // docs): the second subscriber that keeps the call-site cache honest.
        static ALWAYS_REGISTERED: OnceLock<Dispatch> = OnceLock::new();
        ALWAYS_REGISTERED.get_or_init(|| Dispatch::new(tracing::subscriber::NoSubscriber::new()));

        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_target(true)
            .with_writer(move || writer.clone())
            .finish();
        Logs {
            capture,
            dispatch: Dispatch::new(subscriber),
        }
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        self.capture.text()
    }

    pub fn clear(&self) {
        self.capture.clear();
    }

    /// Captures what this thread logs until the guard is dropped.
    #[must_use = "the capture ends when the guard is dropped"]
    pub fn set_default(&self) -> DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    /// Runs `f` with what this thread logs meanwhile captured.
    pub fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// A multi-thread runtime (`workers` worker threads) on whose every
    /// thread, blocking ones included, this capture is the default; the
    /// thread that calls `block_on` needs [`Logs::set_default`] as well.
    pub fn runtime(&self, workers: usize) -> tokio::runtime::Runtime {
        thread_local! {
            static GUARD: std::cell::RefCell<Option<DefaultGuard>> = const { std::cell::RefCell::new(None) };
        }
        let dispatch = self.dispatch.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&dispatch);
                GUARD.with(|slot| *slot.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| GUARD.with(|slot| drop(slot.borrow_mut().take())))
            .build()
            .expect("a tokio runtime")
    }
}
