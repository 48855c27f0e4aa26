//! Model scopes: the patterns a key may use, and the model a request names
//! in its path or query (the body is read elsewhere).

use std::borrow::Cow;

use super::path::percent_decode;

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
        if pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
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

/// The model a path names, each segment percent-decoded once as the
/// upstream reads it:
///
/// - Gemini and Vertex AI: `.../models/{model}:{method}` (any method),
///   including `.../publishers/google/models/{model}:{method}`; a tuned
///   model `.../tunedModels/{id}:{method}` is `tunedModels/{id}`, a Vertex
///   endpoint `.../endpoints/{id}:{method}` is `endpoints/{id}`;
/// - Azure OpenAI: `.../deployments/{deployment}/...`;
/// - OpenAI's legacy engines: `.../engines/{engine}/...`;
/// - Amazon Bedrock: `.../model/{model-id}/invoke` (and `converse`, and
///   their streaming forms).
///
/// Two of them, a `{model}:{method}` segment with more than one `:`, or a
/// decoded model with a `/`, `\`, `?`, `#` or `%` in it cannot be read for
/// certain. The path must have passed [`Facts::check`] (no dot segments,
/// no encoded separators) and have no empty segment: an upstream that
/// resolves or collapses them could route to a model the check did not see.
pub(crate) fn in_path(path: &str) -> Named<'_> {
    let mut found = Named::None;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        let Some(&next) = segments.peek() else { break };
        let model = match &*decode(segment) {
            "models" => with_method(decode(next), ""),
            "tunedModels" => with_method(decode(next), "tunedModels/"),
            "endpoints" => with_method(decode(next), "endpoints/"),
            "deployments" | "engines" => Some(Ok(decode(next))),
            "model" => {
                let mut after = segments.clone();
                after.next();
                let action = after.next().map(|a| decode(a));
                let bedrock = [
                    "invoke",
                    "invoke-with-response-stream",
                    "converse",
                    "converse-stream",
                ];
                action
                    .filter(|a| bedrock.contains(&&**a))
                    .map(|_| Ok(decode(next)))
            }
            _ => None,
        };
        let model = match model {
            None => continue,
            Some(Err(why)) => return Named::Unreadable(why),
            Some(Ok(model)) => model,
        };
        if !matches!(found, Named::None) {
            return Named::Unreadable("the path names more than one model");
        }
        let plain = !model.is_empty()
            && !model.contains(['/', '\\', '?', '#', '%'])
            && !model.chars().any(char::is_control);
        // A tuned model or endpoint keeps its own `/`.
        let plain = plain
            || (model.matches('/').count() == 1
                && !model.ends_with('/')
                && {
                    let id = model.split_once('/').map_or("", |(_, id)| id);
                    !id.is_empty()
                        && !id.contains(['\\', '?', '#', '%'])
                        && !id.chars().any(char::is_control)
                }
                && (model.starts_with("tunedModels/") || model.starts_with("endpoints/")));
        if !plain {
            return Named::Unreadable("the path's model segment is not a plain model name");
        }
        found = Named::Model(model);
    }
    found
}

/// `segment` percent-decoded once; borrowed when there is nothing to decode.
fn decode(segment: &str) -> Cow<'_, str> {
    if segment.contains('%') {
        Cow::Owned(percent_decode(segment))
    } else {
        Cow::Borrowed(segment)
    }
}

/// `{model}:{method}`: the model (after `prefix`), `None` for a segment
/// without a method, an error for one with more than one `:`.
fn with_method<'a>(
    segment: Cow<'a, str>,
    prefix: &str,
) -> Option<Result<Cow<'a, str>, &'static str>> {
    let at = segment.find(':')?;
    if segment[at + 1..].contains(':') {
        return Some(Err("the path's model segment has more than one `:`"));
    }
    Some(Ok(match (prefix, segment) {
        ("", Cow::Borrowed(s)) => Cow::Borrowed(&s[..at]),
        (prefix, segment) => Cow::Owned(format!("{prefix}{}", &segment[..at])),
    }))
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
    fn every_path_form_that_names_a_model() {
        let m = |s: &'static str| Named::Model(Cow::Borrowed(s));
        let owned = |s: &str| Named::Model(Cow::Owned(s.to_owned()));
        assert_eq!(
            in_path("/openai/deployments/gpt-4o/chat/completions"),
            m("gpt-4o")
        );
        assert_eq!(in_path("/v1/engines/davinci/completions"), m("davinci"));
        assert_eq!(
            in_path("/v1beta/tunedModels/my-tune:generateContent"),
            owned("tunedModels/my-tune")
        );
        assert_eq!(
            in_path("/v1/projects/p/locations/l/endpoints/123:predict"),
            owned("endpoints/123")
        );
        assert_eq!(
            in_path("/model/anthropic.claude-3-sonnet-20240229-v1%3A0/invoke"),
            owned("anthropic.claude-3-sonnet-20240229-v1:0")
        );
        assert_eq!(
            in_path("/model/x/list"),
            Named::None,
            "not a Bedrock action"
        );
        assert!(matches!(
            in_path("/v1beta/models/llama3:70b:generateContent"),
            Named::Unreadable(_)
        ));
        assert!(matches!(
            in_path("/openai/deployments/a%2Fb/chat"),
            Named::Unreadable(_)
        ));
        assert!(matches!(
            in_path("/openai/deployments/a/x/deployments/b/y"),
            Named::Unreadable(_)
        ));
        assert!(
            ModelPattern::parse("通义千问").is_ok(),
            "a multi-byte last character"
        );
        assert!(ModelPattern::parse("qwen-é*").unwrap().allows("qwen-é-max"));
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
