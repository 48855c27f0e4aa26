//! Feature `watch`: what a stray writer or a wrong path can do to a followed
//! config file, with real files, real FIFOs (`mkfifo`) and the built axum
//! example. None may open auth, hang the server or fill its memory.
//!
//! Every wait is bounded and fails only on a hang: a change is waited for
//! by polling a verdict or a log line against a deadline, and each HTTP
//! request must be answered within 10 s.
#![cfg(feature = "watch")]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use proxy_auth::watch::{load_file, watch_file, WatchError};
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};

use crate::common::{self, get, http1_within, Logs};

/// Long enough for a loaded CI machine; a change normally lands in ~0.1 s.
const DEADLINE: Duration = Duration::from_secs(10);

/// The watcher's cap on a config file.
const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

fn toml(mode: &str, key: &str) -> String {
    format!("auth_mode = \"{mode}\"\napi_key = \"{key}\"\n")
}

/// A fresh shared config (overwritten by the file) following `path`.
fn follow(path: &Path) -> (SharedSecurityConfig, proxy_auth::watch::WatchHandle) {
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-start"));
    let watch = watch_file(shared.clone(), path).expect("the first file is good");
    (shared, watch)
}

async fn status(shared: &SharedSecurityConfig, key: &str) -> StatusCode {
    let layer = ProxyAuthLayer::from_shared(shared.clone());
    let headers: &[(&str, &str)] = if key.is_empty() {
        &[]
    } else {
        &[("x-api-key", key)]
    };
    common::send(layer, get("/v1/models", headers)).await.status
}

/// Polls `done` every 20 ms until it holds, or fails after [`DEADLINE`].
async fn until(what: &str, logs: &Logs, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(
            began.elapsed() < DEADLINE,
            "{what} did not happen within {DEADLINE:?}; logs:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rejection lines about `path` that contain `what`.
fn rejections(logs: &Logs, path: &Path, what: &str) -> usize {
    let path = path.display().to_string();
    logs.text()
        .lines()
        .filter(|l| l.contains("config file rejected") && l.contains(&path) && l.contains(what))
        .count()
}

fn mkfifo(path: &Path) -> Option<()> {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .map_err(|e| format!("cannot run mkfifo: {e}"))
        .and_then(|status| {
            status
                .success()
                .then_some(())
                .ok_or_else(|| format!("mkfifo failed: {status}"))
        });
    common::installed_or_skip(made, "coreutils")
}

/// `f` on a thread of its own, its result awaited for at most 20 s: the
/// calls under test block for good without the fixes.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not return within 20 s"))
}

// --- Part 2: a half-written file ------------------------------------------

#[tokio::test]
async fn a_file_caught_half_written_never_comes_into_force() {
    let logs = Logs::new(tracing::Level::INFO);
    let _capturing = logs.set_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, toml("strict", "sk-old")).unwrap();
    let (shared, _watch) = follow(&path);

    // A reader racing the writer: keyless requests, every 2 ms, for as long
    // as the file is being written. In `strict` each must be refused; a
    // half-file taken at its defaults (`auto`, so `off` on loopback) would
    // let them in.
    let racing = {
        let shared = shared.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut passed = 0;
            let mut sent = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if status(&shared, "").await != StatusCode::UNAUTHORIZED {
                    passed += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (sent, passed)
        });
        (stop, task)
    };

    // The writer, in two steps on one open file: the key first, the mode
    // after the watcher has read (and refused) the first half.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all(b"api_key = \"sk-new\"\n").unwrap();
    file.flush().unwrap();
    until("the half-written file's rejection", &logs, || {
        rejections(&logs, &path, "auth_mode is not set") == 1
    })
    .await;
    assert_eq!(status(&shared, "sk-old").await, StatusCode::OK);
    assert_eq!(status(&shared, "sk-new").await, StatusCode::UNAUTHORIZED);
    file.write_all(b"auth_mode = \"strict\"\n").unwrap();
    drop(file);
    until("the whole file applied", &logs, || {
        shared.load().api_key.expose_secret() == "sk-new"
    })
    .await;
    assert_eq!(shared.effective_auth_mode(), ProxyAuthMode::Strict);

    racing.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, passed) = racing.1.await.unwrap();
    assert_eq!(passed, 0, "{passed} of {sent} keyless requests got in");
    assert!(sent > 10, "the reader raced the writer ({sent} requests)");
}

#[test]
fn a_file_with_only_api_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("auth.toml", "api_key = \"sk-only\"\n"),
        (
            "auth.json",
            "{\"api_key\": \"sk-only\", \"allow_lan_access\": false}",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(matches!(err, WatchError::Invalid { .. }), "{err:?}");
        assert!(err.position().is_some(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("auth_mode is not set") && message.contains("strict"),
            "{message}"
        );
        assert!(!message.contains("sk-only"), "{message}");
    }
}

// --- Part 3: paths that are not regular files -----------------------------

#[test]
fn a_fifo_or_a_directory_at_the_path_is_refused_at_start_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("auth.json");
    let Some(()) = mkfifo(&fifo) else {
        return;
    };
    // Opening a FIFO for reading waits for a writer: without the check,
    // these never return.
    let path = fifo.clone();
    let err = within("load_file on a FIFO", move || load_file(&path).unwrap_err());
    assert!(matches!(err, WatchError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not a regular file but a FIFO"),
        "{err}"
    );
    let path = fifo.clone();
    let err = within("watch_file on a FIFO", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared =
            SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-keep"));
        let err = runtime
            .block_on(async { watch_file(shared.clone(), &path) })
            .unwrap_err();
        assert_eq!(shared.load().api_key, "sk-keep");
        err
    });
    assert!(err.to_string().contains("FIFO"), "{err}");

    // A symlink to a FIFO is followed, then refused the same way.
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let err = within("load_file on a symlink to a FIFO", move || {
        load_file(&link).unwrap_err()
    });
    assert!(err.to_string().contains("FIFO"), "{err}");

    let directory = dir.path().join("conf.toml");
    std::fs::create_dir(&directory).unwrap();
    let err = load_file(&directory).unwrap_err();
    assert!(err.to_string().contains("a directory"), "{err}");
}

/// A server on a runtime of one thread, as small as a runtime gets: if the
/// follower blocked a worker, it would block every request.
struct OneThreadServer {
    addr: SocketAddr,
    logs: Logs,
}

impl OneThreadServer {
    fn start(path: PathBuf) -> OneThreadServer {
        let logs = Logs::new(tracing::Level::INFO);
        let server_logs = logs.clone();
        let (ready, addr) = std::sync::mpsc::channel();
        // Left running when the test ends, like any server thread of this
        // binary; the process ends with the test run.
        std::thread::spawn(move || {
            let _capturing = server_logs.set_default();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (shared, _watch) = follow(&path);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .fallback(|| async { "inner" })
                    .layer(ProxyAuthLayer::from_shared(shared));
                axum::serve(listener, app).await.unwrap();
            });
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(20))
            .expect("the server started");
        OneThreadServer { addr, logs }
    }

    /// The status of `GET /v1/models` with `key`, answered within 10 s.
    async fn status(&self, key: &str) -> u16 {
        let headers: &[(&str, &str)] = if key.is_empty() {
            &[]
        } else {
            &[("x-api-key", key)]
        };
        http1_within(
            self.addr,
            "GET",
            "/v1/models",
            headers,
            Duration::from_secs(10),
        )
        .await
        .status
    }
}

#[tokio::test]
async fn a_fifo_swapped_in_while_running_is_refused_and_requests_keep_being_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(
        &path,
        "{\"auth_mode\": \"strict\", \"api_key\": \"sk-one\"}",
    )
    .unwrap();
    let server = OneThreadServer::start(path.clone());
    assert_eq!(server.status("sk-one").await, 200);

    std::fs::remove_file(&path).unwrap();
    let Some(()) = mkfifo(&path) else {
        return;
    };
    // Requests are answered, with the last good config, until (and after)
    // the follower has seen and refused the FIFO.
    let began = Instant::now();
    let mut answered = 0;
    while rejections(&server.logs, &path, "not a regular file but a FIFO") == 0 {
        assert_eq!(server.status("sk-one").await, 200);
        answered += 1;
        assert!(
            began.elapsed() < DEADLINE,
            "the FIFO was not refused within {DEADLINE:?}; logs:\n{}",
            server.logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        assert_eq!(server.status("sk-one").await, 200);
        assert_eq!(server.status("").await, 401);
    }
    eprintln!("{answered} requests answered while the FIFO was at the path");

    // A regular file again: followed as before.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(
        &path,
        "{\"auth_mode\": \"strict\", \"api_key\": \"sk-two\"}",
    )
    .unwrap();
    let began = Instant::now();
    while server.status("sk-two").await != 200 {
        assert!(began.elapsed() < DEADLINE, "the new file was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.status("sk-one").await, 401);
}

// --- Part 5: a huge file --------------------------------------------------

/// A valid config file one byte over the cap: a comment pads it.
fn oversized(key: &str) -> Vec<u8> {
    let mut content = toml("strict", key).into_bytes();
    content.extend_from_slice(b"# ");
    content.resize(MAX_FILE_BYTES, b'x');
    content.extend_from_slice(b"\n");
    assert_eq!(content.len(), MAX_FILE_BYTES + 1);
    content
}

#[test]
fn a_real_file_over_16_mib_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, oversized("sk-big")).unwrap();
    let err = load_file(&path).unwrap_err();
    assert!(matches!(err, WatchError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
    // At the cap exactly, the same content is a good file.
    let mut at_cap = oversized("sk-big");
    at_cap.truncate(MAX_FILE_BYTES - 1);
    at_cap.push(b'\n');
    std::fs::write(&path, at_cap).unwrap();
    let (config, _) = load_file(&path).unwrap();
    assert_eq!(config.api_key, "sk-big");
}

#[tokio::test]
async fn a_real_file_over_16_mib_swapped_in_is_a_bad_edit() {
    let logs = Logs::new(tracing::Level::INFO);
    let _capturing = logs.set_default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, toml("strict", "sk-small")).unwrap();
    let (shared, _watch) = follow(&path);
    let temp = dir.path().join(".auth.toml.swp");
    std::fs::write(&temp, oversized("sk-big")).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    until("the huge file's rejection", &logs, || {
        rejections(&logs, &path, "larger than 16 MiB") == 1
    })
    .await;
    assert_eq!(status(&shared, "sk-small").await, StatusCode::OK);
    assert_eq!(status(&shared, "sk-big").await, StatusCode::UNAUTHORIZED);
}

// --- Part 1: the examples' listen-address guard and a config file ----------

/// The built axum example, killed when dropped, its stderr collected.
struct Example {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Example {
    fn spawn(file: &Path, listen: &str) -> Example {
        let mut child = Command::new(common::example_binary("axum"))
            .env_clear()
            .env("PROXY_LISTEN", listen)
            .env("PROXY_AUTH_MODE", "strict")
            .env("PROXY_API_KEY", "sk-env")
            .env("PROXY_CONFIG_FILE", file)
            .env("RUST_LOG", "proxy_auth=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Example { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The exit status, waited for at most 20 s.
    fn exit_code(&mut self) -> Option<i32> {
        let began = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "the example still runs after 20 s; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port from the banner line on stdout.
    fn port(&mut self) -> u16 {
        let stdout = self.child.stdout.take().unwrap();
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) =
                    line.strip_prefix("proxy-auth axum example listening on http://")
                {
                    let addr: SocketAddr = rest.trim().parse().unwrap();
                    let _ = found.send(addr.port());
                }
            }
        });
        port.recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no banner within 20 s; stderr:\n{}", self.stderr()))
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_example_guards_a_config_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    // `auto` without LAN access, on every interface: auth would be off.
    std::fs::write(&file, toml("auto", "sk-file")).unwrap();
    let mut example = Example::spawn(&file, "0.0.0.0:0");
    assert_eq!(example.exit_code(), Some(2), "{}", example.stderr());
    let stderr = example.stderr();
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 with auth off"),
        "{stderr}"
    );
    assert!(stderr.contains("allow_lan_access = true"), "{stderr}");

    // The case: a file with only `api_key` over a strict
    // environment.
    std::fs::write(&file, "api_key = \"sk-file\"\n").unwrap();
    let mut example = Example::spawn(&file, "0.0.0.0:0");
    assert_eq!(example.exit_code(), Some(2), "{}", example.stderr());
    assert!(
        example.stderr().contains("auth_mode is not set"),
        "{}",
        example.stderr()
    );
    assert!(!example.stderr().contains("sk-file"));
}

#[tokio::test]
async fn the_example_refuses_a_reload_that_would_open_auth_on_the_lan() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.toml");
    let lan = |key: &str| format!("{}allow_lan_access = true\n", toml("auto", key));
    std::fs::write(&file, lan("sk-file")).unwrap();
    // Every interface, on a port free on loopback; the test only ever
    // connects to loopback.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut example = Example::spawn(&file, &format!("0.0.0.0:{port}"));
    assert_eq!(example.port(), port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let status = |key: &'static str| async move {
        let headers: &[(&str, &str)] = if key.is_empty() {
            &[]
        } else {
            &[("x-api-key", key)]
        };
        http1_within(addr, "GET", "/v1/models", headers, Duration::from_secs(10))
            .await
            .status
    };
    assert_eq!(status("").await, 401);
    assert_eq!(status("sk-file").await, 200);

    // LAN access removed while serving: `auto` would become `off`.
    std::fs::write(&file, toml("auto", "sk-file")).unwrap();
    let began = Instant::now();
    while !example.stderr().contains("config file rejected") {
        assert!(
            began.elapsed() < DEADLINE,
            "no rejection logged; stderr:\n{}",
            example.stderr()
        );
        assert_eq!(status("").await, 401, "auth was opened on the LAN");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stderr = example.stderr();
    let rejected: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("config file rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{stderr}");
    assert!(
        rejected[0].contains("ERROR") && rejected[0].contains("allow_lan_access=true"),
        "{}",
        rejected[0]
    );
    for _ in 0..5 {
        assert_eq!(status("").await, 401);
        assert_eq!(status("sk-file").await, 200);
    }

    // A good edit still applies: the follower is alive.
    std::fs::write(&file, lan("sk-two")).unwrap();
    let began = Instant::now();
    while status("sk-two").await != 200 {
        assert!(began.elapsed() < DEADLINE, "the good edit was not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status("").await, 401);
}

// --- Part 8: one source of named keys --------------------------------------

#[tokio::test]
async fn two_files_on_one_shared_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.toml");
    let second = dir.path().join("second.toml");
    std::fs::write(&first, toml("strict", "sk-first")).unwrap();
    std::fs::write(&second, toml("strict", "sk-second")).unwrap();
    let (shared, watch) = follow(&first);
    let err = watch_file(shared.clone(), &second).unwrap_err();
    assert!(matches!(err, WatchError::KeysOwned { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("kept by the config file {}", first.display())),
        "{err}"
    );
    assert_eq!(shared.load().api_key, "sk-first");
    // Stopped, the first lets another follow the handle.
    watch.stop();
    let _second = watch_file(shared.clone(), &second).unwrap();
    assert_eq!(shared.load().api_key, "sk-second");
}
