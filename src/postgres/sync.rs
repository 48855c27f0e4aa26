//! The store's one task: connect, load, follow notifications, reload on a
//! timer, and reconnect with backoff when the database goes away.

use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::{interval_at, sleep, timeout, Instant, MissedTickBehavior};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Connection, Row, Socket, Statement};

use super::rows::{insert, is_row_problem, read_row, report, report_shared};
use super::{
    connect_error, db_error, schema, PgKeyStore, Status, StoreError, BATCH_LIMIT, MAX_LABEL_BYTES,
};
use crate::shared::KeysClaim;
use crate::{KeySet, SharedSecurityConfig};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// A connection lost sooner than this after it came up (say, a pooler that
/// drops it after every reload) does not count as a healthy server: the
/// store backs off instead of reconnecting and reloading in a tight loop.
const FLAP_WINDOW: Duration = Duration::from_secs(1);
/// How long any statement of the store may take before the connection is
/// given up and replaced. A backend that stopped answering while its host
/// stays up (stopped, swapped out, stuck on a lock) keeps the TCP
/// connection alive and answers every keepalive, so only an answer that
/// does not come tells it; a full reload of 100,000 rows takes well under
/// a second.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle connection is asked `SELECT 1`, answered within
/// [`PING_TIMEOUT`]: with no query of its own in flight, a replica would
/// otherwise not notice a silent backend until its next reload.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(4);
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(5);

type Ready = Option<oneshot::Sender<Result<(), StoreError>>>;

pub(crate) struct Follower<T> {
    store: PgKeyStore<T>,
    shared: SharedSecurityConfig,
    /// Released when the task ends (stopped, dropped, or failed at start).
    _claim: KeysClaim,
    status: Arc<Status>,
    backoff: Duration,
    outage_since: Option<Instant>,
    connected_at: Option<Instant>,
    /// Labels of bad rows already logged at error level, so the timer
    /// reload does not repeat them every minute; forgotten once fixed.
    reported: HashSet<String>,
}

/// The statements a session runs, prepared once per connection.
struct Statements {
    all: Statement,
    labels: Statement,
}

impl<T> Follower<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    pub(crate) fn new(
        store: PgKeyStore<T>,
        shared: SharedSecurityConfig,
        claim: KeysClaim,
        status: Arc<Status>,
    ) -> Self {
        Follower {
            store,
            shared,
            _claim: claim,
            status,
            backoff: FIRST_BACKOFF,
            outage_since: None,
            connected_at: None,
            reported: HashSet::new(),
        }
    }

    pub(crate) async fn run(
        mut self,
        ready: oneshot::Sender<Result<(), StoreError>>,
        stopped: oneshot::Receiver<()>,
    ) {
        let status = Arc::clone(&self.status);
        tokio::select! {
            _ = stopped => {}
            () = self.follow(Some(ready)) => {}
        }
        status.connected.store(false, Ordering::Relaxed);
    }

    /// Returns only if the first connection fails (reported through
    /// `ready`); afterwards it reconnects forever.
    async fn follow(&mut self, mut ready: Ready) {
        loop {
            let lost = match self.store.config.connect(self.store.tls.clone()).await {
                Err(e) => connect_error(&self.store.address, e),
                Ok((client, connection)) => self.session(client, connection, &mut ready).await,
            };
            self.status.connected.store(false, Ordering::Relaxed);
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(lost));
                return;
            }
            let flapping = self
                .connected_at
                .take()
                .is_some_and(|at| at.elapsed() < FLAP_WINDOW);
            if self.outage_since.is_none() {
                self.outage_since = Some(Instant::now());
                tracing::warn!(
                    target: "proxy_auth",
                    address = %self.store.address,
                    error = %lost,
                    keys = self.status.keys.load(Ordering::Relaxed),
                    "key store lost its database; serving the keys last loaded and reconnecting"
                );
                if !flapping {
                    // A dropped connection on a healthy server (a restarted
                    // pooler, pg_terminate_backend) is back at once.
                    self.backoff = FIRST_BACKOFF;
                    continue;
                }
            }
            tracing::debug!(
                target: "proxy_auth",
                address = %self.store.address,
                error = %lost,
                retry_in = ?self.backoff,
                "key store still cannot reach its database"
            );
            sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(self.store.backoff_cap);
        }
    }

    /// One connection's life: returns why it ended.
    async fn session(
        &mut self,
        client: Client,
        mut connection: Connection<Socket, T::Stream>,
        ready: &mut Ready,
    ) -> StoreError {
        // What notifications asked for, kept to a bounded size (see
        // `Pending`): anyone who can connect to the database can NOTIFY on
        // the channel, as fast and as large as they like, so no payload is
        // queued.
        let pending = Mutex::new(Pending::default());
        let wake = Notify::new();
        let status = Arc::clone(&self.status);
        // Driving the connection in the same task as the queries, so the
        // store stays one task and notifications keep their commit order.
        let drive = async {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        status.notifications.fetch_add(1, Ordering::Relaxed);
                        lock(&pending).add(n.payload());
                        wake.notify_one();
                    }
                    Some(Ok(_notice)) => {}
                    Some(Err(e)) => return Some(e),
                    None => return None,
                }
            }
        };
        tokio::select! {
            lost = drive => match lost {
                Some(e) => db_error(&self.store.address, "following the key table", e),
                None => closed(&self.store.address),
            },
            lost = self.follow_session(&client, &pending, &wake, ready) => lost,
        }
    }

    async fn follow_session(
        &mut self,
        client: &Client,
        pending: &Mutex<Pending>,
        wake: &Notify,
        ready: &mut Ready,
    ) -> StoreError {
        let statements = match self.prepare(client).await {
            Ok(statements) => statements,
            Err(e) => return e,
        };
        if let Err(e) = self.full_reload(client, &statements).await {
            return e;
        }
        self.status.connected.store(true, Ordering::Relaxed);
        // The backoff is reset when a connection is lost after it lived
        // longer than FLAP_WINDOW, not here.
        self.connected_at = Some(Instant::now());
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        } else if let Some(since) = self.outage_since.take() {
            tracing::info!(
                target: "proxy_auth",
                address = %self.store.address,
                outage = ?since.elapsed(),
                keys = self.status.keys.load(Ordering::Relaxed),
                "key store reconnected and reloaded every key"
            );
        }
        let every = self.store.reload_interval;
        let mut timer = interval_at(Instant::now() + every, every);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let outcome = tokio::select! {
                _ = timer.tick() => self.full_reload(client, &statements).await,
                _ = ping.tick() => self.ping(client).await,
                () = wake.notified() => {
                    // Everything notified since the last look, in one
                    // query and one swap of the key set.
                    let batch = std::mem::take(&mut *lock(pending));
                    if batch.full {
                        self.full_reload(client, &statements).await
                    } else if batch.labels.is_empty() {
                        Ok(())
                    } else {
                        self.apply(client, &statements, batch.labels.into_iter().collect()).await
                    }
                }
            };
            if let Err(e) = outcome {
                return e;
            }
        }
    }

    /// Whether the backend still answers; an error replaces the connection.
    async fn ping(&self, client: &Client) -> Result<(), StoreError> {
        match timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(db_error(&self.store.address, "checking the connection", e)),
            Err(_) => Err(StoreError::Database {
                address: self.store.address.clone(),
                doing: "checking the connection",
                source: format!("no answer to SELECT 1 within {PING_TIMEOUT:?}").into(),
            }),
        }
    }

    /// [`prepare_untimed`](Self::prepare_untimed) within [`QUERY_TIMEOUT`].
    async fn prepare(&self, client: &Client) -> Result<Statements, StoreError> {
        timeout(QUERY_TIMEOUT, self.prepare_untimed(client))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Database {
                    address: self.store.address.clone(),
                    doing: "preparing the key table",
                    source: format!("no answer within {QUERY_TIMEOUT:?}").into(),
                })
            })
    }

    /// Table and trigger, then `LISTEN` before the first load, so no commit
    /// falls between what the load sees and what is notified.
    async fn prepare_untimed(&self, client: &Client) -> Result<Statements, StoreError> {
        schema::ensure(client, &self.store.address).await?;
        client.batch_execute(&schema::listen()).await.map_err(|e| {
            db_error(
                &self.store.address,
                "subscribing to key changes (LISTEN)",
                e,
            )
        })?;
        let prepare = |sql: String| async move { client.prepare(&sql).await };
        let all = prepare(schema::select_active())
            .await
            .map_err(|e| db_error(&self.store.address, "preparing the key query", e))?;
        let labels = prepare(schema::select_labels())
            .await
            .map_err(|e| db_error(&self.store.address, "preparing the key query", e))?;
        Ok(Statements { all, labels })
    }

    async fn query(
        &self,
        client: &Client,
        statement: &Statement,
        labels: Option<&Vec<String>>,
    ) -> Result<Vec<Row>, StoreError> {
        let rows = match labels {
            None => timeout(QUERY_TIMEOUT, client.query(statement, &[])).await,
            Some(labels) => timeout(QUERY_TIMEOUT, client.query(statement, &[labels])).await,
        };
        match rows {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(db_error(&self.store.address, "reading the key table", e)),
            Err(_) => Err(StoreError::Database {
                address: self.store.address.clone(),
                doing: "reading the key table",
                source: format!("no answer within {QUERY_TIMEOUT:?}").into(),
            }),
        }
    }

    /// Replaces the key set with the table's active rows.
    async fn full_reload(
        &mut self,
        client: &Client,
        statements: &Statements,
    ) -> Result<(), StoreError> {
        let rows = self.query(client, &statements.all, None).await?;
        let mut keys = KeySet::new();
        let mut bad = HashSet::new();
        // Rows that hold one key under several labels, by (a hash of) that
        // key: none of them is loaded.
        let mut shared_keys: HashMap<[u8; 32], Vec<String>> = HashMap::new();
        for row in &rows {
            if holders(row) > 1 {
                let (key, label) = shared_key(row);
                shared_keys.entry(key).or_default().push(label);
                continue;
            }
            if !row.try_get::<_, bool>(3).unwrap_or(false) {
                continue;
            }
            let outcome = read_row(row).and_then(|row| {
                let label = row.label.clone();
                insert(&mut keys, row).map_err(|e| (label, e.to_string()))
            });
            if let Err((label, problem)) = outcome {
                if self.reported.insert(label.clone()) {
                    report(&label, &problem);
                }
                bad.insert(label);
            }
        }
        drop(rows);
        for mut labels in shared_keys.into_values() {
            labels.sort();
            if labels.iter().fold(false, |new, label| {
                self.reported.insert(label.clone()) | new
            }) {
                report_shared(&labels);
            }
            bad.extend(labels);
        }
        self.reported.retain(|label| bad.contains(label));
        let count = keys.len() as u64;
        // The status first: whoever sees a verdict of the new set sees the
        // status that describes it.
        self.status.keys.store(count, Ordering::Relaxed);
        self.status.full_reloads.fetch_add(1, Ordering::Relaxed);
        self.shared.store_keys(keys);
        tracing::debug!(target: "proxy_auth", keys = count, "key store loaded the key table");
        Ok(())
    }

    /// Re-reads the rows named by a burst of notifications and applies them
    /// in one swap of the key set.
    async fn apply(
        &mut self,
        client: &Client,
        statements: &Statements,
        labels: Vec<String>,
    ) -> Result<(), StoreError> {
        let rows = self
            .query(client, &statements.labels, Some(&labels))
            .await?;
        // A key held by another row too: the full reload finds every row
        // holding it, active or revoked, and loads none of them.
        if rows.iter().any(|row| holders(row) > 1) {
            return self.full_reload(client, statements).await;
        }
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            match read_row(row) {
                Ok(row) => found.push(row),
                Err((label, problem)) => {
                    report(&label, &problem);
                    self.reported.insert(label);
                }
            }
        }
        let mut refused = Vec::new();
        let status = &self.status;
        let applied = self.shared.update_keys(|keys| {
            // Removals first: a digest moving from one label to another in
            // the same burst must not collide with itself. A row whose
            // policy is refused stays removed: its key is refused, never
            // kept with its old policy nor loaded without one.
            for label in &labels {
                keys.remove(label);
            }
            for row in found {
                let label = row.label.clone();
                match insert(keys, row) {
                    Ok(()) => {}
                    Err(e) if is_row_problem(&e) => refused.push((label, e)),
                    Err(e) => return Err(e),
                }
            }
            // The status first, as in a full reload: the set is stored
            // once this returns.
            status.keys.store(keys.len() as u64, Ordering::Relaxed);
            status
                .changes_applied
                .fetch_add(labels.len() as u64, Ordering::Relaxed);
            Ok(())
        });
        // A row that collides with a key already loaded under another label
        // (a table the digest trigger did not guard): nothing of this batch
        // was stored, and the full reload judges every row holding the key.
        if applied.is_err() {
            return self.full_reload(client, statements).await;
        }
        for (label, problem) in refused {
            report(&label, &problem);
            self.reported.insert(label);
        }

        Ok(())
    }
}

/// How many rows of the table hold this row's key, in any spelling of its
/// digest; an unreadable count is taken as shared, so the row is not loaded.
fn holders(row: &Row) -> i64 {
    row.try_get::<_, i64>(4).unwrap_or(i64::MAX)
}

/// What groups a row with the others holding its key (the SHA-256 of its
/// lowercased digest, so the digest itself is not kept), and its label.
fn shared_key(row: &Row) -> ([u8; 32], String) {
    let raw = zeroize::Zeroizing::new(
        row.try_get::<_, Option<String>>(1)
            .ok()
            .flatten()
            .unwrap_or_default(),
    );
    let digest = zeroize::Zeroizing::new(raw.to_ascii_lowercase());
    let label = row
        .try_get::<_, Option<String>>(0)
        .ok()
        .flatten()
        .unwrap_or_default();
    (crate::digest::sha256(digest.as_bytes()), label)
}

/// What the notifications received since the store last looked ask for:
/// the labels to re-read, or a full reload. Its size is bounded whatever
/// arrives: at most [`BATCH_LIMIT`] labels of at most [`MAX_LABEL_BYTES`]
/// each (about 256 KiB); past that, or for a payload that names no label a
/// row could have, it is "reload everything" and holds nothing. So a burst
/// of any size is one re-read of its labels or one full reload (two if it
/// is still arriving when that reload starts), never a queue of payloads.
#[derive(Default)]
pub(crate) struct Pending {
    labels: HashSet<String>,
    full: bool,
}

impl Pending {
    fn add(&mut self, payload: &str) {
        if self.full {
            return;
        }
        match payload.split_once(' ') {
            Some(("INSERT" | "UPDATE" | "DELETE", label))
                if label.len() <= MAX_LABEL_BYTES
                    && (self.labels.len() < BATCH_LIMIT || self.labels.contains(label)) =>
            {
                if !self.labels.contains(label) {
                    self.labels.insert(label.to_owned());
                }
            }
            // TRUNCATE, a bulk change, a label no row may have, or a NOTIFY
            // on the channel by someone else.
            _ => {
                self.full = true;
                self.labels = HashSet::new();
            }
        }
    }
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // Only `add` and `take` run under the lock, neither can panic half-way.
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn closed(address: &str) -> StoreError {
    StoreError::Database {
        address: address.to_owned(),
        doing: "following the key table",
        source: "the server closed the connection".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_notifications_stay_bounded() {
        let mut pending = Pending::default();
        for i in 0..BATCH_LIMIT {
            pending.add(&format!("INSERT key-{i}"));
            pending.add(&format!("UPDATE key-{i}"));
        }
        assert!(!pending.full);
        assert_eq!(pending.labels.len(), BATCH_LIMIT);
        pending.add("DELETE one-too-many");
        assert!(pending.full && pending.labels.is_empty());
        pending.add("INSERT later");
        assert!(pending.labels.is_empty());

        for payload in [
            "TRUNCATE ".to_owned(),
            "hello".to_owned(),
            format!("INSERT {}", "x".repeat(MAX_LABEL_BYTES + 1)),
        ] {
            let mut pending = Pending::default();
            pending.add("INSERT alice");
            pending.add(&payload);
            assert!(pending.full && pending.labels.is_empty(), "{payload:?}");
        }
    }
}
