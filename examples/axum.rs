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
//! generated and printed if unset), `PROXY_ALLOW_LAN_ACCESS` (`true`/`false`).
//! Every route but `/healthz` answers with the method, path, the effective
//! mode and the header that authenticated the request.

#[path = "common/settings.rs"]
mod settings;

// PostgreSQL key store when PROXY_DATABASE_URL is set (common/key_store.rs).
#[cfg(feature = "postgres")]
#[path = "common/key_store.rs"]
mod key_store;

use axum::extract::Request;
use axum::routing::get;
use axum::{Json, Router};
use proxy_auth::{Authenticated, ProxyAuthLayer, SharedSecurityConfig};
use serde_json::{json, Value};

/// The example's router, also started by the crate's HTTP test.
pub fn app(shared: SharedSecurityConfig) -> Router {
    let mode = shared.clone();
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .fallback(move |request: Request| async move { Json(describe(&request, &mode)) })
        .layer(ProxyAuthLayer::from_shared(shared).insert_identity(true))
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
    #[cfg(feature = "postgres")]
    let _key_store = key_store::follow(&shared).await;
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
