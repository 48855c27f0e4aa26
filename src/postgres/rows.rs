//! Which rows of the key table are trusted: the checks every row passes
//! before its digest reaches a key set, and the error log for those that
//! fail.

use std::fmt::Display;
use std::time::SystemTime;

use tokio_postgres::Row;

use super::MAX_LABEL_BYTES;
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
    let problem = |reason: &str| Err((label.clone(), format!("its label {reason}")));
    if let Some(reason) = label_problem(&label) {
        return problem(reason);
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

/// Why `label` is not plain printable text, the rule for every label the
/// store writes ([`KeyAdmin::add`](super::KeyAdmin::add)) or loads: labels
/// reach logs, terminals (the `keys` CLI) and handlers
/// ([`Authenticated::label`](crate::Authenticated::label)), where a
/// terminal escape sequence would act and a zero-width or bidirectional
/// character would make two labels look alike.
pub(crate) fn label_problem(label: &str) -> Option<&'static str> {
    if label.trim().is_empty() {
        Some("is empty; name the key after its user, e.g. \"alice\" or \"ci-bot\"")
    } else if label.trim() != label {
        Some("has leading or trailing whitespace")
    } else if label.len() > MAX_LABEL_BYTES {
        Some("is longer than 256 bytes")
    } else if !label.chars().all(plain) {
        Some("has a control, zero-width, bidirectional or other invisible character; labels are plain printable text (letters, digits, punctuation, spaces)")
    } else {
        None
    }
}

/// A character that shows as itself: what Rust's `Debug` leaves unescaped
/// (not a control, format, separator other than the space, private-use,
/// unassigned or combining character), the space, and the three
/// characters `Debug` escapes with a backslash although they print.
fn plain(c: char) -> bool {
    matches!(c, ' ' | '"' | '\'' | '\\') || c.escape_debug().nth(1).is_none()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_plain_printable_text() {
        for bad in [
            "",
            "  ",
            " alice",
            "alice\n",
            "a\u{7}b",
            "\u{1b}[2J\u{1b}[Hroot",
            "ali\u{200b}ce",
            "alice\u{200d}",
            "\u{202e}ecila",
            "a\u{2066}b\u{2069}",
            "a\u{feff}b",
            "a\u{ad}b",
            "a\u{a0}b",
            "a\tb",
            "a\u{2028}b",
            "a\u{e0041}b",
            "a\u{e000}b",
            &"x".repeat(257),
        ] {
            assert!(label_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "alice",
            "ci bot",
            "équipe-7",
            "チーム",
            "o'brien \"ops\" \\ 2",
            &"x".repeat(256),
        ] {
            assert_eq!(label_problem(good), None, "{good:?}");
        }
    }
}
