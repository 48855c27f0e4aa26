//! The limits' clock: monotonic nanoseconds since the process first asked.
//!
//! `quanta`'s clock (the one `governor` uses) reads the CPU's time-stamp
//! counter: about 11 ns a read on the benchmark machine, against 30 ns for
//! `std::time::Instant::now`, which goes through the vDSO. The accept path
//! of a rate-limited key reads it once.
//!
//! In this crate's unit tests a thread may set the time by hand
//! ([`tests::set`]), so refill is tested without sleeping.

use std::sync::OnceLock;

/// Nanoseconds since the first call in this process.
#[inline]
pub(crate) fn now() -> u64 {
    #[cfg(test)]
    if let Some(manual) = tests::manual() {
        return manual;
    }
    // The clock and its first raw reading: a raw read is the time-stamp
    // counter itself, scaled to nanoseconds only here.
    static START: OnceLock<(quanta::Clock, u64)> = OnceLock::new();
    let (clock, start) = START.get_or_init(|| {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        (clock, start)
    });
    clock.delta_as_nanos(*start, clock.raw())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        static MANUAL: Cell<Option<u64>> = const { Cell::new(None) };
    }

    pub(super) fn manual() -> Option<u64> {
        MANUAL.with(Cell::get)
    }

    /// Stops this thread's clock at `at` (since an arbitrary start).
    pub(crate) fn set(at: Duration) {
        MANUAL.with(|m| m.set(Some(at.as_nanos() as u64)));
    }

    /// Moves this thread's stopped clock on.
    pub(crate) fn advance(by: Duration) {
        MANUAL.with(|m| m.set(Some(m.get().unwrap_or(0) + by.as_nanos() as u64)));
    }
}
