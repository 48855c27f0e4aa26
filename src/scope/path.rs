//! Route scopes, and the path check they need: a route prefix can only
//! narrow what a key reaches if the path it is matched against is the path
//! the upstream will serve.

use std::fmt;

/// A route a key may call: a path prefix matched on `/` boundaries
/// (`/v1/chat` allows `/v1/chat` and `/v1/chat/completions`, not
/// `/v1/chatty`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route(Box<str>);

impl Route {
    pub(crate) fn parse(route: &str) -> Result<Self, String> {
        let route = route.trim();
        if !route.starts_with('/') {
            return Err(format!(
                "route {route:?} must start with `/` (a path prefix such as \"/v1/chat/completions\")"
            ));
        }
        if let Err(problem) = check_path(route) {
            return Err(format!("route {route:?} {problem}"));
        }
        // "/v1/chat/" and "/v1/chat" mean the same prefix.
        let trimmed = route.trim_end_matches('/');
        Ok(Route(if trimmed.is_empty() { "/" } else { trimmed }.into()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (already checked with [`check_path`]) is this route or
    /// below it.
    pub(crate) fn allows(&self, path: &str) -> bool {
        let prefix = &*self.0;
        prefix == "/"
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// Why a path cannot be matched against route scopes for certain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    /// A `.` or `..` segment, as sent or percent-encoded once or twice
    /// (`%2e%2e`, `%252e%252e`), or with `;` parameters (`..;`): an upstream
    /// that resolves it serves another path than the one checked.
    DotSegment,
    /// An encoded `/` or `\` (`%2f`, `%5c`, `%252f`), or a `\`: an upstream
    /// that decodes it splits the segment into two.
    EncodedSeparator,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::DotSegment => {
                "has a `.` or `..` segment (as sent or percent-encoded), which an upstream may resolve to another path"
            }
            PathProblem::EncodedSeparator => {
                "has an encoded `/` or `\\` (or a `\\`), which an upstream may decode into another segment"
            }
        })
    }
}

/// The check a route scope applies to the request's path before matching
/// it: no segment that an upstream could resolve or split into another
/// path. A path that fails is refused for a key with routes, never matched
/// as it is. A forwarding proxy may apply the same check to every path it
/// forwards.
///
/// ```
/// use proxy_auth::{check_path, PathProblem};
///
/// assert!(check_path("/v1/chat/completions").is_ok());
/// assert_eq!(check_path("/v1/chat/../admin"), Err(PathProblem::DotSegment));
/// assert_eq!(check_path("/v1/chat/%2e%2e/admin"), Err(PathProblem::DotSegment));
/// assert_eq!(check_path("/v1/chat/..%2fadmin"), Err(PathProblem::EncodedSeparator));
/// ```
pub fn check_path(path: &str) -> Result<(), PathProblem> {
    Facts::of(path).check(path)
}

/// [`check_path`] for a path with percent-escapes: every segment as sent,
/// decoded once and decoded twice.
fn check_encoded(path: &str) -> Result<(), PathProblem> {
    for segment in path.split('/') {
        let once = percent_decode(segment);
        let twice = percent_decode(&once);
        for form in [segment, &once, &twice] {
            if form.contains(['/', '\\']) {
                return Err(PathProblem::EncodedSeparator);
            }
            if is_dot_segment(form) {
                return Err(PathProblem::DotSegment);
            }
        }
    }
    Ok(())
}

/// What one pass over a path finds: whether it must be decoded to be read,
/// whether it has a `\`, a dot segment as sent, or an empty segment (`//`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) percent: bool,
    pub(crate) backslash: bool,
    pub(crate) dot_segment: bool,
    /// A `//` (an empty segment between two others), which an upstream
    /// may collapse.
    pub(crate) empty_segment: bool,
}

impl Facts {
    /// One pass, no allocation: the request path of every request of a
    /// scoped key goes through it.
    pub(crate) fn of(path: &str) -> Facts {
        // Most bytes are none of the three that matter: one table lookup
        // each, and the rest only for those.
        const SPECIAL: [bool; 256] = {
            let mut table = [false; 256];
            table[b'/' as usize] = true;
            table[b'%' as usize] = true;
            table[b'\\' as usize] = true;
            table
        };
        let bytes = path.as_bytes();
        let mut facts = Facts::default();
        let mut segment = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if !SPECIAL[usize::from(b)] {
                continue;
            }
            match b {
                b'/' => {
                    facts.dot_segment |= is_dot_bytes(&bytes[segment..i]);
                    facts.empty_segment |= i > 0 && segment == i;
                    segment = i + 1;
                }
                b'%' => facts.percent = true,
                _ => facts.backslash = true,
            }
        }
        facts.dot_segment |= is_dot_bytes(&bytes[segment..]);
        facts
    }

    /// [`check_path`]'s verdict, decoding only a path that needs it.
    pub(crate) fn check(&self, path: &str) -> Result<(), PathProblem> {
        if self.backslash {
            return Err(PathProblem::EncodedSeparator);
        }
        if self.percent {
            return check_encoded(path);
        }
        if self.dot_segment {
            return Err(PathProblem::DotSegment);
        }
        Ok(())
    }
}

/// `.` or `..`, also with `;` parameters: servlet containers drop them
/// (`..;jsessionid=x`) before resolving dots.
fn is_dot_segment(segment: &str) -> bool {
    is_dot_bytes(segment.as_bytes())
}

fn is_dot_bytes(segment: &[u8]) -> bool {
    matches!(
        segment,
        [b'.'] | [b'.', b'.'] | [b'.', b';', ..] | [b'.', b'.', b';', ..]
    )
}

/// `segment` with each `%XX` decoded once (invalid escapes kept as they
/// are); bytes that are not UTF-8 become U+FFFD, which is neither a dot nor
/// a separator.
pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
            _ => None,
        };
        match decoded {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_on_slash_boundaries() {
        let route = Route::parse("/v1/chat").unwrap();
        assert!(route.allows("/v1/chat"));
        assert!(route.allows("/v1/chat/completions"));
        assert!(!route.allows("/v1/chatty"));
        assert!(!route.allows("/v1"));
        assert!(!route.allows("/V1/chat"));
        assert_eq!(Route::parse("/v1/chat/").unwrap(), route);
        assert!(Route::parse("/").unwrap().allows("/anything"));
        assert!(Route::parse("v1/chat")
            .unwrap_err()
            .contains("must start with `/`"));
        assert!(Route::parse("/v1/../x").is_err());
    }

    #[test]
    fn paths_an_upstream_could_read_otherwise_are_refused() {
        for bad in [
            "/v1/chat/../embeddings",
            "/v1/chat/./x",
            "/v1/chat/%2e%2e/x",
            "/v1/chat/%2E%2e/x",
            "/v1/chat/.%2e/x",
            "/v1/chat/%252e%252e/x",
            "/v1/chat/..;/x",
            "/v1/chat/..;jsessionid=1/x",
            "/v1/chat/..",
        ] {
            assert_eq!(check_path(bad), Err(PathProblem::DotSegment), "{bad}");
        }
        for bad in [
            "/v1/chat/..%2fx",
            "/v1/chat%2f..%2fx",
            "/v1/chat/..%5cx",
            "/v1/chat/..\\x",
            "/v1/chat%252fx",
        ] {
            assert_eq!(check_path(bad), Err(PathProblem::EncodedSeparator), "{bad}");
        }
        for good in [
            "/",
            "/v1/chat/completions",
            "/v1/models/gpt-4o",
            "/v1/a..b/.c/d.",
            "/v1//x",
            "/%41",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
    }
}
