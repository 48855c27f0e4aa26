//! The 401 the layer sends: status, headers, and a JSON body in the error
//! shape of the API the client speaks, so the official OpenAI, Anthropic and
//! Gemini SDKs show its message instead of a parse error.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

use crate::extract::{KeyProblem, KeySource, X_API_KEY, X_GOOG_API_KEY};
use crate::{RejectReason, Rejection};

/// Response header on every 401 the layer sends, naming the reason
/// (`missing_key`, `invalid_key`, `no_key_configured`). An upstream's own 401
/// never carries it, so `curl -i` tells at once who refused the request.
pub const REJECTION_HEADER: HeaderName = HeaderName::from_static("x-proxy-auth-error");

/// The API family whose error shape a rejection body takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `{"error":{"message","type","param","code"}}`; the default.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`; chosen for requests with
    /// `x-api-key` or a path under `/v1/messages`.
    Anthropic,
    /// `{"error":{"code","message","status"}}`; chosen for requests with
    /// `x-goog-api-key` or a Gemini path (`/v1beta/...`, `...:generateContent`).
    Gemini,
}

impl Protocol {
    /// Guesses the client's API family from the request. Gemini signals are
    /// checked first because Gemini paths are the most specific.
    pub fn detect(path: &str, headers: &HeaderMap) -> Protocol {
        if headers.contains_key(X_GOOG_API_KEY)
            || path.starts_with("/v1beta/")
            || path.contains(":generateContent")
            || path.contains(":streamGenerateContent")
        {
            Protocol::Gemini
        } else if headers.contains_key(X_API_KEY) || path.starts_with("/v1/messages") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        }
    }
}

/// A human-readable explanation that says who refused and what to change.
/// Never includes the key.
pub(crate) fn message(rejection: &Rejection) -> String {
    let mut m = String::from("Rejected by the proxy's API-key check (proxy-auth): ");
    match (rejection.reason, rejection.source, rejection.problem) {
        (RejectReason::NoKeyConfigured, ..) => m.push_str(
            "authentication is enabled but the proxy has no API key configured, so no request can pass. The proxy's operator must set api_key.",
        ),
        (RejectReason::MissingKey, ..) | (_, None, _) => m.push_str(
            "no API key was sent. Send it as 'Authorization: Bearer <key>', or in the x-api-key or x-goog-api-key header.",
        ),
        (RejectReason::InvalidKey, Some(source), problem) => {
            m.push_str(source.describe());
            m.push_str(match problem {
                None => " holds an API key that is not valid for this proxy.",
                Some(KeyProblem::Empty) => " is empty.",
                Some(KeyProblem::Duplicate) => " was sent more than once; send exactly one.",
                Some(KeyProblem::NotAscii) => " contains characters that no API key has (non-ASCII or control).",
                Some(KeyProblem::Expired) => " holds a key that has expired; ask the proxy's operator for its replacement.",
            });
            if source != KeySource::XGoogApiKey {
                m.push_str(" Only the first present of authorization, x-api-key, x-goog-api-key is read.");
            }
        }
    }
    m
}

/// Builds the 401. `message` holds no `"` or `\`, so it can be written into
/// JSON as is.
pub(crate) fn unauthorized<B>(
    rejection: &Rejection,
    protocol: Protocol,
    wrap: impl FnOnce(Bytes) -> B,
) -> Response<B> {
    let message = message(rejection);
    debug_assert!(!message.contains(['"', '\\']));
    let reason = rejection.reason.as_str();
    let body = match protocol {
        Protocol::OpenAi => format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{reason}"}}}}"#
        ),
        Protocol::Anthropic => {
            format!(
                r#"{{"type":"error","error":{{"type":"authentication_error","message":"{message}"}}}}"#
            )
        }
        Protocol::Gemini => {
            format!(
                r#"{{"error":{{"code":401,"message":"{message}","status":"UNAUTHENTICATED"}}}}"#
            )
        }
    };
    let mut response = Response::new(wrap(Bytes::from(body)));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REJECTION_HEADER, HeaderValue::from_static(reason));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProxyAuthMode;

    fn rejection(
        reason: RejectReason,
        source: Option<KeySource>,
        problem: Option<KeyProblem>,
    ) -> Rejection {
        Rejection {
            reason,
            source,
            problem,
            mode: ProxyAuthMode::Strict,
        }
    }

    #[test]
    fn protocol_detection() {
        let mut h = HeaderMap::new();
        assert_eq!(
            Protocol::detect("/v1/chat/completions", &h),
            Protocol::OpenAi
        );
        assert_eq!(Protocol::detect("/v1/messages", &h), Protocol::Anthropic);
        assert_eq!(
            Protocol::detect("/v1beta/models/gemini-pro:generateContent", &h),
            Protocol::Gemini
        );
        assert_eq!(
            Protocol::detect("/v1/models/x:streamGenerateContent", &h),
            Protocol::Gemini
        );
        h.insert("x-api-key", HeaderValue::from_static("k"));
        assert_eq!(
            Protocol::detect("/v1/chat/completions", &h),
            Protocol::Anthropic
        );
        h.insert("x-goog-api-key", HeaderValue::from_static("k"));
        assert_eq!(Protocol::detect("/v1/messages", &h), Protocol::Gemini);
    }

    #[test]
    fn bodies_are_valid_json_in_each_shape() {
        let all_rejections = [
            rejection(RejectReason::MissingKey, None, None),
            rejection(RejectReason::NoKeyConfigured, None, None),
            rejection(
                RejectReason::InvalidKey,
                Some(KeySource::Authorization),
                None,
            ),
            rejection(
                RejectReason::InvalidKey,
                Some(KeySource::XApiKey),
                Some(KeyProblem::Empty),
            ),
            rejection(
                RejectReason::InvalidKey,
                Some(KeySource::XGoogApiKey),
                Some(KeyProblem::Duplicate),
            ),
            rejection(
                RejectReason::InvalidKey,
                Some(KeySource::XApiKey),
                Some(KeyProblem::NotAscii),
            ),
        ];
        for r in all_rejections {
            for protocol in [Protocol::OpenAi, Protocol::Anthropic, Protocol::Gemini] {
                let response = unauthorized(&r, protocol, |b| b);
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
                assert_eq!(response.headers()[REJECTION_HEADER], r.reason.as_str());
                let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
                let message = match protocol {
                    Protocol::OpenAi => {
                        assert_eq!(json["error"]["code"], r.reason.as_str());
                        &json["error"]["message"]
                    }
                    Protocol::Anthropic => {
                        assert_eq!(json["type"], "error");
                        assert_eq!(json["error"]["type"], "authentication_error");
                        &json["error"]["message"]
                    }
                    Protocol::Gemini => {
                        assert_eq!(json["error"]["code"], 401);
                        assert_eq!(json["error"]["status"], "UNAUTHENTICATED");
                        &json["error"]["message"]
                    }
                };
                assert!(message.as_str().unwrap().contains("proxy-auth"), "{json}");
            }
        }
    }

    #[test]
    fn messages_name_the_header_read() {
        let m = message(&rejection(
            RejectReason::InvalidKey,
            Some(KeySource::XApiKey),
            None,
        ));
        assert!(
            m.contains("x-api-key header holds an API key that is not valid"),
            "{m}"
        );
        let m = message(&rejection(RejectReason::NoKeyConfigured, None, None));
        assert!(m.contains("no API key configured"), "{m}");
    }
}
