//! The PostgreSQL key store at scale, against a real server started here
//! (see `tests/it/pg.rs`; needs `.ci/postgres.sh` or PostgreSQL server
//! binaries).
//!
//! 1. start-up: `PgKeyStore::start` with 100,000 rows in the table, until
//!    every key is in force; live heap per key afterwards (a counting
//!    allocator: bytes allocated and not freed, over the key count);
//! 2. propagation: on two replicas, from sending a change (the admin
//!    connection's INSERT or UPDATE, commit included) to the other replica's
//!    layer giving the new verdict; p50/p99 over the changes;
//! 3. request path: the layer with a store-filled key set next to the same
//!    layer with a plain `KeySet` of the same keys, paired rounds;
//! 4. start-up again with every row given a policy (models, routes,
//!    allowed IPs, rpm, burst, max_concurrent): the load time and heap per
//!    key of keys with scopes and limits, beside step 1's keys without.
//!
//! ```text
//! cargo bench --bench postgres --features postgres
//! PG_BENCH_KEYS=100000 PG_BENCH_CHANGES=200 cargo bench --bench postgres --features postgres
//! ```

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/it/pg.rs"]
mod pg;

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use proxy_auth::postgres::PgKeyStore;
use proxy_auth::{
    key_digest, ClientAddr, KeySet, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
    SharedSecurityConfig,
};
use tower::{Layer, Service};

/// Live heap bytes (allocated minus freed), process-wide.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is an atomic add, which cannot allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const OPERATOR_KEY: &str = "sk-operator";

fn bench_key(i: u64) -> String {
    format!("sk-bench-{i}")
}

fn shared() -> SharedSecurityConfig {
    SharedSecurityConfig::new(ProxySecurityConfig::new(
        ProxyAuthMode::Strict,
        OPERATOR_KEY,
    ))
}

/// The layer's verdict, polled directly (the inner service is ready at
/// once, so one poll completes it).
fn accepts(shared: &SharedSecurityConfig, key: &str) -> bool {
    let mut service =
        ProxyAuthLayer::from_shared(shared.clone()).layer(tower::service_fn(|_: Request<()>| {
            ready(Ok::<_, Infallible>(Response::new(())))
        }));
    status(&mut service, key) == StatusCode::OK
}

fn status<S, B>(service: &mut S, key: &str) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut request = Request::get("/v1/models")
        .header("x-api-key", key)
        .body(())
        .expect("valid request");
    // Inside the policies' `allowed_ips` (step 4); no effect on other keys.
    request
        .extensions_mut()
        .insert(ClientAddr(([10, 0, 0, 1], 40_000).into()));
    match pin!(service.call(request)).poll(&mut cx) {
        Poll::Ready(Ok(response)) => response.status(),
        _ => unreachable!("the inner service is always ready"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    if !common::selected("postgres") || std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys = common::env_or("PG_BENCH_KEYS", 100_000);
    let changes = common::env_or("PG_BENCH_CHANGES", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let server = pg::PgServer::start();
    runtime.block_on(run(&server, keys, changes));
}

async fn run(server: &pg::PgServer, keys: u64, changes: u64) {
    let store = PgKeyStore::new(&server.url()).expect("test URL");
    let admin = store.admin().await.expect("admin connection");
    let sql = server.client().await;
    // Digests computed by the server: the same `sha256:<hex>` that
    // `key_digest` produces, so the bench keys really authenticate.
    sql.execute(
        "INSERT INTO proxy_auth_keys (label, key_digest) \
         SELECT 'bench-' || i, 'sha256:' || encode(sha256(('sk-bench-' || i)::bytea), 'hex') \
         FROM generate_series(0, $1::int8 - 1) AS i",
        &[&(keys as i64)],
    )
    .await
    .expect("bench rows inserted");
    sql.batch_execute("VACUUM ANALYZE proxy_auth_keys")
        .await
        .expect("vacuum");

    // 1. Start-up load.
    println!("# postgres key store ({keys} keys, {changes} changes each way)");
    start_up(&store, keys, "keys without policies").await;

    // 2. Propagation between two replicas with the full set loaded.
    let (a, b) = (shared(), shared());
    let handle_a = store.start(a.clone()).await.expect("replica a");
    let handle_b = store.start(b.clone()).await.expect("replica b");
    let mut added = Vec::new();
    let mut revoked = Vec::new();
    for i in 0..changes {
        let label = format!("change-{i}");
        let sent = Instant::now();
        let key = admin.add(&label, None).await.expect("add");
        while !accepts(&b, key.expose_secret()) {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "{label} never arrived"
            );
            tokio::task::yield_now().await;
        }
        added.push(sent.elapsed());
        let sent = Instant::now();
        admin.revoke(&label).await.expect("revoke");
        while accepts(&b, key.expose_secret()) {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "{label} never revoked"
            );
            tokio::task::yield_now().await;
        }
        revoked.push(sent.elapsed());
    }
    for (what, mut samples) in [("add -> accepted", added), ("revoke -> refused", revoked)] {
        samples.sort();
        println!(
            "propagation {what} on the other replica: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes (goal p99 < 250 ms)",
            percentile(&samples, 0.50).as_secs_f64() * 1e3,
            percentile(&samples, 0.99).as_secs_f64() * 1e3,
            samples[samples.len() - 1].as_secs_f64() * 1e3,
            samples.len()
        );
    }
    let status = handle_a.status();
    println!(
        "replica a: {} keys, {} full reloads, {} labels applied from notifications",
        status.keys, status.full_reloads, status.changes_applied
    );

    // 3. Request path: the store's key set against a plain one.
    let mut plain_keys = KeySet::new();
    for i in 0..keys {
        plain_keys
            .insert(format!("bench-{i}"), &key_digest(&bench_key(i)))
            .expect("distinct keys");
    }
    let plain = SharedSecurityConfig::with_keys(
        ProxySecurityConfig::new(ProxyAuthMode::Strict, OPERATOR_KEY),
        plain_keys,
    );
    let key = bench_key(keys / 3);
    let mut rounds = (Vec::new(), Vec::new());
    for _ in 0..15 {
        rounds.0.push(time_requests(&b, &key));
        rounds.1.push(time_requests(&plain, &key));
    }
    println!(
        "request path, named key accepted: store-filled set {:.0} ns, plain KeySet {:.0} ns (median of 15 paired rounds of 20,000 requests)",
        common::median(rounds.0),
        common::median(rounds.1)
    );
    handle_a.stop().await;
    handle_b.stop().await;

    // 4. Start-up load of keys with policies: what an operator issuing
    // `keys add LABEL --models ... --rpm ...` for every key would have.
    // Each row its own rpm, so no two keys share a limiter setting.
    sql.execute(
        "UPDATE proxy_auth_keys SET models = '{gpt-4o*,claude-3-5-*}', \
           routes = '{/v1/chat/completions,/v1/models}', allowed_ips = '{10.0.0.0/8,192.168.0.0/16}', \
           rpm = 60 + (id % 1000)::int, burst = 10, max_concurrent = 2 \
         WHERE label LIKE 'bench-%'",
        &[],
    )
    .await
    .expect("policies set");
    sql.batch_execute("VACUUM FULL ANALYZE proxy_auth_keys")
        .await
        .expect("vacuum");
    start_up(&store, keys, "keys with policies").await;
}

/// Five starts of a replica on the table as it is: load time and the live
/// heap the loaded set costs per key.
async fn start_up(store: &PgKeyStore, keys: u64, what: &str) {
    let mut loads = Vec::new();
    let mut per_key = Vec::new();
    for _ in 0..5 {
        let replica = shared();
        let before = LIVE.load(Ordering::Relaxed);
        let start = Instant::now();
        let handle = store.start(replica.clone()).await.expect("store starts");
        loads.push(start.elapsed().as_secs_f64());
        let after = LIVE.load(Ordering::Relaxed);
        assert_eq!(handle.status().keys, keys, "every key loaded");
        assert!(
            accepts(&replica, &bench_key(keys / 2)),
            "a loaded key authenticates"
        );
        per_key.push((after - before) as f64 / keys as f64);
        handle.stop().await;
    }
    println!(
        "start-up load of {keys} {what}: median {:.0} ms, min {:.0} ms over {} starts (target <= 1000 ms)",
        common::median(loads.clone()) * 1e3,
        loads.iter().copied().fold(f64::INFINITY, f64::min) * 1e3,
        loads.len()
    );
    println!(
        "live heap after start-up, {what}: {:.0} bytes per key (median of {} starts; the key set plus the store's own state)",
        common::median(per_key),
        loads.len()
    );
}

/// ns per request through the layer, one round.
fn time_requests(shared: &SharedSecurityConfig, key: &str) -> f64 {
    const N: u32 = 20_000;
    let mut service =
        ProxyAuthLayer::from_shared(shared.clone()).layer(tower::service_fn(|_: Request<()>| {
            ready(Ok::<_, Infallible>(Response::new(())))
        }));
    let start = Instant::now();
    for _ in 0..N {
        black_box(status(&mut service, black_box(key)));
    }
    start.elapsed().as_nanos() as f64 / f64::from(N)
}
