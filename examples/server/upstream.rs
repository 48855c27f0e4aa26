//! The forward example's upstream settings: `PROXY_UPSTREAM` (the base URL
//! requests are forwarded to) and `PROXY_UPSTREAM_KEY` (the key the upstream
//! expects), read from the environment next to the `PROXY_*` settings.

use std::fmt;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use proxy_auth::KeySource;

/// Where requests go and with which key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without its trailing `/` (empty for `/`), put in
    /// front of every forwarded path.
    prefix: String,
    /// `Bearer <key>` and `<key>`, built once and marked sensitive so HTTP/2
    /// never puts them in its header compression table.
    bearer: Option<HeaderValue>,
    plain: Option<HeaderValue>,
    /// Covers DNS, TCP and the TLS handshake: an upstream that does not
    /// answer turns into a 502 after this long, never a hung request.
    pub connect_timeout: Duration,
}

impl Upstream {
    /// Checks the base URL (`http://` or `https://`, a host, no query) and
    /// the key (visible ASCII), or says what is wrong without echoing the key.
    pub fn new(base: &str, key: Option<&str>) -> Result<Self, String> {
        let uri: Uri = base.trim().parse().map_err(|_| {
            format!("PROXY_UPSTREAM={base:?} is not a URL; use e.g. https://api.openai.com")
        })?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => {
                return Err(format!(
                    "PROXY_UPSTREAM={base:?} must start with http:// or https://"
                ))
            }
        };
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("PROXY_UPSTREAM={base:?} has no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(
                "PROXY_UPSTREAM must not contain user:password@; put the key in PROXY_UPSTREAM_KEY"
                    .into(),
            );
        }
        if uri.query().is_some() {
            return Err(format!(
                "PROXY_UPSTREAM={base:?} has a query; give a base URL such as https://host/v1"
            ));
        }
        let (bearer, plain) = match key.map(str::trim).filter(|k| !k.is_empty()) {
            None => (None, None),
            Some(key) => {
                let value = |text: String| {
                    HeaderValue::try_from(text).map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                };
                let invalid = |_| {
                    "PROXY_UPSTREAM_KEY has characters a header cannot carry; API keys are visible ASCII".to_string()
                };
                (
                    Some(value(format!("Bearer {key}")).map_err(invalid)?),
                    Some(value(key.to_owned()).map_err(invalid)?),
                )
            }
        };
        Ok(Upstream {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            bearer,
            plain,
            connect_timeout: Duration::from_secs(10),
        })
    }

    /// `PROXY_UPSTREAM` (required) and `PROXY_UPSTREAM_KEY` (optional: an
    /// upstream on the same host may need none).
    pub fn from_env() -> Result<Self, String> {
        let base = std::env::var("PROXY_UPSTREAM").map_err(|_| {
            "PROXY_UPSTREAM is not set; set it to the upstream's base URL, e.g. https://api.openai.com"
                .to_string()
        })?;
        let key = match std::env::var("PROXY_UPSTREAM_KEY") {
            Ok(key) => Some(key),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err("PROXY_UPSTREAM_KEY is not valid UTF-8; API keys are ASCII".into())
            }
        };
        Self::new(&base, key.as_deref())
    }

    /// The upstream URI for a request's path and query: the base URL's
    /// path, then the request's path, then its query minus every key
    /// parameter, however spelled (a client's key never goes upstream,
    /// whatever the mode).
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let path = path_and_query.map_or("/", PathAndQuery::path);
        let mut target = format!("{}{path}", self.prefix);
        if let Some(query) = path_and_query.and_then(PathAndQuery::query) {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| !is_key_param(pair.split('=').next().unwrap_or(pair)))
                .collect();
            if !kept.is_empty() {
                target.push('?');
                target.push_str(&kept.join("&"));
            }
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
    }

    /// The upstream key, in the header the client put its own key in: what
    /// an OpenAI, Anthropic or Gemini SDK sends is what its API expects.
    /// A `?key=` client gets `x-goog-api-key`, which Gemini also accepts.
    pub fn key_header(&self, source: KeySource) -> Option<(HeaderName, HeaderValue)> {
        match source {
            KeySource::Authorization => Some((AUTHORIZATION, self.bearer.clone()?)),
            KeySource::XApiKey => Some((HeaderName::from_static("x-api-key"), self.plain.clone()?)),
            _ => Some((
                HeaderName::from_static("x-goog-api-key"),
                self.plain.clone()?,
            )),
        }
    }

    /// Whether `PROXY_UPSTREAM_KEY` was set.
    pub fn has_key(&self) -> bool {
        self.plain.is_some()
    }
}

/// Whether a query parameter `name` is the key parameter as
/// `ProxyAuthLayer::query_key` defines it: percent-decoded once, `key` in
/// any ASCII case (`KEY`, `k%65y`). In mode `off` the layer strips nothing,
/// so the forwarder must drop the same spellings itself.
fn is_key_param(name: &str) -> bool {
    let hex = |b: &u8| char::from(*b).to_digit(16);
    let mut decoded = Vec::with_capacity(3);
    let mut rest = name.as_bytes();
    while let [first, after @ ..] = rest {
        match (
            first,
            after.first().and_then(hex),
            after.get(1).and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push(u8::try_from(hi * 16 + lo).expect("two hex digits fit a byte"));
                rest = &after[2..];
            }
            _ => {
                decoded.push(*first);
                rest = after;
            }
        }
        if decoded.len() > 3 {
            return false;
        }
    }
    decoded.eq_ignore_ascii_case(b"key")
}

/// The base URL as configured; the key only as "set" or "none".
impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &format_args!("{self}"))
            .field("key", &if self.has_key() { "<redacted>" } else { "none" })
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}
