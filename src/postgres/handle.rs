//! [`KeyStoreHandle`]: stops the store and reports what it is doing.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The running store of one replica. Dropping it stops the store as well
/// (without waiting); the key set stays as last loaded. Keep it for as long
/// as the server runs.
#[must_use = "dropping the handle stops following the key table; keep it while the server runs"]
pub struct KeyStoreHandle {
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) task: JoinHandle<()>,
    pub(crate) status: Arc<Status>,
}

impl KeyStoreHandle {
    /// Stops following the table and waits for the task to end. The key set
    /// keeps the keys last loaded.
    pub async fn stop(self) {
        drop(self.stop);
        let _ = self.task.await;
    }

    /// What the store is doing, for health checks and metrics.
    #[must_use]
    pub fn status(&self) -> KeyStoreStatus {
        KeyStoreStatus {
            connected: self.status.connected.load(Ordering::Relaxed),
            keys: self.status.keys.load(Ordering::Relaxed),
            full_reloads: self.status.full_reloads.load(Ordering::Relaxed),
            changes_applied: self.status.changes_applied.load(Ordering::Relaxed),
            notifications: self.status.notifications.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for KeyStoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStoreHandle")
            .field("status", &self.status())
            .finish()
    }
}

/// A snapshot of [`KeyStoreHandle::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStoreStatus {
    /// Whether the store is connected and listening (false during an outage).
    pub connected: bool,
    /// Keys in the set after the last load or change.
    pub keys: u64,
    /// Full reloads so far: the first load, timer reloads, reconnects.
    pub full_reloads: u64,
    /// Labels applied from notifications so far.
    pub changes_applied: u64,
    /// Notifications received on the channel so far, the store's own and
    /// anyone else's.
    pub notifications: u64,
}

#[derive(Default)]
pub(crate) struct Status {
    pub(crate) connected: AtomicBool,
    pub(crate) keys: AtomicU64,
    pub(crate) full_reloads: AtomicU64,
    pub(crate) changes_applied: AtomicU64,
    pub(crate) notifications: AtomicU64,
}
