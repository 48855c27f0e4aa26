//! An axum server behind `ProxyAuthLayer`.
//!
//! ```sh
//! PROXY_AUTH_MODE=all_except_health PROXY_API_KEY=sk-test cargo run --example axum
//! ```
//!
//! Every route but `/healthz` echoes the method, path, effective mode and the
//! header that authenticated the request. Each rule, with curl:
//!
//! ```sh
//! curl -i -X OPTIONS localhost:8045/v1/chat/completions              # 200: preflight always passes
//! curl -i localhost:8045/healthz                                     # 200: exempt in all_except_health
//! curl -i localhost:8045/v1/models                                   # 401 missing_key
//! curl -s localhost:8045/v1/models -H 'Authorization: Bearer sk-test' # 200, "authenticated_by":"authorization"
//! curl -s localhost:8045/v1/models -H 'authorization: bearer sk-test' # 200: scheme in any case
//! curl -s localhost:8045/v1/models -H 'Authorization: sk-test'        # 200: no scheme, whole value is the key
//! curl -s localhost:8045/v1/messages -H 'x-api-key: sk-test'          # 200
//! curl -s localhost:8045/v1beta/models -H 'x-goog-api-key: sk-test'   # 200
//! curl -i localhost:8045/v1beta/models -H 'x-api-key: wrong' -H 'x-goog-api-key: sk-test' # 401: x-api-key is read first
//! curl -i localhost:8045/v1/models -H 'Authorization: Bearersk-test'  # 401: no space after Bearer
//! curl -i localhost:8045/v1/models -H 'x-api-key;'                    # 401: empty key
//! curl -i localhost:8045/v1/models -H 'x-api-key: sk-test' -H 'x-api-key: sk-test' # 401: sent twice
//! # also started with PROXY_CORS_ORIGINS=http://localhost:3000, pages there may call it:
//! curl -i -X OPTIONS localhost:8045/v1/models -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Method: GET' -H 'Access-Control-Request-Headers: authorization' # 200, access-control-allow-*
//! curl -i localhost:8045/v1/models -H 'Origin: http://localhost:3000'  # 401 with access-control-allow-origin
//! ```
//!
//! Other modes: `PROXY_AUTH_MODE=strict` (then `/healthz` needs the key too),
//! `PROXY_AUTH_MODE=auto` (off on loopback; with `PROXY_ALLOW_LAN_ACCESS=true`
//! it is `all_except_health` and the server listens on `0.0.0.0:8045`),
//! `PROXY_API_KEY=` with auth on (every request: 401 `no_key_configured`
//! and an ERROR log line).
//!
//! Settings: `PROXY_LISTEN` (default `127.0.0.1:8045`, or `0.0.0.0:8045`
//! with LAN access; a non-loopback address while `auto` resolves to `off` is
//! refused with exit status 2), `PROXY_AUTH_MODE` (`off`, `strict`,
//! `all_except_health`, `auto`), `PROXY_API_KEY` (a key is generated and
//! printed if unset), `PROXY_ALLOW_LAN_ACCESS` (`true`/`false`),
//! `PROXY_CORS_ORIGINS` (origins whose pages may call it with `fetch`, or `*`;
//! unset: no CORS headers).
//! With `--features watch`, `PROXY_CONFIG_FILE` names a JSON or TOML file
//! followed for changes, in place of the three auth variables. With
//! `--features metrics`, `GET /metrics` serves the layer's counters in
//! Prometheus text format, behind the same key:
//! `curl localhost:8045/metrics -H 'Authorization: Bearer sk-test'`.

#[path = "common/settings.rs"]
pub mod settings;

#[cfg(feature = "metrics")]
#[path = "common/metrics.rs"]
mod metrics;

#[path = "common/config_file.rs"]
mod config_file;

// PostgreSQL key store when PROXY_DATABASE_URL is set (common/key_store.rs).
#[cfg(feature = "postgres")]
#[path = "common/key_store.rs"]
mod key_store;

use axum::extract::Request;
use axum::routing::get;
use axum::{Json, Router};
use proxy_auth::{Authenticated, ProxyAuthLayer, SharedSecurityConfig};
use serde_json::{json, Value};
use settings::cors::CorsOrigins;

/// The example's router, also started by the crate's HTTP test.
pub fn app(shared: SharedSecurityConfig) -> Router {
    let mode = shared.clone();
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .fallback(move |request: Request| async move { Json(describe(&request, &mode)) });
    // Before the layer, so a scrape needs the key like every other route.
    #[cfg(feature = "metrics")]
    let router = metrics::route(router);
    router.layer(ProxyAuthLayer::from_shared(shared).insert_identity(true))
}

/// [`app`] behind the CORS layer for `origins` (`PROXY_CORS_ORIGINS`), or as
/// is without it. CORS goes outside auth: preflights carry no key, and a 401
/// must carry the CORS headers for the page's script to read it.
pub fn app_with_cors(shared: SharedSecurityConfig, origins: Option<&CorsOrigins>) -> Router {
    let app = app(shared);
    match origins {
        Some(origins) => app.layer(settings::cors::layer(origins)),
        None => app,
    }
}

fn describe(request: &Request, shared: &SharedSecurityConfig) -> Value {
    let authenticated_by = request
        .extensions()
        .get::<Authenticated>()
        .map(|auth| auth.source.as_str());
    json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "effective_auth_mode": shared.effective_auth_mode(),
        "authenticated_by": authenticated_by,
    })
}

#[tokio::main]
async fn main() {
    let settings = settings::start();
    let shared = SharedSecurityConfig::new(settings.config.clone());
    // Kept alive while serving: dropping them stops following the file or
    // the key store.
    let _config_file = config_file::follow_from_env(&shared);
    #[cfg(feature = "postgres")]
    let _key_store = key_store::follow(&shared).await;
    // After the file was read: the guard judges the config in force, and
    // every reload from then on.
    settings::guard_or_exit(&shared, &settings);
    let listener = settings::bind_or_exit(&settings).await;
    settings::print_banner("axum", &settings, &shared, &listener);
    let app = app_with_cors(shared, settings.cors.as_ref());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("error: server failed: {e}");
        std::process::exit(1);
    }
}
