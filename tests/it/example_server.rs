//! The examples' env-driven server (`examples/server/`), as a user runs it:
//! the built axum example with its variables. What it refuses at start
//! (exit status 2 and a message naming the fix), what its banner says, and
//! that `PROXY_TRUSTED_PROXIES` and the connection's address reach the
//! layer.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};

use crate::common::{self, Printed};

/// The axum example with exactly `vars` (and `RUST_LOG=warn`).
fn command(vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(common::example_binary("axum"));
    command.env_clear().env("RUST_LOG", "warn");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// Runs the example to its end: for settings it must refuse.
fn refused(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let Output { status, stderr, .. } = command(vars).output().unwrap();
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

/// A running example, killed when dropped.
struct Running {
    child: Child,
    printed: Printed,
    // Only the config-file test (feature `watch`) sends requests.
    #[cfg_attr(not(feature = "watch"), allow(dead_code))]
    addr: SocketAddr,
}

impl Running {
    fn start(vars: &[(&str, &str)]) -> Running {
        let mut child = command(vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let printed = Printed::of(&mut child);
        let addr = printed.listening("axum");
        // The line that every banner has, after the mode and the warning.
        printed.find("the banner's api key line", |line| {
            line.contains("api key").then_some(())
        });
        Running {
            child,
            printed,
            addr,
        }
    }

    fn banner(&self) -> String {
        self.printed.lines().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn auth_on_with_no_key_at_all_is_refused_at_start() {
    for mode in ["strict", "all_except_health"] {
        let (code, stderr) = refused(&[
            ("PROXY_LISTEN", "127.0.0.1:0"),
            ("PROXY_AUTH_MODE", mode),
            ("PROXY_API_KEY", ""),
        ]);
        assert_eq!(code, Some(2), "{mode}: {stderr}");
        assert!(stderr.contains("set PROXY_API_KEY"), "{mode}: {stderr}");
    }
    // With auth off, no key is needed, and the server starts.
    let running = Running::start(&[
        ("PROXY_LISTEN", "127.0.0.1:0"),
        ("PROXY_AUTH_MODE", "off"),
        ("PROXY_API_KEY", ""),
    ]);
    assert!(
        running.banner().contains("effective mode: off"),
        "{}",
        running.banner()
    );
}

#[test]
fn the_banner_warns_when_lan_access_turns_auth_on_for_a_loopback_listener() {
    const WARNING: &str = "warning: auth is on only because allow_lan_access=true";
    let lan_on_loopback = Running::start(&[
        ("PROXY_LISTEN", "127.0.0.1:0"),
        ("PROXY_AUTH_MODE", "auto"),
        ("PROXY_ALLOW_LAN_ACCESS", "true"),
        ("PROXY_API_KEY", "sk-banner"),
    ]);
    let banner = lan_on_loopback.banner();
    assert!(banner.contains(WARNING), "{banner}");
    assert!(banner.contains("PROXY_LISTEN=0.0.0.0:"), "{banner}");
    assert!(!banner.contains("sk-banner"), "{banner}");

    // The same mode on a LAN listener, and strict on loopback: nothing to
    // warn about.
    for vars in [
        [
            ("PROXY_LISTEN", "0.0.0.0:0"),
            ("PROXY_AUTH_MODE", "auto"),
            ("PROXY_ALLOW_LAN_ACCESS", "true"),
        ],
        [
            ("PROXY_LISTEN", "127.0.0.1:0"),
            ("PROXY_AUTH_MODE", "strict"),
            ("PROXY_ALLOW_LAN_ACCESS", "true"),
        ],
    ] {
        let mut vars = vars.to_vec();
        vars.push(("PROXY_API_KEY", "sk-banner"));
        let running = Running::start(&vars);
        let banner = running.banner();
        assert!(!banner.contains("warning:"), "{vars:?}: {banner}");
    }
}

#[test]
fn a_bad_trusted_proxy_is_refused_at_start_naming_the_variable() {
    for bad in [
        "10.0.0.0/33",
        "10.0.0.0/8,proxy.internal",
        "10.0.0.0/8;192.168.0.0/16",
    ] {
        let (code, stderr) = refused(&[
            ("PROXY_LISTEN", "127.0.0.1:0"),
            ("PROXY_AUTH_MODE", "strict"),
            ("PROXY_API_KEY", "sk-x"),
            ("PROXY_TRUSTED_PROXIES", bad),
        ]);
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("PROXY_TRUSTED_PROXIES"), "{bad}: {stderr}");
    }
}

/// A key bound to 203.0.113.0/24, reached from loopback: the example
/// believes `X-Forwarded-For` only from the proxies it was told to trust.
#[cfg(feature = "watch")]
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        r#"auth_mode = "strict"
api_key = "sk-admin-0123456789"
[[keys]]
label = "office"
key = "sk-office-0123456789"
allowed_ips = ["203.0.113.0/24"]
"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let status = |addr, forwarded: &'static str| async move {
        let reply = common::http1(
            addr,
            "GET",
            "/v1/models",
            &[
                ("authorization", "Bearer sk-office-0123456789"),
                ("x-forwarded-for", forwarded),
            ],
        )
        .await;
        let reason = reply
            .head
            .lines()
            .find_map(|l| l.strip_prefix("x-proxy-auth-error: "))
            .map(str::to_owned);
        (reply.status, reason)
    };
    let not_trusted =
        Running::start(&[("PROXY_LISTEN", "127.0.0.1:0"), ("PROXY_CONFIG_FILE", file)]);
    assert_eq!(
        status(not_trusted.addr, "203.0.113.7").await,
        (403, Some("ip_not_allowed".into())),
        "the connection's address (loopback) is judged"
    );
    let trusted = Running::start(&[
        ("PROXY_LISTEN", "127.0.0.1:0"),
        ("PROXY_CONFIG_FILE", file),
        ("PROXY_TRUSTED_PROXIES", "127.0.0.1, ::1"),
    ]);
    let trusted_line = trusted.printed.find("the trusted proxies line", |line| {
        line.strip_prefix("trusted proxies: ").map(str::to_owned)
    });
    assert_eq!(trusted_line, "127.0.0.1/32, ::1/128");
    assert_eq!(status(trusted.addr, "203.0.113.7").await, (200, None));
    assert_eq!(
        status(trusted.addr, "198.51.100.7").await,
        (403, Some("ip_not_allowed".into()))
    );
}
