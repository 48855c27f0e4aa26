//! Feature `watch`: a shared config following real files in a temporary
//! directory, judged by a real layer. Changes are waited for by polling the
//! next request's verdict (or the error log) against a deadline.
#![cfg(feature = "watch")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;
use proxy_auth::watch::{watch_file, WatchError, WatchHandle};
use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tracing::dispatcher::DefaultGuard;

use crate::common::{self, get, Logs};

/// Long enough for a loaded CI machine; a change normally lands in ~0.1 s.
const DEADLINE: Duration = Duration::from_secs(5);

/// Lines of `logs` about the file at `path` that contain `what`.
fn lines_about(logs: &Logs, path: &Path, what: &str) -> Vec<String> {
    let path = path.display().to_string();
    logs.text()
        .lines()
        .filter(|l| l.contains(&path) && l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// Each test runs on a `current_thread` runtime, so the follower task logs
/// on the test's thread, into the test's own capture.
struct Setup {
    dir: tempfile::TempDir,
    path: PathBuf,
    shared: SharedSecurityConfig,
    watch: Option<WatchHandle>,
    logs: Logs,
    _capturing: DefaultGuard,
}

impl Setup {
    /// A directory with `name` holding `content`, followed by a fresh shared config.
    fn new(name: &str, content: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        Setup::follow(dir, path)
    }

    fn follow(dir: tempfile::TempDir, path: PathBuf) -> Setup {
        let logs = Logs::new(tracing::Level::INFO);
        let capturing = logs.set_default();
        // Whatever this holds is replaced by the file's content.
        let shared =
            SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Off, "sk-start"));
        let watch = watch_file(shared.clone(), &path).expect("the first file is good");
        Setup {
            dir,
            path,
            shared,
            watch: Some(watch),
            logs,
            _capturing: capturing,
        }
    }

    /// The status of `GET /v1/models` with `x-api-key: key` through a real layer.
    async fn status(&self, key: &str) -> StatusCode {
        let layer = ProxyAuthLayer::from_shared(self.shared.clone());
        common::send(layer, get("/v1/models", &[("x-api-key", key)]))
            .await
            .status
    }

    /// Waits until `key` gets `status`, or fails after the deadline.
    async fn until(&self, key: &str, status: StatusCode) {
        let began = Instant::now();
        loop {
            if self.status(key).await == status {
                // Not asserted (machine speed varies); shown with --nocapture.
                eprintln!("{key} -> {status} after {:?}", began.elapsed());
                return;
            }
            assert!(
                began.elapsed() < DEADLINE,
                "{key} still does not get {status} after {DEADLINE:?}; logs:\n{}",
                self.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until there are `count` rejection logs for this file; the last one.
    async fn rejected(&self, count: usize) -> String {
        let began = Instant::now();
        loop {
            let lines = lines_about(&self.logs, &self.path, "config file rejected");
            if lines.len() >= count {
                assert_eq!(lines.len(), count, "one error per bad content: {lines:#?}");
                return lines[count - 1].clone();
            }
            assert!(
                began.elapsed() < DEADLINE,
                "no rejection #{count} logged; logs:\n{}",
                self.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The key `old` still works and `new` does not: the last good config is in force.
    async fn still(&self, old: &str, new: &str) {
        assert_eq!(self.status(old).await, StatusCode::OK);
        assert_eq!(self.status(new).await, StatusCode::UNAUTHORIZED);
    }

    /// Saves as editors that write a temporary file and rename it over do.
    fn save_by_rename(&self, content: &str) {
        let temp = self.dir.path().join(".config.swp");
        std::fs::write(&temp, content).unwrap();
        std::fs::rename(&temp, &self.path).unwrap();
    }
}

fn json(mode: &str, key: &str) -> String {
    format!("{{\n  \"auth_mode\": \"{mode}\",\n  \"api_key\": \"{key}\"\n}}\n")
}

#[tokio::test]
async fn in_place_write() {
    let setup = Setup::new("auth.json", &json("strict", "sk-one"));
    setup.still("sk-one", "sk-two").await;
    std::fs::write(&setup.path, json("strict", "sk-two")).unwrap();
    setup.until("sk-two", StatusCode::OK).await;
    assert_eq!(setup.status("sk-one").await, StatusCode::UNAUTHORIZED);
    let reloaded = lines_about(&setup.logs, &setup.path, "config file reloaded");
    assert_eq!(reloaded.len(), 1, "{reloaded:#?}");
    assert!(reloaded[0].contains("key_rotated=true"), "{}", reloaded[0]);
    assert!(reloaded[0].contains("auth_mode=strict "), "{}", reloaded[0]);
    // The mode changes too, and the log says from what to what.
    std::fs::write(&setup.path, json("all_except_health", "sk-two")).unwrap();
    let began = Instant::now();
    while setup.shared.effective_auth_mode() != ProxyAuthMode::AllExceptHealth {
        assert!(began.elapsed() < DEADLINE, "mode change not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reloaded = lines_about(&setup.logs, &setup.path, "config file reloaded");
    assert!(
        reloaded[1].contains("auth_mode=strict -> all_except_health"),
        "{}",
        reloaded[1]
    );
    assert!(reloaded[1].contains("key_rotated=false"), "{}", reloaded[1]);
    let logs = setup.logs.text();
    assert!(!logs.contains("sk-one") && !logs.contains("sk-two"));
}

#[tokio::test]
async fn rename_over_save_with_toml_and_named_keys() {
    let setup = Setup::new(
        "auth.toml",
        "auth_mode = \"strict\"\napi_key = \"sk-admin\"\n",
    );
    setup.still("sk-admin", "sk-ci").await;
    setup.save_by_rename(
        "auth_mode = \"strict\"\napi_key = \"sk-admin\"\n\n[[keys]]\nlabel = \"ci\"\nkey = \"sk-ci\"\n",
    );
    setup.until("sk-ci", StatusCode::OK).await;
    assert_eq!(setup.shared.keys().entries()[0].label(), "ci");
    // A second save through a new inode is followed as well: the directory
    // is watched, not the file.
    setup.save_by_rename("auth_mode = \"strict\"\napi_key = \"sk-admin\"\n");
    setup.until("sk-ci", StatusCode::UNAUTHORIZED).await;
    assert_eq!(setup.status("sk-admin").await, StatusCode::OK);
}

/// Kubernetes mounts a ConfigMap as `name -> ..data/name`, `..data -> ..<timestamp>`,
/// and updates it by re-pointing `..data` atomically (a rename of a new symlink).
#[cfg(unix)]
#[tokio::test]
async fn kubernetes_symlink_swap() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let version = |name: &str, key: &str| {
        std::fs::create_dir(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("auth.json"), json("strict", key)).unwrap();
    };
    version("..2026_11_25_23_01_00.1", "sk-v1");
    symlink("..2026_11_25_23_01_00.1", root.join("..data")).unwrap();
    symlink("..data/auth.json", root.join("auth.json")).unwrap();
    let setup = Setup::follow(dir, root.join("auth.json"));
    setup.still("sk-v1", "sk-v2").await;

    for (n, key) in [(2, "sk-v2"), (3, "sk-v3")] {
        let name = format!("..2026_11_25_23_0{n}_00.1");
        version(&name, key);
        symlink(&name, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let old = format!("..2026_11_25_23_0{}_00.1", n - 1);
        std::fs::remove_dir_all(root.join(old)).unwrap();
        setup.until(key, StatusCode::OK).await;
    }
    assert_eq!(setup.status("sk-v1").await, StatusCode::UNAUTHORIZED);
    assert_eq!(setup.status("sk-v2").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_edits_keep_the_last_good_config_then_a_fix_applies() {
    let setup = Setup::new("auth.json", &json("strict", "sk-good"));
    let digest = proxy_auth::key_digest("sk-new");
    let bad = [
        // (content, line:column the log must name, words from the message)
        (
            "{\n  \"auth_mode\": \"on\",\n  \"api_key\": \"sk-new\"\n}\n".to_string(),
            "2:19",
            "unknown variant",
        ),
        ("{\n  \"auth_mode\": \"strict\"\n}\n".to_string(), "3:1", "missing field `api_key`"),
        (
            format!("{{\n  \"auth_mode\": \"strict\",\n  \"api_key\": \"{}\"\n}}\n", &digest[..40]),
            "3:3",
            "64 hex characters",
        ),
        (
            "{\"auth_mode\": \"strict\", \"api_key\": \"sk-new\",\n \"keys\": [{\"label\": \"a\", \"key\": \"sk-a\"},\n          {\"label\": \"a\", \"key\": \"sk-b\"}]}\n"
                .to_string(),
            "3:",
            "more than one key",
        ),
        (String::new(), "1:1", "empty"),
        ("{\"auth_mode\": \"strict\", \"api_key\": \"sk-new\"".to_string(), "1:", "EOF"),
    ];
    for (i, (content, position, words)) in bad.iter().enumerate() {
        if i % 2 == 0 {
            std::fs::write(&setup.path, content).unwrap();
        } else {
            setup.save_by_rename(content);
        }
        let line = setup.rejected(i + 1).await;
        let at = format!("{}:{position}", setup.path.display());
        assert!(
            line.contains(&at) && line.contains(words),
            "{at} / {words}: {line}"
        );
        assert!(line.contains("last good config stays in force"), "{line}");
        setup.still("sk-good", "sk-new").await;
    }
    let logs = setup.logs.text();
    assert!(!logs.contains("sk-good") && !logs.contains(&digest[7..40]));

    std::fs::write(&setup.path, json("strict", &digest)).unwrap();
    setup.until("sk-new", StatusCode::OK).await;
    assert_eq!(setup.status("sk-good").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn delete_then_recreate() {
    let setup = Setup::new("auth.json", &json("strict", "sk-before"));
    std::fs::remove_file(&setup.path).unwrap();
    let line = setup.rejected(1).await;
    assert!(line.contains("cannot read"), "{line}");
    setup.still("sk-before", "sk-after").await;
    // Not a fallback to an open proxy or an empty key either.
    assert_eq!(setup.status("").await, StatusCode::UNAUTHORIZED);
    assert_eq!(setup.shared.effective_auth_mode(), ProxyAuthMode::Strict);

    std::fs::write(&setup.path, json("strict", "sk-after")).unwrap();
    setup.until("sk-after", StatusCode::OK).await;
    assert_eq!(setup.status("sk-before").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_file_at_start_is_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-keep"));
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, "api_key = \"sk-x\"\nauth_mode = \"sometimes\"\n").unwrap();
    let err = watch_file(shared.clone(), &path).unwrap_err();
    assert_eq!(err.position(), Some((2, 13)), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2:13: ", path.display())),
        "{err}"
    );
    assert_eq!(shared.load().api_key, "sk-keep");

    let missing = watch_file(shared.clone(), dir.path().join("none.json")).unwrap_err();
    assert!(matches!(missing, WatchError::Read { .. }), "{missing}");
    let yaml = dir.path().join("auth.yaml");
    std::fs::write(&yaml, "api_key: k").unwrap();
    assert!(matches!(
        watch_file(shared.clone(), &yaml),
        Err(WatchError::UnknownFormat { .. })
    ));
    assert_eq!(shared.load().api_key, "sk-keep");
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(&path, json("strict", "k")).unwrap();
    let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "k"));
    let err = watch_file(shared, &path).unwrap_err();
    assert!(matches!(err, WatchError::NoRuntime { .. }), "{err}");
}

#[tokio::test]
async fn stopping_the_handle_stops_following() {
    let mut setup = Setup::new("auth.json", &json("strict", "sk-one"));
    let watch = setup.watch.take().unwrap();
    assert!(watch.is_running());
    assert_eq!(watch.path(), setup.path);
    watch.stop();
    std::fs::write(&setup.path, json("strict", "sk-two")).unwrap();
    // A negative can only be shown by waiting: past the 1 s promise, and
    // past several debounce periods.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup.still("sk-one", "sk-two").await;
}

#[test]
fn load_file_checks_a_file_without_watching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.json");
    std::fs::write(
        &path,
        r#"{"auth_mode":"strict","api_key":"","keys":[{"label":"ci","key":"sk-ci"}]}"#,
    )
    .unwrap();
    let (config, keys) = proxy_auth::watch::load_file(&path).unwrap();
    assert_eq!(config.auth_mode, ProxyAuthMode::Strict);
    assert_eq!(keys.entries()[0].label(), "ci");
    // Something that is not a config file at all is refused before it is
    // read into memory whole (a sparse file: no disk space used).
    let huge = dir.path().join("huge.toml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(65 * 1024 * 1024)
        .unwrap();
    let err = proxy_auth::watch::load_file(&huge).unwrap_err();
    assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
}
