//! Which header carries the key, and how the key is cut out of it.
//!
//! The key is read from the *first present* of `Authorization`, `x-api-key`
//! and `x-goog-api-key`. "Present" means the header exists, whatever its
//! value: an empty, malformed or wrong value is judged as it is and never
//! skipped in favour of a later header. Falling through would let a request
//! carrying a bogus `Authorization` be authorised by some other header a
//! client library added, and it makes 401s impossible to explain.

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};

/// The header an API key was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySource {
    /// `Authorization`, with or without a `Bearer ` scheme (OpenAI style).
    Authorization,
    /// `x-api-key` (Anthropic style).
    XApiKey,
    /// `x-goog-api-key` (Gemini style).
    XGoogApiKey,
}

pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
pub(crate) const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");

impl KeySource {
    /// The sources in the order they are consulted.
    pub const PRIORITY: [KeySource; 3] = [
        KeySource::Authorization,
        KeySource::XApiKey,
        KeySource::XGoogApiKey,
    ];

    /// The header's name, lowercase as HTTP/2 sends it: `"authorization"`,
    /// `"x-api-key"` or `"x-goog-api-key"`.
    pub const fn header_name(self) -> &'static str {
        match self {
            KeySource::Authorization => "authorization",
            KeySource::XApiKey => "x-api-key",
            KeySource::XGoogApiKey => "x-goog-api-key",
        }
    }

    fn header(self) -> HeaderName {
        match self {
            KeySource::Authorization => AUTHORIZATION,
            KeySource::XApiKey => X_API_KEY,
            KeySource::XGoogApiKey => X_GOOG_API_KEY,
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.header_name())
    }
}

/// Why a present key header could not even be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The header (or what followed `Bearer `) was empty.
    Empty,
    /// The header appeared more than once. `Authorization` is a singleton
    /// field (RFC 9110 §11.6.2) and so are the API-key headers; picking one
    /// of several values would let a request smuggle a second credential
    /// past whatever checked the first, so the request is refused.
    Duplicate,
    /// The value has bytes outside visible ASCII, space and tab, which no
    /// API key contains.
    NotAscii,
}

/// What the request presented, before comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// None of the three headers is present.
    Missing,
    /// A key to compare, and where it came from.
    Key { source: KeySource, key: &'a [u8] },
    /// The first present header cannot hold a valid key.
    Unusable {
        source: KeySource,
        problem: KeyProblem,
    },
}

/// Reads the key from the first present header.
pub(crate) fn presented_key(headers: &HeaderMap) -> Presented<'_> {
    for source in KeySource::PRIORITY {
        let mut values = headers.get_all(source.header()).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Presented::Unusable {
                source,
                problem: KeyProblem::Duplicate,
            };
        }
        let raw = value.as_bytes();
        let key = match source {
            KeySource::Authorization => strip_bearer(raw),
            KeySource::XApiKey | KeySource::XGoogApiKey => raw,
        };
        let problem = if key.is_empty() {
            Some(KeyProblem::Empty)
        } else if !key
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            Some(KeyProblem::NotAscii)
        } else {
            None
        };
        return match problem {
            Some(problem) => Presented::Unusable { source, problem },
            None => Presented::Key { source, key },
        };
    }
    Presented::Missing
}

/// Strips one `Bearer ` prefix: the scheme matched case-insensitively
/// (RFC 9110 §11.1), exactly one space after it. Anything else, including
/// `Bearer<key>` and other schemes, is returned whole, so it can only match
/// if the configured key is that whole string.
pub(crate) fn strip_bearer(value: &[u8]) -> &[u8] {
    match value.split_at_checked(7) {
        Some((scheme, rest))
            if scheme[..6].eq_ignore_ascii_case(b"bearer") && scheme[6] == b' ' =>
        {
            rest
        }
        _ => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_is_stripped_once_case_insensitively() {
        assert_eq!(strip_bearer(b"Bearer k"), b"k");
        assert_eq!(strip_bearer(b"bearer k"), b"k");
        assert_eq!(strip_bearer(b"BEARER k"), b"k");
        assert_eq!(strip_bearer(b"Bearer Bearer k"), b"Bearer k");
        assert_eq!(strip_bearer(b"Bearer  k"), b" k");
        assert_eq!(strip_bearer(b"Bearer\tk"), b"Bearer\tk");
        assert_eq!(strip_bearer(b"Bearerk"), b"Bearerk");
        assert_eq!(strip_bearer(b"Bearer "), b"");
        assert_eq!(strip_bearer(b"Bearer"), b"Bearer");
        assert_eq!(strip_bearer(b"Basic k"), b"Basic k");
        assert_eq!(strip_bearer(b"k"), b"k");
        assert_eq!(strip_bearer("Béarer k".as_bytes()), "Béarer k".as_bytes());
    }

    #[test]
    fn first_present_header_wins_even_when_bad() {
        let h = headers(&[
            ("x-goog-api-key", b"g"),
            ("x-api-key", b"a"),
            ("authorization", b"Bearer z"),
        ]);
        assert_eq!(
            presented_key(&h),
            Presented::Key {
                source: KeySource::Authorization,
                key: b"z"
            }
        );
        let h = headers(&[("x-goog-api-key", b"g"), ("x-api-key", b"a")]);
        assert_eq!(
            presented_key(&h),
            Presented::Key {
                source: KeySource::XApiKey,
                key: b"a"
            }
        );
        let h = headers(&[("x-goog-api-key", b"g")]);
        assert_eq!(
            presented_key(&h),
            Presented::Key {
                source: KeySource::XGoogApiKey,
                key: b"g"
            }
        );
        let h = headers(&[("authorization", b""), ("x-api-key", b"good")]);
        assert_eq!(
            presented_key(&h),
            Presented::Unusable {
                source: KeySource::Authorization,
                problem: KeyProblem::Empty
            }
        );
        let h = headers(&[("authorization", "ключ".as_bytes()), ("x-api-key", b"good")]);
        assert_eq!(
            presented_key(&h),
            Presented::Unusable {
                source: KeySource::Authorization,
                problem: KeyProblem::NotAscii
            }
        );
        assert_eq!(presented_key(&HeaderMap::new()), Presented::Missing);
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let h = headers(&[("X-Goog-Api-Key", b"g")]);
        assert_eq!(
            presented_key(&h),
            Presented::Key {
                source: KeySource::XGoogApiKey,
                key: b"g"
            }
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let h = headers(&[("x-api-key", b"a"), ("x-api-key", b"a")]);
        assert_eq!(
            presented_key(&h),
            Presented::Unusable {
                source: KeySource::XApiKey,
                problem: KeyProblem::Duplicate
            }
        );
    }

    #[test]
    fn bearer_without_key_is_empty() {
        let h = headers(&[("authorization", b"Bearer ")]);
        assert_eq!(
            presented_key(&h),
            Presented::Unusable {
                source: KeySource::Authorization,
                problem: KeyProblem::Empty
            }
        );
    }
}
