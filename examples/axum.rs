//! An axum server behind `ProxyAuthLayer`.
//!
//! ```sh
//! PROXY_AUTH_MODE=all_except_health PROXY_API_KEY=sk-test cargo run --example axum
//! curl -i localhost:8045/healthz                                    # 200, exempt
//! curl -i localhost:8045/v1/models                                  # 401 missing_key
//! curl -i localhost:8045/v1/models -H 'Authorization: Bearer sk-test' # 200
//! curl -i localhost:8045/v1/models -H 'x-api-key: wrong' -H 'x-goog-api-key: sk-test' # 401: x-api-key is read first
//! ```
//!
//! Settings: `PROXY_LISTEN` (default `127.0.0.1:8045`), `PROXY_AUTH_MODE`
//! (`off`, `strict`, `all_except_health`, `auto`), `PROXY_API_KEY` (a key is
//! generated and printed if unset), `PROXY_ALLOW_LAN_ACCESS` (`true`/`false`);
//! or, with `--features watch`, `PROXY_CONFIG_FILE` (a JSON or TOML file
//! followed for changes, in place of the three auth variables).
//! Every route but `/healthz` answers with the method, path, the effective
//! mode and the header that authenticated the request.
//!
//! With `--features metrics`, `GET /metrics` serves the layer's counters in
//! Prometheus text format, behind the same key:
//! `curl localhost:8045/metrics -H 'Authorization: Bearer sk-test'`.

#[path = "common/settings.rs"]
mod settings;

#[cfg(feature = "metrics")]
#[path = "common/metrics.rs"]
mod metrics;

#[path = "common/config_file.rs"]
mod config_file;

use axum::extract::Request;
use axum::routing::get;
use axum::{Json, Router};
use proxy_auth::{Authenticated, ProxyAuthLayer, SharedSecurityConfig};
use serde_json::{json, Value};

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

fn describe(request: &Request, shared: &SharedSecurityConfig) -> Value {
    let authenticated_by = request
        .extensions()
        .get::<Authenticated>()
        .map(|auth| auth.source.header_name());
    json!({
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "effective_auth_mode": shared.effective_auth_mode(),
        "authenticated_by": authenticated_by,
    })
}

#[tokio::main]
async fn main() {
    let (settings, listener) = settings::start("axum").await;
    let shared = SharedSecurityConfig::new(settings.config);
    // Kept alive while serving: dropping it stops following the file.
    let _config_file = config_file::follow_from_env(&shared);
    let app = app(shared);
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
