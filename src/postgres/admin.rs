//! [`KeyAdmin`]: issue, revoke, re-date and list keys in the table.

use std::fmt;
use std::time::SystemTime;

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use super::schema::{self, TABLE};
use super::{db_error, PgKeyStore, StoreError};
use crate::ApiKey;

use super::MAX_LABEL_BYTES;

/// A connection for issuing and revoking keys, from [`PgKeyStore::admin`].
///
/// Every change is a single statement, committed when the call returns;
/// every replica applies it within a second through the table's trigger.
pub struct KeyAdmin {
    client: Client,
    address: String,
}

/// One row of the key table as [`KeyAdmin::list`] shows it: never the
/// digest, and the key itself is not stored anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's name, reported in [`Authenticated::label`](crate::Authenticated::label).
    pub label: String,
    /// When it was added.
    pub created_at: SystemTime,
    /// When it stops being accepted, if ever.
    pub expires_at: Option<SystemTime>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

impl KeyInfo {
    /// Whether the replicas accept this key at `now`.
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

impl KeyAdmin {
    pub(crate) async fn connect<T>(store: &PgKeyStore<T>) -> Result<Self, StoreError>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut config = store.config.clone();
        // Told apart from the replicas' listening connections in
        // pg_stat_activity, unless the operator named both.
        if config.get_application_name() == Some(super::APPLICATION_NAME) {
            config.application_name("proxy-auth key admin");
        }
        let (client, connection) = config
            .connect(store.tls.clone())
            .await
            .map_err(|e| super::connect_error(&store.address, e))?;
        // Ends by itself when `client` is dropped.
        tokio::spawn(connection);
        schema::ensure(&client, &store.address).await?;
        Ok(KeyAdmin {
            client,
            address: store.address.clone(),
        })
    }

    /// Generates a new `sk-` key for `label`, stores its digest (with the
    /// expiry, if any) and returns the key: the only time it is ever seen,
    /// so hand it to its user now.
    ///
    /// Errors with [`StoreError::LabelTaken`] if the label is in the table,
    /// even revoked: a label names one key for good, so logs stay clear.
    pub async fn add(
        &self,
        label: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<ApiKey, StoreError> {
        check_label(label)?;
        // Wiped if the insert fails or this future is dropped half-way
        // (an `ApiKey` wipes itself); handed over only on success.
        let key = crate::try_generate_api_key()?;
        let digest = zeroize::Zeroizing::new(crate::key_digest(key.expose_secret()));
        let sql =
            format!("INSERT INTO {TABLE} (label, key_digest, expires_at) VALUES ($1, $2, $3)");
        match self
            .client
            .execute(&sql, &[&label, &digest.as_str(), &expires_at])
            .await
        {
            Ok(_) => Ok(key),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::LabelTaken(label.to_owned()))
            }
            Err(e) => Err(db_error(&self.address, "adding a key", e)),
        }
    }

    /// Revokes the key labelled `label` on every replica. `Ok(false)` if it
    /// was already revoked (its revocation time is kept).
    pub async fn revoke(&self, label: &str) -> Result<bool, StoreError> {
        // The CTE sees the row before the update: whether this call revoked it.
        let sql = format!(
            "WITH before AS (SELECT revoked_at FROM {TABLE} WHERE label = $1 FOR UPDATE) \
             UPDATE {TABLE} SET revoked_at = coalesce({TABLE}.revoked_at, now()) FROM before \
             WHERE label = $1 RETURNING before.revoked_at IS NULL"
        );
        let rows = self
            .client
            .query(&sql, &[&label])
            .await
            .map_err(|e| db_error(&self.address, "revoking a key", e))?;
        match rows.first() {
            None => Err(StoreError::UnknownLabel(label.to_owned())),
            Some(row) => Ok(row.try_get::<_, bool>(0).unwrap_or(false)),
        }
    }

    /// Changes when the key labelled `label` expires (`None`: never). A
    /// time in the past makes every replica refuse it at once.
    pub async fn set_expiry(
        &self,
        label: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        let sql = format!("UPDATE {TABLE} SET expires_at = $2 WHERE label = $1");
        let changed = self
            .client
            .execute(&sql, &[&label, &expires_at])
            .await
            .map_err(|e| db_error(&self.address, "changing an expiry", e))?;
        if changed == 0 {
            return Err(StoreError::UnknownLabel(label.to_owned()));
        }
        Ok(())
    }

    /// Every row, active or not, sorted by label.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let sql =
            format!("SELECT label, created_at, expires_at, revoked_at FROM {TABLE} ORDER BY label");
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| db_error(&self.address, "listing the keys", e))?;
        rows.iter()
            .map(|row| {
                Ok(KeyInfo {
                    label: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    expires_at: row.try_get(2)?,
                    revoked_at: row.try_get(3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| db_error(&self.address, "reading the key list", e))
    }
}

impl fmt::Debug for KeyAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyAdmin")
            .field("address", &self.address)
            .finish()
    }
}

/// The same rules the replicas apply when reading, so a key added here is
/// always loadable.
fn check_label(label: &str) -> Result<(), StoreError> {
    let reason = if label.trim().is_empty() {
        "it is empty; name the key after its user, e.g. \"alice\" or \"ci-bot\""
    } else if label.trim() != label {
        "it has leading or trailing whitespace"
    } else if label.len() > MAX_LABEL_BYTES {
        "it is longer than 256 bytes"
    } else if label.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidLabel {
        label: label.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_before_the_database_is_asked() {
        for bad in ["", "  ", " alice", "alice\n", "a\u{7}b", &"x".repeat(257)] {
            assert!(
                matches!(check_label(bad), Err(StoreError::InvalidLabel { .. })),
                "{bad:?}"
            );
        }
        for good in ["alice", "ci bot", "équipe-7", &"x".repeat(256)] {
            assert!(check_label(good).is_ok(), "{good:?}");
        }
    }
}
