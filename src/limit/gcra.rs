//! The rate limit: a generic cell rate algorithm (GCRA) over one atomic
//! theoretical arrival time (TAT), in nanoseconds of [`clock`](super::clock).
//!
//! A key may make `burst` requests back to back and then one every
//! `interval` (60 s / `rpm`). The state is the time at which the key's
//! bucket would be full again if no more requests came: a request at `now`
//! passes when `max(tat, now) - now <= tolerance` (with `tolerance =
//! (burst - 1) * interval`), and moves `tat` on by one `interval`. That is
//! one compare-and-swap per request, no lock, and three numbers a Redis
//! script can hold as well (the replicas issue runs the same step there).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One key's rate: its parameters and its shared state.
#[derive(Clone, Debug)]
pub(crate) struct Gcra {
    /// Nanoseconds between requests at the sustained rate.
    interval: u64,
    /// How far ahead of `now` the TAT may be and still let a request pass.
    tolerance: u64,
    /// The theoretical arrival time; 0 before the first request. Shared by
    /// every policy the key's label stays in, so a reload keeps it.
    tat: Arc<AtomicU64>,
}

/// What one step of the GCRA says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Passed (or would pass): nanoseconds until the burst is whole again
    /// ([`remaining`](Gcra::remaining) tells how many may follow at once).
    Pass { reset: u64 },
    /// Refused: nanoseconds until one request would pass, and until the
    /// burst is whole again.
    Refuse { wait: u64, reset: u64 },
}

impl Gcra {
    /// A rate of `rpm` requests per minute with `burst` back to back
    /// (both already checked: 1..=[`MAX`](super::MAX)), with the state
    /// `tat` (a previous policy's, or a fresh one).
    pub(crate) fn new(rpm: u32, burst: u32, tat: Option<Arc<AtomicU64>>) -> Gcra {
        // Rounded up: never faster than configured.
        let interval = 60_000_000_000u64.div_ceil(u64::from(rpm.max(1)));
        Gcra {
            interval,
            tolerance: interval * u64::from(burst.max(1) - 1),
            tat: tat.unwrap_or_default(),
        }
    }

    /// The state, to carry into the next policy.
    pub(crate) fn state(&self) -> &Arc<AtomicU64> {
        &self.tat
    }

    /// Spends one request at `now` if the rate allows it.
    #[inline]
    pub(crate) fn take(&self, now: u64) -> Step {
        self.take_with(self.params(), now)
    }

    /// What [`take`](Self::take) would say at `now`, spending nothing.
    pub(crate) fn peek(&self, now: u64) -> Step {
        judge(self.params(), self.tat.load(Ordering::Acquire), now)
    }

    /// Requests allowed back to back when the burst is whole again in
    /// `reset` nanoseconds. Asked only for a report: a division the accept
    /// path does not pay for.
    pub(crate) fn remaining(&self, reset: u64) -> u32 {
        remaining(self.params(), reset)
    }

    #[inline(always)]
    fn params(&self) -> Params {
        Params {
            interval: self.interval,
            tolerance: self.tolerance,
        }
    }

    #[inline(always)]
    fn take_with(&self, params: Params, now: u64) -> Step {
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let step = judge(params, current, now);
            let Step::Pass { .. } = step else {
                return step;
            };
            let next = current.max(now) + params.interval;
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return step,
                Err(seen) => current = seen,
            }
        }
    }
}

/// A rate's parameters: nanoseconds between requests, and how far ahead
/// of `now` the TAT may be.
#[derive(Clone, Copy, Debug)]
struct Params {
    interval: u64,
    tolerance: u64,
}

fn judge(params: Params, tat: u64, now: u64) -> Step {
    let ahead = tat.saturating_sub(now);
    if ahead > params.tolerance {
        return Step::Refuse {
            wait: ahead - params.tolerance,
            reset: ahead,
        };
    }
    // After this request the TAT is one interval further on.
    Step::Pass {
        reset: ahead + params.interval,
    }
}

fn remaining(params: Params, reset: u64) -> u32 {
    let remaining = match params.tolerance.checked_sub(reset) {
        Some(left) => left / params.interval + 1,
        None => 0,
    };
    u32::try_from(remaining).unwrap_or(u32::MAX)
}

/// The most replicas a rate is divided among (`SharedRates::replicas` is
/// capped to it): past it, an interval of a minute times the count would
/// stop fitting the clock's nanoseconds.
#[cfg(feature = "redis")]
pub(crate) const MAX_REPLICAS: u32 = 65_536;

/// One replica's share of a rate while the shared budget cannot be asked
/// (feature `redis`), on the same state as the key's own rate.
#[cfg(feature = "redis")]
impl Gcra {
    /// The rate divided among `replicas`: an interval `replicas` times as
    /// long (so `replicas` replicas together keep the rate exactly), and a
    /// burst of `burst / replicas`, at least 1.
    fn share(&self, replicas: u32) -> Params {
        let n = u64::from(replicas.clamp(1, MAX_REPLICAS));
        let burst = self.tolerance / self.interval + 1;
        let interval = self.interval * n;
        Params {
            interval,
            tolerance: interval * ((burst / n).max(1) - 1),
        }
    }

    /// [`take`](Self::take) with this replica's share of the rate.
    pub(crate) fn take_share(&self, now: u64, replicas: u32) -> Step {
        self.take_with(self.share(replicas), now)
    }

    /// [`peek`](Self::peek) with this replica's share of the rate.
    pub(crate) fn peek_share(&self, now: u64, replicas: u32) -> Step {
        judge(self.share(replicas), self.tat.load(Ordering::Acquire), now)
    }

    /// [`remaining`](Self::remaining) with this replica's share of the rate.
    pub(crate) fn remaining_share(&self, reset: u64, replicas: u32) -> u32 {
        remaining(self.share(replicas), reset)
    }

    /// Makes the local state say what the shared budget said at `now`: the
    /// burst whole again in `reset` nanoseconds. Read with the key's whole
    /// rate (`check()` while Redis answers) that is the shared answer;
    /// read with a share (an outage starting now), it is the same time
    /// ahead, so each replica starts the outage with its share of what the
    /// shared budget had left.
    pub(crate) fn carry(&self, now: u64, reset: u64) {
        self.tat.store(now.saturating_add(reset), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    /// A step with what a report would say: (remaining, reset) if passed.
    fn full(gcra: &Gcra, step: Step) -> Result<(u32, u64), Step> {
        match step {
            Step::Pass { reset } => Ok((gcra.remaining(reset), reset)),
            refused => Err(refused),
        }
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        // 60 rpm, burst 3: three at once, then one a second.
        let gcra = Gcra::new(60, 3, None);
        let t0 = 10 * SECOND;
        assert_eq!(full(&gcra, gcra.take(t0)), Ok((2, SECOND)));
        assert_eq!(full(&gcra, gcra.take(t0)), Ok((1, 2 * SECOND)));
        assert_eq!(full(&gcra, gcra.take(t0)), Ok((0, 3 * SECOND)));
        assert_eq!(
            gcra.take(t0),
            Step::Refuse {
                wait: SECOND,
                reset: 3 * SECOND
            }
        );
        // A refusal spends nothing: the same answer a little later, less
        // the time that passed.
        assert_eq!(
            gcra.take(t0 + SECOND / 4),
            Step::Refuse {
                wait: 3 * SECOND / 4,
                reset: 3 * SECOND - SECOND / 4
            }
        );
        // Refill: one request a second, never two.
        assert!(matches!(gcra.take(t0 + SECOND), Step::Pass { .. }));
        assert!(matches!(gcra.take(t0 + SECOND), Step::Refuse { .. }));
        assert!(matches!(
            gcra.take(t0 + 2 * SECOND - 1),
            Step::Refuse { wait: 1, .. }
        ));
        assert!(matches!(gcra.take(t0 + 2 * SECOND), Step::Pass { .. }));
        // Idle long enough, the whole burst is back, and no more.
        let later = t0 + 60 * SECOND;
        assert_eq!(full(&gcra, gcra.peek(later)), Ok((2, SECOND)));
        for _ in 0..3 {
            assert!(matches!(gcra.take(later), Step::Pass { .. }));
        }
        assert!(matches!(gcra.take(later), Step::Refuse { .. }));
    }

    #[test]
    fn rpm_120_burst_1_is_one_request_every_half_second() {
        let gcra = Gcra::new(120, 1, None);
        let t0 = SECOND;
        assert_eq!(full(&gcra, gcra.take(t0)), Ok((0, SECOND / 2)));
        let at = t0 + SECOND / 10;
        assert_eq!(
            gcra.take(at),
            Step::Refuse {
                wait: 4 * SECOND / 10,
                reset: 4 * SECOND / 10
            }
        );
        assert!(matches!(gcra.take(t0 + SECOND / 2), Step::Pass { .. }));
    }

    #[test]
    fn peek_spends_nothing() {
        let gcra = Gcra::new(60, 1, None);
        for _ in 0..10 {
            assert!(matches!(gcra.peek(SECOND), Step::Pass { .. }));
        }
        assert!(matches!(gcra.take(SECOND), Step::Pass { .. }));
        assert!(matches!(gcra.peek(SECOND), Step::Refuse { .. }));
    }

    #[test]
    fn exact_under_contention() {
        // 16 threads, 1,000 attempts each, at one instant: exactly the
        // burst passes.
        let gcra = Gcra::new(600, 250, None);
        let passed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        if let Step::Pass { .. } = gcra.take(5 * SECOND) {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.into_inner(), 250);
    }

    #[test]
    fn the_state_carries_into_new_parameters() {
        let old = Gcra::new(60, 2, None);
        assert!(matches!(old.take(SECOND), Step::Pass { .. }));
        assert!(matches!(old.take(SECOND), Step::Pass { .. }));
        // The same debt, read with a larger burst: no fresh burst of 5.
        let new = Gcra::new(60, 5, Some(Arc::clone(old.state())));
        let mut passed = 0;
        while let Step::Pass { .. } = new.take(SECOND) {
            passed += 1;
        }
        assert_eq!(passed, 3);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_share_of_the_rate_keeps_the_rate_across_the_replicas() {
        // 60 rpm, burst 10, over 2 replicas: a burst of 5, one every 2 s.
        let gcra = Gcra::new(60, 10, None);
        let t0 = 100 * SECOND;
        for _ in 0..5 {
            assert!(matches!(gcra.take_share(t0, 2), Step::Pass { .. }));
        }
        assert_eq!(
            gcra.take_share(t0, 2),
            Step::Refuse {
                wait: 2 * SECOND,
                reset: 10 * SECOND
            }
        );
        assert!(matches!(
            gcra.take_share(t0 + 2 * SECOND, 2),
            Step::Pass { .. }
        ));
        assert!(matches!(
            gcra.take_share(t0 + 2 * SECOND, 2),
            Step::Refuse { .. }
        ));
        // A burst smaller than the replicas: one each, never none.
        let one = Gcra::new(60, 1, None);
        assert!(matches!(one.take_share(t0, 3), Step::Pass { reset } if reset == 3 * SECOND));
        assert!(matches!(one.peek_share(t0, 3), Step::Refuse { .. }));
        assert_eq!(one.remaining_share(0, 3), 1);
        // Dividing by a huge count saturates nothing.
        let slow = Gcra::new(1, super::super::MAX, None);
        assert!(matches!(
            slow.take_share(SECOND, u32::MAX),
            Step::Pass { .. }
        ));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_carried_answer_reads_as_the_shared_budget_and_as_a_share_of_it() {
        // The shared budget (60 rpm, burst 10) had 4 left: its burst is
        // whole again in 7 s (6 spent, plus this one's interval).
        let gcra = Gcra::new(60, 10, None);
        let t0 = 100 * SECOND;
        gcra.carry(t0, 7 * SECOND);
        let mut passed = 0;
        while let Step::Pass { .. } = gcra.peek(t0) {
            assert!(matches!(gcra.take(t0), Step::Pass { .. }));
            passed += 1;
        }
        assert_eq!(passed, 3, "what the shared budget had left after this one");
        // The same state as one of 2 replicas' share: half of what was left.
        let gcra = Gcra::new(60, 10, None);
        gcra.carry(t0, 7 * SECOND);
        let mut passed = 0;
        while let Step::Pass { .. } = gcra.take_share(t0, 2) {
            passed += 1;
        }
        assert_eq!(passed, 1);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let slow = Gcra::new(1, super::super::MAX, None);
        assert!(matches!(slow.take(u64::MAX / 2), Step::Pass { .. }));
        let fast = Gcra::new(super::super::MAX, 1, None);
        assert!(matches!(fast.take(0), Step::Pass { .. }));
        assert!(matches!(fast.take(0), Step::Refuse { wait: 60_000, .. }));
    }
}
