//! Which rows of the key table are trusted: the checks every row passes
//! before its digest reaches a key set, and the error log for those that
//! fail.

use std::fmt::Display;
use std::time::SystemTime;

use tokio_postgres::Row;

use super::MAX_LABEL_BYTES;
use crate::digest::{classify, KeyText};
use crate::{KeySet, KeySetError, Limits, NewKey};

/// A row that passed the checks; its digest is well-formed and its limits
/// are valid (its scopes are parsed by [`insert`], as `KeySet::add` does).
pub(crate) struct KeyRow {
    pub(crate) label: String,
    // Wiped when the row is dropped.
    digest: crate::ApiKey,
    expires_at: Option<SystemTime>,
    models: Option<Vec<String>>,
    routes: Option<Vec<String>>,
    allowed_ips: Option<Vec<String>>,
    limits: Limits,
}

/// Where the policy columns start in every query's rows (see
/// [`schema::select_active`](super::schema::select_active)).
const POLICY_AT: usize = 5;

/// The row's fields, or its label (as far as it could be read) and why it
/// cannot be loaded.
pub(crate) fn read_row(row: &Row) -> Result<KeyRow, (String, String)> {
    let label: String = match row.try_get::<_, Option<String>>(0) {
        Ok(Some(label)) => label,
        Ok(None) => return Err((String::new(), "its label is NULL".into())),
        Err(e) => return Err((String::new(), format!("its label is unreadable ({e})"))),
    };
    if let Some(reason) = label_problem(&label) {
        return Err((label.clone(), format!("its label {reason}")));
    }
    let problem = |reason: &str| Err((label.clone(), reason.to_owned()));
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
    let list = |at: usize, column: &str| match row.try_get::<_, Option<Vec<String>>>(at) {
        Ok(list) => Ok(list),
        Err(_) => Err(format!(
            "its {column} is not a one-dimensional text array without NULLs"
        )),
    };
    let (models, routes, allowed_ips) = match (
        list(POLICY_AT, "models"),
        list(POLICY_AT + 1, "routes"),
        list(POLICY_AT + 2, "allowed_ips"),
    ) {
        (Ok(models), Ok(routes), Ok(allowed_ips)) => (models, routes, allowed_ips),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => return problem(&reason),
    };
    let limit = |at: usize, column: &str| match row.try_get::<_, Option<i32>>(at) {
        Ok(value) => value
            .map(|v| u32::try_from(v).map_err(|_| format!("its {column} is negative ({v})")))
            .transpose(),
        Err(_) => Err(format!("its {column} is not an integer")),
    };
    let limits = match (
        limit(POLICY_AT + 3, "rpm"),
        limit(POLICY_AT + 4, "burst"),
        limit(POLICY_AT + 5, "max_concurrent"),
    ) {
        (Ok(rpm), Ok(burst), Ok(max)) => Limits::new(rpm, burst, max),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => return problem(&reason),
    };
    let limits = match limits {
        Ok(limits) => limits,
        Err(e) => return problem(&format!("its limits are not valid: {e}")),
    };
    Ok(KeyRow {
        label,
        digest,
        expires_at,
        models,
        routes,
        allowed_ips,
        limits,
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

/// Adds the row's key with its expiry, scopes and limits. A scope
/// `KeySet::add` refuses (a bad CIDR block, a `*` inside a model pattern, a
/// route without a leading `/`) is [`KeySetError::BadScope`] and leaves
/// `keys` as it was: the row is skipped, never loaded without its scopes.
pub(crate) fn insert(keys: &mut KeySet, row: KeyRow) -> Result<(), KeySetError> {
    let KeyRow {
        label,
        digest,
        expires_at,
        models,
        routes,
        allowed_ips,
        limits,
    } = row;
    let mut new = NewKey::new(label, digest).limits(limits);
    if let Some(at) = expires_at {
        new = new.expires_at(at);
    }
    if let Some(models) = models {
        new = new.models(models);
    }
    if let Some(routes) = routes {
        new = new.routes(routes);
    }
    if let Some(nets) = allowed_ips {
        new = new.allowed_ips(nets);
    }
    keys.add(new)
}

/// Whether `error` is about the row itself (its policy), not about the
/// set it is added to: the row is skipped and the others are applied.
pub(crate) fn is_row_problem(error: &KeySetError) -> bool {
    matches!(
        error,
        KeySetError::BadScope { .. } | KeySetError::BadLimits { .. }
    )
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
