//! Per-key rate and concurrency limits, answered with a `429` that the
//! official SDKs back off from correctly and that an operator can tell
//! from an upstream's.
//!
//! A [`KeySet`](crate::KeySet) key may carry [`Limits`] (and
//! [`ProxySecurityConfig::limits`](crate::ProxySecurityConfig::limits) gives
//! every key, and the plain `api_key`, a default):
//!
//! - `rpm`: sustained requests per minute, with `burst` (default: `rpm`)
//!   of them allowed back to back. `rpm = 120, burst = 1` lets one request
//!   through every 0.5 s.
//! - `max_concurrent`: requests of the key in flight at once. A request
//!   holds its slot until its response body has been sent to its end or
//!   dropped (an SSE stream holds it for the whole stream; a client that
//!   hangs up frees it), or until its response future is dropped or fails.
//!
//! A key's own `rpm` (with its `burst`) replaces the default's rate, and
//! its own `max_concurrent` the default's; what it leaves out it takes from
//! the default. Limits are checked inside the auth decision, after the key
//! matched and passed its scopes: a refused request spends nothing, and an
//! unknown or refused key has no limiter state at all (a flood of wrong
//! keys allocates none).
//!
//! # The 429
//!
//! `429 Too Many Requests`, `x-proxy-auth-error: rate_limited` (or
//! `concurrency_limited`), and a body in the client API's error shape
//! (OpenAI `rate_limit_exceeded`, Anthropic `rate_limit_error`, Gemini
//! `RESOURCE_EXHAUSTED` with a `RetryInfo`), naming the key's label and the
//! limit, never the key. Headers:
//!
//! | header | value |
//! |---|---|
//! | `retry-after` | the wait in whole seconds, rounded up, at least 1 |
//! | `retry-after-ms` | the wait in milliseconds, rounded up (read first by the OpenAI and Anthropic SDKs) |
//! | `ratelimit-policy`, `ratelimit` | draft-ietf-httpapi-ratelimit-headers: `"rpm";q=<rpm>;w=60` and `"rpm";r=<remaining>;t=<seconds until the burst is whole>`, or `"concurrency";q=<max>;qu="concurrent-requests"` and `"concurrency";r=0` |
//! | `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` | OpenAI's own names, for a rate limit (`reset` as OpenAI writes it: `1s`, `6m0s`, `250ms`) |
//! | `x-should-retry: false` | when the wait is over [`SDK_RETRY_LIMIT`] (60 s): the SDKs then raise the error at once instead of retrying into another 429 |
//!
//! A concurrency limit has no known wait (nobody knows when a request in
//! flight ends): its 429 says `retry-after: 1`.
//!
//! Accepted requests get no `x-ratelimit-*` header of the layer's own: an
//! upstream's headers pass through untouched.
//! [`ProxyAuthLayer::rate_limit_headers`](crate::ProxyAuthLayer::rate_limit_headers)
//! adds the IETF fields to accepted responses of limited keys.
//!
//! # State across config changes
//!
//! Each label with a limit has one limiter. A new policy (a reload, a file
//! edit, a rotation of other keys, even a change of the label's own limits)
//! keeps the state of every label it still holds: its rate's debt and its
//! count of requests in flight, so an edit never hands anyone a fresh
//! burst, and a changed `max_concurrent` still counts the requests already
//! running. A removed label's state is freed with the last policy that
//! held it. The plain `api_key`'s limiter is kept the same way.
//!
//! # Per process, or shared by the replicas
//!
//! A layer counts in its own process: N replicas behind a load balancer
//! let each key through N times its `rpm`. With the `redis` feature,
//! `ProxyAuthLayer::shared_rates`
//! makes each key's **rate** (`rpm`, `burst`) one budget for the whole
//! fleet, in Redis, under the key's label: it survives reloads as the
//! local state does, and replica restarts too. While Redis does not
//! answer, each replica spends its share of the rate locally: `rpm / N`
//! and `burst / N` (at least 1), N being the replica count set with
//! `SharedRates::replicas` or learned through Redis (1 if neither: each
//! replica the whole rate, never unlimited); see the `redis` module.
//! **`max_concurrent` is always per replica**: divide it by N yourself.
//! `check()` cannot ask Redis; for a shared rate it reports the last
//! answer this replica had (see the `redis` module).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut keys = KeySet::new();
//! keys.add(NewKey::new("ci", "sk-ci").rpm(60).burst(2).max_concurrent(4))?;
//! let layer = ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys);
//! let service = layer.layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//! }));
//! let request = || Request::post("/v1/chat/completions").header("x-api-key", "sk-ci").body(String::new()).unwrap();
//!
//! // check() reports without spending.
//! assert!(layer.check(&request()).is_allowed());
//! for _ in 0..2 {
//!     assert_eq!(service.clone().oneshot(request()).await?.status(), StatusCode::OK);
//! }
//! let refused = service.clone().oneshot(request()).await?;
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["x-proxy-auth-error"], "rate_limited");
//! assert_eq!(refused.headers()["retry-after"], "1");
//! assert_eq!(refused.headers()["x-ratelimit-limit-requests"], "60");
//! # Ok(())
//! # }
//! ```
//!
//! # Why a hand-written GCRA, not `governor`
//!
//! `governor` is the well-kept crate for this, and the benchmark
//! (`benches/limits.rs`) ran it beside this GCRA: its check costs 11 ns,
//! the rate here 16 ns through the whole layer, so speed decided nothing.
//! It was not taken because
//! `check()` must report a limit without spending from it (governor has no
//! read-only step), a 429 needs the exact wait, remaining and reset
//! (governor gives the wait, not the state), the replicas issue must run
//! the same step in Redis (governor's state is private), and a reload must
//! carry one label's state into a new limiter; the GCRA here is one atomic
//! and forty lines. Its clock is governor's own, `quanta`.

mod clock;
mod gcra;
#[cfg(feature = "redis")]
mod shared;
mod slots;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub(crate) use gcra::MAX_REPLICAS;
use gcra::{Gcra, Step};
#[cfg(feature = "redis")]
pub(crate) use shared::{Deferred, Shared};
pub(crate) use slots::{InFlight, Slot};

#[cfg(test)]
pub(crate) use clock::tests as test_clock;

/// The largest `rpm`, `burst` or `max_concurrent` a limit may have: a
/// million (an `rpm` that high is 16,667 requests a second for one key).
pub const MAX: u32 = 1_000_000;

/// The longest wait the official SDKs are sent to retry after: over it, a
/// 429 also says `x-should-retry: false`.
///
/// From their `_base_client.py`: the OpenAI Python SDK honours a
/// `retry-after(-ms)` of up to 120 s and gives up past it; the Anthropic
/// Python SDK (2.x) sleeps for any wait it is given, however long, and
/// older releases ignored waits over 60 s and retried on their own backoff,
/// into another 429. Both obey `x-should-retry: false` before anything
/// else. 60 s is the longest wait every one of them honours as sent.
pub const SDK_RETRY_LIMIT: Duration = Duration::from_secs(60);

/// A key's rate and concurrency limits; each is optional, and absent means
/// unlimited. Made with [`new`](Self::new), which checks them, so a
/// `Limits` is always valid.
///
/// In serde (a config's `limits`, a key's fields in a key list or a
/// `watch` file): `{ rpm = 60, burst = 10, max_concurrent = 4 }`.
///
/// ```
/// use proxy_auth::Limits;
///
/// let limits = Limits::new(Some(120), None, Some(4))?;
/// assert_eq!(limits.burst(), Some(120), "burst defaults to rpm");
/// assert!(Limits::new(Some(0), None, None).is_err());
/// assert!(Limits::new(None, Some(5), None).is_err(), "burst without rpm");
/// # Ok::<(), proxy_auth::LimitError>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(try_from = "LimitsSpec", into = "LimitsSpec")
)]
#[non_exhaustive]
pub struct Limits {
    rpm: Option<u32>,
    burst: Option<u32>,
    max_concurrent: Option<u32>,
}

impl Limits {
    /// No limit at all.
    pub const NONE: Limits = Limits {
        rpm: None,
        burst: None,
        max_concurrent: None,
    };

    /// Limits of `rpm` requests per minute, `burst` of them back to back
    /// (`None`: `rpm`), and `max_concurrent` in flight. An error for a 0,
    /// a value over [`MAX`], or a `burst` without `rpm`.
    pub fn new(
        rpm: Option<u32>,
        burst: Option<u32>,
        max_concurrent: Option<u32>,
    ) -> Result<Limits, LimitError> {
        for (field, value) in [
            ("rpm", rpm),
            ("burst", burst),
            ("max_concurrent", max_concurrent),
        ] {
            match value {
                Some(0) => return Err(LimitError::Zero { field }),
                Some(value) if value > MAX => return Err(LimitError::TooLarge { field, value }),
                _ => {}
            }
        }
        if burst.is_some() && rpm.is_none() {
            return Err(LimitError::BurstWithoutRpm);
        }
        Ok(Limits {
            rpm,
            // Stored as it takes effect, so equal limits compare equal.
            burst: rpm.map(|rpm| burst.unwrap_or(rpm)),
            max_concurrent,
        })
    }

    /// Sustained requests per minute, if limited.
    #[must_use]
    pub fn rpm(&self) -> Option<u32> {
        self.rpm
    }

    /// Requests allowed back to back: the `burst` given, or `rpm`; `None`
    /// without `rpm`.
    #[must_use]
    pub fn burst(&self) -> Option<u32> {
        self.burst
    }

    /// Requests in flight at once, if limited.
    #[must_use]
    pub fn max_concurrent(&self) -> Option<u32> {
        self.max_concurrent
    }

    /// Whether nothing is limited.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.rpm.is_none() && self.max_concurrent.is_none()
    }

    /// These limits over `defaults`: the rate (`rpm` with its `burst`) and
    /// `max_concurrent` each from `self` where it sets them, otherwise from
    /// `defaults`.
    #[must_use]
    pub fn or(self, defaults: Limits) -> Limits {
        let (rpm, burst) = match self.rpm {
            Some(_) => (self.rpm, self.burst),
            None => (defaults.rpm, defaults.burst),
        };
        Limits {
            rpm,
            burst,
            max_concurrent: self.max_concurrent.or(defaults.max_concurrent),
        }
    }
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Limits");
        if let Some(rpm) = self.rpm {
            debug.field("rpm", &rpm).field("burst", &self.burst());
        }
        if let Some(max) = self.max_concurrent {
            debug.field("max_concurrent", &max);
        }
        debug.finish()
    }
}

/// The serde form of [`Limits`]: checked on the way in.
#[cfg(feature = "serde")]
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_concurrent: Option<u32>,
}

#[cfg(feature = "serde")]
impl TryFrom<LimitsSpec> for Limits {
    type Error = LimitError;

    fn try_from(spec: LimitsSpec) -> Result<Self, LimitError> {
        Limits::new(spec.rpm, spec.burst, spec.max_concurrent)
    }
}

#[cfg(feature = "serde")]
impl From<Limits> for LimitsSpec {
    fn from(limits: Limits) -> Self {
        LimitsSpec {
            rpm: limits.rpm,
            burst: limits.burst,
            max_concurrent: limits.max_concurrent,
        }
    }
}

/// Why [`Limits`] cannot be made: a key must never turn silently
/// unlimited, so a limit that cannot be right is an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A limit of 0, which would refuse every request.
    #[error("{field} = 0 would refuse every request; leave {field} out for no limit")]
    Zero {
        /// `rpm`, `burst` or `max_concurrent`.
        field: &'static str,
    },
    /// A limit over [`MAX`].
    #[error(
        "{field} = {value} is more than {MAX}, the largest limit; leave {field} out for no limit"
    )]
    TooLarge {
        /// `rpm`, `burst` or `max_concurrent`.
        field: &'static str,
        /// The value given.
        value: u32,
    },
    /// A `burst` without an `rpm`.
    #[error("burst is set without rpm; burst is how many requests may come back to back at the rate rpm sets, so set rpm too")]
    BurstWithoutRpm,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// `rpm` (with its `burst`).
    Rate,
    /// `max_concurrent`.
    Concurrency,
}

impl LimitKind {
    /// `"rpm"` or `"max_concurrent"`: the limit's name in a config.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitKind::Rate => "rpm",
            LimitKind::Concurrency => "max_concurrent",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The facts of a limit that refused a request, in
/// [`Rejection::limit`](crate::Rejection::limit): what the 429's headers,
/// body and log line say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Limited {
    /// Which limit.
    pub kind: LimitKind,
    /// Its value: the `rpm`, or the `max_concurrent`.
    pub limit: u32,
    /// For a rate: requests allowed back to back. For concurrency: `limit`.
    pub burst: u32,
    /// For a rate: how long until one more request would pass. `None` for
    /// concurrency: nobody knows when a request in flight ends.
    pub wait: Option<Duration>,
    /// Requests that would pass right now: 0 when refused.
    pub remaining: u32,
    /// For a rate: how long until the whole burst is back. `None` for
    /// concurrency.
    pub reset: Option<Duration>,
    /// Whose count refused it: this process's own, the budget every
    /// replica shares through Redis, or this replica's share of it while
    /// Redis does not answer (feature `redis`). The log line says it; the
    /// 429 is the same whichever it was.
    pub budget: Budget,
}

/// Whose count a limit is: see [`Limited::budget`] and, for the shared
/// budget, the `redis` module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Budget {
    /// This process's own limiter: every limit of a layer without shared
    /// rates, and every concurrency limit.
    #[default]
    Local,
    /// The rate every replica draws from, in Redis.
    Shared,
    /// This replica's share of the rate (the key's rate divided by the
    /// replica count), while Redis does not answer.
    Fallback,
}

impl Budget {
    /// `"local"`, `"shared"` or `"local-fallback"`, as the log line says it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Budget::Local => "local",
            Budget::Shared => "shared",
            Budget::Fallback => "local-fallback",
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an admitted request's limits say, for the opt-in headers on its
/// response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// `rpm`, requests still allowed back to back, nanoseconds until the
    /// burst is whole.
    pub(crate) rate: Option<(u32, u32, u64)>,
    /// `max_concurrent`, and slots left.
    pub(crate) concurrency: Option<(u32, u32)>,
}

/// A request the limits let through: its slot (if the key has a
/// concurrency limit) and, if the layer adds the IETF fields to accepted
/// responses, what they say (boxed: the accept path's futures stay small).
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    pub(crate) slot: Slot,
    pub(crate) report: Option<Box<Report>>,
    /// Feature `redis`: the rate still to be asked of the shared budget.
    /// Set only by a layer with shared rates, which takes it before the
    /// request goes on.
    #[cfg(feature = "redis")]
    pub(crate) deferred: Option<Box<Deferred>>,
}

impl Admitted {
    /// Whether the request holds nothing of its key's limits.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "redis")]
        debug_assert!(self.deferred.is_none(), "a deferred rate was never asked");
        !self.slot.is_held() && self.report.is_none()
    }

    /// The inner service's response, as the layer hands it on: its body
    /// holding the slot, and the opt-in IETF fields if there is a report.
    pub(crate) fn into_response<B>(
        self,
        mut response: http::Response<B>,
    ) -> http::Response<crate::ResponseBody<B>> {
        if let Some(report) = &self.report {
            crate::response::accepted_limit_headers(report, response.headers_mut());
        }
        let slot = self.slot;
        if slot.is_held() {
            response.map(|body| crate::ResponseBody::holding(body, slot))
        } else {
            response.map(crate::ResponseBody::inner)
        }
    }
}

/// Whether a decision spends from the limits (a request being served,
/// with or without a report for its response) or only looks
/// ([`ProxyAuthLayer::check`](crate::ProxyAuthLayer::check)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spend {
    Take,
    TakeAndReport,
    Peek,
    /// Feature `redis`: a layer with shared rates.
    #[cfg(feature = "redis")]
    Shared(Shared),
}

impl Spend {
    /// How a layer with `options` spends on the requests it serves.
    #[inline]
    pub(crate) fn taking(options: &crate::layer::Options) -> Spend {
        #[cfg(feature = "redis")]
        if let Some(redis) = &options.shared {
            return redis.spend(options.rate_limit_headers);
        }
        if options.rate_limit_headers {
            Spend::TakeAndReport
        } else {
            Spend::Take
        }
    }

    /// How `check()` reads the limits: without spending, and for a shared
    /// rate without asking Redis.
    pub(crate) fn peeking(options: &crate::layer::Options) -> Spend {
        #[cfg(feature = "redis")]
        if let Some(redis) = &options.shared {
            return redis.peek();
        }
        let _ = options;
        Spend::Peek
    }

    /// Whether the decision spends (takes a slot, a request of the rate).
    #[inline(always)]
    fn takes(self) -> bool {
        match self {
            Spend::Take | Spend::TakeAndReport => true,
            Spend::Peek => false,
            #[cfg(feature = "redis")]
            Spend::Shared(shared) => !matches!(shared, Shared::Peek | Shared::PeekFallback { .. }),
        }
    }

    /// Whether an admitted request gets a report for its response.
    #[inline(always)]
    fn reports(self) -> bool {
        match self {
            Spend::TakeAndReport => true,
            Spend::Take | Spend::Peek => false,
            #[cfg(feature = "redis")]
            Spend::Shared(Shared::Ask { report } | Shared::Fallback { report, .. }) => report,
            #[cfg(feature = "redis")]
            Spend::Shared(Shared::Peek | Shared::PeekFallback { .. }) => false,
        }
    }
}

/// One label's (or the plain `api_key`'s) limits in force and their state.
#[derive(Clone, Debug)]
pub(crate) struct KeyLimiter {
    /// The limits in force: the key's own over the config's defaults.
    pub(crate) limits: Limits,
    rate: Option<Gcra>,
    slots: Option<(u32, Arc<InFlight>)>,
}

impl KeyLimiter {
    /// The limiter for `limits`, carrying the state of `previous` (the same
    /// label's in the policy before); `None` when nothing is limited.
    pub(crate) fn build(limits: Limits, previous: Option<&KeyLimiter>) -> Option<KeyLimiter> {
        if limits.is_none() {
            return None;
        }
        if let Some(previous) = previous.filter(|p| p.limits == limits) {
            return Some(previous.clone());
        }
        let rate = match (limits.rpm(), limits.burst()) {
            (Some(rpm), Some(burst)) => {
                let state = previous.and_then(|p| p.rate.as_ref()).map(Gcra::state);
                Some(Gcra::new(rpm, burst, state.cloned()))
            }
            _ => None,
        };
        let slots = limits.max_concurrent().map(|max| {
            let in_flight = previous.and_then(|p| p.slots.as_ref()).map(|(_, s)| s);
            (max, in_flight.cloned().unwrap_or_default())
        });
        Some(KeyLimiter {
            limits,
            rate,
            slots,
        })
    }

    /// Lets a request through or says which limit refuses it; with
    /// `report`, also what is left of each limit. The concurrency slot is
    /// taken first and given back if the rate refuses, so a refused request
    /// spends neither.
    #[inline]
    pub(crate) fn admit(&self, spend: Spend) -> Result<Admitted, Limited> {
        let report = spend.reports();
        let mut admitted = Admitted::default();
        let mut facts = Report::default();
        if let Some((max, in_flight)) = &self.slots {
            let taken = if spend.takes() {
                in_flight.acquire(*max).map(|slot| {
                    admitted.slot = slot;
                })
            } else {
                match in_flight.current() {
                    now if now < *max => Ok(()),
                    now => Err(now),
                }
            };
            match taken {
                Ok(()) if report => {
                    let taken = in_flight.current();
                    facts.concurrency = Some((*max, max.saturating_sub(taken)));
                }
                Ok(()) => {}
                Err(_) => {
                    return Err(Limited {
                        kind: LimitKind::Concurrency,
                        limit: *max,
                        burst: *max,
                        wait: None,
                        remaining: 0,
                        reset: None,
                        budget: Budget::Local,
                    })
                }
            }
        }
        if let Some(rate) = &self.rate {
            let now = clock::now();
            // The divisor of the rate this step spends from (1: the
            // whole), and whose count that is.
            let (step, replicas, budget) = match spend {
                Spend::Take | Spend::TakeAndReport => (rate.take(now), 1, Budget::Local),
                Spend::Peek => (rate.peek(now), 1, Budget::Local),
                #[cfg(feature = "redis")]
                Spend::Shared(shared) => match shared {
                    // Left to the shared budget: the layer asks it.
                    Shared::Ask { .. } => {
                        if report {
                            admitted.report = Some(Box::new(facts));
                        }
                        return Ok(admitted);
                    }
                    Shared::Fallback { replicas, .. } => {
                        (rate.take_share(now, replicas), replicas, Budget::Fallback)
                    }
                    Shared::Peek => (rate.peek(now), 1, Budget::Shared),
                    Shared::PeekFallback { replicas } => {
                        (rate.peek_share(now, replicas), replicas, Budget::Fallback)
                    }
                },
            };
            let rpm = self.limits.rpm().unwrap_or(0);
            match step {
                Step::Pass { reset } if report => {
                    let remaining = match replicas {
                        1 => rate.remaining(reset),
                        #[cfg(feature = "redis")]
                        n => rate.remaining_share(reset, n),
                        #[cfg(not(feature = "redis"))]
                        _ => rate.remaining(reset),
                    };
                    facts.rate = Some((rpm, remaining, reset));
                }
                Step::Pass { .. } => {}
                // `admitted` (its slot, if any) is dropped: given back.
                Step::Refuse { wait, reset } => {
                    return Err(Limited {
                        kind: LimitKind::Rate,
                        limit: rpm,
                        burst: self.limits.burst().unwrap_or(rpm),
                        wait: Some(Duration::from_nanos(wait)),
                        remaining: 0,
                        reset: Some(Duration::from_nanos(reset)),
                        budget,
                    });
                }
            }
        }
        if report {
            admitted.report = Some(Box::new(facts));
        }
        Ok(admitted)
    }

    /// The rate's state and parameters, if the key has a rate limit.
    #[cfg(feature = "redis")]
    pub(crate) fn rate(&self) -> Option<&Gcra> {
        self.rate.as_ref()
    }

    /// The count of requests in flight, if the key has a concurrency limit.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> Option<&Arc<InFlight>> {
        self.slots.as_ref().map(|(_, s)| s)
    }

    /// Whether `self` and `other` share their state.
    #[cfg(test)]
    pub(crate) fn shares_state_with(&self, other: &KeyLimiter) -> bool {
        let rate = match (&self.rate, &other.rate) {
            (Some(a), Some(b)) => Arc::ptr_eq(a.state(), b.state()),
            (None, None) => true,
            _ => false,
        };
        let slots = match (&self.slots, &other.slots) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.1, &b.1),
            (None, None) => true,
            _ => false,
        };
        rate && slots
    }
}

#[cfg(test)]
mod tests;
