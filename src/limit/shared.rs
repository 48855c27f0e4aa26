//! A key's rate when its budget is shared through Redis (feature
//! `redis`): how a decision spends then, and what it does with the
//! shared budget's answer. The Redis side is in [`crate::redis`].

use std::sync::Arc;
use std::time::Duration;

use super::gcra::Gcra;
use super::{clock, Admitted, Budget, LimitKind, Limited, Limits};
use crate::redis::Answer;
use crate::{Decision, RejectReason, Rejection};

/// How a decision of a layer with shared rates spends a key's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Redis answers: take the concurrency slot, leave the rate to the
    /// shared budget (the decision hands back a [`Deferred`]).
    Ask { report: bool },
    /// Redis does not answer: spend this replica's share of the rate, the
    /// key's rate divided by `replicas`.
    Fallback { replicas: u32, report: bool },
    /// `check()` while Redis answers: the shared budget as this replica
    /// last saw it (each answer is carried into the local state).
    Peek,
    /// `check()` during an outage: this replica's share.
    PeekFallback { replicas: u32 },
}

/// An admitted request whose key's rate is still to be asked of the
/// shared budget: the key's local rate (its state takes each answer, and
/// spends this replica's share if there is none), the limits the ask is
/// made with, the label whose budget it is, and the 429 the request gets
/// if the budget refuses it.
#[derive(Debug)]
pub(crate) struct Deferred {
    pub(crate) rate: Gcra,
    pub(crate) limits: Limits,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) refusal: Rejection,
}

impl Deferred {
    /// `decision` (an allowed request) once the shared budget answered,
    /// or, with no answer (Redis unavailable), once this replica's share
    /// of the rate (the key's rate divided by `replicas`) has. A refused
    /// request gives its slot back at once.
    pub(crate) fn settle(
        self,
        answer: Option<Answer>,
        replicas: u32,
        decision: Decision,
        admitted: &mut Admitted,
    ) -> Decision {
        let now = clock::now();
        let (answer, budget) = match answer {
            Some(answer) => {
                self.rate.carry(now, answer.reset());
                (answer, Budget::Shared)
            }
            None => {
                let answer = match self.rate.take_share(now, replicas) {
                    super::Step::Pass { reset } => Answer::Pass {
                        reset,
                        remaining: self.rate.remaining_share(reset, replicas),
                    },
                    super::Step::Refuse { wait, reset } => Answer::Refuse { wait, reset },
                };
                (answer, Budget::Fallback)
            }
        };
        let rpm = self.limits.rpm().unwrap_or(0);
        match answer {
            Answer::Pass { reset, remaining } => {
                if let Some(report) = admitted.report.as_deref_mut() {
                    report.rate = Some((rpm, remaining, reset));
                }
                decision
            }
            Answer::Refuse { wait, reset } => {
                // The slot, if any, is given back with the admission.
                *admitted = Admitted::default();
                let mut refusal = self.refusal;
                refusal.reason = RejectReason::RateLimited;
                refusal.limit = Some(Limited {
                    kind: LimitKind::Rate,
                    limit: rpm,
                    burst: self.limits.burst().unwrap_or(rpm),
                    wait: Some(Duration::from_nanos(wait)),
                    remaining: 0,
                    reset: Some(Duration::from_nanos(reset)),
                    budget,
                });
                Decision::Reject(refusal)
            }
        }
    }
}
