//! The answer the layer sends to a refused request, and the log line that
//! goes with it: status, headers that say who refused and in which mode, and
//! a JSON body in the error shape of the API the client speaks, so the
//! official OpenAI, Anthropic and Gemini SDKs show its message.

#[cfg(feature = "key-set")]
mod limited;
mod message;
mod shape;

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Request, Response};

use crate::client_uri::client_path;
use crate::extract::{header_of, key_param_values, strip_bearer};
use crate::layer::Options;
use crate::{KeyProblem, KeySource, KeySources, RejectReason, Rejection};

#[cfg(feature = "key-set")]
pub(crate) use limited::accepted as accepted_limit_headers;
pub(crate) use message::Bodies;
pub use shape::ApiShape;

/// Response header on every refusal the layer sends, naming the reason
/// ([`RejectReason::as_str`]: `missing_key`, `invalid_key`,
/// `no_key_configured`, `model_not_allowed`, `route_not_allowed`,
/// `ip_not_allowed`, `model_unreadable`, `body_too_large`,
/// `unsupported_encoding`, `rate_limited`, `concurrency_limited`), also
/// when the response comes from
/// [`rejection_response`](crate::ProxyAuthLayer::rejection_response). An
/// upstream's own 401, 403 or 429 never carries it, so `curl -i` tells at once
/// who refused the request.
pub const REJECTION_HEADER: HeaderName = HeaderName::from_static("x-proxy-auth-error");

/// Response header on the layer's own refusals naming the effective mode,
/// and what `auto` was resolved from: `strict`, `all_except_health`, or
/// `all_except_health; from=auto; allow_lan_access=true`.
pub const MODE_HEADER: HeaderName = HeaderName::from_static("x-proxy-auth-mode");

/// The request id a refusal is logged and answered with, as the client
/// or tower-http's `SetRequestIdLayer` sent it.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Logs the rejection and answers the request with the layer's response, or
/// with the author's; either way with the marker header, the request's id
/// echoed, and the [`Rejection`] in the extensions. The request's body is
/// dropped unread.
pub(crate) fn respond<B>(
    rejection: Rejection,
    request: Request<B>,
    options: &Options,
) -> Response<Bytes> {
    let (parts, _body) = request.into_parts();
    let path = client_path(&parts.extensions, &parts.uri);
    let request_id = request_id(&parts);
    log(&rejection, &parts, path, request_id);
    let mut response = match &options.rejection_response {
        #[cfg(feature = "key-set")]
        None if rejection.limit.is_some() => {
            let shape = options
                .shape
                .unwrap_or_else(|| ApiShape::detect(&rejection, path));
            let limited = rejection.limit.expect("the match guard saw a limit");
            limited::response(&rejection, &limited, shape)
        }
        None if rejection.reason.is_about_the_key() => {
            let shape = options
                .shape
                .unwrap_or_else(|| ApiShape::detect(&rejection, path));
            let mut response =
                Response::new(options.bodies.get(&rejection, shape, &options.sources));
            *response.status_mut() = rejection.status();
            *response.headers_mut() = headers(&rejection).clone();
            response
        }
        None => {
            let shape = options
                .shape
                .unwrap_or_else(|| ApiShape::detect(&rejection, path));
            let body = message::scoped_body(&rejection, shape);
            let mut response = Response::new(Bytes::from(body));
            *response.status_mut() = rejection.status();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                REJECTION_HEADER,
                HeaderValue::from_static(rejection.reason.as_str()),
            );
            headers.insert(
                MODE_HEADER,
                HeaderValue::from_static(message::MODE_HEADERS[message::mode_index(&rejection)]),
            );
            response
        }
        Some(respond) => {
            let mut response = (respond.0)(&rejection, &parts);
            response.headers_mut().insert(
                REJECTION_HEADER,
                HeaderValue::from_static(rejection.reason.as_str()),
            );
            response
        }
    };
    if let Some(id) = request_id {
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), id.clone());
    }
    response.extensions_mut().insert(rejection);
    response
}

/// The headers per reason and mode, built once: cloning a small map is
/// cheaper than hashing four names into a new one on every refusal.
fn headers(rejection: &Rejection) -> &'static HeaderMap {
    const REASONS: [RejectReason; 3] = [
        RejectReason::MissingKey,
        RejectReason::InvalidKey,
        RejectReason::NoKeyConfigured,
    ];
    static HEADERS: OnceLock<Vec<HeaderMap>> = OnceLock::new();
    let all = HEADERS.get_or_init(|| {
        let modes = message::MODE_HEADERS;
        REASONS
            .iter()
            .flat_map(|reason| {
                modes.iter().map(move |mode| {
                    let mut headers = HeaderMap::with_capacity(4);
                    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    headers.insert(REJECTION_HEADER, HeaderValue::from_static(reason.as_str()));
                    headers.insert(MODE_HEADER, HeaderValue::from_static(mode));
                    headers
                })
            })
            .collect()
    });
    // Only the reasons about the key itself reach here.
    let reason = REASONS
        .iter()
        .position(|&r| r == rejection.reason)
        .unwrap_or(0);
    &all[reason * message::MODE_HEADERS.len() + message::mode_index(rejection)]
}

/// The request's `x-request-id`, if it can be repeated safely: 1 to 128
/// visible ASCII characters that contain none of the request's key values
/// (so a client that put its key there does not get it logged).
fn request_id(parts: &Parts) -> Option<&HeaderValue> {
    let id = parts.headers.get(&REQUEST_ID)?;
    let bytes = id.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..0x7f).contains(b));
    if bytes.is_empty() || bytes.len() > 128 || !visible {
        return None;
    }
    let holds = |key: &[u8]| !key.is_empty() && bytes.windows(key.len()).any(|w| w == key);
    let headers = [
        KeySource::Authorization,
        KeySource::XApiKey,
        KeySource::XGoogApiKey,
    ];
    let in_headers = headers.iter().filter_map(|&s| header_of(s)).any(|name| {
        parts.headers.get_all(name).iter().any(|value| {
            let raw = value.as_bytes().trim_ascii();
            holds(raw) || holds(strip_bearer(raw))
        })
    });
    let in_query = parts
        .uri
        .query()
        .is_some_and(|q| key_param_values(q).any(|v| holds(v.as_bytes())));
    (!in_headers && !in_query).then_some(id)
}

/// `"x-api-key,x-goog-api-key"`: a set of sources for the log line,
/// without allocating per refusal.
fn ignored_names(ignored: KeySources) -> &'static str {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        message::every_ignored()
            .map(|set| {
                set.iter()
                    .map(KeySource::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    });
    &names[ignored.bits()]
}

/// One line per refusal, with everything needed to explain it and nothing
/// secret: never a key, never the query string (Gemini clients put keys
/// there). Out of line: the `tracing` call sites are large, and the accept
/// path's code stays smaller without them.
#[inline(never)]
fn log(rejection: &Rejection, request: &Parts, path: &str, request_id: Option<&HeaderValue>) {
    let request_id = request_id.and_then(|id| id.to_str().ok());
    let ignored = ignored_names(rejection.ignored);
    #[cfg(feature = "key-set")]
    if let Some(limited) = &rejection.limit {
        tracing::warn!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            label = rejection.label.as_deref(),
            limit = limited.kind.as_str(),
            value = limited.limit,
            burst = limited.burst,
            wait_ms = limited.wait.map(|w| w.as_millis() as u64),
            budget = limited.budget.as_str(),
            header = rejection.source.map_or("none", KeySource::as_str),
            mode = %rejection.mode,
            method = %request.method,
            path,
            request_id,
            "proxy auth refused the request: the key is at its limit"
        );
        return;
    }
    if !rejection.reason.is_about_the_key() {
        tracing::warn!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            label = rejection.label.as_deref(),
            detail = rejection.detail.as_deref(),
            note = rejection.note,
            header = rejection.source.map_or("none", KeySource::as_str),
            mode = %rejection.mode,
            method = %request.method,
            path,
            request_id,
            "proxy auth refused the request: out of the key's scope"
        );
        return;
    }
    if rejection.reason == RejectReason::NoKeyConfigured {
        tracing::error!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            mode = %rejection.mode,
            configured_mode = %rejection.configured_mode,
            method = %request.method,
            path,
            request_id,
            "proxy auth is enabled but the api key is empty; denying request (set api_key, or turn auth off)"
        );
    } else {
        tracing::warn!(
            target: "proxy_auth",
            reason = rejection.reason.as_str(),
            header = rejection.source.map_or("none", KeySource::as_str),
            problem = rejection.problem.map(KeyProblem::as_str),
            ignored,
            mode = %rejection.mode,
            configured_mode = %rejection.configured_mode,
            method = %request.method,
            path,
            request_id,
            "proxy auth refused the request"
        );
    }
}

#[cfg(test)]
mod tests;
