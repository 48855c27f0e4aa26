//! A key set kept equal to a PostgreSQL table on every proxy replica
//! (feature `postgres`).
//!
//! Several proxy replicas behind a load balancer each hold their own
//! in-memory [`KeySet`](crate::KeySet); [`PgKeyStore`] keeps that set equal
//! to one table, so a key issued or revoked anywhere is in force on every
//! replica within a second. The database is never on the request path:
//! requests are judged against the lock-free in-memory set exactly as
//! without the store, and a database outage changes nothing for them.
//!
//! # Example
//!
//! ```no_run
//! use proxy_auth::postgres::PgKeyStore;
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), proxy_auth::postgres::StoreError> {
//! let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-operator"));
//! let store = PgKeyStore::new("postgres://proxy:secret@127.0.0.1:5432/proxy")?;
//! // Loads every active key, then follows the table until stopped.
//! let handle = store.start(shared.clone()).await?;
//! let layer = ProxyAuthLayer::from_shared(shared);
//!
//! // Issue a key (any replica, or the `keys` example CLI): every replica
//! // accepts it within a second.
//! let admin = store.admin().await?;
//! let key = admin.add("alice", None).await?;
//! println!("give this to alice once: {}", key.expose_secret());
//! admin.revoke("alice").await?;
//! # drop(layer);
//! handle.stop().await;
//! # Ok(()) }
//! ```
//!
//! # Running N replicas on one database
//!
//! Give every replica the same connection string and call
//! [`PgKeyStore::start`] with its [`SharedSecurityConfig`]. Each replica:
//!
//! 1. creates the table and its trigger if they are missing, and adds the
//!    policy columns and their checks to a table made by an older version
//!    (serialized by an advisory lock, so replicas may start together; a
//!    replica whose database user may not create tables works once they
//!    exist),
//! 2. `LISTEN`s on the channel `proxy_auth_keys`, then loads every active
//!    key (not revoked, not expired) and replaces the key set with them,
//! 3. on each notification re-reads the named rows and applies them: an
//!    insert adds the key, a revoke, delete or expiry in the past removes it,
//!    an expiry or policy change replaces it. Notifications that arrive together are
//!    applied with one query and one swap of the key set; a burst of more
//!    than 1,000 rows (a bulk import) becomes one full reload. No payload
//!    is queued: the store keeps only the set of labels to re-read (at most
//!    1,000 of at most 256 bytes) or "reload everything", so a flood of
//!    notifications costs a replica bounded memory and one full reload (two
//!    if it is still arriving when that reload starts),
//! 4. reloads the whole table every [`reload_interval`](PgKeyStore::reload_interval)
//!    (60 s by default), a safety net should a notification ever be lost.
//!
//! The store owns the key set: keys put there by other means are replaced
//! at the next full reload. A [`watch`](crate::watch)ed config file on the
//! same shared config would replace the store's keys at each change (and
//! the store the file's), so the two are refused together: whichever
//! starts second fails ([`StoreError::KeysOwned`]) naming the other. With
//! a store, give the mode and `api_key` in code or the environment. The
//! store writes only the key set, never the mode, so the shared config's
//! [listen-address guard](crate::SharedSecurityConfig#the-listen-address-guard)
//! has nothing of the store's to refuse. The config's `api_key` is not in the table and
//! keeps working (an operator's key that survives any database state).
//!
//! # When the database goes away
//!
//! Requests are unaffected: the replica keeps serving with the last set it
//! loaded, so no key it had is lost and no revoked key comes back. The store
//! logs one warning when the connection is lost, then reconnects, at once
//! and then with exponential backoff from 100 ms up to
//! [`backoff_cap`](PgKeyStore::backoff_cap) (5 s by default), logging each
//! failed attempt at debug level only. On reconnect it `LISTEN`s again and
//! reloads the whole table, which picks up every change made while it was
//! away, and logs at info level that it is back.
//!
//! A change made during the outage is therefore in force at most
//! `backoff cap + reload time` after the database is back.
//!
//! A connection can also go silent without closing: the host or the
//! network vanished, or the backend stopped answering while its host stays
//! up (stopped, swapped out, stuck), which TCP keepalives alone cannot
//! tell, since the host still answers them. So every statement of the
//! store must be answered within 10 s (client side, and the server's
//! `statement_timeout`), and an idle connection is asked `SELECT 1` every
//! 4 s, to be answered within 5 s. **A silent connection is given up at
//! most 10 s after it went silent** (9 s idle, 10 s mid-reload); the store
//! then reconnects at once (the postmaster hands it a new backend even
//! when the old one is stuck) and reloads the whole table. A key revoked
//! during the silence is therefore refused at most 10 s plus one connect
//! (at most 5 s, the connect timeout) and one reload after the revoke; if
//! the database cannot be reached at all, the outage rules above apply.
//! TCP keepalives (5 s idle, then 3 probes 2 s apart) are set unless the
//! connection string sets them, for the host that vanished.
//!
//! At start, an unreachable database is an error naming its `host:port`
//! (never the password); the proxy decides whether to exit or to serve
//! without the store.
//!
//! # Privileges, and who can notify
//!
//! A replica's database user needs `CONNECT` on the database, `USAGE` on
//! the table's schema and `SELECT` on `proxy_auth_keys`; `LISTEN` needs no
//! privilege. The first start (or an upgrade that adds a trigger, an
//! index, the policy columns or their checks) also needs the right to
//! create the table, its functions, triggers and index and to alter it: run
//! it once as the table's owner (the `keys` CLI does, through
//! [`KeyAdmin`]), after which read-only replicas work. A read-only replica
//! on a table without the policy columns does not start (an error saying
//! so): it could not read the keys' policies. The
//! admin user needs `SELECT`, `INSERT` and `UPDATE` on the table and
//! `USAGE` on its id sequence.
//!
//! PostgreSQL has no privilege for `NOTIFY`: **any role that can connect to
//! the database can notify on the store's channel**, with any payload.
//! The store treats a payload it does not recognise as "reload
//! everything" and keeps no payload (above), so such a role can make
//! replicas reload, but cannot change a key, fill their memory or hold them
//! up. To keep even that away, give the key table a database of its own
//! and let only the proxy's roles connect to it:
//!
//! ```sql
//! CREATE DATABASE proxy_keys;
//! REVOKE CONNECT, TEMPORARY ON DATABASE proxy_keys FROM PUBLIC;
//! GRANT CONNECT ON DATABASE proxy_keys TO proxy_replica, proxy_admin;
//! ```
//!
//! (plus matching `pg_hba.conf` lines), and point the connection string at
//! that database.
//!
//! # Issuing and revoking keys
//!
//! [`PgKeyStore::admin`] opens a [`KeyAdmin`]: [`add`](KeyAdmin::add)
//! generates an `sk-` key, stores only its digest and returns the key once;
//! [`add_with_policy`](KeyAdmin::add_with_policy) does the same with the
//! key's scopes and limits ([`KeyPolicy`]); [`set`](KeyAdmin::set) changes
//! the policy fields a [`PolicyChange`] names and keeps the others;
//! [`revoke`](KeyAdmin::revoke) marks a label revoked (the row stays, so the
//! label is never reused); [`set_expiry`](KeyAdmin::set_expiry) changes an
//! expiry; [`list`](KeyAdmin::list) shows labels, dates and policies, never
//! digests. The `keys` example is a CLI over it:
//!
//! ```sh
//! export PROXY_DATABASE_URL=postgres://proxy:secret@127.0.0.1:5432/proxy
//! cargo run --example keys --features postgres -- add alice --expires-in 86400
//! cargo run --example keys --features postgres -- add team-a --models 'gpt-4o*,claude-3-5-*' \
//!     --routes /v1/chat/completions --allowed-ips 10.0.0.0/8 --rpm 60 --burst 10 --max-concurrent 2
//! cargo run --example keys --features postgres -- set team-a --rpm 30   # the rest is kept
//! cargo run --example keys --features postgres -- set team-a --models none   # no model restriction
//! cargo run --example keys --features postgres -- revoke alice
//! cargo run --example keys --features postgres -- list
//! ```
//!
//! # Scopes and limits
//!
//! Each row carries its key's [scopes](crate::scope) and
//! [limits](crate::limit) in the policy columns below; NULL is no
//! restriction (a NULL `burst` is `rpm`). A replica gives every key it loads
//! the row's policy, through the same checks as
//! [`KeySet::add`](crate::KeySet::add). A changed policy is in force on
//! every replica within a second, like any change (the trigger fires on
//! every `UPDATE`), and **keeps the key's rate state and requests in
//! flight**: the limiter state goes with the label across the swap of the
//! key set (see [`limit`](crate::limit#state-across-config-changes)), so
//! `keys set team-a --models ...` never hands `team-a` a fresh burst, and a
//! full reload (reconnect, timer) does not either. A revoked, deleted or
//! refused key's state is freed.
//!
//! Limits are enforced by each replica on its own: N replicas let a key
//! through N times its `rpm` (see [`limit`](crate::limit#per-process)).
//!
//! Plain SQL works as well: every insert, update, delete and truncate
//! notifies the replicas through the trigger.
//!
//! # The table
//!
//! ```sql
//! CREATE TABLE proxy_auth_keys (
//!     id             bigserial   PRIMARY KEY,
//!     label          text        NOT NULL UNIQUE,
//!     key_digest     text        NOT NULL UNIQUE,  -- 'sha256:<64 lowercase hex>', see key_digest()
//!     created_at     timestamptz NOT NULL DEFAULT now(),
//!     expires_at     timestamptz,                  -- NULL: never expires
//!     revoked_at     timestamptz,                  -- NULL: active
//!     -- The policy (NULL: none), added by ALTER TABLE ... ADD COLUMN IF NOT EXISTS
//!     models         text[],   -- '{gpt-4o*,claude-3-5-*}': names, or prefixes ending in *
//!     routes         text[],   -- '{/v1/chat/completions}': path prefixes
//!     allowed_ips    text[],   -- '{10.0.0.0/8}': CIDR blocks or addresses
//!     rpm            integer,  -- requests per minute
//!     burst          integer,  -- back to back at rpm (NULL: rpm)
//!     max_concurrent integer,  -- in flight at once
//!     CONSTRAINT proxy_auth_keys_models_list CHECK (models IS NULL OR CASE WHEN
//!         array_ndims(models) = 1 THEN array_position(models, NULL) IS NULL ELSE false END),
//!     -- the same for routes and allowed_ips (_routes_list, _allowed_ips_list)
//!     CONSTRAINT proxy_auth_keys_rpm_range CHECK (rpm BETWEEN 1 AND 1000000),
//!     -- the same for burst and max_concurrent (_burst_range, _max_concurrent_range)
//!     CONSTRAINT proxy_auth_keys_burst_needs_rpm CHECK (burst IS NULL OR rpm IS NOT NULL)
//! );
//! -- plus an AFTER INSERT OR UPDATE OR DELETE trigger (and one for TRUNCATE)
//! -- that runs pg_notify('proxy_auth_keys', '<op> <label>'), a BEFORE
//! -- INSERT OR UPDATE trigger that lowercases a well-formed key_digest, and
//! -- an index on lower(key_digest)
//! ```
//!
//! The checks are added `NOT VALID` (each once, by name, under the
//! advisory lock): adding them to an old table never fails on rows already
//! there, and every row written afterwards is checked. They refuse what
//! needs no parsing (an empty or multi-dimensional array, a NULL item, a
//! limit of 0, a negative one or over [`limit::MAX`](crate::limit::MAX), a
//! `burst` without `rpm`); the replicas parse the rest.
//!
//! **A row whose policy a replica refuses opens no key**: a bad CIDR block
//! (`10.0.0.0/33`), a `*` inside a model pattern (`gpt-*-mini`), a route
//! without its leading `/`, or a limit the checks would refuse in a row
//! written before they existed. The row is skipped with one error log
//! naming its label (escaped) and what is wrong (when a replica first
//! reads it, and again if it changes and is still wrong; not at every
//! reload), its key is refused as unknown (401), and the other rows
//! load as usual; a key whose policy turns bad is removed, never kept with
//! its old policy nor loaded without one. [`KeyAdmin`] refuses such a
//! policy before writing it ([`StoreError::InvalidPolicy`]), and
//! [`KeyInfo::policy_problem`] (the `keys` CLI's `list`: `invalid`) shows
//! the rows the replicas skip.
//!
//! A digest reaches the table in one spelling, lowercase, whoever writes
//! it ([`KeyAdmin`] and the `keys` CLI write [`key_digest`](crate::key_digest)'s
//! form; plain SQL goes through the trigger), so the `UNIQUE` constraint
//! refuses a second row for a key in any spelling. A table made by an older
//! version is upgraded at start (trigger, index, and its digests lowercased
//! where that collides with no other row). Whatever the table holds, a
//! replica treats digests that differ only in case as one key: **rows that
//! hold the same key are one error** (logged once, naming every label),
//! and the key is accepted under none of them, so a key revoked under one
//! label is not back under another; delete the rows that should not
//! exist.
//!
//! The notification names the label, never the digest, and no plaintext key
//! is stored anywhere. A row whose label is not plain printable text
//! (empty, surrounding whitespace, over 256 bytes, or a control, zero-width,
//! bidirectional or other invisible character, any of which could act on a
//! terminal or make two labels look alike: [`KeyAdmin::add`] refuses the
//! same), or whose `key_digest` is not exactly `sha256:` followed by
//! 64 hex characters, is skipped with an error log naming its label
//! (escaped, as in `"\u{1b}[2J"`); the other rows
//! load as usual. (A value without the `sha256:` prefix is never taken as a
//! plaintext key.)
//!
//! # Cost
//!
//! Measured with `cargo bench --bench postgres --features postgres` (100,000
//! keys, loopback, a shared 2-core machine, one run with other builds
//! going on): start-up load 340-380 ms median (connect, schema check,
//! `LISTEN`, read and index every row; counting the rows that hold each key
//! in any spelling sorts the table, about 130 ms of it: the version without
//! that count, measured right after on the same machine, took 200-250 ms);
//! about 250 bytes of heap per key (each
//! digest once on the heap, wiped when its last owner drops it); from
//! sending a change to the new verdict on the other replica p50 20-23 ms,
//! p99 about 40 ms over 200 adds and 200 revokes; the request path costs
//! the same as with a plain [`KeySet`](crate::KeySet) (it is the same
//! lookup: 443 and 444 ns in the same run). A change is applied
//! copy-on-write (the readers' set is never locked), so its cost grows with
//! the set: that is most of the 20 ms at 100,000 keys. Re-reading only the
//! changed rows is why a change costs that and not a full reload each (which
//! at that size costs most of the start-up time above).
//!
//! Keys with policies, from the same bench (its step 4: every row given two
//! model patterns, two routes, two networks, its own `rpm`, a `burst` and a
//! `max_concurrent`; two runs on the same machine, loaded by another build,
//! load average 2.3 to 3.1 on 2 cores): start-up load of 100,000 keys
//! 650-780 ms median (goal 1 s), beside 500 ms for the same keys without
//! policies in the same runs; live heap 532 bytes per key, beside 335
//! without (the parsed scopes, and each key's limiter). Those runs' keys
//! without policies cost more than the figures above (taken before the
//! policy columns, on a quieter machine): six more columns per row, read
//! as NULL, and the load on the machine; the bench does not separate the
//! two.
//!
//! # Logs
//!
//! Target `proxy_auth`: one warning per outage, an info line on reconnect,
//! an error per bad row (once per row until it is fixed), debug lines for
//! failed reconnection attempts and reloads. None holds a key or a digest.
//! The client library's own debug logs (target `tokio_postgres`) quote
//! statement parameters, which include digests on `add`: keep that target
//! at `info` or above in production.
//!
//! # Why tokio-postgres
//!
//! It is a fraction of sqlx's dependency tree (no macros, pool, migration or
//! multi-database layers), and it delivers notifications the way the store
//! needs: [`Connection::poll_message`](tokio_postgres::Connection::poll_message)
//! yields each `NOTIFY` to the one task that owns the connection as soon as
//! it is read, on the same connection that runs the reloads, so the order
//! of reloads and notifications is the server's commit order. (sqlx's
//! `PgListener` reconnects behind the caller's back, and notifications sent
//! meanwhile are gone: the store would still have to notice and reload, with
//! a second connection type to drive.)
//!
//! Connections are unencrypted unless [`PgKeyStore::tls`] is given a
//! tokio-postgres TLS connector (this crate adds no TLS stack of its own).

mod admin;
mod error;
mod handle;
mod policy;
mod rows;
mod schema;
mod sync;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls, Socket};

use crate::SharedSecurityConfig;
use handle::Status;

pub use admin::{KeyAdmin, KeyInfo};
pub use error::StoreError;
pub use handle::{KeyStoreHandle, KeyStoreStatus};
pub use policy::{KeyPolicy, PolicyChange, PolicyField};

/// More distinct labels than this in one burst of notifications are applied
/// by a full reload instead of row by row.
pub(crate) const BATCH_LIMIT: usize = 1000;

/// The longest label a row may have: labels travel in `NOTIFY` payloads
/// (at most 8000 bytes) and in logs.
pub(crate) const MAX_LABEL_BYTES: usize = 256;

/// How the replicas' connections appear in `pg_stat_activity`.
const APPLICATION_NAME: &str = "proxy-auth key store";
const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Where the key table lives and how to follow it; [`start`](Self::start)
/// it once per replica, with one [`SharedSecurityConfig`] per store.
///
/// `T` is how connections are made: [`NoTls`] unless [`tls`](Self::tls)
/// gives a TLS connector.
#[derive(Clone)]
pub struct PgKeyStore<T = NoTls> {
    config: Config,
    address: String,
    reload_interval: Duration,
    backoff_cap: Duration,
    tls: T,
}

impl PgKeyStore<NoTls> {
    /// A store for the database named by `url`: a `postgres://` URL or
    /// `key=value` pairs, as libpq accepts them. Connections are
    /// unencrypted until [`tls`](Self::tls) says otherwise.
    ///
    /// Unless `url` sets them: the connection's `application_name` is
    /// `proxy-auth key store`, the connect timeout 5 s, TCP keepalives
    /// start after 5 s idle (3 probes 2 s apart), and the server's
    /// `statement_timeout` is 10 s.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let mut config: Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::InvalidUrl {
                    reason: e.to_string(),
                })?;
        if config.get_hosts().is_empty() {
            return Err(StoreError::InvalidUrl {
                reason: "it names no host".into(),
            });
        }
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // The default (2 h idle) would leave a replica on a dead connection,
        // missing every change, for hours after a silent network failure.
        // (A backend that stops answering on a live host answers keepalives
        // all the same: the store's own ping finds that, see `sync`.)
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(5));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(2));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        // The server gives up on a statement of the store's as the store
        // itself does, so nothing it abandoned keeps running there.
        let options = config.get_options().unwrap_or_default();
        if !options.contains("statement_timeout") {
            let timeout_ms = sync::QUERY_TIMEOUT.as_millis();
            let options = format!("{options} -c statement_timeout={timeout_ms}");
            config.options(options.trim());
        }
        let address = address(&config);
        Ok(PgKeyStore {
            config,
            address,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            tls: NoTls,
        })
    }
}

impl<T> PgKeyStore<T> {
    /// Connects through `tls` (any tokio-postgres TLS connector, such as
    /// `postgres-native-tls`'s `MakeTlsConnector` or
    /// `tokio-postgres-rustls`'s `MakeRustlsConnect`, for tokio-postgres
    /// 0.7, the version this crate uses); `sslmode` in the
    /// connection string then decides whether TLS is required.
    #[must_use]
    pub fn tls<U>(self, tls: U) -> PgKeyStore<U> {
        PgKeyStore {
            config: self.config,
            address: self.address,
            reload_interval: self.reload_interval,
            backoff_cap: self.backoff_cap,
            tls,
        }
    }

    /// How often the whole table is reloaded besides the notifications
    /// (default 60 s; at least 1 s).
    #[must_use]
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every.max(Duration::from_secs(1));
        self
    }

    /// The longest wait between two reconnection attempts (default 5 s; at
    /// least 10 ms).
    #[must_use]
    pub fn backoff_cap(mut self, cap: Duration) -> Self {
        self.backoff_cap = cap.max(Duration::from_millis(10));
        self
    }

    /// The database's `host:port` (comma-separated if several), as errors
    /// and logs name it; without user or password.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl<T> PgKeyStore<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// Connects, creates the table if missing, loads every active key into
    /// `shared`'s key set (replacing it) and returns once they are in force;
    /// from then on one task on the current tokio runtime follows the table
    /// until [`KeyStoreHandle::stop`] (or dropping the handle).
    ///
    /// Errors if the database cannot be reached or the table cannot be
    /// created or read, or if another source already keeps `shared`'s named
    /// keys (a watched config file: [`StoreError::KeysOwned`]); nothing is
    /// changed in `shared` then.
    ///
    /// Needs a tokio runtime with its I/O and time drivers enabled (as
    /// `#[tokio::main]` sets up); the task runs on it.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (like `tokio::spawn`).
    pub async fn start(&self, shared: SharedSecurityConfig) -> Result<KeyStoreHandle, StoreError> {
        let claim = shared
            .claim_keys(format!("the PostgreSQL key store at {}", self.address))
            .map_err(|owner| StoreError::KeysOwned { owner })?;
        let status = Arc::new(Status::default());
        let (stop, stopped) = oneshot::channel();
        let (ready, started) = oneshot::channel();
        let follower = sync::Follower::new(self.clone(), shared, claim, Arc::clone(&status));
        let task = tokio::spawn(follower.run(ready, stopped));
        match started.await {
            Ok(Ok(())) => Ok(KeyStoreHandle { stop, task, status }),
            Ok(Err(e)) => {
                // The task releases its claim on the keys as it ends: wait
                // for that, so a retry on the same handle is not refused.
                let _ = task.await;
                Err(e)
            }
            Err(_) => Err(StoreError::Database {
                address: self.address.clone(),
                doing: "starting (the store's task ended before its first load)",
                source: "task cancelled".into(),
            }),
        }
    }

    /// A connection for issuing, revoking and listing keys; creates the
    /// table if missing.
    pub async fn admin(&self) -> Result<KeyAdmin, StoreError> {
        KeyAdmin::connect(self).await
    }
}

pub(crate) fn connect_error(address: &str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Connect {
        address: address.to_owned(),
        source: redact(e),
    }
}

pub(crate) fn db_error(address: &str, doing: &'static str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Database {
        address: address.to_owned(),
        doing,
        source: redact(e),
    }
}

impl<T> fmt::Debug for PgKeyStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not `config`: it holds the password.
        f.debug_struct("PgKeyStore")
            .field("address", &self.address)
            .field("reload_interval", &self.reload_interval)
            .field("backoff_cap", &self.backoff_cap)
            .finish()
    }
}

/// `host:port[,host:port...]`: what an operator needs to find the server,
/// and nothing of the credentials.
fn address(config: &Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The client's error without a server error's DETAIL line, which can quote
/// row values (a digest) back.
fn redact(e: tokio_postgres::Error) -> Box<dyn std::error::Error + Send + Sync> {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()).into(),
        // The client's Display stops at "error connecting to server"; the
        // cause (refused, timed out, no such host) is what an operator needs.
        None => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            message.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_names_host_and_port_but_not_the_password() {
        let store = PgKeyStore::new("postgres://proxy:hunter2@127.0.0.1:6543/keys").unwrap();
        assert_eq!(store.address(), "127.0.0.1:6543");
        assert!(!format!("{store:?}").contains("hunter2"));
        let store = PgKeyStore::new("host=db1,db2 port=5433 password=hunter2").unwrap();
        assert_eq!(store.address(), "db1:5433,db2:5433");
        let store = PgKeyStore::new("postgres://u:p@[::1]/x").unwrap();
        assert_eq!(store.address(), "[::1]:5432");
    }

    #[test]
    fn a_bad_url_is_an_error_without_the_url() {
        for url in [
            "postgres://u:hunter2@host:notaport/db",
            "hunter2",
            "user=x password=hunter2",
        ] {
            let err = PgKeyStore::new(url).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains("connection string"), "{err}");
        }
    }

    #[test]
    fn intervals_have_floors() {
        let store = PgKeyStore::new("host=h")
            .unwrap()
            .reload_interval(Duration::ZERO)
            .backoff_cap(Duration::ZERO);
        assert_eq!(store.reload_interval, Duration::from_secs(1));
        assert_eq!(store.backoff_cap, Duration::from_millis(10));
    }
}
