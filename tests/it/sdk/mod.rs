//! What the SDK tests share: the Python venv with the official SDKs
//! (`.ci/forward.sh` makes it), the built forward example they talk to, and
//! one run of a script of this directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use crate::upstream::UPSTREAM_KEY;

/// The forward example, killed when dropped; its stderr (the log) kept.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// The forward example in front of `upstream`, its keys from
    /// `config_file`.
    pub fn start(upstream: &str, config_file: &Path) -> Proxy {
        let mut child = Command::new(common::example_binary("forward"))
            .env("PROXY_LISTEN", "127.0.0.1:0")
            .env("PROXY_CONFIG_FILE", config_file)
            .env("PROXY_UPSTREAM", upstream)
            .env("PROXY_UPSTREAM_KEY", UPSTREAM_KEY)
            .env("RUST_LOG", "proxy_auth=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let addr = common::Printed::of(&mut child).listening("forward");
        Proxy { child, addr, log }
    }

    /// The proxy's log lines that contain every one of `parts`.
    pub fn log_lines(&self, parts: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| parts.iter().all(|part| l.contains(part)))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The python of the SDK venv (`$OPENAI_SDK_VENV`, or `.ci/forward.sh`'s
/// default), if it imports every one of `modules`.
pub fn python(modules: &[&str]) -> Result<PathBuf, String> {
    let venv = std::env::var_os("OPENAI_SDK_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openai-venv"),
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    let imports = Command::new(&python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if imports {
        Ok(python)
    } else {
        Err(format!(
            "no SDK venv at {} (a python that imports {})",
            venv.display(),
            modules.join(", ")
        ))
    }
}

/// One run of `tests/it/sdk/<script>` with `args`: its JSON lines.
pub async fn run(python: &Path, script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/sdk")
        .join(script);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .arg(&path)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} {args:?} finished within 120 s"))
    .unwrap();
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
