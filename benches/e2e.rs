//! End to end: requests per second through hyper with the layer and without.
//!
//! Starts, in this process, three HTTP/1.1 servers on 127.0.0.1 ephemeral
//! ports, each on its own thread with a single-threaded tokio runtime, all
//! answering `200 ok` from the same handler: one bare, one behind
//! `ProxyAuthLayer::new`, one behind `ProxyAuthLayer::from_shared`. Each
//! round loads all three *at the same time*, one `wrk` each (keep-alive,
//! loopback only, bounded in time), after one untimed warm-up second.
//!
//! Why at the same time: on a shared machine, throughput measured one
//! server after the other moves by 10-30% from round to round with whatever
//! else the host runs, far more than the layer's cost. Run side by side,
//! with the three server threads pinned to one CPU (and the wrk processes to
//! another), the kernel gives each server thread the same share of that CPU,
//! so each server's requests per second are that share divided by its cost
//! per request, and outside noise hits all three alike. The ratio layer /
//! bare is then the throughput a server keeps with the layer. The servers'
//! CPU time per request (from `/proc`) is printed as a check.
//!
//! Every request carries a valid `Authorization: Bearer` key, so the layer
//! runs its full accept path; a round with any non-2xx answer aborts the run.
//! Then a keyless flood, the same way: two servers, one answering a static
//! 401 of the same status, headers and body from memory, one whose layer
//! rejects every request, each loaded by a keyless `wrk`.
//! Needs `wrk` on `PATH` (`apt-get install wrk`); without it this prints a
//! note and exits successfully.
//!
//! ```text
//! cargo bench --bench e2e
//! E2E_SECS=3 E2E_ROUNDS=7 E2E_CONNECTIONS=32 cargo bench --bench e2e   # the defaults
//! ```

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::Command;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tower::{service_fn, Layer, Service};

const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

async fn handler(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// A server running on its own thread.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    /// The serving thread's id, to read its CPU time from `/proc`.
    tid: Option<String>,
}

/// Starts `service` on a fresh loopback port, on a new thread with its own
/// single-threaded runtime, serving until the process exits.
fn spawn_server<S, B>(name: &'static str, service: S) -> Server
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (addr, tid) = common::spawn_thread(&format!("server {name}"), move |listener| async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                // Errors here are wrk closing connections at the end of a
                // round; they say nothing about the layer.
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Server { name, addr, tid }
}

/// One round: all servers loaded at once for `secs`; a `flood` round sends
/// no key and expects only 401s. Per server: requests per second and CPU
/// µs per request.
fn round(
    servers: &[Server],
    secs: u64,
    connections: u64,
    pinned: bool,
    flood: bool,
) -> Vec<(f64, f64)> {
    let targets: Vec<_> = servers
        .iter()
        .map(|s| common::Target {
            addr: s.addr,
            tid: s.tid.as_deref(),
        })
        .collect();
    let key = if flood {
        Vec::new()
    } else {
        vec![format!("Authorization: Bearer {KEY}")]
    };
    let path = "/v1/chat/completions";
    common::load_round(&targets, path, &key, secs, connections, pinned, flood)
}

fn main() {
    if !common::selected("e2e") {
        return;
    }
    match Command::new("wrk").arg("--version").output() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            println!("e2e: skipped, `wrk` is not installed (apt-get install wrk)");
            return;
        }
        Err(e) => panic!("cannot run wrk: {e}"),
        Ok(_) => {}
    }
    let secs = common::env_or("E2E_SECS", 3);
    let rounds = common::env_or("E2E_ROUNDS", 7).max(1);
    let connections = common::env_or("E2E_CONNECTIONS", 32);

    // With two or more cores: this thread, and so every server thread
    // started from it, on CPU 0; wrk on CPU 1.
    let pinned = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .args(["-p", "-c", "0", &std::process::id().to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let bare = service_fn(handler);
    let servers = [
        spawn_server("bare", bare),
        spawn_server(
            "ProxyAuthLayer::new",
            ProxyAuthLayer::new(config()).layer(bare),
        ),
        spawn_server(
            "ProxyAuthLayer::from_shared",
            ProxyAuthLayer::from_shared(SharedSecurityConfig::new(config())).layer(bare),
        ),
    ];

    println!(
        "e2e: {} servers loaded at once, each by wrk -t1 -c{connections} -d{secs}s, keep-alive, \
         127.0.0.1, {rounds} rounds after 1 s of warm-up, {}",
        servers.len(),
        if pinned {
            "server threads pinned to CPU 0, wrk to CPU 1"
        } else {
            "not pinned"
        }
    );
    round(&servers, 1, connections, pinned, false);

    println!(
        "\n| round | {} | new / bare | from_shared / bare | server CPU µs/req: bare, new, from_shared | CPU/req bare ÷ new | CPU/req bare ÷ from_shared |",
        servers
            .iter()
            .map(|s| format!("{} req/s", s.name))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|");
    // Throughput ratios (the target's measure), and the servers' CPU time
    // per request compared the same way: where the kernel did not split the
    // CPU evenly in a round, the second stays put while the first moves.
    let mut ratios = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for n in 1..=rounds {
        let r = round(&servers, secs, connections, pinned, false);
        let this = common::versus_first(&r);
        for (all, x) in ratios.iter_mut().zip(this) {
            all.push(x);
        }
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} | {:.2}, {:.2}, {:.2} | {:.3} | {:.3} |",
            r[0].0, r[1].0, r[2].0, this[0], this[1], r[0].1, r[1].1, r[2].1, this[2], this[3]
        );
    }
    let [new, shared, new_cpu, shared_cpu] = ratios.map(common::median);
    println!(
        "| median | | | | {new:.3} | {shared:.3} | | {new_cpu:.3} | {shared_cpu:.3} |\n\n\
         Target: throughput with the layer >= 0.98 x bare (median ratio). \
         new: {}, from_shared: {}",
        if new >= 0.98 { "met" } else { "NOT met" },
        if shared >= 0.98 { "met" } else { "NOT met" },
    );
    flood(config(), secs, rounds, connections, pinned);
}

/// The body of the layer's 401 to a keyless OpenAI-style request, so the
/// static server answers exactly as many bytes.
const MISSING_KEY_BODY: &str = r#"{"error":{"message":"Rejected by the proxy's API-key check (proxy-auth): no API key was sent. Send it as 'Authorization: Bearer <key>', or in the x-api-key or x-goog-api-key header.","type":"invalid_request_error","param":null,"code":"missing_key"}}"#;

/// A keyless flood: the layer rejecting every request against a server
/// that answers the same 401 (status, three headers, body) from memory.
fn flood(config: ProxySecurityConfig, secs: u64, rounds: u64, connections: u64, pinned: bool) {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("valid"),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    headers.insert(
        proxy_auth::REJECTION_HEADER,
        "missing_key".parse().expect("valid"),
    );
    let static_401 = service_fn(move |_request: Request<Incoming>| {
        let mut response =
            Response::new(Full::new(Bytes::from_static(MISSING_KEY_BODY.as_bytes())));
        *response.status_mut() = http::StatusCode::UNAUTHORIZED;
        *response.headers_mut() = headers.clone();
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let servers = [
        spawn_server("static 401", static_401),
        spawn_server(
            "ProxyAuthLayer::new rejecting",
            ProxyAuthLayer::new(config).layer(service_fn(handler)),
        ),
    ];
    round(&servers, 1, connections, pinned, true);
    println!("\n| flood round | static 401 req/s | layer rejecting req/s | layer / static |");
    println!("|---|---:|---:|---:|");
    let mut ratios = Vec::new();
    for n in 1..=rounds {
        let r = round(&servers, secs, connections, pinned, true);
        ratios.push(r[1].0 / r[0].0);
        println!(
            "| {n} | {:.0} | {:.0} | {:.3} |",
            r[0].0,
            r[1].0,
            r[1].0 / r[0].0
        );
    }
    let median = common::median(ratios);
    println!(
        "| median | | | {median:.3} |\n\nTarget: a keyless flood served at >= 0.95 x a static 401: {}",
        if median >= 0.95 { "met" } else { "NOT met" }
    );
}
