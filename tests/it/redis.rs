//! Rate limits shared through a real `redis-server` (feature `redis`):
//! two replicas (two layers on one Redis) drawing from one budget, an
//! outage mid-run and the way back, a replica restarting, the 429's
//! headers, idle keys expiring, and a Redis unreachable from the start.
//! Bounds are computed from measured elapsed times; nothing asserts how
//! fast anything was, only that no request waited as only a hang would.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use proxy_auth::redis::SharedRates;
use proxy_auth::{KeySet, NewKey, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharesRates};
use tower::{service_fn, Layer};

use crate::common::{self, Answer, Logs};
use crate::redis_server::{self, RedisServer};

const KEY: &str = "sk-team-a-0123456789abcdef";
const FRESH: &str = "sk-fresh-0123456789abcdef";
/// The bound a request waits for Redis: above the default 50 ms, so a
/// debug build's first connection on a loaded CI machine is not an outage
/// in the tests that are not about one.
const BOUND: Duration = Duration::from_millis(250);
/// Longer than any request takes but one that hangs.
const HANG: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(15);

fn server() -> Option<RedisServer> {
    let bin = common::installed_or_skip(redis_server::installed(), ".ci/redis.sh")?;
    Some(RedisServer::start(bin))
}

/// `team-a` at `rpm`/`burst`, and `fresh` alike, untouched until used.
fn keys(rpm: u32, burst: u32) -> KeySet {
    let mut keys = KeySet::new();
    keys.add(NewKey::new("team-a", KEY).rpm(rpm).burst(burst))
        .unwrap();
    keys.add(NewKey::new("fresh", FRESH).rpm(rpm).burst(burst))
        .unwrap();
    keys
}

fn local(keys: KeySet) -> ProxyAuthLayer {
    ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys)
}

/// One replica: a layer with shared rates on the Redis at `url`.
fn replica(url: &str, keys: KeySet) -> ProxyAuthLayer<SharesRates> {
    let rates = SharedRates::new(url).unwrap().timeout(BOUND);
    local(keys).shared_rates(rates)
}

fn request(key: &str) -> Request<String> {
    common::request(
        http::Method::POST,
        "/v1/chat/completions",
        &[("x-api-key", key), ("content-length", "0")],
    )
}

/// One request through `layer`: the answer, and how long it took.
async fn hit<R>(layer: &ProxyAuthLayer<R>, key: &str) -> (Answer, Duration)
where
    ProxyAuthLayer<R>: Layer<Inner>,
    <ProxyAuthLayer<R> as Layer<Inner>>::Service: tower::Service<
        Request<String>,
        Response = Response<proxy_auth::ResponseBody<String>>,
        Error = Infallible,
    >,
{
    let started = Instant::now();
    let answer = common::answer(layer.layer(inner()), request(key)).await;
    (answer, started.elapsed())
}

type Inner = tower::util::ServiceFn<
    fn(Request<String>) -> std::future::Ready<Result<Response<String>, Infallible>>,
>;

fn inner() -> Inner {
    fn ok(_: Request<String>) -> std::future::Ready<Result<Response<String>, Infallible>> {
        std::future::ready(Ok(Response::new(String::from("inner"))))
    }
    service_fn(ok as fn(_) -> _)
}

/// Polls `what` until it holds, for up to [`DEADLINE`].
async fn until(mut what: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn count(logs: &Logs, needle: &str) -> usize {
    logs.text().lines().filter(|l| l.contains(needle)).count()
}

const WARNING: &str = "shared rate limits: Redis does not answer";
const BACK: &str = "shared rate limits: Redis answers again";

#[test]
fn two_replicas_draw_one_key_from_one_budget() {
    let Some(redis) = server() else { return };
    let logs = Logs::new(tracing::Level::INFO);
    let _guard = logs.set_default();
    logs.runtime(2).block_on(async {
        let a = replica(&redis.url(), keys(60, 10));
        let b = replica(&redis.url(), keys(60, 10));
        let started = Instant::now();
        let (mut accepted, mut sent) = (0u32, 0u32);
        // Alternating, 40 requests over about 2 s: alone, each replica
        // would let its own 10 through and more.
        for i in 0..40 {
            let layer = if i % 2 == 0 { &a } else { &b };
            let (answer, took) = hit(layer, KEY).await;
            assert!(took < HANG, "request {i} waited {took:?}");
            sent += 1;
            match answer.status {
                StatusCode::OK => accepted += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(answer.header("x-proxy-auth-error"), Some("rate_limited"));
                }
                other => panic!("request {i}: {other}: {}", answer.body),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = started.elapsed();
        // GCRA: from a whole bucket, at most the burst plus one request per
        // interval (1 s) of the time between the first and the last.
        let most = 10 + elapsed.as_secs() as u32;
        assert!(
            (10..=most).contains(&accepted),
            "{accepted} of {sent} accepted in {elapsed:?} (at most {most})"
        );
        assert_eq!(count(&logs, WARNING), 0, "{}", logs.text());
    });
}

#[test]
fn an_outage_falls_back_to_a_share_warns_once_and_the_budget_comes_back() {
    let Some(mut redis) = server() else { return };
    let logs = Logs::new(tracing::Level::INFO);
    let _guard = logs.set_default();
    logs.runtime(2).block_on(async {
        // 600 rpm (one every 100 ms), burst 10.
        let a = replica(&redis.url(), keys(600, 10));
        let b = replica(&redis.url(), keys(600, 10));
        for layer in [&a, &b] {
            assert_eq!(hit(layer, KEY).await.0.status, StatusCode::OK);
        }
        // Both replicas present: the fallback divides by 2 (learned, as
        // no replica count is set). Presence refreshes every second.
        tokio::time::sleep(Duration::from_millis(1500)).await;

        redis.stop();
        let started = Instant::now();
        let (mut accepted, mut refused) = (0u32, 0u32);
        for i in 0..60 {
            let (answer, took) = hit(&a, KEY).await;
            assert!(took < HANG, "request {i} waited {took:?}");
            match answer.status {
                StatusCode::OK => accepted += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert_eq!(answer.header("x-proxy-auth-error"), Some("rate_limited"));
                    refused += 1;
                }
                other => panic!("request {i}: {other}: {}", answer.body),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = started.elapsed();
        // This replica's share: a burst of 5 and one every 200 ms.
        let most = 5 + (elapsed.as_millis() / 200) as u32 + 1;
        assert!(accepted > 0, "requests keep flowing during the outage");
        assert!(
            accepted <= most,
            "{accepted} accepted in {elapsed:?}: more than this replica's share ({most})\n{}",
            logs.text()
        );
        assert!(refused > 0, "an outage never leaves a key unlimited");
        // Each replica said it once: A on a request, B from its probe.
        assert!(
            until(|| count(&logs, WARNING) == 2).await,
            "{}",
            logs.text()
        );
        assert!(
            logs.text().contains("budget=\"local-fallback\""),
            "{}",
            logs.text()
        );
        // Many more failed probes later, still two.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(count(&logs, WARNING), 2, "{}", logs.text());

        redis.resume();
        assert!(until(|| count(&logs, BACK) == 2).await, "{}", logs.text());
        // Shared again: `fresh`'s burst of 10 spent through A, B refuses
        // it, though B never spent from `fresh` (and its share would allow
        // 5): only the shared budget explains that.
        for i in 0..10 {
            let (answer, _) = hit(&a, FRESH).await;
            assert_eq!(answer.status, StatusCode::OK, "fresh request {i} through A");
        }
        let (answer, _) = hit(&b, FRESH).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.body
        );
        assert_eq!(count(&logs, WARNING), 2, "{}", logs.text());
    });
}

#[test]
fn a_replica_that_restarts_finds_the_budget_where_it_was() {
    let Some(redis) = server() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let a = replica(&redis.url(), keys(60, 3));
        for _ in 0..3 {
            assert_eq!(hit(&a, KEY).await.0.status, StatusCode::OK);
        }
        drop(a);
        // The same replica, restarted: no local state at all.
        let a = replica(&redis.url(), keys(60, 3));
        let (answer, _) = hit(&a, KEY).await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.body
        );
    });
}

#[test]
fn the_shared_429_is_the_local_one_and_idle_keys_expire() {
    let Some(redis) = server() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let shared = replica(&redis.url(), keys(60, 2));
        let local = local(keys(60, 2));
        let mut refusals = Vec::new();
        for (name, answer) in [
            ("local", {
                hit(&local, KEY).await;
                hit(&local, KEY).await;
                hit(&local, KEY).await.0
            }),
            ("shared", {
                hit(&shared, KEY).await;
                hit(&shared, KEY).await;
                hit(&shared, KEY).await.0
            }),
        ] {
            assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{name}");
            refusals.push(answer);
        }
        let names = |answer: &Answer| {
            let mut names: Vec<_> = answer
                .headers
                .keys()
                .map(|n| n.as_str().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&refusals[0]), names(&refusals[1]));
        // The waits differ by the time between the two refusals.
        let ms = |a: &Answer| a.header("retry-after-ms").unwrap().parse::<i64>().unwrap();
        assert!((ms(&refusals[0]) - ms(&refusals[1])).abs() <= 200);
        for name in [
            "retry-after",
            "x-should-retry",
            "x-proxy-auth-error",
            "content-type",
        ] {
            assert_eq!(refusals[0].header(name), refusals[1].header(name), "{name}");
        }
        for name in [
            "ratelimit",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
        ] {
            assert!(
                refusals[1].header(name).is_some(),
                "{name}: {:?}",
                refusals[1].headers
            );
        }
        // The same body but for the numbers in it.
        let shape = |a: &Answer| {
            let mut shape = String::new();
            for c in a.body.chars() {
                match c.is_ascii_digit() {
                    true if shape.ends_with('#') => {}
                    true => shape.push('#'),
                    false => shape.push(c),
                }
            }
            shape
        };
        assert_eq!(shape(&refusals[0]), shape(&refusals[1]));

        // The key's state expires when its burst would be whole again.
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg("proxy-auth:rate:team-a")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=2_000).contains(&pttl), "PTTL {pttl}");
        let untouched: i64 = redis::cmd("PTTL")
            .arg("proxy-auth:rate:fresh")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(untouched, -2, "no state for a key never used");
    });
}

#[test]
fn a_redis_unreachable_from_the_start_is_an_outage_said_once() {
    let logs = Logs::new(tracing::Level::INFO);
    let _guard = logs.set_default();
    logs.runtime(2).block_on(async {
        let url = format!("redis://:hunter2@127.0.0.1:{}/", redis_server::free_port());
        let rates = SharedRates::new(&url).unwrap().timeout(BOUND).replicas(2);
        let layer = local(keys(60, 10)).shared_rates(rates);
        let mut accepted = 0;
        for i in 0..20 {
            let (answer, took) = hit(&layer, KEY).await;
            assert!(took < HANG, "request {i} waited {took:?}");
            accepted += u32::from(answer.status == StatusCode::OK);
        }
        // 2 replicas set: a burst of 5 each.
        assert_eq!(accepted, 5);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(count(&logs, WARNING), 1, "{}", logs.text());
        assert!(!logs.text().contains("hunter2"), "{}", logs.text());
        assert!(!format!("{layer:?}").contains("hunter2"));
    });
}

#[test]
fn whatever_redis_holds_the_layer_answers_without_an_outage() {
    let Some(redis) = server() else { return };
    let logs = Logs::new(tracing::Level::INFO);
    let _guard = logs.set_default();
    logs.runtime(2).block_on(async {
        let layer = replica(&redis.url(), keys(600, 10));
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        assert_eq!(hit(&layer, KEY).await.0.status, StatusCode::OK);
        // The script forgotten (SCRIPT FLUSH, a restart): EVAL again.
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(hit(&layer, KEY).await.0.status, StatusCode::OK);
        // Another type, garbage, a number far ahead: the key is ours, and
        // its state is taken as none, or clamped to one burst.
        let key = "proxy-auth:rate:team-a";
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: i64 = redis::cmd("LPUSH")
            .arg(key)
            .arg("x")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(hit(&layer, KEY).await.0.status, StatusCode::OK);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("nan")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(hit(&layer, KEY).await.0.status, StatusCode::OK);
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("1e300")
            .query_async(&mut conn)
            .await
            .unwrap();
        let (answer, _) = hit(&layer, KEY).await;
        assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = answer.header("retry-after-ms").unwrap().parse().unwrap();
        assert!(
            wait <= 1_000,
            "refused for at most the burst's refill: {wait} ms"
        );
        // Presence set of another type: replaced.
        let _: () = redis::cmd("SET")
            .arg("proxy-auth:replicas")
            .arg("x")
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(count(&logs, WARNING), 0, "{}", logs.text());
    });
}

#[test]
fn a_layer_that_reads_bodies_shares_rates_too() {
    let Some(redis) = server() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let replica = || {
            let mut keys = KeySet::new();
            keys.add(
                NewKey::new("team-a", KEY)
                    .rpm(60)
                    .burst(2)
                    .models(["gpt-4o*"]),
            )
            .unwrap();
            let rates = SharedRates::new(&redis.url()).unwrap().timeout(BOUND);
            let layer = local(keys)
                .read_model_bodies(proxy_auth::DEFAULT_BODY_LIMIT)
                .shared_rates(rates);
            layer.layer(service_fn(
                |_: Request<proxy_auth::ModelBody<String>>| async {
                    Ok::<_, Infallible>(Response::new(String::from("inner")))
                },
            ))
        };
        let (a, b) = (replica(), replica());
        let post = |model: &str| {
            Request::post("/v1/chat/completions")
                .header("x-api-key", KEY)
                .body(format!(r#"{{"model":"{model}"}}"#))
                .unwrap()
        };
        for _ in 0..2 {
            assert_eq!(
                common::answer(a.clone(), post("gpt-4o")).await.status,
                StatusCode::OK
            );
        }
        let refused = common::answer(b.clone(), post("gpt-4o")).await;
        assert_eq!(
            refused.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body
        );
        // Out of scope is refused before any rate is spent or asked.
        let wrong = common::answer(b.clone(), post("o1")).await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    });
}

#[test]
fn a_hung_redis_costs_one_request_the_bound_and_the_rest_nothing() {
    let Some(redis) = server() else { return };
    let logs = Logs::new(tracing::Level::INFO);
    let _guard = logs.set_default();
    logs.runtime(2).block_on(async {
        let layer = replica(&redis.url(), keys(600, 10));
        assert_eq!(hit(&layer, KEY).await.0.status, StatusCode::OK);
        redis.pause();
        let mut waited = 0;
        for i in 0..20 {
            let (answer, took) = hit(&layer, KEY).await;
            assert!(took < HANG, "request {i} waited {took:?}");
            assert_ne!(answer.status.as_u16(), 500, "{}", answer.body);
            waited += usize::from(took >= BOUND);
        }
        // The first request waited out the bound; then Redis is down and
        // no request asks it (a background probe does, every 250 ms).
        assert!(waited <= 2, "{waited} of 20 requests waited the bound");
        assert!(
            until(|| count(&logs, WARNING) == 1).await,
            "{}",
            logs.text()
        );
        redis.unpause();
        assert!(until(|| count(&logs, BACK) == 1).await, "{}", logs.text());
        assert_eq!(count(&logs, WARNING), 1, "{}", logs.text());
    });
}
