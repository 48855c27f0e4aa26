//! [`KeyAdmin`]: issue, revoke, re-date and list keys in the table.

use std::fmt;
use std::time::SystemTime;

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Socket};

use super::schema::{self, TABLE};
use super::{db_error, PgKeyStore, StoreError};
use crate::ApiKey;

use super::policy::{self, KeyPolicy, PolicyChange, Value};
use super::rows::label_problem;

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
    /// Its scopes and limits.
    pub policy: KeyPolicy,
    /// Why the replicas skip this row's policy (and so refuse its key), if
    /// they do: a row written by hand with a bad CIDR block, a `*` inside a
    /// model pattern, a negative limit, ...
    pub policy_problem: Option<String>,
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
    /// so hand it to its user now. The key has no scopes and no limits of
    /// its own: [`add_with_policy`](Self::add_with_policy) gives them.
    ///
    /// Errors with [`StoreError::LabelTaken`] if the label is in the table,
    /// even revoked: a label names one key for good, so logs stay clear.
    pub async fn add(
        &self,
        label: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<ApiKey, StoreError> {
        self.add_with_policy(label, expires_at, &KeyPolicy::new())
            .await
    }

    /// [`add`](Self::add), with the key's scopes and limits. A policy the
    /// replicas would refuse is [`StoreError::InvalidPolicy`], and nothing
    /// is written.
    pub async fn add_with_policy(
        &self,
        label: &str,
        expires_at: Option<SystemTime>,
        policy: &KeyPolicy,
    ) -> Result<ApiKey, StoreError> {
        check_label(label)?;
        check_expiry(expires_at)?;
        if let Some(reason) = policy.problem() {
            return Err(policy::invalid(label, reason));
        }
        // Wiped if the insert fails or this future is dropped half-way
        // (an `ApiKey` wipes itself); handed over only on success.
        let key = crate::try_generate_api_key()?;
        let digest = zeroize::Zeroizing::new(crate::key_digest(key.expose_secret()));
        let columns = schema::policy_list();
        let sql = format!(
            "INSERT INTO {TABLE} (label, key_digest, expires_at, {columns}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let [rpm, burst, max_concurrent] =
            [policy.rpm, policy.burst, policy.max_concurrent].map(column_int);
        match self
            .client
            .execute(
                &sql,
                &[
                    &label,
                    &digest.as_str(),
                    &expires_at,
                    &policy.models,
                    &policy.routes,
                    &policy.allowed_ips,
                    &rpm,
                    &burst,
                    &max_concurrent,
                ],
            )
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
        check_expiry(expires_at)?;
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

    /// Changes the policy fields `change` names on the key labelled
    /// `label`, keeping the others, and returns the policy now in the
    /// table. Every replica applies it within a second, and keeps the
    /// key's rate state and requests in flight (see
    /// [`limit`](crate::limit#state-across-config-changes)).
    ///
    /// Errors with [`StoreError::InvalidPolicy`] for a value the replicas
    /// would refuse, or a `burst` the change leaves without an `rpm`
    /// (nothing is written), and [`StoreError::UnknownLabel`].
    pub async fn set(&self, label: &str, change: &PolicyChange) -> Result<KeyPolicy, StoreError> {
        if change.is_empty() {
            return Err(policy::invalid(
                label,
                "the change names no field; give at least one of models, routes, allowed_ips, rpm, burst, max_concurrent".into(),
            ));
        }
        if let Some(reason) = change.problem() {
            return Err(policy::invalid(label, reason));
        }
        let mut assignments = Vec::new();
        let mut lists = Vec::new();
        let mut limits = Vec::new();
        for (field, value) in change.changes() {
            match value {
                Value::List(items) => lists.push((field.as_str(), items)),
                Value::Limit(limit) => limits.push((field.as_str(), column_int(*limit))),
            }
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&label];
        for (column, items) in &lists {
            params.push(*items);
            assignments.push(format!("{column} = ${}::text[]", params.len()));
        }
        for (column, limit) in &limits {
            params.push(limit);
            assignments.push(format!("{column} = ${}::int4", params.len()));
        }
        let sql = format!(
            "UPDATE {TABLE} SET {} WHERE label = $1 RETURNING {}",
            assignments.join(", "),
            schema::policy_list()
        );
        let rows = match self.client.query(&sql, &params).await {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
                let constraint = e.as_db_error().and_then(|db| db.constraint());
                let reason = if constraint == Some(schema::BURST_NEEDS_RPM) {
                    "the key would have a burst without an rpm (burst is how many requests may come back to back at the rate rpm sets); set rpm too, or clear burst as well".to_owned()
                } else {
                    format!(
                        "the key table refuses it ({})",
                        constraint.unwrap_or("a check constraint")
                    )
                };
                return Err(policy::invalid(label, reason));
            }
            Err(e) => return Err(db_error(&self.address, "changing a key's policy", e)),
        };
        match rows.first() {
            None => Err(StoreError::UnknownLabel(label.to_owned())),
            Some(row) => Ok(KeyPolicy::from_row(row, 0).0),
        }
    }

    /// Every row, active or not, sorted by label.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, StoreError> {
        let sql = format!(
            "SELECT label, created_at, expires_at, revoked_at, {} FROM {TABLE} ORDER BY label",
            schema::policy_list()
        );
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(|e| db_error(&self.address, "listing the keys", e))?;
        rows.iter()
            .map(|row| {
                let (policy, policy_problem) = KeyPolicy::from_row(row, 4);
                Ok(KeyInfo {
                    label: row.try_get(0)?,
                    created_at: row.try_get(1)?,
                    expires_at: row.try_get(2)?,
                    revoked_at: row.try_get(3)?,
                    policy,
                    policy_problem,
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

/// A limit as the table's `integer` column holds it; every limit that
/// reaches this is at most [`limit::MAX`](crate::limit::MAX).
fn column_int(limit: Option<u32>) -> Option<i32> {
    limit.map(|value| i32::try_from(value).unwrap_or(i32::MAX))
}

/// The same rules the replicas apply when reading, so a key added here is
/// always loadable.
fn check_label(label: &str) -> Result<(), StoreError> {
    match label_problem(label) {
        None => Ok(()),
        Some(reason) => Err(StoreError::InvalidLabel {
            label: label.to_owned(),
            reason,
        }),
    }
}

/// The latest expiry the table can be given: the end of the year 9999
/// (the PostgreSQL client's encoding overflows a few hundred thousand years
/// on, and nobody means a key to live that long).
const LAST_EXPIRY_SECS: u64 = 253_402_300_799;

/// Refuses an expiry outside 1970 to 9999, before it reaches the client.
fn check_expiry(expires_at: Option<SystemTime>) -> Result<(), StoreError> {
    let Some(at) = expires_at else {
        return Ok(());
    };
    let secs = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => after.as_secs(),
        Err(_) => return Err(StoreError::ExpiryOutOfRange),
    };
    if secs > LAST_EXPIRY_SECS {
        return Err(StoreError::ExpiryOutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked_before_the_database_is_asked() {
        for bad in ["", " alice", "a\u{7}b", "ali\u{200b}ce", &"x".repeat(257)] {
            let err = check_label(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidLabel { .. }), "{bad:?}");
            // Shown escaped: the message never carries the character itself.
            assert!(!err.to_string().contains(['\u{7}', '\u{200b}']), "{err}");
        }
        for good in ["alice", "ci bot", "équipe-7", &"x".repeat(256)] {
            assert!(check_label(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn expiries_past_the_year_9999_are_refused_before_the_client_sees_them() {
        let epoch = std::time::UNIX_EPOCH;
        let far = epoch + std::time::Duration::from_secs(20_000_000_000_000);
        assert!(matches!(
            check_expiry(Some(far)),
            Err(StoreError::ExpiryOutOfRange)
        ));
        let last = epoch + std::time::Duration::from_secs(LAST_EXPIRY_SECS);
        assert!(check_expiry(Some(last)).is_ok());
        assert!(check_expiry(None).is_ok());
        assert!(check_expiry(Some(SystemTime::now())).is_ok());
    }
}
