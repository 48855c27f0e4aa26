//! Which key sources a layer reads, in which order, and how an
//! `Authorization` value's scheme is read.
//!
//! The defaults are the rules this crate exists for: `Authorization`, then
//! `x-api-key`, then `x-goog-api-key` (then `?key` with
//! [`query_key`](crate::ProxyAuthLayer::query_key)), and any `Authorization`
//! value counts as present. An author may narrow or reorder the list
//! ([`key_sources`](crate::ProxyAuthLayer::key_sources)) and may let
//! `Authorization` values of another scheme count as absent
//! ([`other_schemes_absent`](crate::ProxyAuthLayer::other_schemes_absent));
//! the first-present rule and the refusal of duplicates hold whatever the
//! list.

use std::fmt;

use http::HeaderMap;

use crate::extract::{header_of, key_param_values};
use crate::KeySource;

/// The sources a layer reads, in order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sources {
    order: [KeySource; 4],
    len: u8,
    /// `Authorization: <scheme> <credentials>` with a scheme other than
    /// `Bearer` counts as absent (for a different layer).
    pub(crate) other_schemes_absent: bool,
}

const HEADERS: [KeySource; 3] = [
    KeySource::Authorization,
    KeySource::XApiKey,
    KeySource::XGoogApiKey,
];

impl Default for Sources {
    fn default() -> Self {
        Sources {
            order: [
                KeySource::Authorization,
                KeySource::XApiKey,
                KeySource::XGoogApiKey,
                KeySource::QueryKey,
            ],
            len: 3,
            other_schemes_absent: false,
        }
    }
}

impl Sources {
    /// `list` in order, or why it cannot be one.
    pub(crate) fn new(
        list: impl IntoIterator<Item = KeySource>,
        other_schemes_absent: bool,
    ) -> Result<Self, String> {
        let mut sources = Sources {
            order: [KeySource::Authorization; 4],
            len: 0,
            other_schemes_absent,
        };
        for source in list {
            if sources.contains(source) {
                return Err(format!(
                    "key source {source} is listed twice; list each source once, in the order they are read"
                ));
            }
            sources.order[usize::from(sources.len)] = source;
            sources.len += 1;
        }
        if sources.len == 0 {
            return Err("the list of key sources is empty; a layer that reads no key would refuse every request that needs one".into());
        }
        Ok(sources)
    }

    pub(crate) fn list(&self) -> &[KeySource] {
        &self.order[..usize::from(self.len)]
    }

    pub(crate) fn contains(&self, source: KeySource) -> bool {
        self.list().contains(&source)
    }

    /// The rules' own order, read by the fast path in `extract`.
    pub(crate) fn is_standard(&self) -> (bool, bool) {
        let list = self.list();
        let standard = !self.other_schemes_absent && list.len() >= 3 && list[..3] == HEADERS;
        (standard, list.len() == 4)
    }

    /// With `?key` as the last source, or without it.
    pub(crate) fn with_query(mut self, on: bool) -> Self {
        let without: Vec<KeySource> = self
            .list()
            .iter()
            .copied()
            .filter(|&s| s != KeySource::QueryKey)
            .collect();
        self.len = 0;
        for source in without.into_iter().chain(on.then_some(KeySource::QueryKey)) {
            self.order[usize::from(self.len)] = source;
            self.len += 1;
        }
        self
    }

    /// The headers (and the query key) that were sent but not read: those
    /// after `read` in the list, those the list leaves out, and an
    /// `Authorization` of another scheme counted as absent. Asked on the
    /// refusal path only.
    pub(crate) fn ignored(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        read: Option<KeySource>,
    ) -> KeySources {
        let mut ignored = KeySources::default();
        let all = HEADERS.into_iter().chain([KeySource::QueryKey]);
        for source in all {
            if Some(source) == read {
                continue;
            }
            let sent = match header_of(source) {
                Some(name) => headers.contains_key(name),
                None => query.is_some_and(|q| key_param_values(q).next().is_some()),
            };
            if sent {
                ignored.insert(source);
            }
        }
        ignored
    }
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("order", &self.list())
            .field("other_schemes_absent", &self.other_schemes_absent)
            .finish()
    }
}

/// A set of key sources: the headers (and the query key) a refused request
/// sent but that were not read. See
/// [`Rejection::ignored`](crate::Rejection::ignored).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeySources(u8);

impl KeySources {
    fn bit(source: KeySource) -> u8 {
        1 << (source as u8)
    }

    pub(crate) fn insert(&mut self, source: KeySource) {
        self.0 |= Self::bit(source);
    }

    /// Whether `source` is in the set.
    #[must_use]
    pub fn contains(self, source: KeySource) -> bool {
        self.0 & Self::bit(source) != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The sources in the set, in the default reading order.
    pub fn iter(self) -> impl Iterator<Item = KeySource> {
        HEADERS
            .into_iter()
            .chain([KeySource::QueryKey])
            .filter(move |&s| self.contains(s))
    }

    /// The set as a number below 16, for tables indexed by it.
    pub(crate) fn bits(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Debug for KeySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// How an `Authorization` value (already trimmed) reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Bearer <key>`: one space, then the key (which may be empty).
    Bearer,
    /// Starts with `Bearer` in any case, but not `Bearer <key>` with one
    /// space: `Bearer<key>`, `Bearer  <key>`, `Bearer<TAB><key>`.
    MalformedBearer,
    /// `<word> <rest>` where the word could be an auth scheme (`Basic ...`,
    /// `Token ...`): another scheme, or a key with a space in it.
    Other,
    /// A single word: the whole value is the key.
    Bare,
}

/// Reads the scheme of an `Authorization` value.
pub(crate) fn scheme(value: &[u8]) -> Scheme {
    let starts_bearer = value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer");
    if starts_bearer {
        return match value.get(6..) {
            // `Bearer` alone: HTTP parsers dropped the space; an empty key.
            Some([]) => Scheme::Bearer,
            Some([b' ', next, ..]) if *next != b' ' && *next != b'\t' => Scheme::Bearer,
            _ => Scheme::MalformedBearer,
        };
    }
    let word = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .map(|at| &value[..at]);
    match word {
        Some(word) if !word.is_empty() && word.iter().all(|&b| is_tchar(b)) => Scheme::Other,
        _ => Scheme::Bare,
    }
}

/// RFC 9110 §5.6.2 `tchar`: what an auth scheme's name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme(b"Bearer sk-1"), Scheme::Bearer);
        assert_eq!(scheme(b"bEARER sk-1"), Scheme::Bearer);
        assert_eq!(scheme(b"Bearer"), Scheme::Bearer);
        assert_eq!(scheme(b"Bearersk-1"), Scheme::MalformedBearer);
        assert_eq!(scheme(b"Bearer  sk-1"), Scheme::MalformedBearer);
        assert_eq!(scheme(b"Bearer\tsk-1"), Scheme::MalformedBearer);
        assert_eq!(scheme(b"Bearer \tsk-1"), Scheme::MalformedBearer);
        assert_eq!(scheme(b"Basic dXNlcjpwYXNz"), Scheme::Other);
        assert_eq!(scheme(b"Token sk-1"), Scheme::Other);
        assert_eq!(scheme(b"sk-1"), Scheme::Bare);
        assert_eq!(scheme(b"Bear sk-1"), Scheme::Other);
        assert_eq!(scheme("ключ x".as_bytes()), Scheme::Bare);
        assert_eq!(scheme(b""), Scheme::Bare);
    }

    #[test]
    fn lists_are_checked_and_query_goes_last() {
        assert!(Sources::new([], false).is_err());
        let twice = Sources::new([KeySource::XApiKey, KeySource::XApiKey], false);
        assert!(twice.unwrap_err().contains("twice"));
        let list = Sources::new([KeySource::XApiKey, KeySource::Authorization], false).unwrap();
        assert_eq!(list.list(), [KeySource::XApiKey, KeySource::Authorization]);
        assert_eq!(list.is_standard(), (false, false));
        let with = list.with_query(true);
        assert_eq!(
            with.list(),
            [
                KeySource::XApiKey,
                KeySource::Authorization,
                KeySource::QueryKey
            ]
        );
        assert_eq!(with.with_query(false).list(), list.list());
        assert_eq!(Sources::default().is_standard(), (true, false));
        assert_eq!(
            Sources::default().with_query(true).is_standard(),
            (true, true)
        );
    }

    #[test]
    fn key_source_sets() {
        let mut set = KeySources::default();
        assert!(set.is_empty());
        set.insert(KeySource::XGoogApiKey);
        set.insert(KeySource::Authorization);
        assert!(set.contains(KeySource::Authorization) && !set.contains(KeySource::XApiKey));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [KeySource::Authorization, KeySource::XGoogApiKey]
        );
        assert_eq!(format!("{set:?}"), "{Authorization, XGoogApiKey}");
    }
}
