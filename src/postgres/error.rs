//! [`StoreError`]: what can go wrong starting the store or administering keys.

use std::error::Error as StdError;

/// Why the key store could not start, or an admin operation failed.
///
/// Messages name the database by `host:port` (or socket directory), never
/// with the user's password, and never contain a key or a digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The connection string could not be parsed.
    #[error("the PostgreSQL connection string is invalid ({reason}); use a URL such as postgres://user:password@127.0.0.1:5432/dbname or key=value pairs such as \"host=127.0.0.1 user=proxy dbname=proxy\"")]
    InvalidUrl {
        /// What the parser objected to (the string itself is not repeated:
        /// it may hold a password).
        reason: String,
    },
    /// The server could not be reached, or refused the login.
    #[error("cannot connect to PostgreSQL at {address}: {source}")]
    Connect {
        /// `host:port` of every host in the connection string.
        address: String,
        /// The client's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A statement failed (permissions, a table of the same name with other
    /// columns, the connection lost mid-way, ...).
    #[error("PostgreSQL at {address} failed while {doing}: {source}")]
    Database {
        /// `host:port` of the server.
        address: String,
        /// What the store was doing.
        doing: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A label given to the admin API was not acceptable.
    #[error("label {label:?} is not usable: it {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// What to change.
        reason: &'static str,
    },
    /// A policy given to the admin API that the replicas would refuse: an
    /// empty list, a `*` inside a model pattern, a route without a leading
    /// `/`, a bad CIDR block, a limit of 0 or over a million, a `burst`
    /// without `rpm`. Nothing was written.
    #[error("the policy for label {label:?} is not valid: {reason}")]
    InvalidPolicy {
        /// The key's label.
        label: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An expiry given to the admin API before 1970 or after the year 9999.
    #[error("the expiry is out of range: give a time between 1970 and the end of the year 9999, or none for a key that never expires")]
    ExpiryOutOfRange,
    /// `add` with a label that is already in the table (active or revoked).
    #[error("label {0:?} is already in the key table (labels are never reused, even after a revoke, so logs stay unambiguous); pick another label")]
    LabelTaken(String),
    /// `revoke`, `set_expiry` or `set` with a label that is not in the table.
    #[error("no key is labelled {0:?}; `list` shows the labels")]
    UnknownLabel(String),
    /// The shared config's named keys are already kept by another source
    /// (a watched config file, or another store); see
    /// [`SharedSecurityConfig`](crate::SharedSecurityConfig#one-source-of-named-keys).
    #[error("the key store is not started: the shared config's named keys are already kept by {owner}, and the two would replace each other's keys; keep the named keys in one place (this key table, with auth_mode and api_key from the environment rather than a watched file, or the file's `keys` list), or stop {owner} first")]
    KeysOwned {
        /// The source that keeps the keys.
        owner: String,
    },
    /// The OS's random generator failed while generating a key.
    #[error(transparent)]
    KeyGeneration(#[from] crate::KeyGenError),
}
