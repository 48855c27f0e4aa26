#![allow(dead_code)]
//! Helpers shared by the bench binaries.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use http::{header, Method, Request, Response};
use tower::Service;

/// A request as an OpenAI-style client sends it (`host`, `user-agent`,
/// `content-type`, `accept`), plus `extra` headers, with an empty body.
pub fn openai_request<B: Default>(
    method: Method,
    path: &str,
    extra: &[(&'static str, String)],
) -> Request<B> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8045")
        .header(header::USER_AGENT, "OpenAI/Python 1.54.0")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json");
    for (name, value) in extra {
        builder = builder.header(*name, value);
    }
    builder
        .body(B::default())
        .expect("the benchmark's requests are valid")
}

/// `poll_ready`, `call` and one poll: every service driven this way is
/// ready at once and answers on the first poll.
pub fn drive<S, B, RB>(service: &mut S, cx: &mut Context<'_>, request: Request<B>) -> Response<RB>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Debug,
{
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {other:?}"),
    }
    match pin!(service.call(request)).poll(cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(e)) => panic!("service failed: {e:?}"),
        Poll::Pending => panic!("service did not answer on the first poll"),
    }
}

/// The median; for an even count, the mean of the two middle values.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

/// An unsigned setting from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether this bench should run: `cargo bench -- <filter>` passes the
/// filter to every bench binary, and only a filter naming `bench` (or none)
/// selects it.
pub fn selected(bench: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .all(|f| bench.contains(f.as_str()))
}

/// A thread with its own single-threaded tokio runtime, running what
/// `start` returns on a fresh loopback listener; hands back the address and
/// the thread's id (to read its CPU time).
pub fn spawn_thread<F, Fut>(name: &str, start: F) -> (std::net::SocketAddr, Option<String>)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (ready, started) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // "/proc/thread-self" links to "<pid>/task/<tid>".
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind a loopback port");
                let addr = listener.local_addr().expect("bound socket has an address");
                ready.send((addr, tid)).expect("main thread waits");
                start(listener).await;
            })
        })
        .expect("spawn a thread");
    started.recv().expect("thread starts")
}

/// CPU time (user and kernel) the thread `tid` of this process has used, ns.
pub fn thread_cpu_ns(tid: Option<&str>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{}/schedstat", tid?)).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One `wrk -t1` against `url` with the given extra headers, pinned to
/// CPU 1 when `pinned`; stdout captured for [`wrk_result`].
pub fn start_wrk(
    url: &str,
    secs: u64,
    connections: u64,
    pinned: bool,
    headers: &[String],
) -> std::process::Child {
    let mut command = if pinned {
        let mut taskset = std::process::Command::new("taskset");
        taskset.args(["-c", "1", "wrk"]);
        taskset
    } else {
        std::process::Command::new("wrk")
    };
    command.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")]);
    for header in headers {
        command.args(["-H", header]);
    }
    command
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wrk starts")
}

/// Requests per second and number of requests from wrk's report. `non_2xx`
/// says whether every answer is expected to be an error status (a flood of
/// 401s) or none; anything else, or a socket error, aborts the run.
pub fn wrk_result(child: std::process::Child, non_2xx: bool) -> (f64, f64) {
    let output = child.wait_with_output().expect("wrk finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed:\n{stdout}");
    assert!(
        stdout.contains("Non-2xx") == non_2xx && !stdout.contains("Socket errors"),
        "requests got unexpected answers during the round:\n{stdout}"
    );
    let rps = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rps| rps.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{stdout}"));
    // "  281234 requests in 3.00s, 20.12MB read"
    let requests = stdout
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{stdout}"));
    (rps, requests)
}

/// What one round loads: a server's address and serving thread.
pub struct Target<'a> {
    pub addr: std::net::SocketAddr,
    pub tid: Option<&'a str>,
}

/// One round's figures against its first server: throughput of the second
/// and third over the first, then CPU per request of the first over the
/// second and third (so above 1 means "cheaper", like the throughput
/// ratios). `round` holds (requests per second, CPU per request) each.
pub fn versus_first(round: &[(f64, f64)]) -> [f64; 4] {
    [
        round[1].0 / round[0].0,
        round[2].0 / round[0].0,
        round[0].1 / round[1].1,
        round[0].1 / round[2].1,
    ]
}

/// One round: every target loaded at once by its own `wrk` on `path` with
/// `headers` for `secs`. Per target: requests per second, and the serving
/// thread's CPU µs per request (`NaN` without `/proc`). See [`wrk_result`]
/// for `non_2xx`.
#[allow(clippy::too_many_arguments)]
pub fn load_round(
    targets: &[Target<'_>],
    path: &str,
    headers: &[String],
    secs: u64,
    connections: u64,
    pinned: bool,
    non_2xx: bool,
) -> Vec<(f64, f64)> {
    let before: Vec<_> = targets.iter().map(|t| thread_cpu_ns(t.tid)).collect();
    let children: Vec<_> = targets
        .iter()
        .map(|t| {
            let url = format!("http://{}{path}", t.addr);
            start_wrk(&url, secs, connections, pinned, headers)
        })
        .collect();
    let results: Vec<_> = children
        .into_iter()
        .map(|child| wrk_result(child, non_2xx))
        .collect();
    targets
        .iter()
        .zip(before)
        .zip(results)
        .map(|((target, before), (rps, requests))| {
            let cpu_us = match (before, thread_cpu_ns(target.tid)) {
                (Some(before), Some(after)) => (after - before) as f64 / 1e3 / requests,
                _ => f64::NAN,
            };
            (rps, cpu_us)
        })
        .collect()
}

thread_local! {
    static PARKED: std::cell::RefCell<Vec<http::Request<()>>> =
        std::cell::RefCell::new(Vec::with_capacity(256));
}

/// An inner service that answers at once and parks the request, so freeing
/// it is not timed; [`clear_parked`] frees them between timed batches.
#[derive(Clone, Copy, Debug)]
pub struct Parking;

impl tower::Service<http::Request<()>> for Parking {
    type Response = http::Response<()>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<http::Response<()>, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<()>) -> Self::Future {
        PARKED.with(|parked| parked.borrow_mut().push(request));
        std::future::ready(Ok(http::Response::new(())))
    }
}

/// Frees the requests [`Parking`] kept on this thread.
pub fn clear_parked() {
    PARKED.with(|parked| parked.borrow_mut().clear());
}
