//! `PROXY_CORS_ORIGINS`: which web pages may call the proxy from a browser,
//! and the CORS layer that lets them.
//!
//! Browser chat front-ends call the API straight from the page with the key
//! in a header, so every call is preceded by a CORS preflight. The layer
//! goes *outside* the auth layer: a preflight carries no key and is answered
//! here, and a 401 from the auth layer still gets `Access-Control-Allow-Origin`
//! and `Access-Control-Expose-Headers: x-proxy-auth-error`, so the page's
//! script can read its status, reason and message instead of a bare network
//! error.

use std::fmt;
use std::net::Ipv6Addr;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use proxy_auth::{ProxyAuthMode, REJECTION_HEADER};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The environment variable: comma-separated origins, or `*`.
pub const VAR: &str = "PROXY_CORS_ORIGINS";

/// How long a browser may reuse a preflight answer. Chromium caps it at 2 h,
/// Firefox at 24 h; an hour saves a round trip on every chat message.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// The methods of the OpenAI, Anthropic and Gemini APIs (files, batches,
/// fine-tunes and assistants use PUT, PATCH and DELETE besides GET and POST).
pub const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// The request headers a preflight may ask for. Besides the three key
/// headers, `content-type` and `anthropic-version`, these are what the
/// official JavaScript SDKs send on *every* call when run in a page
/// (`dangerouslyAllowBrowser: true` for OpenAI and Anthropic, `@google/genai`
/// for Gemini); a preflight that leaves out any one of them blocks the call:
/// - `x-stainless-*`: the OpenAI and Anthropic SDKs' platform headers
///   (`getPlatformHeaders()`, retry count, timeout, stream helper);
/// - `anthropic-dangerous-direct-browser-access`, `anthropic-beta`: the
///   Anthropic SDK's browser opt-in and beta features;
/// - `x-goog-api-client`: the Gemini SDK's client label;
/// - `user-agent`: set by all three SDKs; Chromium drops it, but Firefox sends
///   it and asks for it in the preflight;
/// - `openai-organization`, `openai-project`, `openai-beta`: the OpenAI SDK's
///   account and beta headers, sent when configured.
pub const ALLOWED_HEADERS: [&str; 21] = [
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-goog-api-client",
    "user-agent",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-helper-method",
];

/// The origins allowed to call the proxy from a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any page.
    Any,
    /// Serialized exactly as browsers send them in `Origin` (lowercase,
    /// default port left out), so a byte comparison is the right one.
    List(Vec<String>),
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("any origin (*)"),
            CorsOrigins::List(origins) => f.write_str(&origins.join(", ")),
        }
    }
}

/// Reads [`VAR`]: `None` when it is unset or blank (no CORS layer at all).
pub fn from_env() -> Result<Option<CorsOrigins>, String> {
    match std::env::var(VAR) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{VAR} is not valid UTF-8; origins are ASCII (write an international host in its xn-- form)"
        )),
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => parse(&value).map(Some),
    }
}

/// Parses a comma-separated list of origins, or `*`; the error names the
/// entry and says what to write instead.
pub fn parse(value: &str) -> Result<CorsOrigins, String> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(format!(
            "{VAR}={value:?} lists no origin; write origins separated by commas \
             (e.g. http://localhost:3000,https://chat.example.com), or * for any \
             origin, or leave it unset for no CORS"
        ));
    }
    if entries.contains(&"*") {
        return match entries.as_slice() {
            ["*"] => Ok(CorsOrigins::Any),
            _ => Err(format!(
                "{VAR}={value:?} mixes * with origins; * already allows every origin, \
                 so write either * alone or only the origins"
            )),
        };
    }
    let mut origins = Vec::with_capacity(entries.len());
    for entry in entries {
        let origin = parse_origin(entry)
            .map_err(|why| format!("{VAR}: {entry:?} is not an origin: {why}"))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(CorsOrigins::List(origins))
}

/// One `scheme://host[:port]`, normalized the way browsers serialize it.
fn parse_origin(entry: &str) -> Result<String, String> {
    const EXAMPLE: &str = "scheme://host[:port], e.g. http://localhost:3000";
    if entry.chars().any(char::is_whitespace) {
        return Err("separate origins with commas, not spaces".into());
    }
    if entry.eq_ignore_ascii_case("null") || entry.to_ascii_lowercase().starts_with("file:") {
        return Err("pages opened from files or sandboxed frames send Origin: null, \
                    which any page can also send; serve the page over http(s) and list that origin, or use *"
            .into());
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(match split_path(entry).0 {
            "" => format!("it has no scheme and no host; write {EXAMPLE}"),
            authority => format!("it has no scheme; write http://{authority} (or https://)"),
        });
    };
    let (authority, tail) = split_path(rest);
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(match authority {
            "" => format!("its scheme is {scheme:?}, and web pages have http:// or https:// origins; write {EXAMPLE}"),
            _ => format!("its scheme is {scheme:?}, and web pages have http:// or https:// origins; write http://{authority} or https://{authority}"),
        });
    }
    if authority.contains('@') {
        return Err(format!("it has a user name; write {EXAMPLE}"));
    }
    let (host, port) = split_host_port(authority)?;
    let default_port = if scheme == "http" { 80 } else { 443 };
    let port = match port {
        Some(p) if p != default_port => format!(":{p}"),
        _ => String::new(),
    };
    let origin = format!("{scheme}://{host}{port}");
    if !tail.is_empty() {
        return Err(format!(
            "it has a path ({tail:?}), and an origin has none, not even a trailing /; write {origin}"
        ));
    }
    Ok(origin)
}

/// `host[:port]` and what follows it (path, query, fragment).
fn split_path(s: &str) -> (&str, &str) {
    s.split_at(s.find(['/', '?', '#']).unwrap_or(s.len()))
}

/// The host (lowercase; an IPv6 literal in its canonical bracketed form) and
/// the port if one is written.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or("its IPv6 address has no closing ]")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("[{ip}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("write the port after ]:")?),
        };
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(
                "it has no host; write scheme://host[:port], e.g. http://localhost:3000".into(),
            );
        }
        if host.contains('*') {
            return Err(
                "wildcard hosts are not supported; list each origin, or use * alone for any origin"
                    .into(),
            );
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !host.chars().all(valid) {
            return Err(format!(
                "its host {host:?} is not a host name (letters, digits, '-', '.'; \
                 write an international name in its xn-- form)"
            ));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("its port {p:?} is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// The CORS layer for `origins`, to be put outside the auth layer.
pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().map(|origin| {
            HeaderValue::from_str(origin).expect("parse() keeps only ASCII origins")
        })),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods(ALLOWED_METHODS)
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .expose_headers([REJECTION_HEADER])
        .max_age(MAX_AGE)
        // A front-end served from a public site calling this proxy on the
        // user's machine: browsers with Private Network Access ask first.
        .allow_private_network(true)
}

/// The banner line, and a warning when any page could use a proxy that asks
/// for no key.
pub fn print_banner(origins: Option<&CorsOrigins>, effective_mode: ProxyAuthMode) {
    match origins {
        None => println!("CORS: off (set {VAR} to let web pages call the proxy)"),
        Some(origins) => {
            println!("CORS: {origins}");
            if *origins == CorsOrigins::Any && effective_mode == ProxyAuthMode::Off {
                println!(
                    "warning: {VAR}=* with auth off: any web page you open can use this proxy; \
                     list the front-end's origins or set PROXY_AUTH_MODE"
                );
            }
        }
    }
}
