//! Rotating a named key with no window of failures, through the shared
//! handle, while a service keeps answering. No server: it drives the layer
//! directly and prints what each client would get.
//!
//! ```sh
//! cargo run --example rotation
//! ```
//!
//! The steps are the ones to follow in production: add the new key, let
//! clients move to it while both work, give the old key a deadline (or
//! remove it), and watch the old key be refused with a clear reason.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use http::{Request, Response};
use proxy_auth::{
    Authenticated, KeySetError, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
    SharedSecurityConfig,
};
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), KeySetError> {
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, "sk-admin"));
    shared.update_keys(|keys| keys.insert("ci-2026-11", "sk-ci-november"))?;

    let mut service = ServiceBuilder::new()
        .layer(ProxyAuthLayer::from_shared(shared.clone()).insert_identity(true))
        .service(service_fn(|request: Request<()>| async move {
            let who = request
                .extensions()
                .get::<Authenticated>()
                .and_then(|a| a.label.as_deref().map(str::to_owned))
                .unwrap_or_else(|| "default key".into());
            Ok::<_, Infallible>(Response::new(who))
        }));

    let mut try_keys = async |step: &str| {
        println!("{step}");
        for key in ["sk-ci-november", "sk-ci-december"] {
            let request = Request::get("/v1/models")
                .header("x-api-key", key)
                .body(())
                .expect("valid request");
            let response = service
                .ready()
                .await
                .expect("infallible")
                .call(request)
                .await
                .expect("infallible");
            let outcome = match response.headers().get("x-proxy-auth-error") {
                Some(reason) => format!("401 {}", reason.to_str().unwrap_or("?")),
                None => format!(
                    "200 as {:?}",
                    response.into_body().into_inner().unwrap_or_default()
                ),
            };
            println!("  {key:<16} -> {outcome}");
        }
    };

    try_keys("1. only the November key exists").await;

    shared.update_keys(|keys| keys.insert("ci-2026-12", "sk-ci-december"))?;
    try_keys("2. December key added: both work, clients can move").await;

    let deadline = SystemTime::now() + Duration::from_millis(200);
    shared.update_keys(|keys| keys.insert_expiring("ci-2026-11", "sk-ci-november", deadline))?;
    try_keys("3. November key given a deadline 200 ms from now: still works").await;

    tokio::time::sleep(Duration::from_millis(250)).await;
    try_keys("4. deadline passed: November refused (invalid_key, problem \"expired\")").await;

    shared.update_keys(|keys| {
        keys.remove("ci-2026-11");
        Ok(())
    })?;
    println!("5. November key removed; keys now: {:?}", shared.keys());
    Ok(())
}
