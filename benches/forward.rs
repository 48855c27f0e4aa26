//! The forward example with `ProxyAuthLayer` and without it (its bare
//! [`Forward`](forward_example::Forward) service), in front of the same
//! local upstream: requests per second under load, and the time to the
//! first SSE event of a streamed answer.
//!
//! In this process: one upstream (hyper, `{"ok":true}` for plain requests,
//! an SSE answer whose first event goes out at once for `/v1/sse`) and
//! three proxies, each on its own thread with a single-threaded tokio
//! runtime, all on 127.0.0.1 ephemeral ports: `bare` and `bare'` (the
//! example's `Forward`, twice) and `auth` (the example's `app`: the same
//! behind the layer with `strip_credentials` and `insert_identity`).
//!
//! - Throughput: the three are loaded *at the same time*, one `wrk` each
//!   (`-t1`, keep-alive, the same key header), with the proxy threads
//!   pinned to CPU 0 and the upstream and `wrk` on CPU 1, as in
//!   `benches/e2e.rs`: the kernel gives each proxy thread the same share of
//!   CPU 0 and outside noise hits all alike. auth / bare is the throughput
//!   a proxy keeps with the layer; bare' / bare, two identical proxies, is
//!   the noise it has to stand out from. The proxy threads' CPU time per
//!   request (from `/proc`) is compared the same way: it does not depend
//!   on how the CPU was shared.
//! - Time to first event: with no other load, sequential requests
//!   alternating between `bare` and `auth`, each timed from sending the
//!   request to receiving the first body frame (the first SSE event); the
//!   spread of the paired differences is the noise.
//!
//! Needs `wrk` for the throughput part (`apt-get install wrk`); without it
//! only the time to first event is measured.
//!
//! ```text
//! cargo bench --bench forward
//! FORWARD_SECS=3 FORWARD_ROUNDS=3 FORWARD_CONNECTIONS=32 FORWARD_SSE_REQUESTS=300 cargo bench --bench forward  # the defaults
//! ```
//!
//! # Measured
//!
//! `FORWARD_ROUNDS=5 cargo bench --bench forward`, twice, on a 2-core VM
//! shared with other builds (load average about 4): throughput auth / bare
//! medians 99.0% and 99.3% (control bare' / bare: 101.5%, 99.5%); CPU per
//! request bare ÷ auth 98.8% and 98.5% (control 99.9%, 100.1%), that is
//! the layer costs about 0.3 µs of a 20 µs forwarded request. Time to the
//! first SSE event: median 147 vs 150 µs and 145 vs 148 µs, the paired
//! difference's middle half within about ±11 µs around a 2 µs
//! median: unchanged within noise. Single rounds vary by several percent
//! (see bare' / bare); read the medians.

#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../examples/forward.rs"]
mod forward_example;
// Only for its channel-fed body; this bench runs its own, lighter upstream.
#[path = "../tests/it/upstream.rs"]
mod upstream;

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_auth::{ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tokio::net::TcpListener;

const PROXY_KEY: &str = "sk-proxy-0123456789abcdef0123456789ab";
const UPSTREAM_KEY: &str = "sk-upstream-0123456789abcdef012345678";

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// The upstream: refuses a request without its key (so a proxy that failed
/// to swap keys shows up as wrk's non-2xx), streams for `/v1/sse`.
async fn upstream(request: Request<Incoming>) -> Result<Response<UpstreamBody>, Infallible> {
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|v| v.as_bytes().strip_prefix(b"Bearer ") == Some(UPSTREAM_KEY.as_bytes()));
    if !authorized {
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")).boxed_unsync());
        *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    if request.uri().path() == "/v1/sse" {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from_static(b"data: {\"n\":0}\n\n")).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        });
        let body = upstream::ChannelBody(rx).boxed_unsync();
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .expect("static response"));
    }
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"ok":true}"#)).boxed_unsync())
        .expect("static response"))
}

async fn serve_upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(upstream))
                .await;
        });
    }
}

struct Proxy {
    name: &'static str,
    addr: SocketAddr,
    tid: Option<String>,
}

/// The forward example on its own thread: `app` (with the layer) or the
/// bare `Forward` service.
fn spawn_proxy(name: &'static str, with_auth: bool, upstream: SocketAddr) -> Proxy {
    let target = forward_example::Upstream::new(&format!("http://{upstream}"), Some(UPSTREAM_KEY))
        .expect("valid upstream");
    let (addr, tid) = common::spawn_thread(&format!("proxy {name}"), move |listener| async move {
        if with_auth {
            let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, PROXY_KEY);
            let service = forward_example::app(
                SharedSecurityConfig::new(config.clone()),
                forward_example::server::layer(&SharedSecurityConfig::new(config), &[]),
                target,
            )
            .expect("TLS set-up");
            forward_example::serve(listener, service, std::future::pending()).await;
        } else {
            let service = forward_example::Forward::new(target).expect("TLS set-up");
            forward_example::serve(listener, service, std::future::pending()).await;
        }
    });
    Proxy { name, addr, tid }
}

/// CPU time (user and kernel) the thread `tid` of this process has used, ns.
fn pin(tid: &str, cpu: &str) -> bool {
    Command::new("taskset")
        .args(["-p", "-c", cpu, tid])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Both proxies loaded at once: per proxy, requests/s and CPU µs/request.
fn round(proxies: &[Proxy], secs: u64, connections: u64, pinned: bool) -> Vec<(f64, f64)> {
    let targets: Vec<_> = proxies
        .iter()
        .map(|p| common::Target {
            addr: p.addr,
            tid: p.tid.as_deref(),
        })
        .collect();
    let key = [format!("Authorization: Bearer {PROXY_KEY}")];
    common::load_round(
        &targets,
        "/v1/models",
        &key,
        secs,
        connections,
        pinned,
        false,
    )
}

/// Time from sending the request to the first body frame (the first SSE
/// event), µs, for `n` requests per proxy, alternating between them.
async fn first_event_us(proxies: &[Proxy], n: usize) -> Vec<Vec<f64>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut times = vec![Vec::with_capacity(n); proxies.len()];
    for i in 0..n + 20 {
        for (proxy, times) in proxies.iter().zip(times.iter_mut()) {
            let request = Request::get(format!("http://{}/v1/sse", proxy.addr))
                .header("authorization", format!("Bearer {PROXY_KEY}"))
                .body(Empty::new())
                .expect("valid request");
            let start = Instant::now();
            let response = client.request(request).await.expect("proxy answers");
            assert!(
                response.status().is_success(),
                "{}: {}",
                proxy.name,
                response.status()
            );
            let mut body = response.into_body();
            let first = body.frame().await.expect("an event").expect("body ok");
            let elapsed = start.elapsed();
            assert!(first.data_ref().is_some_and(|d| d.starts_with(b"data: ")));
            while body.frame().await.is_some() {}
            // The first 20 rounds warm the connection pools up.
            if i >= 20 {
                times.push(elapsed.as_secs_f64() * 1e6);
            }
        }
    }
    times
}

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if !common::selected("forward") {
        return;
    }
    let secs = common::env_or("FORWARD_SECS", 3);
    let rounds = common::env_or("FORWARD_ROUNDS", 3).max(1);
    let connections = common::env_or("FORWARD_CONNECTIONS", 32);
    let sse_requests = common::env_or("FORWARD_SSE_REQUESTS", 300).max(1) as usize;

    // This thread, and so both proxy threads started from it, on CPU 0;
    // the upstream and wrk on CPU 1.
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut pinned = two_cpus && pin(&std::process::id().to_string(), "0");
    let (upstream_addr, upstream_tid) = common::spawn_thread("upstream", serve_upstream);
    pinned = pinned && upstream_tid.as_deref().is_some_and(|tid| pin(tid, "1"));
    // A second bare proxy as a control: what bare' / bare shows is the
    // noise that auth / bare has to stand out from.
    let proxies = [
        spawn_proxy("bare", false, upstream_addr),
        spawn_proxy("auth", true, upstream_addr),
        spawn_proxy("bare'", false, upstream_addr),
    ];

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ttfe = runtime.block_on(first_event_us(&proxies[..2], sse_requests));
    println!(
        "forward: time to first SSE event, {sse_requests} sequential requests per proxy, alternating, no other load"
    );
    println!("\n| proxy | median µs | p90 µs |\n|---|---:|---:|");
    for (proxy, times) in proxies[..2].iter().zip(&ttfe) {
        println!(
            "| {} | {:.0} | {:.0} |",
            proxy.name,
            common::median(times.clone()),
            percentile(times.clone(), 0.9)
        );
    }
    // Requests alternate, so request i of each proxy ran under the same
    // conditions: the spread of the pairwise differences is the noise the
    // layer's cost has to stand out from.
    let differences: Vec<f64> = ttfe[1].iter().zip(&ttfe[0]).map(|(a, b)| a - b).collect();
    println!(
        "\nauth - bare, paired by request: median {:.1} µs, middle half {:.1} to {:.1} µs",
        common::median(differences.clone()),
        percentile(differences.clone(), 0.25),
        percentile(differences, 0.75)
    );

    match Command::new("wrk").arg("--version").output() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            println!("\nforward: throughput skipped, `wrk` is not installed (apt-get install wrk)");
            return;
        }
        Err(e) => panic!("cannot run wrk: {e}"),
        Ok(_) => {}
    }
    println!(
        "\nforward: the {} proxies loaded at once, each by wrk -t1 -c{connections} -d{secs}s, keep-alive, \
         127.0.0.1, {rounds} rounds after 1 s of warm-up, {}",
        proxies.len(),
        if pinned {
            "proxy threads pinned to CPU 0, upstream and wrk to CPU 1"
        } else {
            "not pinned"
        }
    );
    round(&proxies, 1, connections, pinned);
    println!(
        "\n| round | bare req/s | auth req/s | bare' req/s | auth / bare | bare' / bare | CPU µs/req bare, auth, bare' | CPU/req bare ÷ auth | CPU/req bare ÷ bare' |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for n in 1..=rounds {
        let r = round(&proxies, secs, connections, pinned);
        let this = common::versus_first(&r);
        for (all, x) in ratios.iter_mut().zip(this) {
            all.push(x);
        }
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} | {:.1}% | {:.1}% | {:.1}, {:.1}, {:.1} | {:.1}% | {:.1}% |",
            r[0].0,
            r[1].0,
            r[2].0,
            100.0 * this[0],
            100.0 * this[1],
            r[0].1,
            r[1].1,
            r[2].1,
            100.0 * this[2],
            100.0 * this[3]
        );
    }
    let [a, b, c, d] = ratios.map(|r| 100.0 * common::median(r));
    println!("| median | | | | {a:.1}% | {b:.1}% | | {c:.1}% | {d:.1}% |");
}
