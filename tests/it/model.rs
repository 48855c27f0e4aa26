//! A reference model of the auth rules, written from the crate docs, the
//! README and the CHANGELOG's decisions rather than from `decision.rs`, plus
//! a driver that runs one request through the real layer and compares the
//! two.
//!
//! Shared by `tests/it/proptest_model.rs` and the cargo-fuzz target in `fuzz/`
//! (which includes this file by path), so both check the same property
//! against the same oracle. Deliberately naive: it walks a list of header
//! pairs instead of a `HeaderMap`, re-parses digests and queries by hand,
//! and hashes with `sha2` directly.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use proxy_auth::{
    Allowed, Authenticated, Decision, KeyProblem, KeySet, KeySource, ProxyAuthLayer, ProxyAuthMode,
    ProxySecurityConfig, RejectReason, REJECTION_HEADER,
};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

/// A named key as the model sees it.
#[derive(Clone, Debug)]
pub struct NamedKey {
    pub label: &'static str,
    /// Plaintext or `sha256:<hex>`.
    pub key: String,
    pub expired: bool,
}

/// Everything that configures one layer.
#[derive(Clone, Debug)]
pub struct Setup {
    pub config: ProxySecurityConfig,
    /// Keys accepted besides `api_key`; only those `KeySet` accepted.
    pub keys: Vec<NamedKey>,
    /// `None`: the layer's default (`/healthz`).
    pub exempt: Option<Vec<&'static str>>,
    pub query_key: bool,
    pub strip: bool,
}

impl Setup {
    pub fn new(config: ProxySecurityConfig) -> Self {
        Setup {
            config,
            keys: Vec::new(),
            exempt: None,
            query_key: false,
            strip: false,
        }
    }

    /// Adds named keys, keeping only those `KeySet` accepts (the model is
    /// about deciding requests, not about `KeySet`'s validation).
    pub fn with_keys(mut self, keys: impl IntoIterator<Item = NamedKey>) -> Self {
        for key in keys {
            let mut candidate = self.keys.clone();
            candidate.push(key);
            if build_key_set(&candidate).is_some() {
                self.keys = candidate;
            }
        }
        self
    }

    pub fn layer(&self) -> ProxyAuthLayer {
        let keys = build_key_set(&self.keys).expect("keys were accepted by with_keys");
        let mut layer = ProxyAuthLayer::with_keys(self.config.clone(), keys)
            .insert_identity(true)
            .query_key(self.query_key)
            .strip_credentials(self.strip);
        if let Some(paths) = &self.exempt {
            layer = layer.exempt_paths(paths.iter().copied());
        }
        layer
    }
}

fn build_key_set(keys: &[NamedKey]) -> Option<KeySet> {
    let mut set = KeySet::new();
    let hour = Duration::from_secs(3600);
    for k in keys {
        let result = if k.expired {
            set.insert_expiring(k.label, &k.key, SystemTime::now() - hour)
        } else {
            set.insert_expiring(k.label, &k.key, SystemTime::now() + hour)
        };
        result.ok()?;
    }
    Some(set)
}

/// What the model says the layer decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Preflight,
    AuthOff,
    Exempt,
    /// Matched `api_key`.
    Default(KeySource),
    /// Matched the named key with this label.
    Named(KeySource, String),
    /// Refused: reason, source read, problem, and the sources sent but not
    /// read.
    Reject(
        RejectReason,
        Option<KeySource>,
        Option<KeyProblem>,
        Vec<KeySource>,
    ),
}

impl Expected {
    fn matches(&self, decision: &Decision) -> bool {
        match (self, decision) {
            (Expected::Preflight, Decision::Allow(Allowed::Preflight))
            | (Expected::AuthOff, Decision::Allow(Allowed::AuthOff))
            | (Expected::Exempt, Decision::Allow(Allowed::ExemptPath)) => true,
            (Expected::Default(s), Decision::Allow(Allowed::Key(who))) => {
                who.source == *s && who.label.is_none()
            }
            (Expected::Named(s, l), Decision::Allow(Allowed::Key(who))) => {
                who.source == *s && who.label.as_deref() == Some(l.as_str())
            }
            (Expected::Reject(reason, source, problem, ignored), Decision::Reject(r)) => {
                (r.reason, r.source, r.problem) == (*reason, *source, *problem)
                    && r.ignored.iter().collect::<Vec<_>>() == *ignored
            }
            _ => false,
        }
    }

    fn authenticated(&self) -> Option<(KeySource, Option<&str>)> {
        match self {
            Expected::Default(s) => Some((*s, None)),
            Expected::Named(s, l) => Some((*s, Some(l))),
            _ => None,
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `sha256:<64 hex digits>` after trimming, prefix and digits in either
/// case; `Some(None)` for a malformed digest.
fn digest_of_config(value: &str) -> Option<Option<[u8; 32]>> {
    let value = value.trim();
    if value.len() < 7 || !value.is_char_boundary(7) || !value[..7].eq_ignore_ascii_case("sha256:")
    {
        return None;
    }
    let hex = &value[7..];
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(None);
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Some(out))
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Whether a raw query parameter name is the key parameter: decoded once
/// (`%` and two hex digits, anything else kept as it is), then `key` in any
/// ASCII case.
fn is_key_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded.eq_ignore_ascii_case(b"key")
}

/// The raw values of every key parameter, whatever its spelling.
fn query_keys(query: &str) -> Vec<&str> {
    query
        .split('&')
        .filter_map(|pair| match pair.split_once('=') {
            Some((name, value)) if is_key_name(name) => Some(value),
            None if is_key_name(pair) => Some(""),
            _ => None,
        })
        .collect()
}

/// Headers that carry credentials: the three key headers, and
/// `Proxy-Authorization`, which is never read but is stripped too.
pub const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "proxy-authorization",
];

/// The model.
pub fn model(
    setup: &Setup,
    method: &Method,
    uri: &Uri,
    headers: &[(HeaderName, HeaderValue)],
) -> Expected {
    let config = &setup.config;
    // 1. OPTIONS (exactly that method token) passes in every mode.
    if method.as_str() == "OPTIONS" {
        return Expected::Preflight;
    }
    // 2. The mode: auto is off on loopback, all_except_health with LAN.
    let mode = match (config.auth_mode, config.allow_lan_access) {
        (ProxyAuthMode::Auto, false) | (ProxyAuthMode::Off, _) => return Expected::AuthOff,
        (ProxyAuthMode::Auto, true) => ProxyAuthMode::AllExceptHealth,
        (other, _) => other,
    };
    // 3. Exempt paths: exact string equality with the path, query excluded.
    let exempt: &[&str] = setup.exempt.as_deref().unwrap_or(&["/healthz"]);
    if mode == ProxyAuthMode::AllExceptHealth && exempt.iter().any(|p| *p == uri.path()) {
        return Expected::Exempt;
    }
    // 4. The first present source, with all its values in order: the three
    //    headers (surrounding spaces and tabs are not part of a value),
    //    then (if enabled) the `key` query parameter, as sent: every
    //    parameter whose name decodes once to `key` in any ASCII case.
    let mut first: Option<(KeySource, Vec<&[u8]>)> = None;
    for (source, name) in [
        (KeySource::Authorization, "authorization"),
        (KeySource::XApiKey, "x-api-key"),
        (KeySource::XGoogApiKey, "x-goog-api-key"),
    ] {
        let values: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| trim_ows(v.as_bytes()))
            .collect();
        if !values.is_empty() {
            first = Some((source, values));
            break;
        }
    }
    if first.is_none() && setup.query_key {
        let values = query_keys(uri.query().unwrap_or(""));
        if !values.is_empty() {
            first = Some((
                KeySource::QueryKey,
                values.into_iter().map(str::as_bytes).collect(),
            ));
        }
    }
    // Every key source the request sent, read or not: the headers by name,
    // the key parameter whether or not the layer reads it.
    let sent: Vec<KeySource> = [
        (KeySource::Authorization, "authorization"),
        (KeySource::XApiKey, "x-api-key"),
        (KeySource::XGoogApiKey, "x-goog-api-key"),
    ]
    .into_iter()
    .filter(|(_, name)| {
        headers
            .iter()
            .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    })
    .map(|(source, _)| source)
    .chain((!query_keys(uri.query().unwrap_or("")).is_empty()).then_some(KeySource::QueryKey))
    .collect();
    let reject = |reason, source: Option<KeySource>, problem| {
        let ignored = sent
            .iter()
            .copied()
            .filter(|&s| Some(s) != source)
            .collect();
        Expected::Reject(reason, source, problem, ignored)
    };
    // 5. The configured key: trimmed plaintext, or a digest; a malformed
    //    digest is no key at all. No key and no named keys: nothing passes.
    enum Configured<'a> {
        None,
        Plain(&'a [u8]),
        Digest([u8; 32]),
    }
    let configured = match digest_of_config(config.api_key.expose_secret()) {
        Some(Some(digest)) => Configured::Digest(digest),
        Some(None) => Configured::None,
        None if config.api_key.expose_secret().trim().is_empty() => Configured::None,
        None => Configured::Plain(config.api_key.expose_secret().trim().as_bytes()),
    };
    if matches!(configured, Configured::None) && setup.keys.is_empty() {
        return reject(
            RejectReason::NoKeyConfigured,
            first.map(|(source, _)| source),
            None,
        );
    }
    let Some((source, values)) = first else {
        return reject(RejectReason::MissingKey, None, None);
    };
    // 6. Repetition never helps: refused whatever the values are.
    if values.len() > 1 {
        return reject(
            RejectReason::InvalidKey,
            Some(source),
            Some(KeyProblem::Duplicate),
        );
    }
    // 7. One `Bearer ` (any case, one space) off Authorization only; a bare
    //    `Bearer` is an empty key.
    let mut key = values[0];
    if source == KeySource::Authorization {
        if key.eq_ignore_ascii_case(b"bearer") {
            key = b"";
        } else if key.len() >= 7 && key[..6].eq_ignore_ascii_case(b"bearer") && key[6] == b' ' {
            key = &key[7..];
        }
    }
    if key.is_empty() {
        return reject(
            RejectReason::InvalidKey,
            Some(source),
            Some(KeyProblem::Empty),
        );
    }
    if key
        .iter()
        .any(|&b| b != b'\t' && !(0x20..=0x7e).contains(&b))
    {
        return reject(
            RejectReason::InvalidKey,
            Some(source),
            Some(KeyProblem::NotAscii),
        );
    }
    // 8. A named key wins over an equal api_key; an expired one is refused.
    let presented_digest = sha256(key);
    for named in &setup.keys {
        let digest = match digest_of_config(&named.key) {
            Some(Some(digest)) => digest,
            Some(None) => continue,
            None => sha256(named.key.trim().as_bytes()),
        };
        if digest == presented_digest {
            return if named.expired {
                reject(
                    RejectReason::InvalidKey,
                    Some(source),
                    Some(KeyProblem::Expired),
                )
            } else {
                Expected::Named(source, named.label.to_owned())
            };
        }
    }
    // 9. The default key: exact bytes, nothing trimmed off what was sent.
    let default_matches = match configured {
        Configured::None => false,
        Configured::Plain(configured) => key == configured,
        Configured::Digest(digest) => presented_digest == digest,
    };
    if default_matches {
        Expected::Default(source)
    } else if source == KeySource::Authorization {
        reject(
            RejectReason::InvalidKey,
            Some(source),
            authorization_problem(values[0]),
        )
    } else {
        reject(RejectReason::InvalidKey, Some(source), None)
    }
}

/// What is wrong with the shape of an `Authorization` value that matched
/// nothing: `Bearer` not followed by exactly one space and a key, or
/// `<scheme> <rest>` with another scheme.
fn authorization_problem(value: &[u8]) -> Option<KeyProblem> {
    if value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer") {
        let rest = &value[6..];
        let one_space_then_key = rest.is_empty()
            || (rest.len() > 1 && rest[0] == b' ' && rest[1] != b' ' && rest[1] != b'\t');
        return (!one_space_then_key).then_some(KeyProblem::MalformedBearer);
    }
    let cut = value.iter().position(|&b| b == b' ' || b == b'\t')?;
    let scheme = &value[..cut];
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    (!scheme.is_empty() && scheme.iter().all(tchar)).then_some(KeyProblem::OtherScheme)
}

/// An inner service that answers 200 and reports what it received: the
/// `Authenticated` extension in `x-inner-auth` (`none` without one), and in
/// the body `label|credential headers|uri` (a count of [`CREDENTIAL_HEADERS`]).
#[derive(Clone, Debug)]
pub struct Echo;

impl<B> Service<Request<B>> for Echo {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let identity = request.extensions().get::<Authenticated>();
        let who = identity.map_or("none", |a| a.source.as_str());
        let label = identity.and_then(|a| a.label.as_deref()).unwrap_or("-");
        let creds = CREDENTIAL_HEADERS
            .iter()
            .map(|h| request.headers().get_all(*h).iter().count())
            .sum::<usize>();
        let mut response = Response::new(format!("{label}|{creds}|{}", request.uri()));
        response
            .headers_mut()
            .insert("x-inner-auth", HeaderValue::from_static(who));
        std::future::ready(Ok(response))
    }
}

/// Polls a future that must be ready at once (the layer's 401, or `Echo`).
pub fn now<F: Future>(future: F) -> F::Output {
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the layer's future must be ready when the inner one is"),
    }
}

/// Every effective mode, `auto` both ways: the modes the proptest and the
/// fuzz target run each request under.
pub const MODES: [(ProxyAuthMode, bool); 5] = [
    (ProxyAuthMode::Off, false),
    (ProxyAuthMode::Strict, false),
    (ProxyAuthMode::AllExceptHealth, false),
    (ProxyAuthMode::Auto, false),
    (ProxyAuthMode::Auto, true),
];

/// Serves `request` through `layer` around [`Echo`].
pub fn serve<B>(
    layer: ProxyAuthLayer,
    request: Request<B>,
) -> Response<proxy_auth::ResponseBody<String>> {
    match now(layer.layer(Echo).call(request)) {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// What a response shows: status, `x-proxy-auth-error`,
/// `www-authenticate`, and the source [`Echo`] saw (`x-inner-auth`).
pub type Shown = (StatusCode, Option<String>, Option<String>, Option<String>);

pub fn shown<B>(response: &Response<B>) -> Shown {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    (
        response.status(),
        header(REJECTION_HEADER.as_str()),
        header("www-authenticate"),
        header("x-inner-auth"),
    )
}

/// What the layer's 401 for `reason` shows.
pub fn shown_rejected(reason: RejectReason) -> Shown {
    (
        StatusCode::UNAUTHORIZED,
        Some(reason.as_str().to_owned()),
        Some("Bearer".to_owned()),
        None,
    )
}

/// What a request passed to [`Echo`] shows; `who` is the source it saw.
pub fn shown_passed(who: &str) -> Shown {
    (StatusCode::OK, None, None, Some(who.to_owned()))
}

/// Builds the request; `None` when `http` cannot represent it (an invalid
/// method, URI or header), which no server would hand to the layer.
pub fn build_request(
    method: &[u8],
    uri: &[u8],
    headers: &[(HeaderName, HeaderValue)],
) -> Option<Request<()>> {
    let method = Method::from_bytes(method).ok()?;
    let uri = Uri::try_from(uri).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    for (name, value) in headers {
        request.headers_mut().append(name.clone(), value.clone());
    }
    Some(request)
}

/// The URI the inner service must see: with `strip_credentials`, an
/// authenticated request loses its key parameters, whether or not
/// `query_key` is on.
fn expected_inner_uri(setup: &Setup, uri: &Uri, authenticated: bool) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    if !(setup.strip && authenticated) || query_keys(query).is_empty() {
        return uri.to_string();
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !is_key_name(pair.split_once('=').map_or(*pair, |(name, _)| name)))
        .collect();
    let mut out = match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
        _ => String::new(),
    };
    out.push_str(uri.path());
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

/// The signature of [`model`], so a test can hand in a broken model to show
/// that disagreements are caught.
pub type Model = fn(&Setup, &Method, &Uri, &[(HeaderName, HeaderValue)]) -> Expected;

/// Runs `request` through `ProxyAuthLayer::check` and through the service,
/// and checks both against the model.
pub fn check_against_model(setup: &Setup, request: Request<()>) -> Result<(), String> {
    check_against(model, setup, request)
}

/// [`check_against_model`] with the oracle given.
pub fn check_against(model: Model, setup: &Setup, request: Request<()>) -> Result<(), String> {
    let headers: Vec<(HeaderName, HeaderValue)> = request
        .headers()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let expected = model(setup, request.method(), request.uri(), &headers);
    let layer = setup.layer();
    let context = || format!("setup {setup:?}, request {request:?}");

    let decided = layer.check(&request);
    if !expected.matches(&decided) {
        return Err(format!(
            "check() = {decided:?}, model = {expected:?}; {}",
            context()
        ));
    }

    let description = context();
    let authenticated = expected.authenticated();
    let inner_uri = expected_inner_uri(setup, request.uri(), authenticated.is_some());
    let creds = if setup.strip && authenticated.is_some() {
        0
    } else {
        headers
            .iter()
            .filter(|(n, _)| CREDENTIAL_HEADERS.contains(&n.as_str()))
            .count()
    };
    // The default layer (no `Authenticated` extension) first: the same
    // verdict, and the inner service sees no identity.
    let mut copy = Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    let plain_response = serve(layer.clone().insert_identity(false), copy);
    let plain = shown(&plain_response);
    let want_plain = match &expected {
        Expected::Reject(reason, ..) => shown_rejected(*reason),
        _ => shown_passed("none"),
    };
    if plain != want_plain {
        return Err(format!(
            "without insert_identity: response (status, x-proxy-auth-error, www-authenticate, x-inner-auth) = {plain:?}, want {want_plain:?}; {description}"
        ));
    }
    if let Some(body) = plain_response.into_body().into_inner() {
        let want_body = format!("-|{creds}|{inner_uri}");
        if body != want_body {
            return Err(format!(
                "without insert_identity, the inner service saw (label|credential headers|uri) {body:?}, want {want_body:?}; {description}"
            ));
        }
    }
    let response = serve(layer, request);
    let got = shown(&response);
    let want = match &expected {
        Expected::Reject(reason, ..) => shown_rejected(*reason),
        _ => shown_passed(authenticated.map_or("none", |(source, _)| source.as_str())),
    };
    if got != want {
        return Err(format!(
            "response (status, x-proxy-auth-error, www-authenticate, x-inner-auth) = {got:?}, want {want:?}; {description}"
        ));
    }
    if let Some(body) = response.into_body().into_inner() {
        let label = authenticated.and_then(|(_, label)| label).unwrap_or("-");
        let want_body = format!("{label}|{creds}|{inner_uri}");
        if body != want_body {
            return Err(format!(
                "the inner service saw (label|credential headers|uri) {body:?}, want {want_body:?}; {description}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The vocabulary the proptest and the fuzzer build requests from, so that
// matches, near misses and every rule's corner are common, not left to luck.

/// `sha256:` + the SHA-256 of `sk-test` (and of `sk-dig`), as `key_digest`
/// writes them.
pub const SK_TEST_DIGEST: &str =
    "sha256:f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0";
pub const SK_DIG_DIGEST: &str =
    "sha256:28e34351214a50d0c17a1840bf064c32fc4e99c9e0dc3372cbfc8ed4b3ff2520";

/// Configured `api_key`s: plain, padded, empty, blank, odd, non-ASCII, a
/// digest (either hex case), a malformed digest, a wrong-case prefix.
pub const CONFIGURED_KEYS: [&str; 10] = [
    "sk-test",
    " sk-test\n",
    "",
    " \t\n",
    "Bearer sk-test",
    "sk-тест",
    SK_TEST_DIGEST,
    "sha256:F3ABF2A6CC4F00987743DB5F544BA345B4899AE31F326D8EE9C4816DE153C9E0",
    "sha256:not-a-digest",
    "SHA256:f3abf2a6cc4f00987743db5f544ba345b4899ae31f326d8ee9c4816de153c9e0",
];

/// Named key sets; `configured` is the config's `api_key`, for the set that
/// repeats it (a named key equal to `api_key` wins over it).
pub fn named_keys(choice: u8, configured: &str) -> Vec<NamedKey> {
    let key = |label, key: &str, expired| NamedKey {
        label,
        key: key.to_owned(),
        expired,
    };
    match choice % 5 {
        0 => vec![],
        1 => vec![key("alice", "sk-alice", false)],
        2 => vec![key("same", configured, false)],
        3 => vec![key("old", "sk-old", true), key("dig", SK_DIG_DIGEST, false)],
        _ => vec![
            key("alice", "sk-alice", false),
            key("old", "sk-old", true),
            key("same", configured, true),
        ],
    }
}

/// Keys a client may present: the configured one and the named ones.
pub fn presentable(choice: u8, configured: &str) -> String {
    match choice % 5 {
        0 => configured.trim().to_owned(),
        1 => "sk-alice".into(),
        2 => "sk-old".into(),
        3 => "sk-dig".into(),
        _ => "sk-test".into(),
    }
}

pub const METHODS: [&str; 6] = ["GET", "POST", "OPTIONS", "options", "HEAD", "CONNECT"];

/// URIs; `{k}` stands for a presentable key.
pub const URIS: [&str; 27] = [
    "/healthz",
    "/healthz/",
    "/healthz?x=1",
    "//healthz",
    "/HEALTHZ",
    "/%68ealthz",
    "http://h/healthz",
    "h:443",
    "*",
    "/v1/chat/completions",
    "/ready",
    "/",
    "/v1beta/models/m:generateContent?key={k}",
    "/v1?alt=sse&key={k}&x=1",
    "http://h/v1?key={k}",
    "/v1?key={k}&key={k}",
    "/v1?key=&x",
    "/v1?key",
    "/healthz?key={k}",
    "/v1?k%65y={k}",
    "/v1?KEY={k}",
    "/v1?alt=sse&%4b%45%59={k}&keys=1&key%00=2",
    "/v1?key={k}&KEY={k}",
    "/v1?Key&monkey={k}",
    "/v1?%2565y={k}&ke%2By={k}",
    "/v1?k%6={k}&k%zzy={k}&%",
    "http://h/v1?%6B%65%79={k}&x",
];

pub fn uri(choice: u8, key: &str) -> Vec<u8> {
    URIS[usize::from(choice) % URIS.len()]
        .replace("{k}", key)
        .into_bytes()
}

pub const HEADER_NAMES: [&str; 9] = [
    "authorization",
    "Authorization",
    "proxy-authorization",
    "Proxy-Authorization",
    "x-api-key",
    "X-API-KEY",
    "x-goog-api-key",
    "X-Goog-Api-Key",
    "content-type",
];

/// Header values built around a presentable key.
pub fn value(choice: u8, key: &str) -> Vec<u8> {
    let with = |prefix: &str, suffix: &str| format!("{prefix}{key}{suffix}").into_bytes();
    match choice % 14 {
        0 => key.as_bytes().to_vec(),
        1 => with("Bearer ", ""),
        2 => with("bearer ", ""),
        3 => with("BEARER  ", ""),
        4 => with("Bearer\t", ""),
        5 => with(" ", " "),
        6 => with("Basic ", ""),
        7 => Vec::new(),
        8 => b"Bearer".to_vec(),
        9 => b"Bearer ".to_vec(),
        10 => with("Bearer Bearer ", ""),
        11 => with("", "\u{80}"),
        12 => [key.as_bytes(), b"\xff"].concat(),
        _ => with("", "x"),
    }
}
