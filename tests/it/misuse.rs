//! Misconfigurations that used to open the door, each refused now: digest
//! spellings, exempt-path typos, whitespace that HTTP/1 and HTTP/2 deliver
//! differently, repeated labels, and a proxy listening on the network with
//! auth silently off.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, Response, StatusCode};
use proxy_auth::{
    key_digest, KeySet, KeySetError, ProxyAuthLayer, ProxyAuthMode, ProxySecurityConfig,
};
use tower::{service_fn, Layer};

use crate::common::{self, get, request, KEY};

async fn status_and_reason(
    layer: ProxyAuthLayer,
    request: Request<String>,
) -> (StatusCode, Option<String>) {
    let sent = common::send(layer, request).await;
    (sent.status, sent.reason().map(str::to_owned))
}

fn strict(api_key: &str) -> ProxyAuthLayer {
    ProxyAuthLayer::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, api_key))
}

#[tokio::test]
async fn digest_spellings_are_digests_never_plaintext_keys() {
    let lower = key_digest(KEY);
    let hex = &lower["sha256:".len()..];
    for spelled in [
        format!("SHA256:{hex}"),
        format!("Sha256:{hex}"),
        format!("sha256:{}", hex.to_uppercase()),
        format!("SHA256:{}", hex.to_uppercase()),
    ] {
        // The digest's own text is not a key...
        let with_digest = [("x-api-key", spelled.as_str())];
        assert_eq!(
            status_and_reason(strict(&spelled), get("/v1", &with_digest)).await,
            (StatusCode::UNAUTHORIZED, Some("invalid_key".into())),
            "{spelled}"
        );
        // ...its preimage is.
        let with_key = [("x-api-key", KEY)];
        assert_eq!(
            status_and_reason(strict(&spelled), get("/v1", &with_key))
                .await
                .0,
            StatusCode::OK,
            "{spelled}"
        );
        let mut keys = KeySet::new();
        keys.insert("ci", &spelled).unwrap();
        let layer =
            ProxyAuthLayer::with_keys(ProxySecurityConfig::new(ProxyAuthMode::Strict, ""), keys);
        assert_eq!(
            status_and_reason(layer.clone(), get("/v1", &with_key))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            status_and_reason(layer, get("/v1", &with_digest)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_malformed_digest_fails_closed() {
    for bad in ["SHA256:abc", "Sha256:", "sha256:xyz"] {
        assert_eq!(
            status_and_reason(strict(bad), get("/v1", &[("x-api-key", bad)])).await,
            (StatusCode::UNAUTHORIZED, Some("no_key_configured".into())),
            "{bad}"
        );
        let mut keys = KeySet::new();
        assert_eq!(
            keys.insert("ci", bad),
            Err(KeySetError::BadDigest("ci".into()))
        );
    }
}

#[test]
#[should_panic(expected = "exempt path \"\" must start with `/`")]
fn an_empty_exempt_path_is_refused_when_the_layer_is_built() {
    let _ = strict(KEY).exempt_paths("/healthz,".split(','));
}

#[test]
#[should_panic(expected = "exempt path \"*\" must start with `/`")]
fn an_asterisk_exempt_path_is_refused() {
    let _ = strict(KEY).exempt_paths(["*"]);
}

#[test]
#[should_panic(expected = "exempt path \"healthz\" must start with `/`")]
fn a_relative_exempt_path_is_refused() {
    let _ = strict(KEY).exempt_paths(["healthz"]);
}

#[tokio::test]
async fn authority_and_asterisk_form_targets_are_never_exempt() {
    let layer = ProxyAuthLayer::new(ProxySecurityConfig::new(
        ProxyAuthMode::AllExceptHealth,
        KEY,
    ))
    .exempt_paths(["/healthz", "/"]);
    for (method, target) in [
        (Method::CONNECT, "api.openai.com:443"),
        (Method::POST, "api.openai.com:443"),
        (Method::GET, "*"),
    ] {
        let request = request(method.clone(), target, &[]);
        assert_eq!(
            status_and_reason(layer.clone(), request).await,
            (StatusCode::UNAUTHORIZED, Some("missing_key".into())),
            "{method} {target}"
        );
    }
    assert_eq!(
        status_and_reason(layer, get("/healthz", &[])).await.0,
        StatusCode::OK
    );
}

#[test]
fn a_repeated_label_in_a_key_list_is_an_error() {
    let json = format!(
        r#"[{{"label":"ci","key":"sk-a"}},{{"label":"bob","key":"sk-b"}},{{"label":"ci","key":"{}"}}]"#,
        key_digest("sk-c")
    );
    let err = serde_json::from_str::<KeySet>(&json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"ci\" appears more than once"), "{err}");
}

/// Serves `layer` on a hyper-util server speaking HTTP/1.1 and HTTP/2.
async fn serve(layer: ProxyAuthLayer) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let service = layer.layer(service_fn(|_: Request<hyper::body::Incoming>| async {
        Ok::<_, Infallible>(Response::new(Body::empty()))
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn over_http2(addr: SocketAddr, name: &str, value: &str) -> StatusCode {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::get(format!("http://{addr}/v1"))
        .header(name, value)
        .body(Body::empty())
        .unwrap();
    sender.send_request(request).await.unwrap().status()
}

/// The one hand-written HTTP/1.1 client of the tests: this test is about
/// what the server makes of a header value with whitespace around it, so
/// the bytes on the wire must be exactly the test's, with no client library
/// in between to trim, reject or re-encode the value (and so decide the
/// test's outcome); everywhere else, `common::http1` (hyper's client).
async fn over_http1(addr: SocketAddr, name: &str, value: &str) -> StatusCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{name}: {value}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("the server answered and closed within 10 s")
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let status = reply.split(' ').nth(1).expect("a status line");
    StatusCode::from_u16(status.parse().unwrap()).unwrap()
}

#[tokio::test]
async fn http1_and_http2_give_the_same_verdict_on_surrounding_whitespace() {
    let addr = serve(strict(KEY)).await;
    let bearer = |gap: &str| format!("Bearer{gap}{KEY}");
    for (name, value, want) in [
        ("x-api-key", format!("{KEY}  "), StatusCode::OK),
        ("x-api-key", format!("\t{KEY} "), StatusCode::OK),
        ("x-goog-api-key", format!("{KEY}\t"), StatusCode::OK),
        ("authorization", format!("{} ", bearer(" ")), StatusCode::OK),
        ("authorization", bearer("  "), StatusCode::UNAUTHORIZED),
        ("authorization", bearer("\t"), StatusCode::UNAUTHORIZED),
        ("authorization", bearer(""), StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(
            over_http2(addr, name, &value).await,
            want,
            "h2 {name}: {value:?}"
        );
        assert_eq!(
            over_http1(addr, name, &value).await,
            want,
            "h1 {name}: {value:?}"
        );
    }
}

#[test]
fn the_example_refuses_to_serve_the_network_with_auth_silently_off() {
    let binary = common::example_binary("axum");
    let run = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(&binary);
        command.env_clear().env("PROXY_API_KEY", "sk-x");
        for (k, v) in vars {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let refused = run(&[("PROXY_LISTEN", "0.0.0.0:0")]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 with auth off"),
        "{stderr}"
    );
    assert!(stderr.contains("PROXY_ALLOW_LAN_ACCESS=true"), "{stderr}");
    let refused = run(&[("PROXY_LISTEN", "0.0.0.0:0"), ("PROXY_AUTH_MODE", "auto")]);
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test]
async fn keys_that_fill_the_comparison_buffer_work() {
    // `openssl rand -hex 32` gives 64 characters: exactly one padded buffer.
    for len in [63, 64, 65, 128, 256] {
        let key: String = (0..len).map(|i| char::from(b'a' + (i % 6) as u8)).collect();
        let bearer = format!("Bearer {key}");
        assert_eq!(
            status_and_reason(strict(&key), get("/v1", &[("authorization", &bearer)]))
                .await
                .0,
            StatusCode::OK,
            "a {len}-character key"
        );
        let wrong = format!("Bearer {}x", &key[..len - 1]);
        assert_eq!(
            status_and_reason(strict(&key), get("/v1", &[("authorization", &wrong)])).await,
            (StatusCode::UNAUTHORIZED, Some("invalid_key".into())),
        );
    }
}

#[tokio::test]
async fn a_configured_key_longer_than_4_kib_fails_closed_and_says_so() {
    let logs = common::Logs::new(tracing::Level::ERROR);
    let _capturing = logs.set_default();
    let longest = "k".repeat(4096);
    let bearer = format!("Bearer {longest}");
    assert_eq!(
        status_and_reason(strict(&longest), get("/v1", &[("authorization", &bearer)]))
            .await
            .0,
        StatusCode::OK
    );
    let too_long = "k".repeat(4097);
    let bearer = format!("Bearer {too_long}");
    assert_eq!(
        status_and_reason(strict(&too_long), get("/v1", &[("authorization", &bearer)])).await,
        (StatusCode::UNAUTHORIZED, Some("no_key_configured".into())),
    );
    let text = logs.text();
    assert!(text.contains("longer than 4096 bytes"), "{text}");
    assert!(!text.contains("kkkk"), "the key must not be logged: {text}");
}
