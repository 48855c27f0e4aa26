//! The examples' CORS setup without a browser: `PROXY_CORS_ORIGINS` parsing,
//! the headers a preflight and a 401 get through the axum example's router,
//! and the examples' start-up error for a bad origin list.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http::{header, HeaderMap, Request, StatusCode};
use proxy_auth::{ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};

use crate::axum_example::server::cors::{self, CorsOrigins};
use crate::common::{self, answer, http1, Answer, Reply};

const PAGE: &str = "http://127.0.0.1:3000";

fn router(origins: Option<&str>) -> Router {
    let origins = origins.map(|o| cors::parse(o).expect("valid origin list"));
    let config = ProxySecurityConfig::new(ProxyAuthMode::AllExceptHealth, "sk-cors");
    crate::common::axum_app(SharedSecurityConfig::new(config), origins.as_ref())
}

fn preflight(origin: &str, method: &str, headers: &str) -> Request<Body> {
    Request::options("/v1/chat/completions")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
        .body(Body::empty())
        .expect("valid request")
}

fn get(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header"))
}

fn list(headers: &HeaderMap, name: header::HeaderName) -> Vec<String> {
    get(headers, name)
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_gets_every_allow_header() {
    let requested = "authorization,content-type,x-api-key,x-goog-api-key,anthropic-version";
    let Answer {
        status, headers, ..
    } = answer(
        router(Some(&format!("https://chat.example.com,{PAGE}"))),
        preflight(PAGE, "POST", requested),
    )
    .await;

    assert!(status.is_success(), "{status}");
    assert_eq!(
        get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(PAGE)
    );
    let methods = list(&headers, header::ACCESS_CONTROL_ALLOW_METHODS);
    for method in ["get", "post", "put", "patch", "delete", "options"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
    let allowed = list(&headers, header::ACCESS_CONTROL_ALLOW_HEADERS);
    for name in requested.split(',').chain(["x-stainless-os", "user-agent"]) {
        assert!(allowed.iter().any(|a| a == name), "{name}: {allowed:?}");
    }
    assert_eq!(get(&headers, header::ACCESS_CONTROL_MAX_AGE), Some("3600"));
    assert!(
        list(&headers, header::VARY).contains(&"origin".to_owned()),
        "caches must key on Origin: {headers:?}"
    );
    // Credentials are never needed: the key travels in a header.
    assert_eq!(
        get(&headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
        None
    );
}

#[tokio::test]
async fn preflight_from_another_origin_is_not_allowed() {
    for other in [
        "http://127.0.0.1:3001",
        "https://127.0.0.1:3000",
        "http://evil.example",
    ] {
        let Answer { headers, .. } = answer(
            router(Some(PAGE)),
            preflight(other, "POST", "authorization"),
        )
        .await;
        assert_eq!(
            get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            None,
            "{other}"
        );
    }
}

#[tokio::test]
async fn a_401_from_auth_is_readable_by_the_page() {
    let request = Request::post("/v1/chat/completions")
        .header(header::ORIGIN, PAGE)
        .body(Body::from("{}"))
        .expect("valid request");
    let Answer {
        status,
        headers,
        body,
    } = answer(router(Some(PAGE)), request).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(PAGE)
    );
    assert_eq!(
        list(&headers, header::ACCESS_CONTROL_EXPOSE_HEADERS),
        ["x-proxy-auth-error"]
    );
    assert_eq!(get(&headers, "x-proxy-auth-error"), Some("missing_key"));
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON 401 body");
    let message = body["error"]["message"].as_str().expect("error.message");
    assert!(message.contains("no API key was sent"), "{message}");
}

#[tokio::test]
async fn an_accepted_call_carries_the_origin_too() {
    let request = Request::post("/v1/chat/completions")
        .header(header::ORIGIN, PAGE)
        .header(header::AUTHORIZATION, "Bearer sk-cors")
        .body(Body::from("{}"))
        .expect("valid request");
    let Answer {
        status,
        headers,
        body,
    } = answer(router(Some(PAGE)), request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(PAGE)
    );
}

#[tokio::test]
async fn any_origin_and_private_network_preflights() {
    let mut request = preflight("https://chat.example.com", "POST", "authorization");
    request.headers_mut().insert(
        "access-control-request-private-network",
        "true".parse().expect("valid value"),
    );
    let Answer { headers, .. } = answer(router(Some("*")), request).await;
    assert_eq!(
        get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some("*")
    );
    assert_eq!(
        get(&headers, "access-control-allow-private-network"),
        Some("true")
    );
}

#[tokio::test]
async fn unset_means_no_cors_headers_as_before() {
    let Answer {
        status,
        headers,
        body,
    } = answer(router(None), preflight(PAGE, "POST", "authorization")).await;
    // The OPTIONS reaches the app (auth lets it through) and gets no CORS
    // headers, so a browser would block the page's call.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"OPTIONS\""), "{body}");
    assert_eq!(get(&headers, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
}

#[test]
fn origin_lists_are_normalized_as_browsers_send_origins() {
    let parsed = cors::parse(
        " HTTP://LocalHost:80 , https://Chat.Example.com:443,http://127.0.0.1:3000,,\
         http://[0:0::1]:8080, http://localhost ",
    )
    .expect("valid list");
    assert_eq!(
        parsed,
        CorsOrigins::List(vec![
            "http://localhost".into(),
            "https://chat.example.com".into(),
            "http://127.0.0.1:3000".into(),
            "http://[::1]:8080".into(),
        ])
    );
    assert_eq!(cors::parse("*"), Ok(CorsOrigins::Any));
    assert_eq!(cors::parse(" * ,"), Ok(CorsOrigins::Any));
}

#[test]
fn bad_origin_lists_name_the_entry_and_what_to_write() {
    // (value, the entry or value named, the fix the message gives)
    let cases = [
        (
            "localhost:3000",
            "\"localhost:3000\"",
            "write http://localhost:3000",
        ),
        (
            "http://localhost:3000/",
            "has a path",
            "write http://localhost:3000",
        ),
        (
            "https://chat.example.com/app",
            "\"/app\"",
            "write https://chat.example.com",
        ),
        ("http://a.test?x=1", "has a path", "write http://a.test"),
        (
            "ftp://files.example",
            "\"ftp\"",
            "write http://files.example or https://files.example",
        ),
        ("ws://localhost:1", "\"ws\"", "write http://localhost:1"),
        (
            "file:///tmp/chat.html",
            "Origin: null",
            "serve the page over http(s)",
        ),
        ("null", "Origin: null", "or use *"),
        (",", "lists no origin", "or leave it unset"),
        (" , ,", "lists no origin", "* for any origin"),
        (
            "*,http://localhost:3000",
            "mixes * with origins",
            "either * alone",
        ),
        ("http://a.test,*", "mixes * with origins", "either * alone"),
        (
            "http://*.example.com",
            "\"http://*.example.com\"",
            "list each origin",
        ),
        (
            "http://a.test http://b.test",
            "\"http://a.test http://b.test\"",
            "commas",
        ),
        ("http://", "no host", "e.g. http://localhost:3000"),
        ("http://:8080", "no host", "e.g. http://localhost:3000"),
        ("http://a.test:0", "\"0\"", "from 1 to 65535"),
        ("http://a.test:70000", "\"70000\"", "from 1 to 65535"),
        ("http://a.test:+80", "\"+80\"", "from 1 to 65535"),
        ("http://a.test:", "\"\"", "from 1 to 65535"),
        (
            "http://user@a.test",
            "user name",
            "e.g. http://localhost:3000",
        ),
        ("http://[::1", "no closing ]", "]"),
        ("http://[nope]:1", "not an IPv6 address", "[nope]"),
        ("http://exämple.test", "\"exämple.test\"", "xn-- form"),
        (
            "/chat",
            "no scheme and no host",
            "e.g. http://localhost:3000",
        ),
    ];
    for (value, names, fix) in cases {
        let message = cors::parse(value).expect_err(value);
        assert!(
            message.starts_with("PROXY_CORS_ORIGINS"),
            "{value}: {message}"
        );
        assert!(message.contains(names), "{value}: {message}");
        assert!(message.contains(fix), "{value}: {message}");
    }
}

/// The built example `name`, with none of its settings from this process's
/// environment but `envs`.
fn example(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(common::example_binary(name));
    for var in [
        "PROXY_LISTEN",
        "PROXY_AUTH_MODE",
        "PROXY_API_KEY",
        "PROXY_ALLOW_LAN_ACCESS",
        cors::VAR,
    ] {
        command.env_remove(var);
    }
    command
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Kills the example when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn examples_refuse_to_start_with_a_bad_origin_list() {
    for name in ["axum", "hyper"] {
        let mut running = Running(
            example(
                name,
                &[
                    ("PROXY_LISTEN", "127.0.0.1:0"),
                    (cors::VAR, "http://localhost:3000,localhost:3001"),
                ],
            )
            .spawn()
            .expect("spawn example"),
        );
        // An example that wrongly accepted the list would serve forever.
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = running.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "{name} started with a bad list");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        let mut stdout = String::new();
        let child = &mut running.0;
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut stdout)
            .expect("read stdout");
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains("\"localhost:3001\"") && stderr.contains("write http://localhost:3001"),
            "{name}: {stderr}"
        );
        assert!(!stdout.contains("listening"), "{name}: {stdout}");
    }
}

#[tokio::test]
async fn hyper_example_serves_cors_outside_auth() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listen = addr.to_string();
    let mut running = Running(
        example(
            "hyper",
            &[
                ("PROXY_LISTEN", &listen),
                ("PROXY_AUTH_MODE", "strict"),
                ("PROXY_API_KEY", "sk-hyper"),
                (cors::VAR, PAGE),
            ],
        )
        .spawn()
        .expect("spawn example"),
    );
    // The banner is printed once the socket is bound.
    let mut banner = String::new();
    let mut stdout = BufReader::new(running.0.stdout.take().expect("piped"));
    while !banner.contains("CORS:") {
        let before = banner.len();
        stdout.read_line(&mut banner).expect("read banner");
        assert!(banner.len() > before, "example exited: {banner}");
    }
    assert!(banner.contains(&format!("CORS: {PAGE}")), "{banner}");

    let Reply { head, .. } = http1(
        addr,
        "OPTIONS",
        "/v1/messages",
        &[
            ("Host", &listen),
            ("Origin", PAGE),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "x-api-key,anthropic-version,content-type",
            ),
        ],
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {PAGE}")),
        "{head}"
    );
    assert!(head.contains("access-control-allow-headers: "), "{head}");

    let Reply { head, body, .. } = http1(
        addr,
        "GET",
        "/healthz",
        &[("Host", &listen), ("Origin", PAGE), ("x-api-key", "wrong")],
    )
    .await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(
        head.contains(&format!("access-control-allow-origin: {PAGE}")),
        "{head}"
    );
    assert!(
        head.contains("access-control-expose-headers: x-proxy-auth-error"),
        "{head}"
    );
    assert!(head.contains("x-proxy-auth-error: invalid_key"), "{head}");
    assert!(body.contains("\"message\""), "{body}");
}
