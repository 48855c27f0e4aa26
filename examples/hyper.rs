//! A plain hyper 1 server behind `ProxyAuthLayer`, through `hyper-util`'s
//! tower adapter: no framework needed.
//!
//! ```sh
//! PROXY_AUTH_MODE=strict PROXY_API_KEY=sk-test cargo run --example hyper
//! curl -i localhost:8045/healthz                          # 401: strict protects health too
//! curl -i localhost:8045/healthz -H 'x-api-key: sk-test'  # 200
//! curl -i localhost:8045/v1beta/models/gemini:generateContent -H 'x-goog-api-key: nope' # 401, Gemini error shape
//! ```
//!
//! The variables are the axum example's (`PROXY_LISTEN`, `PROXY_AUTH_MODE`,
//! `PROXY_API_KEY`, `PROXY_ALLOW_LAN_ACCESS`, `PROXY_CORS_ORIGINS`,
//! `PROXY_TRUSTED_PROXIES`, `PROXY_CONFIG_FILE`, `PROXY_DATABASE_URL`,
//! `PROXY_REDIS_URL`, `PROXY_REPLICAS`),
//! read by `examples/server/mod.rs`. What hyper needs that axum does for
//! you: each connection's requests carry its address (`ClientAddr`), for
//! keys with `allowed_ips`.

#[allow(dead_code)]
#[path = "server/mod.rs"]
mod server;

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use proxy_auth::{Authenticated, SharedSecurityConfig};
use tower::ServiceBuilder;

async fn handle<B>(
    request: Request<B>,
    shared: SharedSecurityConfig,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/healthz" {
        serde_json::json!({ "status": "ok" })
    } else {
        serde_json::json!({
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "effective_auth_mode": shared.effective_auth_mode(),
            "authenticated_by": request.extensions().get::<Authenticated>().map(|a| a.source.as_str()),
        })
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() {
    let server = server::Server::start("hyper").await;
    let shared = server.shared.clone();
    // CORS outside auth, as in the axum example; no layer at all when unset.
    let service = ServiceBuilder::new()
        .option_layer(server.settings.cors.as_ref().map(server::cors::layer))
        .layer(server.layer().insert_identity(true))
        .service_fn(move |request| handle(request, shared.clone()));

    loop {
        let (stream, peer) = tokio::select! {
            accepted = server.listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            },
            () = server::ctrl_c() => break,
        };
        let service = TowerToHyperService::new(server::with_client_addr(peer, service.clone()));
        tokio::spawn(async move {
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
