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
//! (`auto` is `off` on loopback and `all_except_health` with LAN access),
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
//! request that needs a key is refused and an error is logged.
//!
//! A refused request gets `401`, `WWW-Authenticate: Bearer`, an
//! `x-proxy-auth-error` header (`missing_key`, `invalid_key` or
//! `no_key_configured`) that an upstream's own 401 never has, and a JSON body
//! in the error format of the client's API (OpenAI, Anthropic or Gemini, see
//! [`Protocol`]) so SDKs print its message. Each rejection is logged through
//! [`tracing`](https://docs.rs/tracing) under the `proxy_auth` target,
//! without the key.
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
//! shared.update(|config| config.api_key = "sk-2".into());
//! let response = service.clone().oneshot(request()).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["x-proxy-auth-error"], "invalid_key");
//! # Ok(())
//! # }
//! ```
//!
//! # Beyond one key
//!
//! All off by default:
//!
//! - [`KeySet`]: labelled keys besides `api_key`, held as SHA-256 digests,
//!   with expiry; rotate them while serving with
//!   [`SharedSecurityConfig::update_keys`]. The label reaches handlers in
//!   [`Authenticated::label`].
//! - `api_key` (and key set entries) may be a `sha256:<hex>` digest
//!   ([`key_digest`]), so config files need not hold plaintext keys.
//! - [`ProxyAuthLayer::query_key`]: accept `?key=` as a last source.
//! - [`ProxyAuthLayer::strip_credentials`]: remove the key headers before the
//!   inner service (your upstream client) sees the request.
//!
//! # Security
//!
//! The comparison of a plaintext `api_key` takes time that depends only on
//! the length of the key the client sent: not on how many leading bytes
//! matched, nor on the configured key's length (see the README's Security
//! section for how this is tested). Configuring a digest key or a
//! [`KeySet`] adds one SHA-256 of the presented key per request, whose time
//! likewise depends only on the presented length.
//! `Debug` output of every type here redacts the key, and neither responses
//! nor log lines ever contain a presented or configured key.
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
//! - `postgres` (off by default): the PostgreSQL key store above; adds
//!   `tokio-postgres` and `tokio`.
//!
//! Every other dependency serves a feature above that is always compiled
//! (`arc-swap` for hot reload, `tracing` for the rejection logs, `getrandom`
//! for generated keys, `sha2` for key sets and digest keys); the optional
//! ones are off at run time, not at compile time, so a config file can turn
//! them on without a rebuild.
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

mod body;
mod compare;
mod config;
mod decision;
mod extract;
mod future;
mod key_set;
mod layer;
mod mode;
mod response;
mod service;
mod shared;

// Issue 10: PostgreSQL-backed key sets (feature `postgres`).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

pub use body::ResponseBody;
pub use config::{generate_api_key, try_generate_api_key, KeyGenError, ProxySecurityConfig};
pub use decision::{Allowed, Authenticated, Decision, RejectReason, Rejection};
pub use extract::{KeyProblem, KeySource};
pub use future::ResponseFuture;
pub use key_set::{key_digest, KeySet, KeySetError};
pub use layer::ProxyAuthLayer;
pub use mode::{ParseModeError, ProxyAuthMode};
pub use response::{Protocol, REJECTION_HEADER};
pub use service::ProxyAuth;
pub use shared::SharedSecurityConfig;
