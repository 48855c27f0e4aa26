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
//! `PROXY_AUTH_MODE=auto` (off without LAN access; with `PROXY_ALLOW_LAN_ACCESS=true`
//! it is `all_except_health` and the server listens on `0.0.0.0:8045`).
//! `PROXY_API_KEY=` with auth on and no other key is refused at start
//! (exit status 2): such a server could let nobody in.
//!
//! Every variable (`PROXY_LISTEN`, `PROXY_CORS_ORIGINS`,
//! `PROXY_TRUSTED_PROXIES`, `PROXY_CONFIG_FILE` with `--features watch`,
//! `PROXY_DATABASE_URL` with `--features postgres`, `GET /metrics` with
//! `--features metrics`) is read by the examples' shared server module,
//! `examples/server/mod.rs`; this file is the wiring.

#[allow(dead_code)]
#[path = "server/mod.rs"]
pub mod server;

use axum::extract::Request;
use axum::routing::get;
use axum::{Json, Router};
use proxy_auth::{Authenticated, ProxyAuthLayer, ReadsBodies, SharedSecurityConfig};
use serde_json::{json, Value};
use server::cors::CorsOrigins;

/// The example's routes behind `auth`, with the CORS layer for `origins`
/// outside it (a preflight carries no key, and a 401 must carry the CORS
/// headers for the page's script to read it).
pub fn app(
    shared: SharedSecurityConfig,
    auth: ProxyAuthLayer<ReadsBodies>,
    origins: Option<&CorsOrigins>,
) -> Router {
    let mode = shared.clone();
    let router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .fallback(move |request: Request| async move { Json(describe(&request, &mode)) });
    // Before the layer, so a scrape needs the key like every other route.
    #[cfg(feature = "metrics")]
    let router = server::metrics::route(router);
    let router = router
        .layer(auth.insert_identity(true))
        .layer(server::client_addr_from_connect_info());
    match origins {
        Some(origins) => router.layer(server::cors::layer(origins)),
        None => router,
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
    let server = server::Server::start("axum").await;
    let app = app(
        server.shared.clone(),
        server.layer(),
        server.settings.cors.as_ref(),
    );
    // With the connection's address, for keys with `allowed_ips`.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(server.listener, app).with_graceful_shutdown(server::ctrl_c());
    if let Err(e) = served.await {
        eprintln!("error: server failed: {e}");
        std::process::exit(1);
    }
}
