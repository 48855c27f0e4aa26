//! API-key authentication for HTTP proxies, as a [tower] layer.
//!
//! `proxy-auth` puts an API-key check in front of any tower service (an
//! axum router, a hyper service, a reverse proxy's forwarding service). It
//! implements the auth rules of the "Antigravity Tools" proxy that users of
//! OpenAI-, Anthropic- and Gemini-compatible gateways already know, compares
//! keys in constant time, reloads its config without a restart, and answers
//! 401s that say who refused the request and why.
//!
//! # The rules
//!
//! The [`ProxySecurityConfig`]'s mode, resolved by
//! [`effective_auth_mode`](ProxySecurityConfig::effective_auth_mode)
//! (`auto` is `off` without LAN access and `all_except_health` with it; it
//! never looks at an address),
//! decides which requests need the key:
//!
//! | request | `off` | `all_except_health` | `strict` |
//! |---|---|---|---|
//! | `OPTIONS` (CORS preflight) | passes | passes | passes |
//! | `/healthz` (exact path; see [`ProxyAuthLayer::exempt_paths`]) | passes | passes | needs key |
//! | anything else | passes | needs key | needs key |
//!
//! A request that needs the key is judged on the **first present** header of
//! `Authorization`, `x-api-key`, `x-goog-api-key`. A present header that is
//! empty, wrong, repeated or not ASCII is *not* skipped for a later one.
//! In `Authorization`, one `Bearer ` prefix (scheme in any case, exactly one
//! space) is removed; without it the whole value is the key. An empty key
//! never matches, and if auth is on but the configured key is empty, every
//! request that needs a key is refused and an error is logged
//! ([`ProxyAuthLayer::check_keys`] finds that before serving).
//!
//! # Refusals that say who, which mode and why
//!
//! Every response the layer writes itself carries `x-proxy-auth-error`
//! ([`REJECTION_HEADER`]: the [`RejectReason`]), which an upstream's own
//! 401, 403 or 429 never has; its own 401s and 403s also carry
//! `x-proxy-auth-mode` ([`MODE_HEADER`]: the effective mode, and what `auto`
//! was resolved from), unless [`ProxyAuthLayer::rejection_response`]
//! replaces them. A key that is
//! missing or wrong gets `401` and `WWW-Authenticate: Bearer`; a key out of
//! its scope `403`. The JSON body is in the error shape of the client's API
//! ([`ApiShape`]: OpenAI by default, Anthropic for `x-api-key` or
//! `/v1/messages`, Gemini for `x-goog-api-key`, Gemini paths or a query key)
//! so SDKs show its message, which names the header read, any header sent
//! but not read, what was wrong with the value (`Bearer<key>`, another
//! scheme) and the mode; the same facts are fields of the body and of the
//! [`Rejection`] in the response's extensions. Each refusal is one log line
//! under the `proxy_auth` target, with the request's `x-request-id`, and
//! never a key.
//!
//! # With axum
//!
//! ```
//! use axum::{routing::get, Router};
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
//!
//! let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-my-key");
//! let app: Router = Router::new()
//!     .route("/v1/models", get(|| async { "models" }))
//!     .route("/healthz", get(|| async { "ok" }))
//!     .layer(ProxyAuthLayer::new(config));
//! # let _ = app;
//! ```
//!
//! # With any tower service, and hot reload
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), std::convert::Infallible> {
//! let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-1"));
//! let service = ServiceBuilder::new()
//!     .layer(ProxyAuthLayer::from_shared(shared.clone()))
//!     .service(service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     }));
//!
//! let request = || Request::get("/v1/models").header("x-api-key", "sk-1").body(String::new()).unwrap();
//! assert_eq!(service.clone().oneshot(request()).await?.status(), StatusCode::OK);
//!
//! // Rotate the key: the next request is judged against the new one.
//! shared.update(|config| config.api_key = "sk-2".into()).expect("no listen-address guard is set");
//! let response = service.clone().oneshot(request()).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["x-proxy-auth-error"], "invalid_key");
//! # Ok(())
//! # }
//! ```
//!
//! # Where it goes in a stack
//!
//! Outside it, in this order from the outside in: tower-http's `TraceLayer`
//! (it then sees every request, the layer's 401s included), `CorsLayer`
//! (preflights are answered before auth, and a browser sees the 401 with
//! CORS headers rather than a CORS error; expose [`REJECTION_HEADER`] so
//! page scripts can read the reason), then `TimeoutLayer` or anything else
//! that should also apply to refused requests. Inside it: whatever must
//! only see authenticated requests (quotas of your own beyond the layer's
//! [limits](limit), the forwarding client). [`ResponseBody`] implements
//! `Default` where the inner body does, as tower-http's layers that answer
//! on their own require.
//!
//! ```
//! use std::time::Duration;
//! use http::StatusCode;
//! use proxy_auth::{ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig};
//! use tower::ServiceBuilder;
//! use tower_http::{cors::CorsLayer, timeout::TimeoutLayer, trace::TraceLayer};
//!
//! let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-1");
//! let app = axum::Router::new()
//!     .route("/v1/chat/completions", axum::routing::post(|| async { "..." }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(TraceLayer::new_for_http())
//!             .layer(CorsLayer::permissive().expose_headers([proxy_auth::REJECTION_HEADER]))
//!             .layer(TimeoutLayer::with_status_code(StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(600)))
//!             .layer(ProxyAuthLayer::new(config)),
//!     );
//! # let _: axum::Router = app;
//! ```
//!
//! # Beyond one key
//!
//! - [`KeySet`]: labelled keys besides `api_key`, held as SHA-256 digests,
//!   each with an expiry, scopes ([`scope`]: models, routes, client
//!   networks, refused with a 403 that says why) and data of the author's
//!   own ([`NewKey::data`], read in handlers through
//!   [`Authenticated::data`]); rotate them while serving with
//!   [`SharedSecurityConfig::update_keys`].
//! - `api_key` (and key set entries) may be a `sha256:<hex>` digest
//!   ([`key_digest`]), so config files need not hold plaintext keys.
//! - [`ProxyAuthLayer::read_model_bodies`]: read the model of a request's
//!   body for keys limited to some models.
//! - [`ProxyAuthLayer::key_sources`], [`other_schemes_absent`](ProxyAuthLayer::other_schemes_absent),
//!   [`error_shape`](ProxyAuthLayer::error_shape) and
//!   [`rejection_response`](ProxyAuthLayer::rejection_response): the header
//!   rules and the error format of an existing proxy.
//! - [`limit`]: per-key `rpm` (with a `burst`) and `max_concurrent`, and
//!   defaults for every key in [`ProxySecurityConfig::limits`]; a key at
//!   its limit gets a `429` whose headers make the OpenAI and Anthropic
//!   SDKs wait exactly as long as needed.
//! - [`ProxyAuthLayer::query_key`]: accept `?key=` (any ASCII case, name
//!   percent-decoded once) as a last source.
//! - [`ProxyAuthLayer::strip_credentials`] (on by default): the key
//!   headers, `Proxy-Authorization` and any `?key=` are removed before the
//!   inner service (your upstream client) sees the request.
//! - [`SharedSecurityConfig::guard_listen_addr`]: no config write, from code
//!   or a watched file, may let `auto` serve a non-loopback listen address
//!   with auth off (an explicit `off` is taken at its word).
//!
//! # Security
//!
//! The comparison of a plaintext `api_key` takes time that depends only on
//! the length of the key the client sent: not on how many leading bytes
//! matched, nor on the configured key's length, even with its memory out
//! of cache (every plaintext key up to 4096 bytes lives in a buffer of the
//! same size; a longer one counts as no `api_key`). `SECURITY.md` says how this
//! is tested. Configuring a digest key or a
//! [`KeySet`] adds one SHA-256 of the presented key per request, whose time
//! likewise depends only on the presented length.
//!
//! Key material is wiped when dropped: the configured key ([`ApiKey`]) and
//! its comparison buffer, key-set digests, the config a reload replaces and
//! the heap copies the crate makes on the way (`SECURITY.md` lists what
//! is out of its reach: the request's own buffers, parsers' scratch
//! buffers, stack temporaries). `Debug` output of every type here redacts
//! the key, and neither responses nor log lines ever contain a presented or
//! configured key.
//!
//! # Many replicas, one key store
//!
//! With the `postgres` feature, `postgres::PgKeyStore` keeps each
//! replica's key set equal to one PostgreSQL table: it loads the active keys
//! at start, applies every insert, revoke, delete and expiry change within a
//! second through `LISTEN`/`NOTIFY`, reloads on a timer and after every
//! reconnect, and keeps serving the last loaded set while the database is
//! away. Requests never wait for the database. The
//! [`postgres` module docs](postgres/index.html)
//! cover running N replicas, outages, issuing and revoking keys (with the
//! `keys` example CLI) and the table schema.
//!
//! # Feature flags
//!
//! On by default (turn them off with `default-features = false` to trim
//! the dependency tree):
//!
//! - `serde`: `Serialize`/`Deserialize` for [`ProxyAuthMode`],
//!   [`ProxySecurityConfig`] and `KeySet`.
//! - `key-set`: `KeySet` with scopes and limits, `sha256:` digest keys and
//!   `key_digest` (`sha2`; `serde_json` to read JSON bodies' models;
//!   `quanta`, the limits' clock).
//!   Without it a `sha256:` `api_key` is refused (treated as no key), never
//!   taken as plaintext.
//! - `generate-key`: `generate_api_key` and `ProxySecurityConfig::default()`
//!   (`getrandom`).
//!
//! The core (modes, header rules, constant-time comparison, hot reload,
//! refusals, `tracing` logs) is always compiled.
//!
//! Integrations with other crates, all off by default:
//!
//! - `axum`: read axum's `OriginalUri` (the path the client sent, inside
//!   `Router::nest`) and `ConnectInfo` (the client's address, for
//!   `allowed_ips`).
//! - `metrics`: count every decision by outcome, reason and key source
//!   through the [`metrics`](https://docs.rs/metrics) facade (see
//!   the `metrics` module).
//! - `watch`: make a [`SharedSecurityConfig`] follow a JSON or TOML config
//!   file, reloaded on change, a bad edit keeping the last good config (see
//!   the `watch` module). Needs Rust 1.88 (from `notify`).
//! - `postgres`: a key store that keeps every replica's key set equal to a
//!   PostgreSQL table (see the `postgres` module); adds `tokio-postgres` and
//!   `tokio`. Needs Rust 1.88 (from `tokio-postgres`' dependencies).
//! - `redis`: each key's rate drawn by every replica from one budget in
//!   Redis, with a bounded wait and a per-replica share during an outage
//!   (see the `redis` module and [`limit`]). Needs Rust 1.88 (from
//!   `redis`).
//!
//! The crate's `rust-version` (1.85) holds for the core and every feature
//! but `watch`, `postgres` and `redis`.
//!
//! [tower]: https://docs.rs/tower

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::unwrap_used
)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api_key;
mod body;
mod client_uri;
mod compare;
mod config;
mod decision;
mod digest;
mod extract;
mod future;
#[cfg(feature = "key-set")]
mod key_entry;
#[cfg(feature = "key-set")]
mod key_set;
mod layer;
#[cfg(feature = "key-set")]
pub mod limit;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod mode;
#[cfg(feature = "key-set")]
mod model_body;
mod response;
#[cfg(feature = "key-set")]
pub mod scope;
mod service;
mod shared;
mod sources;
mod verdict;
#[cfg(feature = "watch")]
#[cfg_attr(docsrs, doc(cfg(feature = "watch")))]
pub mod watch;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use api_key::ApiKey;
pub use body::ResponseBody;
pub use client_uri::ClientUri;
#[cfg(feature = "generate-key")]
pub use config::{generate_api_key, try_generate_api_key, KeyGenError};
pub use config::{ExposedWithoutAuth, ProxySecurityConfig, UnusableKey};
#[cfg(feature = "key-set")]
pub use digest::key_digest;
pub use future::ResponseFuture;
#[cfg(feature = "key-set")]
pub use key_entry::{KeyEntry, NewKey};
#[cfg(feature = "key-set")]
pub use key_set::{KeySet, KeySetError};
pub use layer::{HeadsOnly, ProxyAuthLayer, ReadsBodies, DEFAULT_BODY_LIMIT};
#[cfg(feature = "key-set")]
pub use limit::{Budget, LimitError, LimitKind, Limited, Limits};
pub use mode::{ParseModeError, ProxyAuthMode};
#[cfg(feature = "key-set")]
pub use model_body::{ModelBody, ModelResponseFuture};
#[cfg(feature = "redis")]
pub use redis::SharesRates;
pub use response::{ApiShape, MODE_HEADER, REJECTION_HEADER};
#[cfg(feature = "key-set")]
pub use scope::{check_path, ClientAddr, PathProblem};
pub use service::ProxyAuth;
pub use shared::SharedSecurityConfig;
pub use sources::KeySources;
pub use verdict::{
    Allowed, Authenticated, Decision, KeyProblem, KeySource, RejectReason, Rejection,
};

// The README's Rust examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
