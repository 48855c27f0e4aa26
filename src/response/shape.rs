//! [`ApiShape`]: which API's error format a refusal's body takes.

use crate::{KeySource, Rejection};

/// The API family whose error shape a refusal's body takes, so the
/// official SDKs show its message instead of a parse error.
///
/// By default it is chosen per request, Gemini signals first because its
/// paths are the most specific: [`Gemini`](Self::Gemini) for
/// `x-goog-api-key`, a key in the query, a path under `/v1beta/` or with
/// `:generateContent`/`:streamGenerateContent`; then
/// [`Anthropic`](Self::Anthropic) for `x-api-key` or a path under
/// `/v1/messages`; [`OpenAi`](Self::OpenAi) otherwise. Pin one with
/// [`ProxyAuthLayer::error_shape`](crate::ProxyAuthLayer::error_shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiShape {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
    /// `{"error":{"code","message","status","details"}}`.
    Gemini,
}

impl ApiShape {
    /// Guesses the client's API family from what it sent: the key sources
    /// (the one read and those ignored) and the path.
    pub(crate) fn detect(rejection: &Rejection, path: &str) -> ApiShape {
        let sent = |source| rejection.source == Some(source) || rejection.ignored.contains(source);
        let gemini_path = path.starts_with("/v1beta/")
            || (path.contains(':')
                && (path.contains(":generateContent") || path.contains(":streamGenerateContent")));
        if sent(KeySource::XGoogApiKey) || sent(KeySource::QueryKey) || gemini_path {
            ApiShape::Gemini
        } else if sent(KeySource::XApiKey) || path.starts_with("/v1/messages") {
            ApiShape::Anthropic
        } else {
            ApiShape::OpenAi
        }
    }

    pub(crate) fn index(self) -> u32 {
        match self {
            ApiShape::OpenAi => 0,
            ApiShape::Anthropic => 1,
            ApiShape::Gemini => 2,
        }
    }
}
