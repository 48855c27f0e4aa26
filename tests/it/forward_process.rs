//! The built forward example (`target/<profile>/examples/forward`, see
//! [`common::example_binary`]) as a child process in front of a local
//! upstream (`tests/it/upstream.rs`): its resident memory during a 50 MiB
//! upload, and the official OpenAI Python SDK streaming through it. A
//! separate process, so what is measured is the example alone.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;

use crate::common;
use crate::upstream::{self, Generated, UPSTREAM_KEY};

const PROXY_KEY: &str = "sk-proxy-fedcba9876543210";

/// The example binary, killed when dropped.
struct ChildProxy {
    child: Child,
    addr: SocketAddr,
}

impl ChildProxy {
    fn start(upstream: &str) -> ChildProxy {
        let mut child = Command::new(common::example_binary("forward"))
            .env("PROXY_LISTEN", "127.0.0.1:0")
            .env("PROXY_AUTH_MODE", "strict")
            .env("PROXY_API_KEY", PROXY_KEY)
            .env("PROXY_UPSTREAM", upstream)
            .env("PROXY_UPSTREAM_KEY", UPSTREAM_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = common::Printed::of(&mut child).listening("forward");
        ChildProxy { child, addr }
    }

    /// A `/proc/<pid>/status` field, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for ChildProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn upload(proxy: SocketAddr, bytes: usize) -> serde_json::Value {
    let client = Client::builder(TokioExecutor::new()).build_http::<Generated>();
    let request = Request::post(format!("http://{proxy}/v1/upload"))
        .header("authorization", format!("Bearer {PROXY_KEY}"))
        .body(Generated {
            remaining: bytes,
            chunk: 64 * 1024,
        })
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, StatusCode::OK, "{body:?}");
    serde_json::from_slice(&body).unwrap()
}

// Reads the child's memory from /proc.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_upload_goes_through_in_bounded_memory() {
    const SIZE: usize = 50 * 1024 * 1024;
    let upstream = upstream::start().await;
    let proxy = ChildProxy::start(&upstream.url());

    // Warm up: runtime threads, the connection pool, hyper's buffers.
    assert_eq!(upload(proxy.addr, 1024 * 1024).await["bytes"], 1024 * 1024);
    let before = proxy.status_kib("VmRSS");
    assert_eq!(upload(proxy.addr, SIZE).await["bytes"], SIZE);
    let peak = proxy.status_kib("VmHWM");
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "50 MiB upload: proxy RSS {before} KiB before, peak {peak} KiB, growth {growth_mib:.1} MiB"
    );
    assert!(
        growth_mib < 8.0,
        "the proxy's resident memory grew by {growth_mib:.1} MiB for a 50 MiB body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_streams_through_the_example() {
    let Some(python) = common::installed_or_skip(crate::sdk::python(&["openai"]), ".ci/forward.sh")
    else {
        return;
    };
    let upstream = upstream::start().await;
    let proxy = ChildProxy::start(&upstream.url());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/sdk/openai_stream.py");

    let mut sdk = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}/v1", proxy.addr))
        .arg(PROXY_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the SDK's lines as they come, stamping nothing here: the script
    // stamps each chunk with its own wall clock on arrival.
    let mut stdout = tokio::io::BufReader::new(sdk.stdout.take().unwrap());
    let mut output = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_string(&mut output))
        .await
        .expect("the SDK finished within 60 s")
        .unwrap();
    let status = sdk.wait_with_output().await.unwrap();
    assert!(
        status.status.success(),
        "the SDK script failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );

    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let chunks: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "chunk").collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["content"].as_str())
        .collect();
    let expected: String = (0..upstream::EVENTS).map(upstream::word).collect();
    assert_eq!(text, expected);

    // The upstream got the upstream key from the SDK's Authorization header.
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path_and_query, "/v1/chat/completions");
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );

    // Streamed end to end: the SDK had the first chunk before the upstream
    // sent the last (wall clocks of two processes on one machine).
    let sent = &upstream.sent()[0];
    let first_arrival = chunks[0]["t"].as_f64().unwrap();
    let last_sent = sent.last().unwrap().1;
    assert!(
        first_arrival < last_sent,
        "first chunk at {first_arrival}, upstream's last event at {last_sent}"
    );
    let since = |t: f64| ((t - sent[0].1) * 1e3).round();
    eprintln!(
        "openai SDK: upstream sent at {:?} ms, SDK got chunks at {:?} ms",
        sent.iter().map(|s| since(s.1)).collect::<Vec<_>>(),
        chunks
            .iter()
            .map(|c| since(c["t"].as_f64().unwrap()))
            .collect::<Vec<_>>()
    );

    let wrong = lines
        .iter()
        .find(|l| l["kind"] == "wrong_proxy_key")
        .unwrap();
    assert_eq!(wrong["status"], 401);
    assert_eq!(wrong["marker"], "invalid_key");
}
