//! Following a config file (feature `watch`, off by default): a
//! [`SharedSecurityConfig`] that takes the file's content whenever it
//! changes on disk, without a restart.
//!
//! [`watch_file`] loads the file once (an error if it is bad, so the proxy
//! decides whether to start), stores it in the shared config, and starts
//! one background task on the caller's tokio runtime that re-reads the file
//! when it changes. The task stops when the returned [`WatchHandle`] is
//! dropped or [`stop`](WatchHandle::stop)ped.
//!
//! # The file
//!
//! JSON (`*.json`) or TOML (`*.toml`), holding the `security` section's
//! fields and optionally the named keys, in [`KeySet`]'s list form:
//!
//! ```toml
//! auth_mode = "all_except_health"   # required: off | strict | all_except_health | auto
//! api_key = "sha256:f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0"
//! allow_lan_access = true           # default false
//! limits = { rpm = 600, max_concurrent = 8 }  # optional: every key's default limits
//!
//! [[keys]]                          # optional; no list means no named keys
//! label = "ci"
//! key = "sk-ci-0123"                # or its sha256:<hex> digest
//! expires_at = 1767225600           # optional, Unix seconds
//! rpm = 60                          # optional: the key's own rpm, burst, max_concurrent
//! ```
//!
//! A limit of 0, over a million, or a `burst` without `rpm` is a bad file
//! (see [`limit`](crate::limit)). A reload keeps every label's limiter
//! state: an edit never hands a key a fresh burst.
//!
//! `auth_mode` is required: a file that does not name it is refused, so
//! a file caught half-written (only `api_key` so far) never turns `auto`
//! into `off` by default. Otherwise the file is the whole truth: a field
//! left out takes its default, and leaving `keys` out removes every named
//! key. So keys managed in code with
//! [`SharedSecurityConfig::update_keys`] are replaced at the next change of
//! the file; use one or the other. A [`postgres`](crate::postgres) key
//! store on the same shared config would replace the file's keys and the
//! file the store's, so the two are refused together: the second to start
//! is an error ([`WatchError::KeysOwned`] here) naming the first.
//!
//! # What counts as a bad file
//!
//! A file that does not parse, does not name `auth_mode`, has an unknown field (a misspelt
//! `allow_lan_acess` would otherwise silently stay `false`), an unknown
//! mode, no `api_key`, a `sha256:` value that is not 64 hex characters, a
//! key clients could not send in a header, a repeated label or key, an empty
//! `api_key` with no named keys, is empty, missing, unreadable, not a
//! regular file or over 16 MiB, or cannot be read within 5 s, is
//! rejected. At start that is the error [`watch_file`] returns; later the
//! **last good config stays in force** and one error is logged (target
//! `proxy_auth`) with the file, line and column, e.g.
//! `/etc/proxy/auth.toml:3:11: api_key starts with "sha256:" but is not
//! followed by 64 hex characters; ...`. It never falls back to a default or
//! an empty key. Messages leave out the values the parser quotes, so a key
//! pasted into the wrong field does not reach the logs.
//!
//! # When a change is seen
//!
//! The task watches the file's **directory**, not the file, and re-reads the
//! file **by path**. So it follows editors that save by writing a temporary
//! file and renaming it over the old one (the old inode is gone), files
//! deleted and created again, and the symlink swap Kubernetes uses for
//! mounted ConfigMaps and Secrets (`config.json -> ..data/config.json`, with
//! `..data` re-pointed atomically to a new timestamped directory). If the
//! path resolves through symlinks to another directory, that one is watched
//! too. Events are debounced: the file is read 100 ms after the first event
//! of a burst, so a change is in force for requests within about 0.1 s
//! (the promise is 1 s). A read that fails right after an event (a writer
//! caught half-way) is retried once, 100 ms later, before it is reported.
//!
//! Events come from [`notify`](https://docs.rs/notify), the file-event
//! crate the Rust ecosystem shares (inotify on Linux, FSEvents on macOS,
//! ReadDirectoryChangesW on Windows): it reports directory events, which
//! following renames and symlink swaps needs, and its debouncer crates are
//! not needed because the task re-reads by path and compares contents.
//!
//! Besides events, the file is re-read every 5 seconds, for file systems
//! that deliver no events (some network and container mounts). A re-read of
//! an unchanged file, good or bad, does nothing and logs nothing.
//!
//! Each applied change is logged at `info`: the mode (`strict -> off`), the
//! effective mode, `allow_lan_access`, whether the api key was rotated
//! (writing a key as its own digest is not a rotation), and the number of
//! named keys and whether they changed. Never a key.
//!
//! # What a file read may cost
//!
//! Every re-read (open, read, hash, parse) runs on a thread of its own,
//! never on one of the runtime's workers, and is waited for at most 5 s:
//! requests are answered meanwhile, whatever the path does. A path that is
//! not a regular file once symlinks are followed (a FIFO, a directory, a
//! device, a socket) is refused without being opened, and checked again
//! on the opened handle, since opening a FIFO for reading waits for a
//! writer. A read that does not finish within 5 s (a stalled network
//! mount, a FIFO swapped in between the check and the open) is a failed
//! read: logged once, the last good config stays, and no other read starts
//! until that one returns, so a path that blocks for good costs one thread.
//! A file over 16 MiB (100,000 named keys as digests take about 11 MB) is
//! refused before it is read. At start, [`watch_file`] and [`load_file`]
//! wait for their read the same way, at most 5 s.
//!
//! The runtime needs its time driver (`#[tokio::main]` enables it).
//!
//! # Example
//!
//! ```no_run
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Overwritten by the file's content before watch_file returns.
//! let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""));
//! let watch = proxy_auth::watch::watch_file(shared.clone(), "/etc/proxy/auth.toml")?;
//! let layer = ProxyAuthLayer::from_shared(shared);
//! // ... serve with `layer`; keep `watch` alive as long as the server.
//! # drop((layer, watch));
//! # Ok(())
//! # }
//! ```
//!
//! [`KeySet`]: crate::KeySet

mod change;
mod error;
mod file;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use change::{transition, Change};
pub use error::WatchError;
use file::Format;

use crate::{KeySet, ProxySecurityConfig, SharedSecurityConfig};

/// How long after the first event of a burst the file is read.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// How often the file is re-read when no event arrives.
const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Reads and validates a config file without watching it: the config and
/// its named keys, or the error [`watch_file`] would give. Useful to check
/// a file before deploying it.
pub fn load_file(path: impl AsRef<Path>) -> Result<(ProxySecurityConfig, KeySet), WatchError> {
    let path = path.as_ref();
    let format = Format::of(path)?;
    let bytes = read_within(path).map_err(|source| WatchError::Read {
        path: path.to_owned(),
        source,
    })?;
    file::parse(path, format, &bytes)
}

/// Makes `shared` follow the config file at `path`; see the
/// [module docs](self).
///
/// The file is read and stored in `shared` before this returns; a bad file
/// is an error and leaves `shared` as it was. Must be called from inside a
/// tokio runtime, on which the one background task runs until the returned
/// handle is dropped.
pub fn watch_file(
    shared: SharedSecurityConfig,
    path: impl AsRef<Path>,
) -> Result<WatchHandle, WatchError> {
    // Relative paths are resolved now, so a later chdir changes nothing.
    let path = std::path::absolute(path.as_ref()).map_err(|source| WatchError::Read {
        path: path.as_ref().to_owned(),
        source,
    })?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| WatchError::NoRuntime { path: path.clone() })?;
    let format = Format::of(&path)?;
    let claim = shared
        .claim_keys(format!("the config file {}", path.display()))
        .map_err(|owner| WatchError::KeysOwned {
            path: path.clone(),
            owner,
        })?;
    let bytes = read_within(&path).map_err(|source| WatchError::Read {
        path: path.clone(),
        source,
    })?;
    let (config, keys) = file::parse(&path, format, &bytes)?;

    let wake = Arc::new(Notify::new());
    let on_event = Arc::clone(&wake);
    let names = Arc::new(Mutex::new(HashSet::new()));
    let relevant = Arc::clone(&names);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // An error from the backend (e.g. an overflowed event queue) may
        // hide a change: re-read to be sure.
        let wake = match &event {
            Err(_) => true,
            Ok(event) => matters(&event.kind) && about(event, &relevant),
        };
        if wake {
            on_event.notify_one();
        }
    })
    .map_err(|e| WatchError::Watch {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut follower = Follower {
        shared,
        path,
        format,
        seen: Seen::of(&bytes),
        watched: HashSet::new(),
        names,
        reading: None,
    };
    // The file's own directory must be watchable; a symlink target's
    // directory is best effort (see `rewatch`).
    let dir = parent(&follower.path);
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| WatchError::Watch {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    follower.watched.insert(dir);
    let resolved = std::fs::canonicalize(&follower.path).ok();
    follower.rewatch(&mut watcher, resolved);
    follower.apply(config, keys, "config file loaded")?;

    let path = follower.path.clone();
    let task = runtime.spawn(follower.run(watcher, wake));
    Ok(WatchHandle {
        path,
        task,
        _claim: claim,
    })
}

/// Keeps a [`watch_file`] task running; dropping it (or calling
/// [`stop`](Self::stop)) stops following the file. The config last applied
/// stays in force.
#[derive(Debug)]
#[must_use = "dropping the handle stops following the file"]
pub struct WatchHandle {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    /// Released when the handle is dropped, after the task was aborted.
    _claim: crate::shared::KeysClaim,
}

impl WatchHandle {
    /// The file followed, as an absolute path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the task is still following the file.
    #[must_use]
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops following the file, as dropping the handle does: the task is
    /// cancelled and its file watch removed; the config stays as it is.
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Events that can mean new content. Opening and reading (our own reads
/// included) cannot; a writer closing the file can.
fn matters(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether an event in a watched directory can concern the file: it names
/// the file (by its own name or, through symlinks, its target's), or an
/// entry starting with `..`, as Kubernetes' atomic writer swaps them
/// (`..data`, `..2026_11_25_...`), or no entry at all. Other files beside
/// the config (a busy log, say) cost no re-read; a change missed here is
/// still found by the periodic re-read.
fn about(event: &Event, names: &Mutex<HashSet<OsString>>) -> bool {
    if event.paths.is_empty() {
        return true;
    }
    let names = names
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| names.contains(name) || name.to_string_lossy().starts_with(".."))
    })
}

/// 100,000 named keys given as digests take about 11 MB of TOML; a bigger
/// file is a mistake (a log or a binary at the configured path), refused
/// before it is read into memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// How long one read of the file may take. A path whose open or read
/// blocks (a FIFO swapped in between the check and the open, a stalled
/// network mount) counts as unreadable after this, and the last good
/// config stays.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The file's bytes, in a buffer wiped when dropped (the file holds the
/// key). Grown by hand: `Vec`'s own growth would free the smaller buffer
/// with the bytes read so far still in it.
///
/// Blocking: callers run it on a thread of its own ([`read_within`],
/// [`Follower::read`]), never on a runtime worker.
fn read(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    // Checked before opening: opening a FIFO for reading waits for a
    // writer, and a device or a directory is no config file.
    regular_file(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // Checked again on what was opened: the path may have been swapped
    // between the two.
    let metadata = file.metadata()?;
    regular_file(&metadata)?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    // One byte over the cap, so a file that grew since the check is caught.
    let mut file = file.take(MAX_FILE_BYTES + 1);
    // One byte over the size, so the read that finds the end needs no room.
    let mut bytes = Zeroizing::new(Vec::with_capacity(metadata.len() as usize + 1));
    loop {
        if bytes.len() == bytes.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(2 * bytes.capacity() + 4096));
            bigger.extend_from_slice(&bytes);
            bytes = bigger;
        }
        let filled = bytes.len();
        let room = bytes.capacity();
        bytes.resize(room, 0);
        let n = match file.read(&mut bytes[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                bytes.truncate(filled);
                continue;
            }
            Err(e) => return Err(e),
        };
        bytes.truncate(filled + n);
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large());
        }
        if n == 0 {
            return Ok(bytes);
        }
    }
}

fn too_large() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        "the file is larger than 16 MiB, more than any config file needs; is the path right?",
    )
}

/// Refuses what is not a regular file once symlinks are followed.
fn regular_file(metadata: &std::fs::Metadata) -> std::io::Result<()> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        special_kind(&kind)
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}, which is not opened; point the path at the config file itself"),
    ))
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("reading the file did not finish within {READ_TIMEOUT:?} (a FIFO or a stalled network mount?)"),
    )
}

/// [`read`] on a thread of its own, waited for at most [`READ_TIMEOUT`]:
/// for [`watch_file`] and [`load_file`], which block their caller anyway
/// but must not block it for good.
fn read_within(path: &Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let (done, result) = std::sync::mpsc::sync_channel(1);
    let path = path.to_owned();
    reader_thread(move || {
        let _ = done.send(read(&path));
    })?;
    result
        .recv_timeout(READ_TIMEOUT)
        .unwrap_or_else(|_| Err(timed_out()))
}

/// A plain thread, not `tokio::task::spawn_blocking`: a runtime waits for
/// its blocking tasks when it shuts down, so a read stuck for good would
/// keep the process from exiting. A stuck thread is left behind instead,
/// and at most one per follower (see [`Follower::read`]).
fn reader_thread(read: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("proxy-auth-config-read".into())
        .spawn(read)
        .map(drop)
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// What the last read found, so an unchanged file (good or bad) is not
/// applied or reported again.
#[derive(Clone, PartialEq, Eq)]
enum Seen {
    /// The SHA-256 of the content: the file holds the key, so the content
    /// itself is not kept between reads.
    Content(Zeroizing<[u8; 32]>),
    Unreadable(std::io::ErrorKind),
}

impl Seen {
    fn of(bytes: &[u8]) -> Seen {
        Seen::Content(Zeroizing::new(crate::digest::sha256(bytes)))
    }
}

enum Outcome {
    Unchanged,
    Applied,
    Failed,
}

/// What one read off the runtime found.
enum Read {
    /// The same content as last time.
    Same,
    /// New content, parsed (on the reading thread too: a big file takes
    /// a while).
    New(Seen, Result<(ProxySecurityConfig, KeySet), WatchError>),
    Failed(std::io::Error),
}

/// The result of one read, and where the path resolves to now.
type ReadResult = (Read, Option<PathBuf>);

struct Follower {
    shared: SharedSecurityConfig,
    path: PathBuf,
    format: Format,
    seen: Seen,
    watched: HashSet<PathBuf>,
    /// The entry names whose events concern the file (see [`about`]).
    names: Arc<Mutex<HashSet<OsString>>>,
    /// A read that outlived [`READ_TIMEOUT`]; no other starts before it
    /// returns, so a path that blocks every read costs one thread.
    reading: Option<tokio::sync::oneshot::Receiver<ReadResult>>,
}

impl Follower {
    async fn run(mut self, mut watcher: notify::RecommendedWatcher, wake: Arc<Notify>) {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            tokio::select! {
                () = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = poll.tick() => {}
            }
            // A failure may be a writer caught half-way: look again once
            // before reporting it.
            if let Outcome::Failed = self.reload(&mut watcher, false).await {
                tokio::time::sleep(DEBOUNCE).await;
                self.reload(&mut watcher, true).await;
            }
        }
    }

    /// Re-reads the file; applies it if it changed and is good. With
    /// `report` off, a failure is neither logged nor remembered, so the
    /// retry that follows reports it.
    async fn reload(&mut self, watcher: &mut notify::RecommendedWatcher, report: bool) -> Outcome {
        let (read, resolved) = self.read().await;
        let outcome = match read {
            Read::Same => Outcome::Unchanged,
            Read::New(seen, Ok((config, keys))) => {
                let applied = self.apply(config, keys, "config file reloaded");
                self.seen = seen;
                match applied {
                    Ok(()) => Outcome::Applied,
                    Err(error) => {
                        log_rejected(&error);
                        Outcome::Failed
                    }
                }
            }
            Read::New(seen, Err(error)) => {
                if report {
                    log_rejected(&error);
                    self.seen = seen;
                }
                Outcome::Failed
            }
            Read::Failed(source) if self.seen == Seen::Unreadable(source.kind()) => {
                Outcome::Unchanged
            }
            Read::Failed(source) => {
                if report {
                    self.seen = Seen::Unreadable(source.kind());
                    log_rejected(&WatchError::Read {
                        path: self.path.clone(),
                        source,
                    });
                }
                Outcome::Failed
            }
        };
        // Only when the reading thread answered: the path is resolved there.
        if let Some(resolved) = resolved {
            self.rewatch(watcher, resolved);
        }
        outcome
    }

    /// Reads, hashes and parses the file on a thread of its own, waiting at
    /// most [`READ_TIMEOUT`]: the runtime's workers serve requests and
    /// never wait for the file system.
    async fn read(&mut self) -> (Read, Option<Option<PathBuf>>) {
        if let Some(mut reading) = self.reading.take() {
            match reading.try_recv() {
                // The stuck read came back; its content may be stale.
                Ok(_) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {}
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    self.reading = Some(reading);
                    return (Read::Failed(timed_out()), None);
                }
            }
        }
        let (done, mut result) = tokio::sync::oneshot::channel();
        let (path, format, seen) = (self.path.clone(), self.format, self.seen.clone());
        let started = reader_thread(move || {
            let read = match read(&path) {
                Err(e) => Read::Failed(e),
                Ok(bytes) => match Seen::of(&bytes) {
                    now if now == seen => Read::Same,
                    now => Read::New(now, file::parse(&path, format, &bytes)),
                },
            };
            let _ = done.send((read, std::fs::canonicalize(&path).ok()));
        });
        if let Err(e) = started {
            return (Read::Failed(e), None);
        }
        match tokio::time::timeout(READ_TIMEOUT, &mut result).await {
            Ok(Ok((read, resolved))) => (read, Some(resolved)),
            Ok(Err(_)) => (
                Read::Failed(std::io::Error::other(
                    "the reading thread ended without a result",
                )),
                None,
            ),
            Err(_) => {
                self.reading = Some(result);
                (Read::Failed(timed_out()), None)
            }
        }
    }

    /// Stores the file's config, unless the listen-address guard refuses it.
    fn apply(
        &self,
        config: ProxySecurityConfig,
        keys: KeySet,
        message: &'static str,
    ) -> Result<(), WatchError> {
        let change = Change::between((&self.shared.load(), &self.shared.keys()), (&config, &keys));
        self.shared
            .store_with_keys(config, keys)
            .map_err(|source| WatchError::Exposed {
                path: self.path.clone(),
                source,
            })?;
        tracing::info!(
            target: "proxy_auth",
            file = %self.path.display(),
            auth_mode = %transition(change.auth_mode),
            effective_mode = %transition(change.effective_mode),
            allow_lan_access = %transition(change.allow_lan_access),
            key_rotated = change.key_rotated,
            named_keys = change.named_keys,
            named_keys_changed = change.named_keys_changed,
            "{message}"
        );
        Ok(())
    }

    /// Watches the directory the path resolves into (`resolved`, found by
    /// the reading thread), besides the path's own (always watched), so a
    /// symlink to a file elsewhere is followed too; re-targeted after each
    /// read because a swap moves it.
    fn rewatch(&mut self, watcher: &mut notify::RecommendedWatcher, resolved: Option<PathBuf>) {
        let own = parent(&self.path);
        let mut wanted = HashSet::from([own.clone()]);
        let mut names: HashSet<OsString> = self
            .path
            .file_name()
            .map(OsString::from)
            .into_iter()
            .collect();
        if let Some(resolved) = resolved {
            wanted.insert(parent(&resolved));
            names.extend(resolved.file_name().map(OsString::from));
        }
        *self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = names;
        for gone in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            // A swapped-out directory may be deleted already; nothing to undo.
            let _ = watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for dir in wanted {
            if !self.watched.contains(&dir)
                && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok()
            {
                self.watched.insert(dir);
            }
        }
    }
}

fn log_rejected(error: &WatchError) {
    let (line, column) = error.position().unzip();
    tracing::error!(
        target: "proxy_auth",
        file = %match error {
            WatchError::Invalid { path, .. }
            | WatchError::Empty { path }
            | WatchError::Read { path, .. }
            | WatchError::UnknownFormat { path }
            | WatchError::NoRuntime { path }
            | WatchError::Watch { path, .. }
            | WatchError::KeysOwned { path, .. }
            | WatchError::Exposed { path, .. } => path.display(),
        },
        line,
        column,
        error = %error,
        "config file rejected; the last good config stays in force"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind};

    #[test]
    fn only_events_about_the_file_wake_the_task() {
        let names = Mutex::new(HashSet::from([OsString::from("auth.json")]));
        let event = |paths: &[&str]| Event {
            kind: EventKind::Modify(ModifyKind::Any),
            paths: paths.iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        assert!(about(&event(&["/etc/proxy/auth.json"]), &names));
        assert!(about(
            &event(&["/etc/proxy/.auth.json.swp", "/etc/proxy/auth.json"]),
            &names
        ));
        assert!(about(&event(&["/etc/proxy/..data"]), &names));
        assert!(about(&event(&[]), &names));
        assert!(!about(&event(&["/etc/proxy/access.log"]), &names));
        assert!(!about(&event(&["/etc/proxy/auth.json.bak"]), &names));
        let created = Event {
            kind: EventKind::Create(CreateKind::File),
            ..event(&["/etc/proxy/auth.json"])
        };
        assert!(matters(&created.kind) && about(&created, &names));
    }
}
