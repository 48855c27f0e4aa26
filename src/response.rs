//! The 401 the layer sends, and the log line that goes with it: status,
//! headers, and a JSON body in the error shape of the API the client speaks,
//! so the official OpenAI, Anthropic and Gemini SDKs show its message
//! instead of a parse error.
//!
//! There are few distinct answers (3 API shapes x 22 explanations), so each
//! body is written once per process and every rejection after that points at
//! it: a flood of keyless requests costs no formatting and no body
//! allocation.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Request, Response};

use crate::extract::api_key_headers;
use crate::layer::Options;
use crate::{KeyProblem, KeySource, RejectReason, Rejection};

/// Response header on every refusal the layer sends, naming the reason
/// (`missing_key`, `invalid_key`, `no_key_configured`), also when the
/// response comes from
/// [`rejection_response`](crate::ProxyAuthLayer::rejection_response). An
/// upstream's own 401 never carries it, so `curl -i` tells at once who
/// refused the request.
pub const REJECTION_HEADER: HeaderName = HeaderName::from_static("x-proxy-auth-error");

/// The API family whose error shape a rejection body takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// `{"error":{"message","type","param","code"}}`; the default.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`; chosen for requests with
    /// `x-api-key` or a path under `/v1/messages`.
    Anthropic,
    /// `{"error":{"code","message","status"}}`; chosen for requests with
    /// `x-goog-api-key`, a Gemini path (`/v1beta/...`, `...:generateContent`)
    /// or a key in the query.
    Gemini,
}

const PROTOCOLS: [Protocol; 3] = [Protocol::OpenAi, Protocol::Anthropic, Protocol::Gemini];

impl Protocol {
    /// Guesses the client's API family from the request. Gemini signals are
    /// checked first because Gemini paths are the most specific.
    fn detect(rejection: &Rejection, path: &str, headers: &HeaderMap) -> Protocol {
        // Which key headers the request has, as far as the rejection does
        // not already tell: no source means none of them was sent.
        let (api_key, goog) = match rejection.source {
            None => (false, false),
            Some(KeySource::QueryKey | KeySource::XGoogApiKey) => return Protocol::Gemini,
            Some(KeySource::XApiKey | KeySource::Authorization) => {
                let [api_key, goog] = api_key_headers(headers);
                (api_key.is_some(), goog.is_some())
            }
        };
        let gemini_path = path.starts_with("/v1beta/")
            || (path.contains(':')
                && (path.contains(":generateContent") || path.contains(":streamGenerateContent")));
        if goog || gemini_path {
            Protocol::Gemini
        } else if api_key || path.starts_with("/v1/messages") {
            Protocol::Anthropic
        } else {
            Protocol::OpenAi
        }
    }
}

/// Every explanation there is, by [`explanation`]'s numbering.
const SOURCES: [KeySource; 4] = [
    KeySource::Authorization,
    KeySource::XApiKey,
    KeySource::XGoogApiKey,
    KeySource::QueryKey,
];
const PROBLEMS: [Option<KeyProblem>; 5] = [
    None,
    Some(KeyProblem::Empty),
    Some(KeyProblem::Duplicate),
    Some(KeyProblem::NotAscii),
    Some(KeyProblem::Expired),
];
const EXPLANATIONS: usize = 2 + SOURCES.len() * PROBLEMS.len();

/// Numbers the distinct messages: what [`message`] says depends only on
/// this.
fn explanation(rejection: &Rejection) -> usize {
    match (rejection.reason, rejection.source) {
        (RejectReason::NoKeyConfigured, _) => 0,
        (RejectReason::MissingKey, _) | (_, None) => 1,
        (RejectReason::InvalidKey, Some(source)) => {
            let s = SOURCES.iter().position(|&x| x == source).unwrap_or(0);
            let p = PROBLEMS
                .iter()
                .position(|&x| x == rejection.problem)
                .unwrap_or(0);
            2 + s * PROBLEMS.len() + p
        }
    }
}

/// A rejection with the given explanation number, to write its message.
fn example_of(explanation: usize) -> Rejection {
    let (reason, source, problem) = match explanation {
        0 => (RejectReason::NoKeyConfigured, None, None),
        1 => (RejectReason::MissingKey, None, None),
        n => (
            RejectReason::InvalidKey,
            Some(SOURCES[(n - 2) / PROBLEMS.len()]),
            PROBLEMS[(n - 2) % PROBLEMS.len()],
        ),
    };
    Rejection {
        reason,
        source,
        problem,
        mode: crate::ProxyAuthMode::Strict,
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

/// The JSON body for one API shape. `message` holds no `"` or `\`, so it
/// can be written into JSON as is.
fn body(protocol: Protocol, rejection: &Rejection) -> String {
    let message = message(rejection);
    debug_assert!(!message.contains(['"', '\\']));
    let reason = rejection.reason.as_str();
    match protocol {
        Protocol::OpenAi => format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{reason}"}}}}"#
        ),
        Protocol::Anthropic => format!(
            r#"{{"type":"error","error":{{"type":"authentication_error","message":"{message}"}}}}"#
        ),
        Protocol::Gemini => format!(
            r#"{{"error":{{"code":401,"message":"{message}","status":"UNAUTHENTICATED"}}}}"#
        ),
    }
}

/// Every body, written on the first rejection; `'static` because the table
/// lives as long as the process, so a response can point into it.
fn bodies() -> &'static [String] {
    static BODIES: OnceLock<Vec<String>> = OnceLock::new();
    BODIES.get_or_init(|| {
        PROTOCOLS
            .iter()
            .flat_map(|&protocol| (0..EXPLANATIONS).map(move |n| body(protocol, &example_of(n))))
            .collect()
    })
}

/// The three headers per reason, built once: cloning a small map is
/// cheaper than hashing three names into a new one on every rejection.
fn headers(reason: RejectReason) -> &'static HeaderMap {
    static HEADERS: OnceLock<[HeaderMap; 3]> = OnceLock::new();
    let all = HEADERS.get_or_init(|| {
        [
            RejectReason::MissingKey,
            RejectReason::InvalidKey,
            RejectReason::NoKeyConfigured,
        ]
        .map(|reason| {
            let mut headers = HeaderMap::with_capacity(3);
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(REJECTION_HEADER, HeaderValue::from_static(reason.as_str()));
            headers
        })
    });
    &all[match reason {
        RejectReason::MissingKey => 0,
        RejectReason::InvalidKey => 1,
        RejectReason::NoKeyConfigured => 2,
    }]
}

/// Logs the rejection and answers `request` with the prebuilt response, or
/// with the author's; either way with the marker header and the
/// [`Rejection`] in the extensions. The request's body is dropped unread.
pub(crate) fn respond<B>(
    rejection: Rejection,
    request: Request<B>,
    options: &Options,
) -> Response<Bytes> {
    let (parts, _body) = request.into_parts();
    log(&rejection, &parts);
    let mut response = match &options.rejection_response {
        None => build(
            &rejection,
            Protocol::detect(&rejection, parts.uri.path(), &parts.headers),
        ),
        Some(respond) => {
            let mut response = (respond.0)(&rejection, &parts);
            response.headers_mut().insert(
                REJECTION_HEADER,
                HeaderValue::from_static(rejection.reason.as_str()),
            );
            response
        }
    };
    response.extensions_mut().insert(rejection);
    response
}

fn build(rejection: &Rejection, protocol: Protocol) -> Response<Bytes> {
    let index = protocol as usize * EXPLANATIONS + explanation(rejection);
    let mut response = Response::new(Bytes::from_static(bodies()[index].as_bytes()));
    *response.status_mut() = rejection.status();
    *response.headers_mut() = headers(rejection.reason).clone();
    response
}

/// One line per rejection, with everything needed to explain it and nothing
/// secret: never the key, never the query string (Gemini clients put keys
/// there). Out of line: the two `tracing` call sites are large, and the
/// accept path's code stays smaller without them.
#[inline(never)]
fn log(rejection: &Rejection, request: &Parts) {
    if rejection.reason == RejectReason::NoKeyConfigured {
        tracing::error!(
            target: "proxy_auth",
            mode = %rejection.mode,
            method = %request.method,
            path = request.uri.path(),
            "proxy auth is enabled but the api key is empty; denying request (set api_key, or turn auth off)"
        );
    } else {
        tracing::warn!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            header = rejection.source.map_or("none", KeySource::as_str),
            problem = rejection.problem.map(KeyProblem::as_str),
            mode = %rejection.mode,
            method = %request.method,
            path = request.uri.path(),
            "proxy auth rejected request with 401"
        );
    }
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
        let missing = rejection(RejectReason::MissingKey, None, None);
        let mut h = HeaderMap::new();
        assert_eq!(
            Protocol::detect(&missing, "/v1/chat/completions", &h),
            Protocol::OpenAi
        );
        assert_eq!(
            Protocol::detect(&missing, "/v1/messages", &h),
            Protocol::Anthropic
        );
        assert_eq!(
            Protocol::detect(&missing, "/v1beta/models/gemini-pro:generateContent", &h),
            Protocol::Gemini
        );
        assert_eq!(
            Protocol::detect(&missing, "/v1/models/x:streamGenerateContent", &h),
            Protocol::Gemini
        );
        // What the rejection's source says, and what the headers add.
        let from = |source| rejection(RejectReason::InvalidKey, Some(source), None);
        h.insert("x-api-key", HeaderValue::from_static("k"));
        for source in [KeySource::XApiKey, KeySource::Authorization] {
            assert_eq!(
                Protocol::detect(&from(source), "/v1/chat/completions", &h),
                Protocol::Anthropic
            );
        }
        h.insert("x-goog-api-key", HeaderValue::from_static("k"));
        for source in [
            KeySource::XApiKey,
            KeySource::Authorization,
            KeySource::XGoogApiKey,
        ] {
            assert_eq!(
                Protocol::detect(&from(source), "/v1/messages", &h),
                Protocol::Gemini
            );
        }
        h.clear();
        assert_eq!(
            Protocol::detect(&from(KeySource::Authorization), "/v1/x:y", &h),
            Protocol::OpenAi
        );
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
                let response = build(&r, protocol);
                assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
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
    fn every_explanation_has_its_own_number() {
        for n in 0..EXPLANATIONS {
            assert_eq!(explanation(&example_of(n)), n);
        }
        let messages: std::collections::HashSet<String> =
            (0..EXPLANATIONS).map(|n| message(&example_of(n))).collect();
        assert_eq!(messages.len(), EXPLANATIONS, "two numbers, one message");
    }

    #[test]
    fn prebuilt_bodies_are_the_formatted_ones() {
        for n in 0..EXPLANATIONS {
            let mut r = example_of(n);
            r.mode = crate::ProxyAuthMode::AllExceptHealth;
            for protocol in PROTOCOLS {
                let response = build(&r, protocol);
                assert_eq!(response.body().as_ref(), body(protocol, &r).as_bytes());
            }
        }
    }

    #[test]
    fn a_query_key_rejection_answers_in_gemini_shape() {
        let r = rejection(RejectReason::InvalidKey, Some(KeySource::QueryKey), None);
        assert_eq!(
            Protocol::detect(&r, "/v1/chat/completions", &HeaderMap::new()),
            Protocol::Gemini
        );
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
