//! The `429` of a key at its limit: headers that make the SDKs wait the
//! right time, and a body in the client API's error shape that names the
//! key's label and the limit (see [`limit`](crate::limit)).

use std::fmt::Write;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Response};

use super::message::json_string;
use super::REJECTION_HEADER;
use crate::limit::{LimitKind, Limited, Report, SDK_RETRY_LIMIT};
use crate::{ApiShape, Rejection};

static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
static REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
static RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
static SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// What a concurrency 429 asks for: nobody knows when a request in flight
/// ends, and a second keeps the SDKs off their shorter backoff.
const CONCURRENCY_RETRY: Duration = Duration::from_secs(1);

/// Whole milliseconds, rounded up: a client that waits this long never
/// comes back early.
fn ceil_ms(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Whole seconds, rounded up.
fn ceil_s(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The wait as the 429 states it: the limit's, or a second for a
/// concurrency limit; never 0, so no SDK reads it as "no wait".
fn wait_of(limited: &Limited) -> Duration {
    limited
        .wait
        .unwrap_or(CONCURRENCY_RETRY)
        .max(Duration::from_millis(1))
}

/// A duration as OpenAI's `x-ratelimit-reset-*` headers write it: `250ms`,
/// `1s`, `1.5s`, `6m0s`.
pub(crate) fn openai_duration(d: Duration) -> String {
    let ms = ceil_ms(d);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, ms) = (ms / 60_000, ms % 60_000);
    let mut seconds = format!("{}.{:03}", ms / 1000, ms % 1000);
    while seconds.ends_with('0') {
        seconds.pop();
    }
    if seconds.ends_with('.') {
        seconds.pop();
    }
    if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// "the key labelled "ci"", or "the proxy's api_key".
fn whose(r: &Rejection) -> String {
    match &r.label {
        Some(label) => format!("the key labelled {}", json_string(label)),
        None => "the proxy's api_key".to_owned(),
    }
}

/// The message: whose limit, which, and when to come back. It says the
/// limit is the proxy's, so nobody takes it for the upstream's.
pub(crate) fn message(r: &Rejection, limited: &Limited) -> String {
    let key = whose(r);
    match limited.kind {
        LimitKind::Rate => {
            let wait = wait_of(limited);
            let when = if wait < Duration::from_secs(10) {
                format!("{} ms", ceil_ms(wait))
            } else {
                format!("{} s", ceil_s(wait))
            };
            format!(
                "Rate limited by the proxy (proxy-auth), not by the upstream: {key} may make {} requests per minute, {} of them back to back, and has used them; retry in {when}.",
                limited.limit, limited.burst
            )
        }
        _ => format!(
            "Concurrency limited by the proxy (proxy-auth), not by the upstream: {key} may have {} requests in flight at once, and has that many; retry when one of them has finished.",
            limited.limit
        ),
    }
}

/// The body in `shape`, and the facts as JSON fields.
fn body(r: &Rejection, limited: &Limited, shape: ApiShape) -> String {
    let message = json_string(&message(r, limited));
    let reason = r.reason.as_str();
    let label = r.label.as_deref().map_or("null".to_owned(), json_string);
    let ms = |d: Option<Duration>| d.map_or("null".to_owned(), |d| ceil_ms(d).to_string());
    let (wait_ms, reset_ms) = (ms(limited.wait), ms(limited.reset));
    let fields = format!(
        r#""proxy_auth":{{"reason":"{reason}","mode":"{}","label":{label},"limit":"{}","value":{},"burst":{},"remaining":{},"wait_ms":{wait_ms},"reset_ms":{reset_ms}}}"#,
        r.mode, limited.kind, limited.limit, limited.burst, limited.remaining,
    );
    match shape {
        ApiShape::OpenAi => format!(
            r#"{{"error":{{"message":{message},"type":"requests","param":null,"code":"rate_limit_exceeded",{fields}}}}}"#
        ),
        ApiShape::Anthropic => format!(
            r#"{{"type":"error","error":{{"type":"rate_limit_error","message":{message},{fields}}}}}"#
        ),
        ApiShape::Gemini => {
            // ErrorInfo's metadata is a map of strings; RetryInfo is what
            // Google's clients read for the delay.
            let mut metadata = String::new();
            if let Some(label) = &r.label {
                let _ = write!(metadata, r#""label":{},"#, json_string(label));
            }
            let _ = write!(
                metadata,
                r#""mode":"{}","limit":"{}","value":"{}","burst":"{}""#,
                r.mode, limited.kind, limited.limit, limited.burst
            );
            let delay = wait_of(limited);
            format!(
                r#"{{"error":{{"code":429,"message":{message},"status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{}","domain":"proxy-auth","metadata":{{{metadata}}}}},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"{}.{:03}s"}}]}}}}"#,
                reason.to_ascii_uppercase(),
                ceil_ms(delay) / 1000,
                ceil_ms(delay) % 1000,
            )
        }
    }
}

/// The values of the 429's headers, written after the body into the same
/// buffer, so the response shares one allocation for all of them.
struct Writer {
    buffer: String,
    values: Vec<(&'static HeaderName, Range<usize>)>,
}

impl Writer {
    fn value(&mut self, name: &'static HeaderName, value: std::fmt::Arguments<'_>) {
        let start = self.buffer.len();
        let _ = self.buffer.write_fmt(value);
        self.values.push((name, start..self.buffer.len()));
    }
}

/// The `429` for `r`, whose `limit` is set.
pub(crate) fn response(r: &Rejection, limited: &Limited, shape: ApiShape) -> Response<Bytes> {
    let body = body(r, limited, shape);
    let body_len = body.len();
    let mut w = Writer {
        buffer: body,
        values: Vec::with_capacity(8),
    };
    let wait = wait_of(limited);
    w.value(&RETRY_AFTER, format_args!("{}", ceil_s(wait)));
    w.value(&RETRY_AFTER_MS, format_args!("{}", ceil_ms(wait)));
    match limited.kind {
        LimitKind::Rate => {
            let reset = limited.reset.unwrap_or(wait);
            w.value(
                &RATELIMIT_POLICY,
                format_args!("\"rpm\";q={};w=60", limited.limit),
            );
            w.value(
                &RATELIMIT,
                format_args!("\"rpm\";r={};t={}", limited.remaining, ceil_s(reset)),
            );
            w.value(&LIMIT_REQUESTS, format_args!("{}", limited.limit));
            w.value(&REMAINING_REQUESTS, format_args!("{}", limited.remaining));
            w.value(&RESET_REQUESTS, format_args!("{}", openai_duration(reset)));
            if wait > SDK_RETRY_LIMIT {
                w.value(&SHOULD_RETRY, format_args!("false"));
            }
        }
        _ => {
            w.value(
                &RATELIMIT_POLICY,
                format_args!(
                    "\"concurrency\";q={};qu=\"concurrent-requests\"",
                    limited.limit
                ),
            );
            w.value(&RATELIMIT, format_args!("\"concurrency\";r=0"));
        }
    }
    let shared = Bytes::from(w.buffer);
    let mut response = Response::new(shared.slice(..body_len));
    *response.status_mut() = r.status();
    let headers: &mut HeaderMap = response.headers_mut();
    headers.reserve(w.values.len() + 2);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        REJECTION_HEADER,
        HeaderValue::from_static(r.reason.as_str()),
    );
    for (name, range) in w.values {
        // Digits, quotes, `;=` and ASCII words: always a valid value.
        if let Ok(value) = HeaderValue::from_maybe_shared(shared.slice(range)) {
            headers.insert(name, value);
        }
    }
    response
}

/// The IETF fields for an accepted request of a limited key
/// ([`ProxyAuthLayer::rate_limit_headers`](crate::ProxyAuthLayer::rate_limit_headers)).
/// An upstream's own fields of the same names are left as they are.
pub(crate) fn accepted(report: &Report, headers: &mut HeaderMap) {
    if headers.contains_key(&RATELIMIT_POLICY) || headers.contains_key(&RATELIMIT) {
        return;
    }
    let mut policies = Vec::new();
    let mut states = Vec::new();
    if let Some((rpm, remaining, reset)) = report.rate {
        policies.push(format!("\"rpm\";q={rpm};w=60"));
        states.push(format!(
            "\"rpm\";r={remaining};t={}",
            ceil_s(Duration::from_nanos(reset))
        ));
    }
    if let Some((max, left)) = report.concurrency {
        policies.push(format!(
            "\"concurrency\";q={max};qu=\"concurrent-requests\""
        ));
        states.push(format!("\"concurrency\";r={left}"));
    }
    if policies.is_empty() {
        return;
    }
    for (name, list) in [(&RATELIMIT_POLICY, policies), (&RATELIMIT, states)] {
        if let Ok(value) = HeaderValue::from_str(&list.join(", ")) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_durations() {
        let cases = [
            (Duration::from_nanos(1), "1ms"),
            (Duration::from_micros(249_001), "250ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(1250), "1.25s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(61_001), "1m1.001s"),
        ];
        for (d, text) in cases {
            assert_eq!(openai_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn waits_round_up_and_are_never_zero() {
        assert_eq!(ceil_s(Duration::from_millis(1)), 1);
        assert_eq!(ceil_s(Duration::from_secs(2)), 2);
        assert_eq!(ceil_s(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_ms(Duration::from_nanos(1)), 1);
        let tiny = Limited {
            kind: LimitKind::Rate,
            limit: 60,
            burst: 1,
            wait: Some(Duration::ZERO),
            remaining: 0,
            reset: Some(Duration::ZERO),
        };
        assert_eq!(wait_of(&tiny), Duration::from_millis(1));
    }
}
