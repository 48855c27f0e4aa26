//! Model scopes: the patterns a key may use, and the model a request names
//! in its path or query (the body is read elsewhere).

use std::borrow::Cow;

use super::path::{decodes_to, percent_decode, Facts};

/// A model name a key may use: exact, or a prefix ending in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModelPattern {
    text: Box<str>,
}

impl ModelPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(
                "a model pattern is empty; give a model name or a prefix ending in `*`".into(),
            );
        }
        if pattern[..pattern.len() - 1].contains('*') {
            return Err(format!(
                "model pattern {pattern:?} has a `*` before its end; only a trailing `*` (a prefix, such as \"claude-3-5-*\") is allowed"
            ));
        }
        if pattern.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "model pattern {pattern:?} has a space or control character, which no model name has"
            ));
        }
        Ok(ModelPattern {
            text: pattern.into(),
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn allows(&self, model: &str) -> bool {
        match self.text.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => *self.text == *model,
        }
    }
}

/// What a request says about its model, from one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Named<'a> {
    /// No model there.
    None,
    /// This model: borrowed from the request unless it had to be decoded.
    Model(Cow<'a, str>),
    /// Something that may name a model, but not one the check can read for
    /// certain (two of them, an encoding that parsers read differently).
    Unreadable(&'static str),
}

/// The model of a Gemini or Vertex AI path:
/// `.../models/{model}:{method}` (`generateContent`,
/// `streamGenerateContent`, `countTokens`, `embedContent`, any other
/// method), including `.../publishers/google/models/{model}:{method}`;
/// each segment percent-decoded once, as the upstream reads it.
#[cfg(test)]
fn in_path(path: &str) -> Named<'_> {
    in_path_with(path, &Facts::of(path))
}

/// [`in_path`] with the path's [`Facts`] already found.
pub(crate) fn in_path_with<'a>(path: &'a str, facts: &Facts) -> Named<'a> {
    if !facts.percent {
        return match facts.model {
            None => Named::None,
            Some(_) if facts.models => Named::Unreadable("the path names more than one model"),
            Some((start, end)) => {
                let model = &path[start..end];
                if model.is_empty() || model.bytes().any(|b| b.is_ascii_control()) {
                    Named::Unreadable("the path's model segment is not a plain model name")
                } else {
                    Named::Model(Cow::Borrowed(model))
                }
            }
        };
    }
    let mut found = Named::None;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        let Some(&next) = segments.peek() else { break };
        if !decodes_to(segment, "models") {
            continue;
        }
        // Most paths are plain: decoded only when they hold a `%`.
        let next = if next.contains('%') {
            Cow::Owned(percent_decode(next))
        } else {
            Cow::Borrowed(next)
        };
        let Some(at) = next.find(':') else { continue };
        if !matches!(found, Named::None) {
            return Named::Unreadable("the path names more than one model");
        }
        let model = match next {
            Cow::Borrowed(next) => Cow::Borrowed(&next[..at]),
            Cow::Owned(mut next) => {
                next.truncate(at);
                Cow::Owned(next)
            }
        };
        if model.is_empty() || model.contains('%') || model.chars().any(char::is_control) {
            return Named::Unreadable("the path's model segment is not a plain model name");
        }
        found = Named::Model(model);
    }
    found
}

/// The `model` query parameter (OpenAI's realtime API): a parameter whose
/// name, percent-decoded once, is `model` in any ASCII case. Two of them, or
/// a value with `+` (a space to form decoders, a plus to others), cannot be
/// read for certain.
pub(crate) fn in_query(query: Option<&str>) -> Named<'_> {
    let Some(query) = query else {
        return Named::None;
    };
    let mut found = Named::None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !decodes_to_ignoring_case(name, "model") {
            continue;
        }
        if !matches!(found, Named::None) {
            return Named::Unreadable("the query names the model more than once");
        }
        let model = if value.contains('%') {
            Cow::Owned(percent_decode(value))
        } else {
            Cow::Borrowed(value)
        };
        if value.contains('+') || model.is_empty() || model.chars().any(char::is_control) {
            return Named::Unreadable("the query's model parameter is not a plain model name");
        }
        found = Named::Model(model);
    }
    found
}

/// Whether `name` percent-decoded once is `word` in any ASCII case.
fn decodes_to_ignoring_case(name: &str, word: &str) -> bool {
    if !name.contains('%') {
        return name.eq_ignore_ascii_case(word);
    }
    percent_decode(name).eq_ignore_ascii_case(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let exact = ModelPattern::parse("gpt-4o-mini").unwrap();
        assert!(exact.allows("gpt-4o-mini"));
        assert!(!exact.allows("gpt-4o-mini-2024"));
        let prefix = ModelPattern::parse("claude-3-5-*").unwrap();
        assert!(prefix.allows("claude-3-5-sonnet") && prefix.allows("claude-3-5-"));
        assert!(!prefix.allows("claude-3-opus"));
        assert!(ModelPattern::parse("*").unwrap().allows("anything"));
        assert!(ModelPattern::parse("").is_err());
        assert!(ModelPattern::parse("gpt-*-mini")
            .unwrap_err()
            .contains("before its end"));
        assert!(ModelPattern::parse("gpt 4").is_err());
    }

    #[test]
    fn gemini_and_vertex_paths() {
        let m = |s: &'static str| Named::Model(Cow::Borrowed(s));
        assert_eq!(
            in_path("/v1beta/models/gemini-1.5-pro:generateContent"),
            m("gemini-1.5-pro")
        );
        assert_eq!(
            in_path("/v1/models/gemini-pro:streamGenerateContent"),
            m("gemini-pro")
        );
        assert_eq!(
            in_path("/v1beta/models/text-embedding-004:embedContent"),
            m("text-embedding-004")
        );
        assert_eq!(
            in_path(
                "/v1/projects/p/locations/us/publishers/google/models/gemini-2.0-flash:countTokens"
            ),
            m("gemini-2.0-flash")
        );
        assert_eq!(
            in_path("/v1beta/mod%65ls/gemini-ultra%3AgenerateContent"),
            m("gemini-ultra")
        );
        assert_eq!(
            in_path("/v1beta/models/gemini%2Dpro:generateContent"),
            m("gemini-pro")
        );
        assert_eq!(in_path("/v1/models"), Named::None);
        assert_eq!(in_path("/v1/chat/completions"), Named::None);
        assert_eq!(in_path("/v1beta/models/gemini-pro"), Named::None);
        assert!(matches!(
            in_path("/v1beta/models/gem%2541:generateContent"),
            Named::Unreadable(_)
        ));
        assert!(matches!(
            in_path("/v1beta/models/a:generateContent/models/b:generateContent"),
            Named::Unreadable(_)
        ));
    }

    #[test]
    fn the_query_model() {
        assert_eq!(
            in_query(Some("model=gpt-4o-realtime")),
            Named::Model("gpt-4o-realtime".into())
        );
        assert_eq!(
            in_query(Some("MODEL=gpt%2D4o")),
            Named::Model("gpt-4o".into())
        );
        assert_eq!(in_query(Some("models=x")), Named::None);
        assert_eq!(in_query(None), Named::None);
        assert!(matches!(
            in_query(Some("model=a&model=b")),
            Named::Unreadable(_)
        ));
        assert!(matches!(
            in_query(Some("model=a&m%6Fdel=a")),
            Named::Unreadable(_)
        ));
        assert!(matches!(
            in_query(Some("model=gpt+4")),
            Named::Unreadable(_)
        ));
        assert!(matches!(in_query(Some("model=")), Named::Unreadable(_)));
    }
}
