//! Keys' scopes and limits carried by the PostgreSQL key store, against a
//! real server (see `tests/it/pg.rs`): a policy issued with the built
//! `keys` CLI is enforced by two replicas (two stores on two shared
//! configs), `keys set` changes one field and keeps the others and the
//! key's rate state, a row with a bad policy written by hand opens no key,
//! and replicas starting together on a table of the previous version add
//! the policy columns without error.
//!
//! Propagation is awaited with a bound that only catches a hang
//! ([`HANG`]); the time it took is printed, not asserted (the store's
//! promise of 1 s is measured by `benches/postgres.rs` and asserted on an
//! idle machine by `postgres::admin_changes_reach_both_replicas_within_a_second`).

#![cfg(feature = "postgres")]

use std::convert::Infallible;
use std::process::Output;
use std::time::{Duration, Instant};

use http::{Request, Response};
use proxy_auth::postgres::PgKeyStore;
use proxy_auth::{key_digest, ClientAddr, ModelBody, ProxyAuthLayer};
use tower::Layer;

use crate::common::{self, answer, Logs};
use crate::pg::PgServer;
use crate::postgres::{run, serial, server, Replica};

/// Long enough that only a hang (a change that never arrives) fails.
const HANG: Duration = Duration::from_secs(30);

const TEAM_POLICY: [&str; 12] = [
    "--models",
    "gpt-4o*,claude-3-5-*",
    "--routes",
    "/v1/chat/completions",
    "--allowed-ips",
    "10.0.0.0/8",
    "--rpm",
    "60",
    "--burst",
    "10",
    "--max-concurrent",
    "2",
];

/// The built `keys` example against `server`.
fn keys_cli(server: &PgServer, args: &[&str]) -> Output {
    std::process::Command::new(common::example_binary("keys"))
        .env_clear()
        .env("PROXY_DATABASE_URL", server.url())
        .args(args)
        .output()
        .expect("the keys example runs")
}

/// A key the store generated, as the client that was handed it sends it.
fn shown(key: proxy_auth::ApiKey) -> String {
    key.expose_secret().to_owned()
}

/// `keys add`: the key, from the last line of stdout.
fn cli_add(server: &PgServer, label: &str, policy: &[&str]) -> String {
    let mut args = vec!["add", label];
    args.extend_from_slice(policy);
    let out = keys_cli(server, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().expect("the key").to_owned()
}

/// `keys list`'s line for `label`.
fn listed(server: &PgServer, label: &str) -> String {
    let out = keys_cli(server, &["list"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|line| line.starts_with(&format!("{label} ")))
        .unwrap_or_else(|| panic!("{label} not listed"))
        .to_owned()
}

/// A chat completion for `model` on `path` from `peer`, through a layer
/// over the replica's shared config that reads bodies: the status a client
/// of that replica would get (200, 401, 403 for a scope, 429 for a limit).
async fn ask(replica: &Replica, key: &str, peer: &str, path: &str, model: &str) -> u16 {
    let layer = ProxyAuthLayer::from_shared(replica.shared.clone()).read_model_bodies(1 << 20);
    let inner = tower::service_fn(|_: Request<ModelBody<String>>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    });
    let mut request = Request::post(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"model":"{model}","messages":[]}}"#))
        .expect("a valid request");
    request
        .extensions_mut()
        .insert(ClientAddr(peer.parse().expect("a socket address")));
    answer(layer.layer(inner), request).await.status.as_u16()
}

const CHAT: &str = "/v1/chat/completions";
const INSIDE: &str = "10.1.2.3:40000";

/// Polls until `done` holds; how long it took. Fails only past [`HANG`].
async fn within_hang<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < HANG, "{what}: not within {HANG:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Error lines of the store (target `proxy_auth`) naming `label` as the
/// `label` field spells it (escaped).
fn errors_naming(logs: &Logs, label: &str) -> usize {
    let field = format!("label={label:?}");
    logs.text()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains(" proxy_auth:") && l.contains(&field))
        .count()
}

#[test]
fn a_policy_issued_with_the_cli_is_enforced_by_both_replicas() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let store = PgKeyStore::new(&server.url()).unwrap();
        let (a, b) = (Replica::start(&store).await, Replica::start(&store).await);

        // Built (if it is not yet) before the clock starts.
        common::example_binary("keys");
        let sent = Instant::now();
        let key = cli_add(&server, "team-a", &TEAM_POLICY);
        let cli_done = sent.elapsed();
        let took = within_hang("team-a on both replicas", || async {
            ask(&a, &key, INSIDE, CHAT, "gpt-4o-mini").await == 200
                && ask(&b, &key, INSIDE, CHAT, "gpt-4o-mini").await == 200
        })
        .await;
        println!("team-a in force on both replicas {took:?} after the CLI exited ({cli_done:?} for the CLI itself)");

        for replica in [&a, &b] {
            // Each scope, on each replica.
            assert_eq!(
                ask(replica, &key, INSIDE, CHAT, "claude-3-5-sonnet").await,
                200
            );
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-3.5-turbo").await, 403);
            assert_eq!(
                ask(replica, &key, INSIDE, "/v1/embeddings", "gpt-4o").await,
                403
            );
            assert_eq!(
                ask(replica, &key, "192.168.1.9:5000", CHAT, "gpt-4o").await,
                403
            );
            // The rate: 10 back to back (two spent above, plus the polls
            // that found the key), then refused, refilling one a second.
            let start = Instant::now();
            let mut accepted = 0;
            let mut refused = 0;
            for _ in 0..40 {
                match ask(replica, &key, INSIDE, CHAT, "gpt-4o").await {
                    200 => accepted += 1,
                    429 => refused += 1,
                    other => panic!("status {other}"),
                }
            }
            let refill = start.elapsed().as_secs() + 1;
            assert!(refused > 0, "the burst of 10 never ran out");
            assert!(
                accepted <= 10 + refill,
                "{accepted} accepted, more than the burst plus {refill} refilled"
            );
        }
        assert!(
            listed(&server, "team-a").ends_with(
                "models=gpt-4o*,claude-3-5-* routes=/v1/chat/completions \
                 allowed-ips=10.0.0.0/8 rpm=60 burst=10 max-concurrent=2"
            ),
            "{}",
            listed(&server, "team-a")
        );
    })
}

#[test]
fn keys_set_changes_one_field_and_keeps_the_others_and_the_rate_state() {
    run(|_logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        // A full reload (timer, reconnect) every second as well: the state
        // must survive both paths, a notification's and a reload's.
        let store = PgKeyStore::new(&server.url())
            .unwrap()
            .reload_interval(Duration::from_secs(1));
        let (a, b) = (Replica::start(&store).await, Replica::start(&store).await);
        // One request a minute after a burst of 2: nothing refills during
        // the test, so a fresh burst would show.
        let key = cli_add(
            &server,
            "slow",
            &[
                "--models",
                "gpt-4o*",
                "--routes",
                CHAT,
                "--allowed-ips",
                "10.0.0.0/8",
                "--rpm",
                "1",
                "--burst",
                "2",
            ],
        );
        for replica in [&a, &b] {
            within_hang("slow on the replica", || async {
                ask(replica, &key, INSIDE, CHAT, "o1-mini").await == 403
            })
            .await;
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 200);
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 200);
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 429);
        }

        // An unrelated field: the models. The replicas' limiter is the
        // same (same limits), and the key at its burst stays refused.
        let out = keys_cli(&server, &["set", "slow", "--models", "gpt-4o*,o1*"]);
        assert!(out.status.success(), "{out:?}");
        for replica in [&a, &b] {
            // o1-mini goes from 403 (its model) to 429 (its rate): the
            // change is in force, and the debt is still there.
            let took = within_hang("the models change", || async {
                ask(replica, &key, INSIDE, CHAT, "o1-mini").await != 403
            })
            .await;
            println!("models change in force {took:?} after the CLI exited");
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "o1-mini").await, 429);
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 429);
            // The other fields were kept.
            assert_eq!(
                ask(replica, &key, INSIDE, "/v1/embeddings", "gpt-4o").await,
                403
            );
            assert_eq!(
                ask(replica, &key, "192.168.1.9:5000", CHAT, "gpt-4o").await,
                403
            );
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "claude-3-opus").await, 403);
        }
        let line = listed(&server, "slow");
        assert!(
            line.ends_with("models=gpt-4o*,o1* routes=/v1/chat/completions allowed-ips=10.0.0.0/8 rpm=1 burst=2"),
            "{line}"
        );

        // A field of the limits themselves (max_concurrent): the limiter
        // is rebuilt with the label's rate state carried over.
        let before = [
            a.handle.status().changes_applied,
            b.handle.status().changes_applied,
        ];
        let out = keys_cli(&server, &["set", "slow", "--max-concurrent", "3"]);
        assert!(out.status.success(), "{out:?}");
        for (replica, before) in [&a, &b].into_iter().zip(before) {
            within_hang("the max_concurrent change", || async {
                replica.handle.status().changes_applied > before
            })
            .await;
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 429);
        }
        // Two full reloads later, still at its burst.
        for replica in [&a, &b] {
            let reloads = replica.handle.status().full_reloads;
            within_hang("two full reloads", || async {
                replica.handle.status().full_reloads >= reloads + 2
            })
            .await;
            assert_eq!(ask(replica, &key, INSIDE, CHAT, "gpt-4o").await, 429);
        }

        // `none` clears: burst alone cannot be cleared of its rpm...
        let out = keys_cli(&server, &["set", "slow", "--rpm", "none"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("burst without an rpm"), "{stderr}");
        assert!(listed(&server, "slow").contains("rpm=1 burst=2"));
        // ... both together lift the rate limit, on both replicas.
        let out = keys_cli(
            &server,
            &["set", "slow", "--rpm", "none", "--burst", "none"],
        );
        assert!(out.status.success(), "{out:?}");
        for replica in [&a, &b] {
            within_hang("the rate limit lifted", || async {
                ask(replica, &key, INSIDE, CHAT, "gpt-4o").await == 200
            })
            .await;
            assert_eq!(
                ask(replica, &key, INSIDE, "/v1/embeddings", "gpt-4o").await,
                403
            );
        }
        assert!(listed(&server, "slow").ends_with("allowed-ips=10.0.0.0/8 max-concurrent=3"));
    })
}

#[test]
fn a_row_with_a_bad_policy_written_by_hand_opens_no_key() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        // Full reloads every second, to show each bad row is logged once,
        // not at every reload.
        let store = PgKeyStore::new(&server.url())
            .unwrap()
            .reload_interval(Duration::from_secs(1));
        let admin = store.admin().await.unwrap();
        let sql = server.client().await;
        let insert =
            "INSERT INTO proxy_auth_keys (label, key_digest, models, routes, allowed_ips) \
             VALUES ($1, $2, $3, $4, $5)";
        let list = |items: &[&str]| Some(items.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let none: Option<Vec<String>> = None;
        // Before the replica starts (its first load) ...
        sql.execute(
            insert,
            &[
                &"bad-cidr",
                &key_digest("sk-bad-cidr"),
                &none,
                &none,
                &list(&["10.0.0.0/33"]),
            ],
        )
        .await
        .unwrap();
        sql.execute(
            insert,
            &[
                &"bad \"model\"",
                &key_digest("sk-bad-model"),
                &list(&["gpt-*-mini"]),
                &none,
                &none,
            ],
        )
        .await
        .unwrap();
        let good = admin.add("good", None).await.unwrap();
        let replica = Replica::start(&store).await;
        // ... and after (a notification).
        sql.execute(
            insert,
            &[
                &"bad-route",
                &key_digest("sk-bad-route"),
                &none,
                &list(&["v1/chat"]),
                &none,
            ],
        )
        .await
        .unwrap();
        // A good key whose policy turns bad: refused, neither kept with its
        // old policy nor loaded without one.
        let turned = shown(
            admin
                .add_with_policy(
                    "turned-bad",
                    None,
                    &proxy_auth::postgres::KeyPolicy::new().allowed_ips(["10.0.0.0/8"]),
                )
                .await
                .unwrap(),
        );
        within_hang("turned-bad accepted", || async {
            ask(&replica, &turned, INSIDE, CHAT, "gpt-4o").await == 200
        })
        .await;
        sql.execute(
            "UPDATE proxy_auth_keys SET allowed_ips = '{10.0.0.0/8,not-an-address}' WHERE label = 'turned-bad'",
            &[],
        )
        .await
        .unwrap();
        within_hang("turned-bad refused", || async {
            ask(&replica, &turned, INSIDE, CHAT, "gpt-4o").await == 401
        })
        .await;

        // Limits the table's checks refuse, from a table whose checks were
        // dropped (written before they existed): the checks are added back
        // by the next start without failing on these rows, and the rows are
        // refused all the same.
        sql.batch_execute(
            "ALTER TABLE proxy_auth_keys DROP CONSTRAINT proxy_auth_keys_rpm_range, \
               DROP CONSTRAINT proxy_auth_keys_burst_needs_rpm",
        )
        .await
        .unwrap();
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest, rpm) VALUES ('negative-rpm', $1, -5)",
            &[&key_digest("sk-negative-rpm")],
        )
        .await
        .unwrap();
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest, burst) VALUES ('burst-alone', $1, 5)",
            &[&key_digest("sk-burst-alone")],
        )
        .await
        .unwrap();
        let second = Replica::start(&store).await;
        let restored: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'proxy_auth_keys'::regclass \
                 AND conname IN ('proxy_auth_keys_rpm_range', 'proxy_auth_keys_burst_needs_rpm')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(restored, 2, "the dropped checks are back");

        let bad = [
            ("bad-cidr", "sk-bad-cidr", "10.0.0.0/33"),
            ("bad \"model\"", "sk-bad-model", "gpt-*-mini"),
            ("bad-route", "sk-bad-route", "v1/chat"),
            ("turned-bad", turned.as_str(), "not-an-address"),
            ("negative-rpm", "sk-negative-rpm", "negative"),
            ("burst-alone", "sk-burst-alone", "burst is set without rpm"),
        ];
        // A few full reloads on the first replica since the last change.
        let reloads = replica.handle.status().full_reloads;
        within_hang("three more full reloads", || async {
            replica.handle.status().full_reloads >= reloads + 3
        })
        .await;
        for (label, key, _) in bad {
            // Refused (401: no such key), from anywhere, for any model.
            for r in [&replica, &second] {
                assert_eq!(ask(r, key, INSIDE, CHAT, "gpt-4o").await, 401, "{label}");
                assert_eq!(
                    ask(r, key, "192.168.1.9:1", "/v1/models", "x").await,
                    401,
                    "{label}"
                );
            }
        }
        assert_eq!(
            ask(&replica, good.expose_secret(), INSIDE, CHAT, "gpt-4o").await,
            200
        );
        assert_eq!(
            ask(&second, good.expose_secret(), INSIDE, CHAT, "gpt-4o").await,
            200
        );
        assert_eq!(replica.handle.status().keys, 1);
        assert_eq!(second.handle.status().keys, 1);

        // One error per bad row and replica (the second replica logs its
        // own); each names the label escaped, and says what is wrong.
        let text = logs.text();
        for (label, _, problem) in bad {
            assert_eq!(errors_naming(&logs, label), 2, "{label}:\n{text}");
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("label={label:?}")) && l.contains(problem)),
                "no error saying {problem} for {label}:\n{text}"
            );
        }
        // No key and no digest in the store's lines.
        for (_, key, _) in bad {
            let digest = key_digest(key);
            assert!(
                !text
                    .lines()
                    .any(|l| l.contains(" proxy_auth:")
                        && (l.contains(key) || l.contains(&digest[7..]))),
                "a key or digest was logged:\n{text}"
            );
        }
    })
}

#[test]
fn replicas_starting_together_on_a_table_of_the_previous_version_add_the_policy_columns() {
    run(|logs| async move {
        let _serial = serial().await;
        let Some(server) = server() else {
            return;
        };
        let sql = server.client().await;
        // The table as the version before policies made it (its trigger
        // included), with a key in it.
        sql.batch_execute(
            "CREATE TABLE proxy_auth_keys (
                 id          bigserial   PRIMARY KEY,
                 label       text        NOT NULL UNIQUE,
                 key_digest  text        NOT NULL UNIQUE,
                 created_at  timestamptz NOT NULL DEFAULT now(),
                 expires_at  timestamptz,
                 revoked_at  timestamptz
             );
             CREATE FUNCTION proxy_auth_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_notify('proxy_auth_keys', TG_OP || ' ' || NEW.label);
                 RETURN NULL;
             END $$;
             CREATE TRIGGER proxy_auth_keys_notify AFTER INSERT OR UPDATE ON proxy_auth_keys
                 FOR EACH ROW EXECUTE FUNCTION proxy_auth_keys_notify();",
        )
        .await
        .unwrap();
        sql.execute(
            "INSERT INTO proxy_auth_keys (label, key_digest) VALUES ('old', $1)",
            &[&key_digest("sk-old-key")],
        )
        .await
        .unwrap();

        // Four replicas, each with a store (a connection) of its own, race
        // to upgrade it.
        let url = server.url();
        let stores: Vec<PgKeyStore> = (0..4).map(|_| PgKeyStore::new(&url).unwrap()).collect();
        let started = futures_util::future::join_all(stores.iter().map(|store| async {
            let shared =
                proxy_auth::SharedSecurityConfig::new(proxy_auth::ProxySecurityConfig::new(
                    proxy_auth::ProxyAuthMode::Strict,
                    "sk-operator-key",
                ));
            store
                .start(shared.clone())
                .await
                .map(|handle| Replica { shared, handle })
        }))
        .await;
        let replicas: Vec<Replica> = started
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("a replica failed to start: {e}")))
            .collect();
        let text = logs.text();
        assert!(
            !text
                .lines()
                .any(|l| l.contains(" proxy_auth:") && (l.contains("ERROR") || l.contains("WARN"))),
            "{text}"
        );
        let columns: Vec<(String, String)> = sql
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = 'proxy_auth_keys' AND ordinal_position > 6 ORDER BY ordinal_position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let expected = [
            ("models", "ARRAY"),
            ("routes", "ARRAY"),
            ("allowed_ips", "ARRAY"),
            ("rpm", "integer"),
            ("burst", "integer"),
            ("max_concurrent", "integer"),
        ]
        .map(|(c, t)| (c.to_owned(), t.to_owned()));
        assert_eq!(columns, expected);
        let checks: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'proxy_auth_keys'::regclass AND contype = 'c'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            checks, 7,
            "three list checks, three range checks, burst needs rpm"
        );

        // The old key has no policy and works on every replica; a policy
        // given to it through the upgraded table reaches all of them.
        for replica in &replicas {
            assert_eq!(
                ask(
                    replica,
                    "sk-old-key",
                    "192.168.1.9:1",
                    "/v1/embeddings",
                    "any"
                )
                .await,
                200
            );
        }
        let out = keys_cli(&server, &["set", "old", "--allowed-ips", "10.0.0.0/8"]);
        assert!(out.status.success(), "{out:?}");
        for replica in &replicas {
            within_hang("the old key's new policy", || async {
                ask(replica, "sk-old-key", "192.168.1.9:1", CHAT, "gpt-4o").await == 403
            })
            .await;
            assert_eq!(
                ask(replica, "sk-old-key", INSIDE, CHAT, "gpt-4o").await,
                200
            );
        }
        // A plain CHECK refuses what it can without parsing.
        let err = sql
            .execute(
                "UPDATE proxy_auth_keys SET rpm = 0 WHERE label = 'old'",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
        let err = sql
            .execute(
                "UPDATE proxy_auth_keys SET models = '{}' WHERE label = 'old'",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        );
    })
}

/// Every bad policy argument is a usage error (status 2, never a panic)
/// found before the database is asked: here there is none to ask.
#[test]
fn the_keys_cli_refuses_every_bad_policy_argument_before_connecting() {
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    };
    let binary = common::example_binary("keys");
    for (args, says) in [
        (
            &["add", "a", "--allowed-ips", "10.0.0.0/33"][..],
            "prefix length",
        ),
        (
            &["add", "a", "--allowed-ips", "not-an-address"],
            "not an address",
        ),
        (&["add", "a", "--models", "gpt-*-mini"], "gpt-*-mini"),
        (&["add", "a", "--routes", "v1/chat"], "v1/chat"),
        (&["add", "a", "--models", "a,,b"], "empty item"),
        (&["add", "a", "--models="], "empty item"),
        (&["add", "a", "--burst", "5"], "burst is set without rpm"),
        (&["add", "a", "--rpm", "0"], "would refuse every request"),
        (&["add", "a", "--rpm", "1000001"], "from 1 to 1000000"),
        (&["add", "a", "--rpm", "-1"], "from 1 to 1000000"),
        (&["add", "a", "--rpm", "none"], "leave --rpm out"),
        (&["add", "a", "--rpm", "1", "--rpm", "2"], "given twice"),
        (&["add", "a", "--max-concurrent"], "needs a value"),
        (&["set", "a"], "at least one field"),
        (&["set", "a", "--expires-in", "60"], "unknown option"),
        (
            &["set", "a", "--allowed-ips", "10.0.0.0/8,300.0.0.1"],
            "300.0.0.1",
        ),
        (&["set", "a", "--models", "x*y*"], "x*y*"),
        (&["set", "a", "--burst", "abc"], "not a whole number"),
        (&["set", "--rpm", "5"], "needs a label"),
    ] {
        let out = std::process::Command::new(&binary)
            .env_clear()
            .env("PROXY_DATABASE_URL", &unreachable)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
