//! What a refusal says: a message that answers who refused, in which mode
//! and why, and the same facts as JSON fields, in each API's error shape.
//!
//! A body depends only on the rejection's reason, source, problem, modes and
//! ignored sources, the API shape and the layer's key sources: a few hundred
//! combinations at most. Each is written once per layer, on first use, and
//! every later refusal shares it, so a flood of keyless requests costs no
//! formatting and no body allocation.

use std::collections::HashMap;
use std::fmt::Write;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::sources::Sources;
use crate::{ApiShape, KeyProblem, KeySource, KeySources, ProxyAuthMode, RejectReason, Rejection};

/// The bodies a layer has written, by [`key`].
#[derive(Default)]
pub(crate) struct Bodies(ArcSwap<HashMap<u32, Bytes>>);

impl std::fmt::Debug for Bodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bodies").field(&self.0.load().len()).finish()
    }
}

impl Bodies {
    /// The body for `rejection` in `shape`, written now if it is the first.
    pub(crate) fn get(&self, rejection: &Rejection, shape: ApiShape, sources: &Sources) -> Bytes {
        let key = key(rejection, shape);
        if let Some(body) = self.0.load().get(&key) {
            return body.clone();
        }
        let body = Bytes::from(body(rejection, shape, sources));
        // Copy-on-write: readers never wait, and the map only grows until
        // every combination that occurs has been written.
        self.0.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.entry(key).or_insert_with(|| body.clone());
            map
        });
        body
    }
}

/// Everything a body depends on besides the layer's sources, as a number.
fn key(r: &Rejection, shape: ApiShape) -> u32 {
    // Only refusals about the key itself are cached; they are the first
    // three reasons.
    let reason = RejectReason::ALL
        .iter()
        .position(|&x| x == r.reason)
        .unwrap_or(0) as u32;
    let source = r.source.map_or(0, |s| 1 + s as u32);
    let problem = r.problem.map_or(0, |p| 1 + p as u32);
    let mode = mode_kind(r) as u32;
    let ignored = r.ignored.bits() as u32;
    shape.index() | reason << 2 | source << 4 | problem << 7 | mode << 11 | ignored << 13
}

/// How the mode that required a key came about.
#[derive(Clone, Copy)]
enum ModeKind {
    Strict,
    AllExceptHealth,
    /// `auto` with `allow_lan_access`: `all_except_health`.
    AutoLan,
}

fn mode_kind(r: &Rejection) -> ModeKind {
    match (r.mode, r.configured_mode) {
        (ProxyAuthMode::Strict, _) => ModeKind::Strict,
        (_, ProxyAuthMode::Auto) => ModeKind::AutoLan,
        _ => ModeKind::AllExceptHealth,
    }
}

/// The `x-proxy-auth-mode` header's values, by [`mode_index`]: the
/// effective mode, and what `auto` was resolved from.
pub(crate) const MODE_HEADERS: [&str; 3] = [
    "strict",
    "all_except_health",
    "all_except_health; from=auto; allow_lan_access=true",
];

pub(crate) fn mode_index(r: &Rejection) -> usize {
    mode_kind(r) as usize
}

/// A human-readable explanation: who refused, in which mode, what was read
/// and ignored, and what to change. Never includes a key, its length or any
/// part of it.
pub(crate) fn message(r: &Rejection, sources: &Sources) -> String {
    let mut m = String::from("Rejected by the proxy's API-key check (proxy-auth): ");
    match (r.reason, r.source, r.problem) {
        (RejectReason::NoKeyConfigured, ..) => m.push_str(
            "authentication is enabled but the proxy has no API key configured, so no request can pass. The proxy's operator must set api_key.",
        ),
        (RejectReason::InvalidKey, Some(source), problem) => {
            let the = describe(source);
            m.push_str(&match problem {
                None => format!("{the} holds an API key that is not valid for this proxy."),
                Some(KeyProblem::Empty) => format!("{the} is empty."),
                Some(KeyProblem::Duplicate) => format!("{the} was sent more than once; send exactly one."),
                Some(KeyProblem::NotAscii) => format!("{the} contains characters that no API key has (non-ASCII or control)."),
                Some(KeyProblem::Expired) => format!("{the} holds a key that has expired; ask the proxy's operator for its replacement."),
                Some(KeyProblem::MalformedBearer) => format!("{the} starts with 'Bearer' but not with 'Bearer <key>' (exactly one space after Bearer), so its whole value was read as the key, and it is not valid. Send 'Authorization: Bearer <key>'."),
                Some(KeyProblem::OtherScheme) => format!("{the} has the form '<scheme> <credentials>' with a scheme other than Bearer, so its whole value was read as the key, and it is not valid. Send 'Authorization: Bearer <key>'."),
            });
        }
        _ => {
            m.push_str("no API key was sent. Send it ");
            m.push_str(&how_to_send(sources));
            m.push('.');
        }
    }
    if !r.ignored.is_empty() {
        let _ = write!(
            m,
            " Also sent but not read: {} (only the first present of {} is read).",
            names(r.ignored.iter()),
            names(sources.list().iter().copied()),
        );
    }
    m.push(' ');
    m.push_str(match mode_kind(r) {
        ModeKind::Strict => "Auth mode: strict, so every request needs a key, health checks included.",
        ModeKind::AllExceptHealth => "Auth mode: all_except_health, so every request but the exempt paths needs a key.",
        ModeKind::AutoLan => "Auth mode: all_except_health, from auth_mode=auto with allow_lan_access=true, so every client needs a key, local ones too (auto never looks at the client's address).",
    });
    m
}

/// "as 'Authorization: Bearer <key>', or in the x-api-key or x-goog-api-key
/// header": the layer's sources, in its order.
fn how_to_send(sources: &Sources) -> String {
    let ways: Vec<&str> = sources
        .list()
        .iter()
        .map(|source| match source {
            KeySource::Authorization => "as 'Authorization: Bearer <key>'",
            KeySource::XApiKey => "in the x-api-key header",
            KeySource::XGoogApiKey => "in the x-goog-api-key header",
            KeySource::QueryKey => "as the key query parameter",
        })
        .collect();
    match ways.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{}, or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// "the Authorization header", "the key query parameter".
fn describe(source: KeySource) -> &'static str {
    match source {
        KeySource::Authorization => "the Authorization header",
        KeySource::XApiKey => "the x-api-key header",
        KeySource::XGoogApiKey => "the x-goog-api-key header",
        KeySource::QueryKey => "the key query parameter",
    }
}

/// "authorization, x-api-key" (a source's `as_str`, `?key` for the query).
fn names(sources: impl Iterator<Item = KeySource>) -> String {
    let names: Vec<&str> = sources
        .map(|s| match s {
            KeySource::QueryKey => "?key",
            other => other.as_str(),
        })
        .collect();
    names.join(", ")
}

/// The JSON body in one API's shape. `message` and every value here hold
/// no `"` or `\`, so they are written into JSON as they are.
pub(crate) fn body(r: &Rejection, shape: ApiShape, sources: &Sources) -> String {
    let message = message(r, sources);
    let reason = r.reason.as_str();
    let header = r.source.map_or("none", KeySource::as_str);
    let problem = r.problem.map_or("none", KeyProblem::as_str);
    let ignored: Vec<String> = r.ignored.iter().map(|s| format!("\"{s}\"")).collect();
    let ignored = ignored.join(",");
    let (mode, configured) = (r.mode.as_str(), r.configured_mode.as_str());
    let fields = format!(
        r#""proxy_auth":{{"reason":"{reason}","mode":"{mode}","configured_mode":"{configured}","header":"{header}","problem":"{problem}","ignored":[{ignored}]}}"#
    );
    let json = match shape {
        ApiShape::OpenAi => format!(
            r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{reason}",{fields}}}}}"#
        ),
        ApiShape::Anthropic => format!(
            r#"{{"type":"error","error":{{"type":"authentication_error","message":"{message}",{fields}}}}}"#
        ),
        ApiShape::Gemini => {
            let ignored = r
                .ignored
                .iter()
                .map(KeySource::as_str)
                .collect::<Vec<_>>()
                .join(",");
            format!(
                r#"{{"error":{{"code":401,"message":"{message}","status":"UNAUTHENTICATED","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{}","domain":"proxy-auth","metadata":{{"mode":"{mode}","configured_mode":"{configured}","header":"{header}","problem":"{problem}","ignored":"{ignored}"}}}}]}}}}"#,
                reason.to_ascii_uppercase()
            )
        }
    };
    debug_assert!(!message.contains(['"', '\\']));
    json
}

/// All sets of ignored sources, in the order of their bits.
pub(crate) fn every_ignored() -> impl Iterator<Item = KeySources> {
    (0u8..16).map(|bits| {
        let mut set = KeySources::default();
        for source in [
            KeySource::Authorization,
            KeySource::XApiKey,
            KeySource::XGoogApiKey,
            KeySource::QueryKey,
        ] {
            if bits & (1 << source as u8) != 0 {
                set.insert(source);
            }
        }
        set
    })
}

/// `s` as a JSON string literal, quotes included: for values a client or
/// an operator chose (a model name, a path, a label).
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A value from the request, shortened for a message: at most 200
/// characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_owned(),
    }
}

/// What a refusal of a key that matched says: whose key, which scope, what
/// was refused, and why the check could not be sure when that is why.
pub(crate) fn scoped_message(r: &Rejection) -> String {
    let key = match &r.label {
        Some(label) => format!("the key labelled {}", json_string(label)),
        None => "the proxy's api_key".to_owned(),
    };
    let detail = r.detail.as_deref().map(shown);
    let mut m = String::from("Refused by the proxy's key scopes (proxy-auth): ");
    match (r.reason, detail) {
        (RejectReason::ModelNotAllowed, Some(model)) => {
            let _ = write!(
                m,
                "{key} may not use the model {}: it is not in the key's models.",
                json_string(&model)
            );
        }
        (RejectReason::RouteNotAllowed, Some(path)) if r.note.is_none() => {
            let _ = write!(
                m,
                "{key} may not call {}: it is not under the key's routes.",
                json_string(&path)
            );
        }
        (RejectReason::RouteNotAllowed, _) => {
            let _ = write!(m, "{key} is limited to some routes, and the path cannot be matched against them for certain.");
        }
        (RejectReason::IpNotAllowed, Some(ip)) => {
            let _ = write!(
                m,
                "{key} may not be used from {ip}: it is not in the key's allowed networks."
            );
        }
        (RejectReason::IpNotAllowed, None) => {
            let _ = write!(
                m,
                "{key} is limited to some networks, and the request's address is not known."
            );
        }
        (RejectReason::ModelUnreadable, _) => {
            let _ = write!(m, "{key} is limited to some models, and the request's model cannot be read for certain.");
        }
        (RejectReason::BodyTooLarge, limit) => {
            let limit = limit.map_or(String::new(), |l| format!(" ({l} bytes)"));
            let _ = write!(m, "{key} is limited to some models, and the request body is larger than the proxy reads to find the model{limit}.");
        }
        (RejectReason::UnsupportedEncoding, encoding) => {
            let encoding = encoding.map_or(String::new(), |e| format!(" ({e})"));
            let _ = write!(m, "{key} is limited to some models, and the request body is compressed{encoding}, so its model cannot be read; send it uncompressed.");
        }
        (_, _) => {
            let _ = write!(m, "{key} may not make this request.");
        }
    }
    if let Some(note) = r.note {
        let _ = write!(m, " Why: {note}.");
    }
    m
}

/// A scoped refusal's JSON body in one API's shape, written for each
/// refusal (it names the request's model or path).
pub(crate) fn scoped_body(r: &Rejection, shape: ApiShape) -> String {
    let message = json_string(&scoped_message(r));
    let reason = r.reason.as_str();
    let status = r.status().as_u16();
    let label = r.label.as_deref().map_or("null".to_owned(), json_string);
    let detail = r
        .detail
        .as_deref()
        .map_or("null".to_owned(), |d| json_string(&shown(d)));
    // google.rpc.ErrorInfo's metadata is map<string, string>: no nulls.
    let label_text = r.label.as_deref().map_or("\"\"".to_owned(), json_string);
    let detail_text = r
        .detail
        .as_deref()
        .map_or("\"\"".to_owned(), |d| json_string(&shown(d)));
    let fields = format!(
        r#""proxy_auth":{{"reason":"{reason}","mode":"{}","label":{label},"detail":{detail}}}"#,
        r.mode
    );
    let (openai_type, anthropic_type, google_status) = match status {
        403 => ("permission_error", "permission_error", "PERMISSION_DENIED"),
        413 => (
            "invalid_request_error",
            "request_too_large",
            "INVALID_ARGUMENT",
        ),
        _ => (
            "invalid_request_error",
            "invalid_request_error",
            "INVALID_ARGUMENT",
        ),
    };
    match shape {
        ApiShape::OpenAi => format!(
            r#"{{"error":{{"message":{message},"type":"{openai_type}","param":null,"code":"{reason}",{fields}}}}}"#
        ),
        ApiShape::Anthropic => format!(
            r#"{{"type":"error","error":{{"type":"{anthropic_type}","message":{message},{fields}}}}}"#
        ),
        ApiShape::Gemini => format!(
            r#"{{"error":{{"code":{status},"message":{message},"status":"{google_status}","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"{}","domain":"proxy-auth","metadata":{{"mode":"{}","label":{label_text},"detail":{detail_text}}}}}]}}}}"#,
            reason.to_ascii_uppercase(),
            r.mode
        ),
    }
}
