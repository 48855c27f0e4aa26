//! Which rows of the key table are trusted: the checks every row passes
//! before its digest reaches a key set, and the error log for those that
//! fail.

use std::fmt::Display;
use std::time::SystemTime;

use tokio_postgres::Row;

use crate::digest::{classify, KeyText};
use crate::{KeySet, KeySetError};

/// A row that passed the checks; its digest is well-formed.
pub(crate) struct KeyRow {
    pub(crate) label: String,
    // Wiped when the row is dropped.
    digest: crate::ApiKey,
    expires_at: Option<SystemTime>,
}

/// The row's fields, or its label (as far as it could be read) and why it
/// cannot be loaded.
pub(crate) fn read_row(row: &Row) -> Result<KeyRow, (String, String)> {
    let label: String = match row.try_get::<_, Option<String>>(0) {
        Ok(Some(label)) => label,
        Ok(None) => return Err((String::new(), "its label is NULL".into())),
        Err(e) => return Err((String::new(), format!("its label is unreadable ({e})"))),
    };
    let problem = |reason: &str| Err((label.clone(), reason.to_owned()));
    if label.trim().is_empty() {
        return problem("its label is empty");
    }
    if label.trim() != label {
        return problem("its label has leading or trailing whitespace");
    }
    let digest = match row.try_get::<_, Option<String>>(1) {
        Ok(Some(digest)) => crate::ApiKey::from(digest),
        _ => return problem("its key_digest is NULL or not text"),
    };
    // Without the prefix a value would be taken as a plaintext key by
    // `KeySet::insert`: refuse it instead. Exactly the digest, nothing
    // around it: the table's index and the holders count compare
    // `lower(key_digest)`, which must be the same key for the same text.
    let digest = match classify(digest.expose_secret()) {
        // One spelling from here on, lowercase, as `key_digest` writes it.
        KeyText::Digest(bytes) => {
            crate::ApiKey::new(crate::digest::digest_string(&zeroize::Zeroizing::new(bytes)))
        }
        _ => {
            return problem(
                "its key_digest is not \"sha256:\" followed by 64 hex characters (and nothing around them)",
            )
        }
    };
    let expires_at = match row.try_get::<_, Option<SystemTime>>(2) {
        Ok(at) => at,
        Err(_) => return problem("its expires_at is not a timestamp"),
    };
    Ok(KeyRow {
        label,
        digest,
        expires_at,
    })
}

pub(crate) fn insert(keys: &mut KeySet, row: &KeyRow) -> Result<(), KeySetError> {
    match row.expires_at {
        None => keys.insert(row.label.as_str(), row.digest.expose_secret()),
        Some(at) => keys.insert_expiring(row.label.as_str(), row.digest.expose_secret(), at),
    }
}

/// The rows labelled `labels` hold one key (their digests differ at most in
/// case): none of them is accepted, so a key revoked under one label is
/// not accepted under another.
pub(crate) fn report_shared(labels: &[String]) {
    tracing::error!(
        target: "proxy_auth",
        labels = ?labels,
        "skipping rows of the key table that hold the same key: {labels:?}; none of them is accepted (revoking one revokes the key). Delete the rows that should not exist"
    );
}

pub(crate) fn report(label: &str, problem: &dyn Display) {
    tracing::error!(
        target: "proxy_auth",
        label = ?label,
        "skipping a row of the key table: {problem}; fix or delete that row (the other keys are loaded)"
    );
}
