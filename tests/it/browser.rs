//! The axum example called from a page in a real headless Chromium, as a
//! browser chat front-end calls it: a static page served from one origin
//! (127.0.0.1, one port) `fetch`es the example's router on another origin
//! (127.0.0.1, another port) with `PROXY_CORS_ORIGINS` set to the page's
//! origin. Everything asserted is what the page's script could see, written
//! into the page and read back through WebDriver.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/browser.sh`);
//! without them, see [`common::installed_or_skip`].

mod webdriver;

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use axum::Router;
use proxy_auth::{ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::axum_example::server::cors;
use crate::common;
use crate::common::axum_app as app;

const KEY: &str = "sk-browser-test";
const PAGE: &str = include_str!("browser/page.html");

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The page's results, once its script has written them.
async fn run_page(browser: &webdriver::Browser, url: &str) -> Value {
    browser.goto(url).await.expect("open the page");
    let text = browser
        .wait_for(
            "const t = document.getElementById('results').textContent; return t || null;",
            Duration::from_secs(60),
        )
        .await
        .expect("the page's script finished");
    serde_json::from_str(text.as_str().expect("text")).expect("JSON results")
}

fn blocked(result: &Value) -> bool {
    result["error"] == "TypeError"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_an_allowed_origin_reads_answers_and_401s() {
    if common::installed_or_skip(webdriver::installed(), ".ci/browser.sh").is_none() {
        return;
    }

    // Two page origins: the one PROXY_CORS_ORIGINS lists, and another.
    let pages = Router::new().route("/", get(|| async { Html(PAGE) }));
    let allowed_page = serve(pages.clone()).await;
    let other_page = serve(pages).await;

    let config = || ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, KEY);
    let origins = cors::parse(&format!("http://{allowed_page}")).expect("valid origin");
    let api = serve(app(SharedSecurityConfig::new(config()), Some(&origins))).await;
    let plain = serve(app(SharedSecurityConfig::new(config()), None)).await;

    let query = format!("api=http://{api}&plain=http://{plain}&key={KEY}");
    let browser = webdriver::Browser::start()
        .await
        .expect("start headless Chromium");
    let allowed = run_page(
        &browser,
        &format!("http://{allowed_page}/?{query}&checks=allowed"),
    )
    .await;
    let other = run_page(
        &browser,
        &format!("http://{other_page}/?{query}&checks=other"),
    )
    .await;
    browser.quit().await.expect("end the browser session");

    let show = |r: &Value| serde_json::to_string_pretty(r).unwrap_or_default();
    assert_eq!(allowed["origin"], format!("http://{allowed_page}"));

    let ok = &allowed["chat_with_key"];
    assert_eq!(ok["status"], 200, "{}", show(&allowed));
    assert_eq!(ok["body"]["authenticated_by"], "authorization");
    assert_eq!(ok["body"]["method"], "POST");

    let missing = &allowed["chat_without_key"];
    assert_eq!(missing["status"], 401, "{}", show(&allowed));
    assert_eq!(
        missing["reason"], "missing_key",
        "x-proxy-auth-error exposed"
    );
    let message = missing["body"]["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("no API key was sent"), "{}", show(missing));

    let wrong = &allowed["chat_wrong_key"];
    assert_eq!(wrong["status"], 401, "{}", show(&allowed));
    assert_eq!(wrong["reason"], "invalid_key");

    let anthropic = &allowed["anthropic_sdk_shape"];
    assert_eq!(anthropic["status"], 200, "{}", show(&allowed));
    assert_eq!(anthropic["body"]["authenticated_by"], "x-api-key");
    let gemini = &allowed["gemini"];
    assert_eq!(gemini["status"], 200, "{}", show(&allowed));
    assert_eq!(gemini["body"]["authenticated_by"], "x-goog-api-key");
    let delete = &allowed["delete_with_key"];
    assert_eq!(delete["status"], 200, "{}", show(&allowed));
    assert_eq!(delete["body"]["method"], "DELETE");

    let health = &allowed["health_without_key"];
    assert_eq!(health["status"], 200, "{}", show(&allowed));
    assert_eq!(health["body"]["status"], "ok");

    // The controls: the browser enforces the header list, and without the
    // CORS layer it blocks even a correct call to a server it can reach.
    assert!(blocked(&allowed["unlisted_header"]), "{}", show(&allowed));
    assert!(blocked(&allowed["no_cors_layer"]), "{}", show(&allowed));
    assert_eq!(allowed["no_cors_layer_reachable"]["type"], "opaque");

    // A page on an origin PROXY_CORS_ORIGINS does not list is refused by
    // the browser, though the proxy is up and the key is right.
    assert_eq!(other["origin"], format!("http://{other_page}"));
    assert!(blocked(&other["chat_with_key"]), "{}", show(&other));
    assert!(blocked(&other["health_without_key"]), "{}", show(&other));
    assert_eq!(other["reachable"]["type"], "opaque", "{}", show(&other));
}
