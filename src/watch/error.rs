//! [`WatchError`]: what can go wrong following a config file.

use std::path::PathBuf;

/// Why a config file could not be followed or was not applied.
///
/// Messages name the file and, for content errors, the line and column
/// (`path:line:column: message`, the form editors jump to). They never
/// contain a key: values quoted by the parser are left out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// `watch_file` was called outside a tokio runtime.
    #[error("watching {path} needs a tokio runtime; call watch_file from inside one (e.g. in #[tokio::main])")]
    NoRuntime {
        /// The file.
        path: PathBuf,
    },
    /// The file name does not end in `.json` or `.toml`.
    #[error("{path}: unknown config format; name the file *.json or *.toml")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read (missing, unreadable).
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is empty or only whitespace.
    #[error("{path}:1:1: the config file is empty; it must set at least api_key")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file does not parse, or a value is not valid.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The file's config would serve the address the shared config guards
    /// ([`SharedSecurityConfig::guard_listen_addr`](crate::SharedSecurityConfig::guard_listen_addr))
    /// with auth off; the config in force stays.
    #[error("{path}: not applied: {source}")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// The guard's refusal, naming the address and the fix.
        source: crate::ExposedWithoutAuth,
    },
    /// The shared config's named keys are already kept by another source
    /// (a key store, or another watched file); see
    /// [`SharedSecurityConfig`](crate::SharedSecurityConfig#one-source-of-named-keys).
    #[error("{path}: not followed: the shared config's named keys are already kept by {owner}, and the two would replace each other's keys; keep the named keys in one place (the key table, with auth_mode and api_key from the environment, or this file's `keys` list), or stop {owner} first")]
    KeysOwned {
        /// The file.
        path: PathBuf,
        /// The source that keeps the keys.
        owner: String,
    },
    /// The directory holding the file could not be watched.
    #[error("{path}: cannot watch the config file's directory: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The file-event backend's error.
        message: String,
    },
}

impl WatchError {
    /// The 1-based line and column of a content error, if it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            WatchError::Invalid { line, column, .. } => Some((*line, *column)),
            WatchError::Empty { .. } => Some((1, 1)),
            _ => None,
        }
    }
}
