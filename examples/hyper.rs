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
//! Same settings as the axum example: `PROXY_LISTEN`, `PROXY_AUTH_MODE`,
//! `PROXY_API_KEY`, `PROXY_ALLOW_LAN_ACCESS`, `PROXY_CORS_ORIGINS`.

#[path = "common/settings.rs"]
mod settings;

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use proxy_auth::{Authenticated, ProxyAuthLayer, SharedSecurityConfig};
use tower::ServiceBuilder;

async fn handle(
    request: Request<Incoming>,
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
    let settings = settings::start();
    let shared = SharedSecurityConfig::new(settings.config.clone());
    settings::guard_or_exit(&shared, &settings);
    let listener = settings::bind_or_exit(&settings).await;
    settings::print_banner("hyper", &settings, &shared, &listener);
    // CORS outside auth, as in the axum example; no layer at all when unset.
    let service = ServiceBuilder::new()
        .option_layer(settings.cors.as_ref().map(settings::cors::layer))
        .layer(ProxyAuthLayer::from_shared(shared.clone()).insert_identity(true))
        .service_fn(move |request| handle(request, shared.clone()));

    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        let service = TowerToHyperService::new(service.clone());
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
