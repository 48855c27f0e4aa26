//! Debian's headless Chromium driven through chromedriver with `fantoccini`
//! (the W3C WebDriver protocol over plain http to 127.0.0.1). Every call is
//! bounded in time, so none can hang the test; dropping the [`Browser`]
//! ends chromedriver's whole process group (Chromium included), also when
//! the test panics.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
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

/// Whether Debian's `chromium` and `chromium-driver` are there, or which
/// of them is missing.
pub fn installed() -> Result<(), String> {
    match [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .find(|p| !Path::new(p).exists())
    {
        Some(missing) => Err(format!("no {missing}")),
        None => Ok(()),
    }
}

/// A chromedriver with one Chromium session; its `Drop` cleans up.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

/// `call`, or an error once it has taken [`CALL_TIMEOUT`].
async fn within<T, E: std::fmt::Display>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {CALL_TIMEOUT:?}")),
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a Chromium with a new
    /// empty profile.
    pub async fn start() -> Result<Browser, String> {
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
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that Drop can end Chromium with it.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = wait_listening(&mut driver, addr).await {
            kill_group(&mut driver);
            return Err(e);
        }
        let mut args: Vec<String> = FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "timeouts": { "pageLoad": 20_000, "script": 20_000 },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let connect = async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://{addr}"))
                .await
        };
        match within("new session", connect).await {
            Ok(client) => Ok(Browser {
                client,
                driver,
                profile,
            }),
            Err(e) => {
                kill_group(&mut driver);
                let _ = std::fs::remove_dir_all(&profile);
                Err(e)
            }
        }
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        within("navigate", self.client.goto(url)).await
    }

    /// Polls `script` (a function body run in the page) until it returns
    /// something other than `null`, for at most `limit`.
    pub async fn wait_for(&self, script: &str, limit: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + limit;
        loop {
            let value = within("execute script", self.client.execute(script, vec![])).await?;
            if !value.is_null() {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("the page gave no value within {limit:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session, which quits Chromium cleanly (its crash handlers
    /// exit with it); `Drop` ends whatever is left.
    pub async fn quit(self) -> Result<(), String> {
        within("end session", self.client.clone().close()).await
    }
}

/// Until chromedriver accepts connections on `addr` (15 s at most).
async fn wait_listening(driver: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Ok(Some(exit)) = driver.try_wait() {
            return Err(format!("chromedriver exited at start: {exit}"));
        }
        if Instant::now() > deadline {
            return Err("chromedriver not listening within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends chromedriver's process group (Chromium included) and reaps it.
fn kill_group(driver: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stderr(Stdio::null())
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
