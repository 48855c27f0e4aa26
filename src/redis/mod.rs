//! Rate limits every replica draws from one budget in Redis (feature
//! `redis`).
//!
//! Without this, each replica counts a key's rate on its own, so N
//! replicas let a key through N times its `rpm`. With
//! [`ProxyAuthLayer::shared_rates`](crate::ProxyAuthLayer::shared_rates),
//! each request of a key with a rate runs one GCRA step (the same as the
//! local limiter's, see [`limit`](crate::limit)) atomically on the Redis
//! server, as a Lua script (`EVALSHA`, `EVAL` again after a `FLUSH` or a
//! restart lost it), on the server's clock, so replicas with skewed clocks
//! agree. One Redis key per label (`<prefix>rate:<label>`; the plain
//! `api_key` is `<prefix>rate:`) holds the key's theoretical arrival time,
//! with a `PX` expiry of the time until its burst is whole again: an idle
//! key vanishes from Redis, and a replica that restarts finds the budget
//! where the fleet left it. A refusal is the same `429` as the local
//! limiter's, with every header; the log line says `budget = "shared"`.
//!
//! # Waiting for Redis
//!
//! A request waits for Redis at most [`SharedRates::timeout`] (default
//! 50 ms). Past it, or on any error (a refused connection, a wrong answer,
//! a script error), Redis counts as down: one `warn` log, and from then on
//! every replica spends its **share** of each key's rate locally, without
//! asking Redis, so a down Redis costs no request any wait. A background
//! task asks Redis every 250 ms; when it answers again, one `info` log, and
//! the shared budget is back. Redis unreachable when the layer starts is
//! the same outage (one warning).
//!
//! # The fallback's arithmetic
//!
//! A replica's share of a key's rate is `rpm / N` with a burst of
//! `burst / N` (at least 1), N being the replica count: while Redis is
//! down the fleet's total stays near the key's `rpm`, as one number means
//! one budget. N is [`SharedRates::replicas`] if set; otherwise the count
//! learned through Redis while it answered (each replica refreshes its
//! presence in `<prefix>replicas` every second, with a 3 s TTL, and counts
//! the others). A replica that has never reached Redis and has no
//! `replicas` set knows no N and uses 1: each replica the key's whole
//! rate, the most a fleet of N can then let through being N times it,
//! never unlimited. Set `replicas` where that matters. The local state
//! starts each outage from the last answer the shared budget gave this
//! replica, so an exhausted key stays exhausted.
//!
//! # Concurrency and `check()`
//!
//! `max_concurrent` stays per replica: a shared count needs a lease that
//! expires when a replica dies mid-request, and a lease short enough to
//! free a dead replica's slots soon would expire under a long streaming
//! request. Divide it by the replica count.
//!
//! [`check`](crate::ProxyAuthLayer::check) cannot ask Redis (it is
//! synchronous): for a key with a shared rate it reports what the last
//! answer this replica got says now (a refused key is reported refused
//! until its wait has passed), and during an outage this replica's share.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use http::{Request, Response};
//! use proxy_auth::redis::SharedRates;
//! use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut keys = KeySet::new();
//! keys.add(NewKey::new("team-a", "sk-team-a").rpm(60).burst(10))?;
//! let rates = SharedRates::new("redis://127.0.0.1:6379/")?
//!     .timeout(Duration::from_millis(50))
//!     .replicas(4);
//! let layer = ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys)
//!     .shared_rates(rates);
//! let service = layer.layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
//! }));
//! let request = Request::post("/v1/chat/completions")
//!     .header("x-api-key", "sk-team-a")
//!     .body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Cost
//!
//! One Redis round trip per request of a key with a rate (`EVALSHA`; a
//! second one, `EVAL`, after Redis lost the script), a boxed future and
//! a clone of the inner service; nothing for a key without a rate, nor
//! during an outage. Measured with `cargo bench --bench redis --features
//! redis` on a shared 2-core machine, Redis on loopback on the same cores
//! (three runs; benches/README.md has the method):
//!
//! | per request | p50 | p99 |
//! |---|---:|---:|
//! | local limiter | 0.7 to 0.9 µs | 1.0 to 1.5 µs |
//! | shared, Redis on loopback | 52 to 153 µs | 136 to 241 µs |
//!
//! Two replicas on one key, 32 tasks: 59,000 to 88,000 requests/s shared,
//! 700,000 local. A layer without shared rates does not pay for the
//! feature beyond one branch on its accept path.

mod script;
pub(crate) mod service;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub(crate) use script::Answer;
pub use service::{SharedResponseFuture, SharesRates};

use crate::limit::{Shared, Spend, MAX_REPLICAS};
use crate::Limits;

/// How long a request waits for Redis by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// How often a replica refreshes its presence, and how long it lasts.
const PRESENCE_EVERY: Duration = Duration::from_secs(1);
const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// How often a down Redis is asked again.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// Where a layer's shared rates live, and how it waits for them: built with
/// [`SharedRates::new`], handed to
/// [`ProxyAuthLayer::shared_rates`](crate::ProxyAuthLayer::shared_rates).
/// See the [module documentation](self).
///
/// `Debug` shows the URL without its password.
#[derive(Clone)]
pub struct SharedRates {
    client: redis::Client,
    url: Arc<str>,
    prefix: Arc<str>,
    timeout: Duration,
    replicas: Option<u32>,
}

impl fmt::Debug for SharedRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRates")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// A Redis URL [`SharedRates::new`] cannot use.
#[derive(Debug, thiserror::Error)]
#[error("not a usable Redis URL: {url} (expected redis://[user:password@]host[:port][/db] or redis+unix:///path; rediss:// needs TLS, which this build leaves out)")]
pub struct SharedRatesError {
    /// The URL without its password.
    url: String,
}

impl SharedRates {
    /// Shared rates in the Redis at `url`
    /// (`redis://[user:password@]host[:port][/db]`). Nothing is connected
    /// yet: the first request does, and a Redis that cannot be reached
    /// then is an outage (see the module documentation), not an error.
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL this build can use. The error shows it
    /// without its password.
    pub fn new(url: &str) -> Result<SharedRates, SharedRatesError> {
        let redacted = redact(url);
        let client = redis::Client::open(url).map_err(|_| SharedRatesError {
            url: redacted.clone(),
        })?;
        Ok(SharedRates {
            client,
            url: Arc::from(redacted),
            prefix: Arc::from("proxy-auth:"),
            timeout: DEFAULT_TIMEOUT,
            replicas: None,
        })
    }

    /// The Redis URL without its password, for logs and banners.
    #[must_use]
    pub fn address(&self) -> &str {
        &self.url
    }

    /// Sets what every Redis key of these rates starts with (default
    /// `proxy-auth:`): `<prefix>rate:<label>` for a key's rate,
    /// `<prefix>replicas` for the replicas' presence. Replicas that share
    /// budgets must use the same prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Sets the most a request waits for Redis (default 50 ms) before its
    /// replica falls back to its share of the rate.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the replica count the fallback divides each rate by (default:
    /// the count learned through Redis, 1 before Redis ever answered).
    /// Clamped to 1..=65,536.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = Some(replicas.clamp(1, MAX_REPLICAS));
        self
    }

    /// The running state these settings describe.
    pub(crate) fn start(self) -> Arc<Redis> {
        Arc::new(Redis {
            rate: redis::Script::new(script::RATE),
            presence: redis::Script::new(script::PRESENCE),
            id: replica_id(),
            state: AtomicU8::new(STARTING),
            learned: AtomicU32::new(0),
            conn: OnceLock::new(),
            settings: self,
        })
    }
}

/// Redis's state as the request path sees it.
const STARTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A layer's shared rates while it serves: the connection, whether Redis
/// answers, the replica count learned.
pub(crate) struct Redis {
    settings: SharedRates,
    rate: redis::Script,
    presence: redis::Script,
    /// This replica's name in the presence set.
    id: String,
    state: AtomicU8,
    /// Replicas present at the last count; 0 before any.
    learned: AtomicU32,
    /// Made by the first request, inside the caller's runtime; then the
    /// background task is running.
    conn: OnceLock<Option<ConnectionManager>>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("settings", &self.settings)
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("learned", &self.learned.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// How a request spends: ask Redis, or this replica's share while it
    /// does not answer.
    #[inline]
    pub(crate) fn spend(self: &Arc<Self>, report: bool) -> Spend {
        self.connection();
        match self.state.load(Ordering::Acquire) {
            DOWN => Spend::Shared(Shared::Fallback {
                replicas: self.replicas(),
                report,
            }),
            _ => Spend::Shared(Shared::Ask { report }),
        }
    }

    /// How `check()` reads a key's rate.
    pub(crate) fn peek(&self) -> Spend {
        match self.state.load(Ordering::Acquire) {
            DOWN => Spend::Shared(Shared::PeekFallback {
                replicas: self.replicas(),
            }),
            _ => Spend::Shared(Shared::Peek),
        }
    }

    /// The divisor of the fallback.
    pub(crate) fn replicas(&self) -> u32 {
        self.settings
            .replicas
            .unwrap_or_else(|| self.learned.load(Ordering::Relaxed).clamp(1, MAX_REPLICAS))
    }

    /// The connection, made (and the background task started) on first
    /// use; `None` outside a tokio runtime.
    fn connection(self: &Arc<Self>) -> Option<&ConnectionManager> {
        if let Some(conn) = self.conn.get() {
            return conn.as_ref();
        }
        let mut watcher = None;
        let conn = self.conn.get_or_init(|| {
            let runtime = tokio::runtime::Handle::try_current().ok();
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.settings.timeout))
                .set_response_timeout(Some(self.settings.timeout))
                .set_number_of_retries(1)
                .set_max_delay(PROBE_EVERY);
            let conn = runtime.as_ref().and_then(|runtime| {
                let _entered = runtime.enter();
                ConnectionManager::new_lazy_with_config(self.settings.client.clone(), config).ok()
            });
            match conn {
                Some(_) => watcher = runtime,
                None => self.down(&"no tokio runtime to talk to Redis from"),
            }
            conn
        });
        // Started once the connection is there for it to use.
        if let Some(runtime) = watcher {
            runtime.spawn(watch(Arc::downgrade(self)));
        }
        conn.as_ref()
    }

    /// One GCRA step of `label`'s rate on Redis, within the bound; `None`
    /// (and Redis counted down) without an answer.
    pub(crate) fn ask(
        self: &Arc<Self>,
        label: Option<Arc<str>>,
        limits: Limits,
    ) -> Pin<Box<dyn Future<Output = Option<Answer>> + Send>> {
        let this = Arc::clone(self);
        Box::pin(async move {
            let mut conn = this.connection()?.clone();
            let (interval, tolerance) = script::micros(limits);
            let key = format!(
                "{}rate:{}",
                this.settings.prefix,
                label.as_deref().unwrap_or("")
            );
            let mut call = this.rate.key(key);
            call.arg(interval).arg(tolerance);
            let reply = tokio::time::timeout(
                this.settings.timeout,
                call.invoke_async::<Vec<i64>>(&mut conn),
            )
            .await;
            match reply {
                Ok(Ok(reply)) => match Answer::parse(&reply, limits) {
                    Some(answer) => Some(answer),
                    None => {
                        this.down(&"the rate script answered what it cannot answer");
                        None
                    }
                },
                Ok(Err(error)) => {
                    this.down(&error);
                    None
                }
                Err(_) => {
                    this.down(&format_args!(
                        "no answer within {:?}",
                        this.settings.timeout
                    ));
                    None
                }
            }
        })
    }

    /// Redis did not answer: the first time since it last did, one warning.
    fn down(&self, why: &dyn fmt::Display) {
        if self.state.swap(DOWN, Ordering::AcqRel) != DOWN {
            let replicas = self.replicas();
            tracing::warn!(
                target: "proxy_auth",
                url = %self.settings.url,
                replicas,
                "shared rate limits: Redis does not answer ({why}); until it does, this replica spends its share of each key's rate locally (rpm / {replicas})"
            );
        }
    }

    /// Redis answered: shared again, said once if it had been down.
    fn up(&self) {
        if self.state.swap(UP, Ordering::AcqRel) == DOWN {
            tracing::info!(
                target: "proxy_auth",
                url = %self.settings.url,
                "shared rate limits: Redis answers again; every key's rate is the shared budget again"
            );
        }
    }

    /// Refreshes this replica's presence and counts the replicas.
    async fn present(&self, conn: &mut ConnectionManager) -> Result<u32, String> {
        let key = format!("{}replicas", self.settings.prefix);
        let mut call = self.presence.key(key);
        call.arg(&self.id).arg(PRESENCE_TTL.as_millis() as u64);
        match tokio::time::timeout(self.settings.timeout, call.invoke_async::<u32>(conn)).await {
            Ok(Ok(count)) => Ok(count),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
        }
    }
}

/// The background task: presence every second while Redis answers, a probe
/// every 250 ms while it does not. Ends when the layer is gone.
async fn watch(redis: Weak<Redis>) {
    loop {
        let Some(this) = redis.upgrade() else { return };
        let Some(Some(mut conn)) = this.conn.get().cloned() else {
            return;
        };
        match this.present(&mut conn).await {
            Ok(count) => {
                this.learned
                    .store(count.clamp(1, MAX_REPLICAS), Ordering::Relaxed);
                this.up();
            }
            Err(why) => this.down(&why),
        }
        let every = match this.state.load(Ordering::Acquire) {
            DOWN => PROBE_EVERY,
            _ => PRESENCE_EVERY,
        };
        drop((this, conn));
        tokio::time::sleep(every).await;
    }
}

/// A name for this replica in the presence set: unique per process and
/// per layer.
fn replica_id() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{since}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with the password (and user) of its authority replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "<unparsed URL>".to_owned()
        } else {
            url.to_owned()
        };
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("redis://:hunter2@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://u:p@ss@h/1?x=y"), "redis://***@h/1?x=y");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("u:secret@h"), "<unparsed URL>");
        let rates = SharedRates::new("redis://:hunter2@127.0.0.1:1/").unwrap();
        assert!(!format!("{rates:?}").contains("hunter2"));
        let err = SharedRates::new("http://:hunter2@x/").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn replicas_are_clamped_and_default_to_one() {
        let rates = SharedRates::new("redis://127.0.0.1:1/").unwrap();
        assert_eq!(rates.clone().start().replicas(), 1);
        assert_eq!(rates.clone().replicas(0).start().replicas(), 1);
        assert_eq!(rates.replicas(u32::MAX).start().replicas(), MAX_REPLICAS);
    }
}
