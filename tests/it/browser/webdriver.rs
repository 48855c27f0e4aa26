//! Just enough of the W3C WebDriver protocol to drive Debian's headless
//! Chromium through chromedriver: new session, navigate, execute script,
//! delete session. Blocking std sockets with timeouts, so no call can hang;
//! dropping the [`Session`] quits the browser and ends chromedriver's whole
//! process group (Chromium included), also when the test panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Without the background-networking flags Chromium tries to reach Google's
/// hosts at start, which this closed network refuses; root needs
/// `--no-sandbox`.
const FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// No single WebDriver call (starting the browser included) may take longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub fn installed() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A browser session; its `Drop` cleans everything up.
pub struct Session {
    driver: Child,
    addr: SocketAddr,
    profile: PathBuf,
    id: Option<String>,
}

impl Session {
    /// Starts chromedriver on a free loopback port and a Chromium with a new
    /// empty profile.
    pub fn start() -> Result<Session, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let profile = std::env::temp_dir().join(format!(
            "proxy-auth-chromium-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&profile).map_err(|e| format!("profile dir: {e}"))?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Drop can end Chromium with it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let mut session = Session {
            driver,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            profile,
            id: None,
        };
        session.wait_ready()?;
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", session.profile.display()));
        let created = session.call(
            "POST",
            "/session",
            Some(json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                "timeouts": { "pageLoad": 20_000, "script": 20_000 },
            }}})),
        )?;
        let id = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {created}"))?;
        session.id = Some(id.to_owned());
        Ok(session)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(status) = self.call("GET", "/status", None) {
                if status["ready"] == true {
                    return Ok(());
                }
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited at start: {exit}"));
            }
            if Instant::now() > deadline {
                return Err("chromedriver not ready within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id.as_deref().unwrap_or(""))
    }

    pub fn navigate(&self, url: &str) -> Result<(), String> {
        self.call("POST", &self.path("/url"), Some(json!({ "url": url })))
            .map(drop)
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub fn execute(&self, script: &str) -> Result<Value, String> {
        self.call(
            "POST",
            &self.path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Polls `script` until it returns something other than `null`.
    pub fn wait_for(&self, script: &str, limit: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.execute(script)?;
            if !value.is_null() {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("the page gave no value within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One WebDriver command; its `value`, or the driver's error message.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("{method} {path}: {e}"))?;
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(CALL_TIMEOUT)))
            .map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let (status, reply) = read_reply(stream).map_err(|e| format!("{method} {path}: {e}"))?;
        let reply: Value = serde_json::from_slice(&reply)
            .map_err(|e| format!("{method} {path}: {e}: {}", String::from_utf8_lossy(&reply)))?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if status == 200 {
            // New Session answers {"value": {"sessionId", "capabilities"}}.
            Ok(value)
        } else {
            Err(format!(
                "{method} {path}: {status} {}: {}",
                value["error"], value["message"]
            ))
        }
    }
}

/// Status and body of an HTTP/1.1 reply, by Content-Length or to EOF.
fn read_reply(stream: TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok((status, body))
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.id.is_some() {
            // Quits Chromium cleanly (its crash handlers exit with it).
            let _ = self.call("DELETE", &self.path(""), None);
        }
        // Whatever is left of chromedriver's group, Chromium included.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
