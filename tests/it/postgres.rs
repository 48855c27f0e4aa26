//! The PostgreSQL key store against a real server (see `tests/it/pg.rs`): two
//! replicas (two shared configs, two layers, two store connections) on one
//! database, changes through the admin API and by plain SQL, outages,
//! killed connections and bad rows.
//!
//! Propagation is awaited by polling the layer's verdict until a deadline;
//! the deadlines are the promises (1 s, backoff cap + 1 s).

#![cfg(feature = "postgres")]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;
use proxy_auth::postgres::{KeyStoreHandle, PgKeyStore, StoreError};
use proxy_auth::{
    key_digest, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig,
};

use crate::common::{self, get, Logs};
use crate::pg::{self, PgServer};

/// A key the store generated, as the client that was handed it sends it.
fn shown(key: proxy_auth::ApiKey) -> String {
    key.expose_secret().to_owned()
}

/// `postgres::BATCH_LIMIT` (1,000 rows): more changes in one burst are one
/// full reload.
const BATCH_LIMIT: usize = 1000;

const OPERATOR_KEY: &str = "sk-operator-key";
const PROPAGATION: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What a replica's layer says about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    /// Accepted, with the key-set label that matched (None: the api_key).
    Accepted(Option<String>),
    Refused,
}

pub(crate) struct Replica {
    pub(crate) shared: SharedSecurityConfig,
    pub(crate) handle: KeyStoreHandle,
}

impl Replica {
    pub(crate) async fn start(store: &PgKeyStore) -> Replica {
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            OPERATOR_KEY,
        ));
        let handle = store.start(shared.clone()).await.expect("store starts");
        Replica { shared, handle }
    }

    async fn verdict(&self, key: &str) -> Verdict {
        verdict(&self.shared, key).await
    }
}

/// One request through a fresh `ProxyAuthLayer` over the replica's shared
/// config: what a proxy replica would answer.
async fn verdict(shared: &SharedSecurityConfig, key: &str) -> Verdict {
    let layer = ProxyAuthLayer::from_shared(shared.clone()).insert_identity(true);
    let authorization = format!("Bearer {key}");
    let sent = common::send(
        layer,
        get("/v1/models", &[("authorization", &authorization)]),
    )
    .await;
    match sent.status {
        StatusCode::OK => Verdict::Accepted(
            sent.identity()
                .and_then(|who| who.label.as_deref().map(str::to_owned)),
        ),
        StatusCode::UNAUTHORIZED => Verdict::Refused,
        other => panic!("unexpected status {other}"),
    }
}

/// Polls until every replica gives `expected` for `key`; how long it took.
async fn until_all(
    replicas: &[&Replica],
    key: &str,
    expected: Verdict,
    deadline: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for replica in replicas {
            all &= replica.verdict(key).await == expected;
        }
        if all {
            return start.elapsed();
        }
        if start.elapsed() > deadline {
            let seen: Vec<Verdict> = verdicts_of(replicas, key).await;
            panic!("replicas did not reach {expected:?} within {deadline:?}; they say {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn verdicts_of(replicas: &[&Replica], key: &str) -> Vec<Verdict> {
    let mut out = Vec::new();
    for replica in replicas {
        out.push(replica.verdict(key).await);
    }
    out
}

async fn until(deadline: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < deadline,
            "{what} did not happen within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn accepted(label: &str) -> Verdict {
    Verdict::Accepted(Some(label.to_owned()))
}

/// Runs `test` on a runtime of two workers, like `#[tokio::test(flavor =
/// "multi_thread", worker_threads = 2)]`, with what every thread of it logs
/// (the store's tasks run on the workers) captured at DEBUG for the test.
pub(crate) fn run<F: Future<Output = ()>>(test: impl FnOnce(Logs) -> F) {
    let logs = Logs::new(tracing::Level::DEBUG);
    let _capturing = logs.set_default();
    logs.runtime(2).block_on(test(logs.clone()));
}

/// A server of the test's own, or `None` (the test is skipped, see
/// [`common::installed_or_skip`]) without PostgreSQL's server binaries.
pub(crate) fn server() -> Option<PgServer> {
    common::installed_or_skip(pg::installed(), ".ci/postgres.sh").map(PgServer::start_with)
}

/// One test at a time: each starts its own server, and the 1 s deadlines
/// should measure the store, not several `initdb`s competing for the CPU.
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

async fn two_replicas(server: &PgServer) -> (PgKeyStore, Replica, Replica) {
    let store = PgKeyStore::new(&server.url())
        .unwrap()
        .backoff_cap(BACKOFF_CAP);
    let a = Replica::start(&store).await;
    let b = Replica::start(&store).await;
    (store, a, b)
}

#[test]
fn admin_changes_reach_both_replicas_within_a_second() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (store, a, b) = two_replicas(&server).await;
        let both = [&a, &b];
        let admin = store.admin().await.unwrap();

        let key = shown(admin.add("alice", None).await.unwrap());
        assert!(key.starts_with("sk-"), "a generated key");
        until_all(&both, &key, accepted("alice"), PROPAGATION).await;
        // The operator's api_key is not in the table and keeps working.
        until_all(&both, OPERATOR_KEY, Verdict::Accepted(None), Duration::ZERO).await;

        // Expiry moved to the past: refused; cleared again: accepted.
        admin
            .set_expiry("alice", Some(SystemTime::now() - Duration::from_secs(1)))
            .await
            .unwrap();
        until_all(&both, &key, Verdict::Refused, PROPAGATION).await;
        admin.set_expiry("alice", None).await.unwrap();
        until_all(&both, &key, accepted("alice"), PROPAGATION).await;

        // An expiry a little ahead: accepted now, refused once it passes, with
        // no notification needed at that moment (the key set knows the expiry).
        let soon = shown(
            admin
                .add("soon", Some(SystemTime::now() + Duration::from_secs(2)))
                .await
                .unwrap(),
        );
        until_all(&both, &soon, accepted("soon"), PROPAGATION).await;
        until_all(&both, &soon, Verdict::Refused, Duration::from_secs(3)).await;

        assert!(admin.revoke("alice").await.unwrap(), "first revoke revokes");
        until_all(&both, &key, Verdict::Refused, PROPAGATION).await;
        assert!(
            !admin.revoke("alice").await.unwrap(),
            "second revoke is a no-op"
        );

        // Labels are never reused, unknown labels are named.
        assert!(
            matches!(admin.add("alice", None).await, Err(StoreError::LabelTaken(l)) if l == "alice")
        );
        assert!(matches!(
            admin.revoke("nobody").await,
            Err(StoreError::UnknownLabel(_))
        ));

        let list = admin.list().await.unwrap();
        let labels: Vec<_> = list.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, ["alice", "soon"]);
        assert!(list[0].revoked_at.is_some() && !list[0].is_active(SystemTime::now()));
        let listed = format!("{list:?}");
        assert!(
            !listed.contains("sha256") && !listed.contains(&key),
            "{listed}"
        );

        // The table holds the digest only.
        let client = server.client().await;
        let stored: String = client
            .query_one(
                "SELECT key_digest FROM proxy_auth_keys WHERE label = 'alice'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, key_digest(&key));

        let status = a.handle.status();
        assert!(
            status.connected && status.changes_applied >= 5,
            "{status:?}"
        );

        // Stopping a replica's store closes its connection.
        let listeners = || async {
            client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'proxy-auth key store'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        };
        assert_eq!(listeners().await, 2);
        b.handle.stop().await;
        let start = Instant::now();
        while listeners().await != 1 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the stopped store's connection stays open"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[test]
fn plain_sql_changes_reach_both_replicas_within_a_second() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (_store, a, b) = two_replicas(&server).await;
        let both = [&a, &b];
        let sql = server.client().await;

        let digest = key_digest("sk-by-hand");
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('by-hand', $1)",
            &[&digest],
        )
        .await
        .unwrap();
        until_all(&both, "sk-by-hand", accepted("by-hand"), PROPAGATION).await;

        // Renamed: the old label goes, the new one matches.
        sql.batch_execute("UPDATE proxy_auth_keys SET label = 'renamed' WHERE label = 'by-hand'")
            .await
            .unwrap();
        until_all(&both, "sk-by-hand", accepted("renamed"), PROPAGATION).await;

        sql.batch_execute("UPDATE proxy_auth_keys SET expires_at = now() - interval '1 minute' WHERE label = 'renamed'")
        .await
        .unwrap();
        until_all(&both, "sk-by-hand", Verdict::Refused, PROPAGATION).await;
        sql.batch_execute(
        "UPDATE proxy_auth_keys SET expires_at = now() + interval '1 day' WHERE label = 'renamed'",
    )
    .await
    .unwrap();
        until_all(&both, "sk-by-hand", accepted("renamed"), PROPAGATION).await;

        sql.batch_execute("UPDATE proxy_auth_keys SET revoked_at = now() WHERE label = 'renamed'")
            .await
            .unwrap();
        until_all(&both, "sk-by-hand", Verdict::Refused, PROPAGATION).await;

        // Delete, and a bulk change in one transaction.
        sql.batch_execute(&format!(
        "BEGIN; INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('x1', '{}'), ('x2', '{}'); COMMIT;",
        key_digest("sk-x1"),
        key_digest("sk-x2")
    ))
    .await
    .unwrap();
        until_all(&both, "sk-x2", accepted("x2"), PROPAGATION).await;
        sql.batch_execute("DELETE FROM proxy_auth_keys WHERE label = 'x2'")
            .await
            .unwrap();
        until_all(&both, "sk-x2", Verdict::Refused, PROPAGATION).await;
        until_all(&both, "sk-x1", accepted("x1"), Duration::ZERO).await;

        sql.batch_execute("TRUNCATE proxy_auth_keys").await.unwrap();
        until_all(&both, "sk-x1", Verdict::Refused, PROPAGATION).await;
    })
}

#[test]
fn an_outage_keeps_the_last_set_and_reconnecting_picks_up_its_changes() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (store, a, b) = two_replicas(&server).await;
        let admin = store.admin().await.unwrap();
        let stays = shown(admin.add("stays", None).await.unwrap());
        let gone = shown(admin.add("gone", None).await.unwrap());
        let later = shown(admin.add("later", None).await.unwrap());
        admin.revoke("gone").await.unwrap();
        drop(admin);
        let both = [&a, &b];
        until_all(&both, &gone, Verdict::Refused, PROPAGATION).await;
        until_all(&both, &later, accepted("later"), PROPAGATION).await;

        // Requests flow on both replicas for the whole outage.
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let mut flows = Vec::new();
        for shared in [a.shared.clone(), b.shared.clone()] {
            let (running, sent, stays, gone) =
                (running.clone(), sent.clone(), stays.clone(), gone.clone());
            flows.push(tokio::spawn(async move {
                let mut wrong = Vec::new();
                while running.load(Ordering::Relaxed) {
                    let ok = verdict(&shared, &stays).await;
                    let refused = verdict(&shared, &gone).await;
                    if ok != accepted("stays") || refused != Verdict::Refused {
                        wrong.push((ok, refused));
                    }
                    sent.fetch_add(2, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                wrong
            }));
        }

        server.stop();
        until(
            Duration::from_secs(5),
            "both stores noticing the outage",
            || !a.handle.status().connected && !b.handle.status().connected,
        )
        .await;
        // Down for a while: several reconnection attempts fail.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.resume();

        // Revoked by hand as soon as the server is back, whether or not the
        // replicas have reconnected yet.
        let sql = server.client().await;
        sql.batch_execute("UPDATE proxy_auth_keys SET revoked_at = now() WHERE label = 'later'")
            .await
            .unwrap();
        let took = until_all(&both, &later, Verdict::Refused, BACKOFF_CAP + PROPAGATION).await;

        running.store(false, Ordering::Relaxed);
        for flow in flows {
            let wrong = flow.await.unwrap();
            assert!(
                wrong.is_empty(),
                "requests judged wrongly during the outage: {wrong:?}"
            );
        }
        assert!(sent.load(Ordering::Relaxed) > 100, "requests flowed");
        until(Duration::from_secs(1), "both stores reconnected", || {
            a.handle.status().connected && b.handle.status().connected
        })
        .await;

        // One warning per replica for this outage, naming the address.
        let address = format!("127.0.0.1:{}", server.port);
        let logs = logs.text();
        let warnings = logs
            .lines()
            .filter(|l| {
                l.contains("WARN") && l.contains("lost its database") && l.contains(&address)
            })
            .count();
        assert_eq!(warnings, 2, "expected one warning per replica:\n{logs}");
        assert!(
            !logs.contains(&stays) && !logs.contains(&later),
            "a key was logged"
        );
        eprintln!("revocation made during reconnection applied on both after {took:?}");
    })
}

#[test]
fn a_terminated_listening_connection_is_replaced_and_later_changes_arrive() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (store, a, b) = two_replicas(&server).await;
        let both = [&a, &b];
        let sql = server.client().await;
        let reloads = |r: &Replica| r.handle.status().full_reloads;
        let (a0, b0) = (reloads(&a), reloads(&b));

        let killed: i64 = sql
            .query_one(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'proxy-auth key store'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 2, "both listening connections were ended");

        // A change right after: made while the replicas reconnect.
        let admin = store.admin().await.unwrap();
        let first = shown(admin.add("first", None).await.unwrap());
        until_all(&both, &first, accepted("first"), BACKOFF_CAP + PROPAGATION).await;
        until(Duration::from_secs(5), "both stores reconnected", || {
            reloads(&a) > a0
                && reloads(&b) > b0
                && a.handle.status().connected
                && b.handle.status().connected
        })
        .await;

        // And on the new connections, notifications flow again.
        let second = shown(admin.add("second", None).await.unwrap());
        until_all(&both, &second, accepted("second"), PROPAGATION).await;
        admin.revoke("first").await.unwrap();
        until_all(&both, &first, Verdict::Refused, PROPAGATION).await;
    })
}

#[test]
fn a_connection_killed_after_every_reconnect_is_retried_with_backoff() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (_store, a, b) = two_replicas(&server).await;
        let sql = server.client().await;
        let reloads = |r: &Replica| r.handle.status().full_reloads;
        let (a0, b0) = (reloads(&a), reloads(&b));
        // A pooler that drops the store's connection as soon as it is up: for
        // 3 s, end it whenever it is there. Each connection ended is one
        // attempt of a replica (a reload may be cut short before it counts).
        let mut ended = 0usize;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            ended += sql
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = 'proxy-auth key store'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .filter(|row| row.get::<_, bool>(0))
                .count();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Without backoff each replica reconnects about every 20 ms (over 100
        // times each); with it, the delays double from 100 ms: about 5 each.
        let (a1, b1) = (reloads(&a) - a0, reloads(&b) - b0);
        assert!(a1 <= 8 && b1 <= 8, "reloads while flapping: {a1} and {b1}");
        assert!(ended <= 20, "connections ended while flapping: {ended}");
        assert!(
            ended >= 4,
            "the replicas did try again: {ended} connections ended, 2 at first"
        );
    })
}

#[test]
fn bad_rows_are_skipped_with_an_error_naming_the_label() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let store = PgKeyStore::new(&server.url()).unwrap();
        // The table exists before the replicas start (an admin created it).
        let admin = store.admin().await.unwrap();
        let good = shown(admin.add("good-before", None).await.unwrap());
        let sql = server.client().await;
        sql.batch_execute(&format!(
            "INSERT INTO proxy_auth_keys (label, key_digest) VALUES \
         ('bad-digest-short', 'sha256:1234'), \
         ('bad-digest-hex', 'sha256:{zz}'), \
         ('bad-plaintext', 'sk-plaintext-in-digest-column'), \
         (' bad-padded', '{padded}'), \
         ('', '{empty}')",
            zz = "zz".repeat(32),
            padded = key_digest("sk-padded"),
            empty = key_digest("sk-empty-label"),
        ))
        .await
        .unwrap();
        let a = Replica::start(&store).await;

        assert_eq!(a.verdict(&good).await, accepted("good-before"));
        // Never loaded, in any form.
        for key in [
            "sk-plaintext-in-digest-column",
            "sk-padded",
            "sk-empty-label",
            "sha256:1234",
        ] {
            assert_eq!(a.verdict(key).await, Verdict::Refused, "{key}");
        }
        assert_eq!(a.handle.status().keys, 1);
        let logs_now = logs.text();
        for label in [
            "bad-digest-short",
            "bad-digest-hex",
            "bad-plaintext",
            " bad-padded",
        ] {
            assert!(
                logs_now
                    .lines()
                    .any(|l| l.contains("ERROR") && l.contains(&format!("{label:?}"))),
                "no error naming {label:?}:\n{logs_now}"
            );
        }
        assert!(logs_now
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("label=\"\"") && l.contains("empty")));
        // (tokio_postgres's own debug log quotes this test's SQL; the store's
        // lines must not quote the bad value.)
        assert!(
            !logs_now
                .lines()
                .any(|l| l.contains(" proxy_auth:") && l.contains("sk-plaintext-in-digest-column")),
            "the bad value was logged:\n{logs_now}"
        );

        // A bad row arriving by notification: logged, not loaded, and the good
        // change in the same transaction still applies.
        sql.batch_execute(&format!(
            "BEGIN; \
         INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('bad-later', 'md5:abc'); \
         INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('good-later', '{}'); COMMIT;",
            key_digest("sk-good-later")
        ))
        .await
        .unwrap();
        until_all(&[&a], "sk-good-later", accepted("good-later"), PROPAGATION).await;
        until(PROPAGATION, "an error naming bad-later", || {
            logs.text()
                .lines()
                .any(|l| l.contains("ERROR") && l.contains("\"bad-later\""))
        })
        .await;
        // The status is written just after the key set it describes.
        until(PROPAGATION, "the status counts both keys", || {
            a.handle.status().keys == 2
        })
        .await;
    })
}

#[test]
fn an_unreachable_database_at_start_is_an_error_naming_its_address() {
    run(|_logs| async move {
        let _serial = serial().await;
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = PgKeyStore::new(&format!(
            "postgres://proxy:hunter2-secret@127.0.0.1:{port}/keys"
        ))
        .unwrap();
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            OPERATOR_KEY,
        ));
        shared
            .update_keys(|keys| keys.insert("existing", "sk-existing"))
            .unwrap();
        let err = store.start(shared.clone()).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(
            !message.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
            "{message}"
        );
        // Nothing changed.
        assert_eq!(verdict(&shared, "sk-existing").await, accepted("existing"));
        assert!(matches!(
            store.admin().await,
            Err(StoreError::Connect { .. })
        ));
    })
}

#[test]
fn a_change_that_sent_no_notification_is_picked_up_by_the_timer_reload() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let every = Duration::from_secs(1);
        let store = PgKeyStore::new(&server.url())
            .unwrap()
            .reload_interval(every);
        let a = Replica::start(&store).await;
        let sql = server.client().await;
        let reloads = a.handle.status().full_reloads;
        // A lost notification, simulated: the change commits with the trigger off.
        sql.batch_execute(&format!(
            "BEGIN; ALTER TABLE proxy_auth_keys DISABLE TRIGGER proxy_auth_keys_notify; \
         INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('silent', '{}'); \
         ALTER TABLE proxy_auth_keys ENABLE TRIGGER proxy_auth_keys_notify; COMMIT;",
            key_digest("sk-silent")
        ))
        .await
        .unwrap();
        until_all(&[&a], "sk-silent", accepted("silent"), every + PROPAGATION).await;
        // The status is written just after the key set it describes.
        until(PROPAGATION, "applied by a reload", || {
            a.handle.status().full_reloads > reloads
        })
        .await;
        assert_eq!(
            a.handle.status().changes_applied,
            0,
            "no notification was sent"
        );
    })
}

#[test]
fn replicas_starting_together_on_an_empty_database_all_start() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let store = PgKeyStore::new(&server.url()).unwrap();
        // Four replicas race to create the table and trigger.
        let (a, b, c, d) = tokio::join!(
            Replica::start(&store),
            Replica::start(&store),
            Replica::start(&store),
            Replica::start(&store)
        );
        let all = [&a, &b, &c, &d];
        let key = store
            .admin()
            .await
            .unwrap()
            .add("shared", None)
            .await
            .unwrap();
        until_all(&all, key.expose_secret(), accepted("shared"), PROPAGATION).await;
    })
}

#[test]
fn a_bulk_import_by_sql_is_applied_as_one_reload() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let (_store, a, b) = two_replicas(&server).await;
        let both = [&a, &b];
        let before = (
            a.handle.status().full_reloads,
            a.handle.status().changes_applied,
        );
        let rows = BATCH_LIMIT as i64 * 3;
        server
            .client()
            .await
            .execute(
                "INSERT INTO proxy_auth_keys (label, key_digest) \
             SELECT 'bulk-' || i, 'sha256:' || encode(sha256(('sk-bulk-' || i)::bytea), 'hex') \
             FROM generate_series(1, $1::int8) AS i",
                &[&rows],
            )
            .await
            .unwrap();
        let last = format!("sk-bulk-{rows}");
        until_all(&both, &last, accepted(&format!("bulk-{rows}")), PROPAGATION).await;
        until_all(&both, "sk-bulk-1", accepted("bulk-1"), Duration::ZERO).await;
        // The status is written just after the key set it describes.
        until(
            Duration::from_secs(5),
            "the status counts every key",
            || a.handle.status().keys == rows as u64,
        )
        .await;
        let status = a.handle.status();
        assert!(status.full_reloads > before.0, "{status:?}");
        assert!(
            status.changes_applied - before.1 < rows as u64,
            "not applied row by row: {status:?}"
        );
    })
}

/// A watched file and the store each replace the whole key set: on one
/// shared config, the second to start is refused, naming the first, and
/// nothing changes.
#[cfg(feature = "watch")]
#[test]
fn a_watched_file_and_the_store_on_one_shared_config_are_refused_together() {
    use proxy_auth::watch::{watch_file, WatchError};
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let store = PgKeyStore::new(&server.url()).unwrap();
        let address = format!("the PostgreSQL key store at 127.0.0.1:{}", server.port);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "auth_mode = \"strict\"\napi_key = \"sk-file\"\n[[keys]]\nlabel = \"from-file\"\nkey = \"sk-from-file\"\n",
        )
        .unwrap();
        let admin = store.admin().await.unwrap();
        let db_key = shown(admin.add("from-db", None).await.unwrap());

        // The store first, then the file.
        let a = Replica::start(&store).await;
        assert_eq!(a.verdict(&db_key).await, accepted("from-db"));
        let err = watch_file(a.shared.clone(), &path).unwrap_err();
        assert!(matches!(err, WatchError::KeysOwned { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&address) && message.contains(&path.display().to_string()),
            "{message}"
        );
        assert_eq!(a.verdict(&db_key).await, accepted("from-db"));
        assert_eq!(a.verdict("sk-from-file").await, Verdict::Refused);
        assert_eq!(a.shared.load().api_key, OPERATOR_KEY);

        // The file first, then the store.
        let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(
            ProxyAuthMode::Strict,
            OPERATOR_KEY,
        ));
        let watch = watch_file(shared.clone(), &path).unwrap();
        let err = store.start(shared.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::KeysOwned { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("the config file {}", path.display())),
            "{message}"
        );
        assert_eq!(
            verdict(&shared, "sk-from-file").await,
            accepted("from-file")
        );
        assert_eq!(verdict(&shared, &db_key).await, Verdict::Refused);

        // Once the file is no longer followed, the store may start.
        drop(watch);
        let handle = store.start(shared.clone()).await.unwrap();
        assert_eq!(verdict(&shared, &db_key).await, accepted("from-db"));
        assert_eq!(verdict(&shared, "sk-from-file").await, Verdict::Refused);
        handle.stop().await;
    })
}

/// A `/proc/self/status` field, in KiB.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Any role that can connect may NOTIFY on the store's channel: a burst of
/// 20,000 distinct 8 KB payloads (160 MB) must cost a replica bounded
/// memory and a bounded number of reloads. Alone in its own process, so
/// the peak resident size (VmHWM, reset before the burst) is this test's.
#[test]
fn a_burst_of_large_notifications_costs_bounded_memory() {
    if common::rerun_alone(
        module_path!(),
        "a_burst_of_large_notifications_costs_bounded_memory",
    ) {
        return;
    }
    // INFO, not DEBUG: the client library's debug lines are not under test
    // and would hold payloads.
    let logs = Logs::new(tracing::Level::INFO);
    let _capturing = logs.set_default();
    logs.runtime(2).block_on(async {
        let Some(server) = server() else {
            return;
        };
        let store = PgKeyStore::new(&server.url()).unwrap();
        let a = Replica::start(&store).await;
        let admin = store.admin().await.unwrap();
        let key = shown(admin.add("before", None).await.unwrap());
        until_all(&[&a], &key, accepted("before"), PROPAGATION).await;
        let sql = server.client().await;
        let before = a.handle.status();

        // Resets VmHWM to the current resident size (Linux 4.0 and later).
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let start_kib = proc_status_kib("VmHWM");
        const BURST: i32 = 20_000;
        const PAYLOAD: usize = 7990;
        // One transaction: every notification reaches the replica at commit,
        // back to back. Distinct payloads: PostgreSQL folds repeated ones.
        sql.execute(
            "SELECT count(pg_notify('proxy_auth_keys', 'INSERT ' || i || repeat('x', 7980))) \
             FROM generate_series(1, $1::int4) AS i",
            &[&BURST],
        )
        .await
        .unwrap();
        // A real change after the burst: once it is applied, the replica
        // has read the whole burst. Bounded waits; they fail only on a hang.
        admin.revoke("before").await.unwrap();
        until_all(&[&a], &key, Verdict::Refused, Duration::from_secs(120)).await;
        until(Duration::from_secs(120), "every notification read", || {
            a.handle.status().notifications > before.notifications + BURST as u64
        })
        .await;
        let grew_kib = proc_status_kib("VmHWM").saturating_sub(start_kib);
        let after = a.handle.status();
        let reloads = after.full_reloads - before.full_reloads;
        eprintln!(
            "burst of {BURST} x {PAYLOAD} B: peak resident size grew {grew_kib} KiB; {reloads} full reloads"
        );
        // 160 MB went through; the replica keeps at most 1,000 labels of
        // 256 bytes. 32 MiB is slack for the allocator and the runtime.
        assert!(
            grew_kib < 32 * 1024,
            "peak resident size grew {grew_kib} KiB for {} MB of notifications",
            BURST as usize * PAYLOAD / 1_000_000
        );
        assert!(
            reloads <= 4,
            "{reloads} full reloads for one burst: {after:?}"
        );
        assert_eq!(a.verdict(OPERATOR_KEY).await, Verdict::Accepted(None));
    })
}

/// Sends `signal` (`STOP`, `CONT`) to the server process `pid`.
fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");
}

/// Resumes a stopped backend when dropped, also when the test fails, so the
/// server can be shut down.
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// The store's backend stops answering (SIGSTOP) while its host and the
/// postmaster stay up: TCP keepalives are answered by the kernel, so only
/// the store's own timeouts can tell. The stated bound is 10 s to give up
/// the connection, then one connect and one reload; the wait below is
/// twice that plus slack, for a loaded machine, and fails only well past
/// the promise (the store used to take 70 s and more).
#[test]
fn a_stalled_backend_is_replaced_and_a_revocation_applies_within_the_bound() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        // Defaults: the bound under test is the documented one.
        let store = PgKeyStore::new(&server.url()).unwrap();
        let a = Replica::start(&store).await;
        let admin = store.admin().await.unwrap();
        let key = shown(admin.add("stalled", None).await.unwrap());
        until_all(&[&a], &key, accepted("stalled"), PROPAGATION).await;

        let sql = server.client().await;
        let pid: i32 = sql
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'proxy-auth key store'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        signal(pid, "STOP");
        let resume = Resume(pid);
        admin.revoke("stalled").await.unwrap();
        let took = until_all(&[&a], &key, Verdict::Refused, Duration::from_secs(25)).await;
        eprintln!("revoked while the backend was stopped; refused after {took:?}");
        until(Duration::from_secs(10), "the store reconnected", || {
            a.handle.status().connected
        })
        .await;

        // Resumed, the old backend finds its client gone; the new
        // connection follows changes as usual.
        drop(resume);
        let later = shown(admin.add("later", None).await.unwrap());
        until_all(&[&a], &later, accepted("later"), PROPAGATION).await;
        let logs = logs.text();
        assert!(
            logs.lines()
                .any(|l| l.contains("WARN") && l.contains("lost its database")),
            "{logs}"
        );
        assert!(
            !logs.contains(&key) && !logs.contains(&later),
            "a key was logged"
        );
    })
}

/// `sha256:<hex>` and `SHA256:<HEX>` are one key. On a table made before
/// the store normalized digests, two rows holding it in the two spellings
/// are one error naming both, never an active key, and revoking one of
/// them keeps the key refused through every later full reload. On the
/// upgraded table, a new row's digest is stored lowercase, so a second
/// spelling of it is refused by the table itself.
#[test]
fn two_spellings_of_one_digest_are_one_key_and_revoking_either_holds() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let sql = server.client().await;
        // The table as the previous version created it.
        sql.batch_execute(
            "CREATE TABLE proxy_auth_keys (id bigserial PRIMARY KEY, label text NOT NULL UNIQUE, \
             key_digest text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now(), \
             expires_at timestamptz, revoked_at timestamptz)",
        )
        .await
        .unwrap();
        let lower = key_digest("sk-twice");
        let upper = format!("SHA256:{}", lower[7..].to_uppercase());
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('lower-row', $1), ('upper-row', $2)",
            &[&lower, &upper],
        )
        .await
        .unwrap();

        let store = PgKeyStore::new(&server.url())
            .unwrap()
            .reload_interval(Duration::from_secs(1));
        let a = Replica::start(&store).await;
        assert_eq!(a.verdict("sk-twice").await, Verdict::Refused);
        assert_eq!(a.handle.status().keys, 0);
        let text = logs.text();
        assert!(
            text.lines().any(|l| l.contains("ERROR")
                && l.contains("same key")
                && l.contains("\"lower-row\"")
                && l.contains("\"upper-row\"")),
            "no error naming both rows:\n{text}"
        );
        assert!(!text.contains(&lower[7..]) && !text.contains(&upper[7..]));

        // Revoke one; the other holds the revoked key and stays refused,
        // through full reloads of the timer and of a replica starting anew.
        sql.batch_execute(
            "UPDATE proxy_auth_keys SET revoked_at = now() WHERE label = 'lower-row'",
        )
        .await
        .unwrap();
        let reloads = a.handle.status().full_reloads;
        until(Duration::from_secs(10), "two full reloads", || {
            a.handle.status().full_reloads >= reloads + 2
        })
        .await;
        assert_eq!(a.verdict("sk-twice").await, Verdict::Refused);
        let b = Replica::start(&store).await;
        assert_eq!(b.verdict("sk-twice").await, Verdict::Refused);
        // A key revoked under its only label, for the upgraded table below.
        let single = key_digest("sk-single");
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest, revoked_at) VALUES ('single', $1, now())",
            &[&single],
        )
        .await
        .unwrap();
        let stored: String = sql
            .query_one(
                "SELECT key_digest FROM proxy_auth_keys WHERE label = 'upper-row'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, upper, "a pair that collides is left as it is");

        // The upgraded table stores digests lowercase: the UNIQUE constraint
        // refuses a second spelling of a key, here of a revoked one.
        let shouted = format!("SHA256:{}", single[7..].to_uppercase());
        let refused = sql
            .execute(
                "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('single-again', $1)",
                &[&shouted],
            )
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            "{refused}"
        );
        let fresh = key_digest("sk-fresh");
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('fresh', $1)",
            &[&format!("SHA256:{}", fresh[7..].to_uppercase())],
        )
        .await
        .unwrap();
        let stored: String = sql
            .query_one(
                "SELECT key_digest FROM proxy_auth_keys WHERE label = 'fresh'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, fresh, "normalized on the way in");
        until_all(&[&a, &b], "sk-fresh", accepted("fresh"), PROPAGATION).await;
        until_all(&[&a, &b], "sk-twice", Verdict::Refused, Duration::ZERO).await;
    })
}

/// The built `keys` CLI against a real server: every bad argument is a
/// clear usage error (status 2, never a panic), labels are plain printable
/// text, and labels written into the table by hand are printed escaped by
/// `list` and skipped by replicas with an error that names them escaped.
#[test]
fn the_keys_cli_checks_every_argument_and_prints_labels_escaped() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let binary = common::example_binary("keys");
        let url = server.url();
        let cli = |args: &[&str]| {
            std::process::Command::new(&binary)
                .env_clear()
                .env("PROXY_DATABASE_URL", &url)
                .args(args)
                .output()
                .unwrap()
        };
        let raw = ['\u{1b}', '\u{200b}', '\u{202e}', '\u{2066}'];
        for (args, says) in [
            (
                &["add", "alice", "--expires-in", "20000000000000"][..],
                "more than 100 years",
            ),
            (
                &["add", "alice", "--expires-in=99999999999999999999"],
                "not a whole number",
            ),
            (
                &["add", "alice", "--expires-in"],
                "--expires-in needs a value",
            ),
            (
                &["add", "alice", "--expires-in", "soon"],
                "not a whole number",
            ),
            (
                &["add", "alice", "--expires-in", "-5"],
                "not a whole number",
            ),
            (
                &["add", "alice", "--expires-in=60", "--expires-in", "1"],
                "given twice",
            ),
            (&["add", "alice", "--bogus"], "unknown option \"--bogus\""),
            (&["add", "--bogus=\u{1b}[2J", "alice"], "unknown option"),
            (&["add"], "add needs a label"),
            (&["add", "alice", "bob"], "one label"),
            (&["revoke"], "revoke needs the label"),
            (&["revoke", "alice", "--force"], "one label and no options"),
            (&["list", "extra"], "list takes no arguments"),
            (&["frobnicate"], "unknown command"),
            (&[], "no command given"),
            (&["add", "ali\u{200b}ce"], "plain printable text"),
            (&["add", "\u{202e}ecila"], "bidirectional"),
            (&["add", "a\u{2066}b"], "bidirectional"),
            (&["add", "\u{1b}[2J\u{1b}[Hroot"], "control"),
        ] {
            let out = cli(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert!(
                !stderr.contains(raw),
                "{args:?} printed a raw character: {stderr:?}"
            );
        }
        let out = cli(&["list"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("0 keys"));

        // Rows written by hand, beside a good one.
        let sql = server.client().await;
        let hand = [
            ("\u{1b}[2J\u{1b}[Hevil", "sk-evil"),
            ("ali\u{200b}ce", "sk-zero-width"),
            ("\u{202e}gpj.exe", "sk-bidi"),
            ("good", "sk-good"),
        ];
        for (label, key) in hand {
            sql.execute(
                "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ($1, $2)",
                &[&label, &key_digest(key)],
            )
            .await
            .unwrap();
        }
        let out = cli(&["list"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            !stdout.contains(raw),
            "list printed a raw character: {stdout:?}"
        );
        for shown in [
            "\\u{1b}[2J\\u{1b}[Hevil",
            "ali\\u{200b}ce",
            "\\u{202e}gpj.exe",
            "good",
        ] {
            assert!(stdout.contains(shown), "{shown} not in:\n{stdout}");
        }
        let a = Replica::start(&PgKeyStore::new(&url).unwrap()).await;
        assert_eq!(a.verdict("sk-good").await, accepted("good"));
        for (_, key) in &hand[..3] {
            assert_eq!(a.verdict(key).await, Verdict::Refused, "{key}");
        }
        let text = logs.text();
        assert!(!text.contains(raw), "a raw character was logged");
        for shown in [
            "\\u{1b}[2J\\u{1b}[Hevil",
            "ali\\u{200b}ce",
            "\\u{202e}gpj.exe",
        ] {
            assert!(
                text.lines().any(|l| l.contains("ERROR")
                    && l.contains(shown)
                    && l.contains("plain printable text")),
                "no error naming {shown}:\n{text}"
            );
        }

        // The admin API refuses an expiry past the year 9999 (the client
        // would overflow on it); a good add goes through the CLI.
        let admin = PgKeyStore::new(&url).unwrap().admin().await.unwrap();
        let far = std::time::UNIX_EPOCH + Duration::from_secs(20_000_000_000_000);
        assert!(matches!(
            admin.add("far", Some(far)).await,
            Err(StoreError::ExpiryOutOfRange)
        ));
        assert!(matches!(
            admin.set_expiry("good", Some(far)).await,
            Err(StoreError::ExpiryOutOfRange)
        ));
        let out = cli(&["add", "alice", "--expires-in", "86400"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let key = stdout.lines().last().unwrap().to_owned();
        until_all(&[&a], &key, accepted("alice"), PROPAGATION).await;
    })
}
