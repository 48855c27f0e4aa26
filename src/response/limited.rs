//! The `429` of a key at its limit: headers that make the SDKs wait the
//! right time, and a body in the client API's error shape that names the
//! key's label and the limit (see [`limit`](crate::limit)).

use std::fmt::{self, Write};
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Response};

use super::REJECTION_HEADER;
use crate::limit::{LimitKind, Limited, Report, SDK_RETRY_LIMIT};
use crate::{ApiShape, RejectReason, Rejection};

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
pub(crate) struct OpenAiDuration(pub(crate) Duration);

impl fmt::Display for OpenAiDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = ceil_ms(self.0);
        if ms < 1000 {
            return write!(f, "{ms}ms");
        }
        let (minutes, ms) = (ms / 60_000, ms % 60_000);
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        write!(f, "{}", ms / 1000)?;
        let mut fraction = ms % 1000;
        if fraction > 0 {
            let mut digits = 3;
            while fraction % 10 == 0 {
                fraction /= 10;
                digits -= 1;
            }
            write!(f, ".{fraction:0digits$}")?;
        }
        f.write_str("s")
    }
}

/// A JSON string literal of `s`, quotes included: a label as the body
/// and the message show it.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if u32::from(c) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Writes into a JSON string's inside: escapes what it is given.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                    let _ = write!(self.0, "\\u{:04x}", u32::from(c));
                }
                c => self.0.push(c),
            }
        }
        Ok(())
    }
}

/// "the key labelled "ci"" (the label escaped for the JSON string the
/// message is in), or "the proxy's api_key".
fn push_whose(out: &mut String, r: &Rejection) {
    match &r.label {
        Some(label) => {
            out.push_str("the key labelled ");
            let _ = write!(Escaping(out), "{}", Quoted(label));
        }
        None => out.push_str("the proxy's api_key"),
    }
}

/// The message, written straight into the JSON string it is in (its fixed
/// words need no escaping; the label is escaped): whose limit, which, and
/// when to come back. It says the limit is the proxy's, so nobody takes it
/// for the upstream's.
fn push_message(out: &mut String, r: &Rejection, limited: &Limited) {
    match limited.kind {
        LimitKind::Rate => {
            out.push_str("Rate limited by the proxy (proxy-auth), not by the upstream: ");
            push_whose(out, r);
            let _ = write!(
                out,
                " may make {} requests per minute, {} of them back to back, and has used them; retry in ",
                limited.limit, limited.burst
            );
            let wait = wait_of(limited);
            let _ = if wait < Duration::from_secs(10) {
                write!(out, "{} ms.", ceil_ms(wait))
            } else {
                write!(out, "{} s.", ceil_s(wait))
            };
        }
        _ => {
            out.push_str("Concurrency limited by the proxy (proxy-auth), not by the upstream: ");
            push_whose(out, r);
            let _ = write!(
                out,
                " may have {} requests in flight at once, and has that many; retry when one of them has finished.",
                limited.limit
            );
        }
    }
}

/// Milliseconds, or `null`.
struct Ms(Option<Duration>);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{}", ceil_ms(d)),
            None => f.write_str("null"),
        }
    }
}

/// A label as a JSON value: its string, or `null`.
struct LabelJson<'a>(Option<&'a str>);

impl fmt::Display for LabelJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(label) => Quoted(label).fmt(f),
            None => f.write_str("null"),
        }
    }
}

/// The body in `shape`, with the facts as JSON fields, written into `out`
/// without a buffer of its own.
fn write_body(out: &mut String, r: &Rejection, limited: &Limited, shape: ApiShape) -> fmt::Result {
    let reason = r.reason.as_str();
    let message = |out: &mut String| -> fmt::Result {
        out.push('"');
        push_message(out, r, limited);
        out.push('"');
        Ok(())
    };
    let fields = |out: &mut String| {
        write!(
            out,
            r#""proxy_auth":{{"reason":"{reason}","mode":"{}","label":{},"limit":"{}","value":{},"burst":{},"remaining":{},"wait_ms":{},"reset_ms":{}}}"#,
            r.mode,
            LabelJson(r.label.as_deref()),
            limited.kind,
            limited.limit,
            limited.burst,
            limited.remaining,
            Ms(limited.wait),
            Ms(limited.reset),
        )
    };
    match shape {
        ApiShape::OpenAi => {
            out.push_str(r#"{"error":{"message":"#);
            message(out)?;
            out.push_str(r#","type":"requests","param":null,"code":"rate_limit_exceeded","#);
            fields(out)?;
            out.push_str("}}");
        }
        ApiShape::Anthropic => {
            out.push_str(r#"{"type":"error","error":{"type":"rate_limit_error","message":"#);
            message(out)?;
            out.push(',');
            fields(out)?;
            out.push_str("}}");
        }
        ApiShape::Gemini => {
            // ErrorInfo's metadata is a map of strings; RetryInfo is what
            // Google's clients read for the delay.
            out.push_str(r#"{"error":{"code":429,"message":"#);
            message(out)?;
            write!(
                out,
                r#","status":"RESOURCE_EXHAUSTED","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{}","domain":"proxy-auth","metadata":{{"#,
                RejectReasonUpper(reason)
            )?;
            if let Some(label) = &r.label {
                write!(out, r#""label":{},"#, Quoted(label))?;
            }
            let delay = ceil_ms(wait_of(limited));
            write!(
                out,
                r#""mode":"{}","limit":"{}","value":"{}","burst":"{}"}}}},{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"{}.{:03}s"}}]}}}}"#,
                r.mode,
                limited.kind,
                limited.limit,
                limited.burst,
                delay / 1000,
                delay % 1000,
            )?;
        }
    }
    Ok(())
}

/// A reason in capitals, as Gemini's `ErrorInfo.reason` is written.
struct RejectReasonUpper<'a>(&'a str);

impl fmt::Display for RejectReasonUpper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .chars()
            .try_for_each(|c| f.write_char(c.to_ascii_uppercase()))
    }
}

/// The places of the 429's header values in the buffer they are written
/// to after the body, so the response shares one allocation for all.
struct Writer {
    buffer: String,
    values: [(Option<&'static HeaderName>, Range<usize>); 8],
    len: usize,
}

impl Writer {
    fn value(&mut self, name: &'static HeaderName, value: fmt::Arguments<'_>) {
        let start = self.buffer.len();
        let _ = self.buffer.write_fmt(value);
        if let Some(slot) = self.values.get_mut(self.len) {
            *slot = (Some(name), start..self.buffer.len());
            self.len += 1;
        }
    }
}

/// The `429` for `r`, whose `limit` is `limited`.
pub(crate) fn response(r: &Rejection, limited: &Limited, shape: ApiShape) -> Response<Bytes> {
    let mut buffer = String::with_capacity(1024);
    let _ = write_body(&mut buffer, r, limited, shape);
    let body_len = buffer.len();
    let mut w = Writer {
        buffer,
        values: Default::default(),
        len: 0,
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
            w.value(&RESET_REQUESTS, format_args!("{}", OpenAiDuration(reset)));
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
    // A prebuilt map of the same names in the same order, its values then
    // set in place: no name is hashed per refusal.
    let mut headers = template(limited.kind, w.len).clone();
    let values = w.values.into_iter().take(w.len);
    for ((_, slot), (_, range)) in headers.iter_mut().skip(2).zip(values) {
        // Digits, quotes, `;=` and ASCII words: always a valid value.
        if let Ok(value) = HeaderValue::from_maybe_shared(shared.slice(range)) {
            *slot = value;
        }
    }
    *response.headers_mut() = headers;
    response
}

/// The 429's header names, in the order [`response`] writes their values
/// (after `content-type` and `x-proxy-auth-error`), for a limit of `kind`
/// with `values` values.
fn template(kind: LimitKind, values: usize) -> &'static HeaderMap {
    static TEMPLATES: OnceLock<[HeaderMap; 3]> = OnceLock::new();
    let all = TEMPLATES.get_or_init(|| {
        let rate: [&'static HeaderName; 8] = [
            &RETRY_AFTER,
            &RETRY_AFTER_MS,
            &RATELIMIT_POLICY,
            &RATELIMIT,
            &LIMIT_REQUESTS,
            &REMAINING_REQUESTS,
            &RESET_REQUESTS,
            &SHOULD_RETRY,
        ];
        let build = |reason: RejectReason, names: &[&'static HeaderName]| {
            let mut map = HeaderMap::with_capacity(names.len() + 2);
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            map.insert(REJECTION_HEADER, HeaderValue::from_static(reason.as_str()));
            for name in names {
                map.insert(*name, HeaderValue::from_static("0"));
            }
            map
        };
        [
            build(RejectReason::RateLimited, &rate[..7]),
            build(RejectReason::RateLimited, &rate),
            build(RejectReason::ConcurrencyLimited, &rate[..4]),
        ]
    });
    match (kind, values) {
        (LimitKind::Rate, 7) => &all[0],
        (LimitKind::Rate, _) => &all[1],
        _ => &all[2],
    }
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
            assert_eq!(OpenAiDuration(d).to_string(), text, "{d:?}");
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
            budget: crate::Budget::Local,
        };
        assert_eq!(wait_of(&tiny), Duration::from_millis(1));
    }

    #[test]
    fn labels_are_escaped_in_the_json_and_the_message() {
        let mut out = String::new();
        write!(Escaping(&mut out), "{}", Quoted("a\"b\\c\n")).unwrap();
        let text = format!("\"{out}\"");
        let message: String = serde_json::from_str(&text).unwrap();
        assert_eq!(message, r#""a\"b\\c\u000a""#);
    }
}
