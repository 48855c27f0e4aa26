//! The forward example as a reverse proxy in front of a local upstream
//! (`tests/it/upstream.rs`): key swapping, streaming both ways, hop-by-hop
//! headers, whose 401 is whose, and what happens when the upstream is gone.
//!
//! These run the example's `app` and `serve` in this process; the memory
//! and OpenAI SDK tests, which run the built binary, are in
//! `tests/it/forward_process.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxy_auth::{ProxyAuthMode, ProxySecurityConfig, SharedSecurityConfig};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{http1_within, Reply};
use crate::forward_example;
use crate::upstream;
use crate::upstream::{UPSTREAM_401, UPSTREAM_KEY};

const PROXY_KEY: &str = "sk-proxy-fedcba9876543210";

/// The example's service on an ephemeral loopback port, in this process.
async fn start_proxy(mode: ProxyAuthMode, upstream: forward_example::Upstream) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = SharedSecurityConfig::new(ProxySecurityConfig::new(mode, PROXY_KEY));
    let service = crate::common::forward_app(shared, upstream).unwrap();
    tokio::spawn(forward_example::serve(
        listener,
        service,
        std::future::pending(),
    ));
    addr
}

fn upstream_at(base: &str, key: &str) -> forward_example::Upstream {
    forward_example::Upstream::new(base, Some(key)).unwrap()
}

/// One HTTP/1.1 request on a fresh connection, headers as given (hop-by-hop
/// ones included: hyper's client writes them as they are), read to the end.
async fn exchange(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    http1_within(addr, method, path, headers, Duration::from_secs(20)).await
}

fn has_header(reply: &Reply, name: &str) -> bool {
    reply
        .head
        .lines()
        .any(|line| line.starts_with(&format!("{name}:")))
}

#[tokio::test]
async fn the_upstream_gets_its_key_in_the_header_the_client_used_and_never_the_proxys() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let bearer = format!("Bearer {PROXY_KEY}");
    let cases = [
        (
            "Authorization",
            bearer.as_str(),
            "authorization",
            format!("Bearer {UPSTREAM_KEY}"),
        ),
        ("x-api-key", PROXY_KEY, "x-api-key", UPSTREAM_KEY.to_owned()),
        (
            "x-goog-api-key",
            PROXY_KEY,
            "x-goog-api-key",
            UPSTREAM_KEY.to_owned(),
        ),
    ];
    for (i, (name, value, upstream_header, upstream_value)) in cases.iter().enumerate() {
        let reply = exchange(proxy, "GET", "/v1/models", &[(name, value)]).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert_eq!(reply.body, r#"{"ok":true}"#);

        let seen = &upstream.requests()[i];
        assert_eq!(seen.path_and_query, "/v1/models");
        assert_eq!(
            seen.headers[*upstream_header],
            upstream_value.as_str(),
            "{name}"
        );
        for other in ["authorization", "x-api-key", "x-goog-api-key"] {
            if other != *upstream_header {
                assert!(
                    !seen.headers.contains_key(other),
                    "{name}: {other} forwarded"
                );
            }
        }
        for (header, value) in &seen.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(
                !value.contains(PROXY_KEY),
                "proxy key reached upstream in {header}"
            );
        }
        // The upstream sees its own host, not the proxy's.
        assert_eq!(seen.headers["host"], upstream.addr.to_string());
        assert_eq!(seen.headers["via"], "1.1 proxy-auth");
    }
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn in_mode_off_the_clients_key_is_still_replaced() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Off,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    // The layer strips nothing in mode off; the forwarder still does.
    let reply = exchange(
        proxy,
        "GET",
        "/v1/messages",
        &[("x-api-key", "sk-clients-own")],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = &upstream.requests()[0];
    assert_eq!(seen.headers["x-api-key"], UPSTREAM_KEY);

    // Nor does any other copy of it go: `Proxy-Authorization` and the key
    // parameter in every spelling the layer would read.
    let reply = exchange(
        proxy,
        "GET",
        "/v1/messages?a=1&KEY=sk-own&k%65y=sk-own&keys=2&%4b%45%59=sk-own&monkey=3",
        &[
            ("x-api-key", "sk-clients-own"),
            ("proxy-authorization", "Bearer sk-clients-own"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = &upstream.requests()[1];
    assert_eq!(seen.path_and_query, "/v1/messages?a=1&keys=2&monkey=3");
    assert!(!seen.headers.contains_key("proxy-authorization"));

    // No key header: nothing to say which API, so no key is added and the
    // upstream refuses, in its own words.
    let reply = exchange(proxy, "GET", "/v1/messages", &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (401, UPSTREAM_401));
    assert!(!has_header(&reply, "x-proxy-auth-error"));
}

/// One request written byte for byte (what hyper's client would refuse to
/// send, such as a `\` in the path, or a body on `OPTIONS`), its answer
/// read to the end within 10 s.
async fn raw(addr: SocketAddr, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("a whole answer within 10 s");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

#[tokio::test]
async fn every_options_is_answered_by_the_proxy_and_never_forwarded() {
    let upstream = upstream::start().await;
    for mode in [
        ProxyAuthMode::Strict,
        ProxyAuthMode::AllExceptHealth,
        ProxyAuthMode::Off,
    ] {
        let proxy = start_proxy(mode, upstream_at(&upstream.url(), UPSTREAM_KEY)).await;
        let bearer = format!("Bearer {PROXY_KEY}");
        let cases: [(&str, Vec<(&str, &str)>); 5] = [
            (
                "a CORS preflight",
                vec![
                    ("Origin", "https://evil.example"),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "authorization"),
                ],
            ),
            ("a plain OPTIONS", vec![]),
            (
                "an OPTIONS with a wrong key",
                vec![("Authorization", "Bearer sk-anything")],
            ),
            (
                "an OPTIONS with the right key",
                vec![("Authorization", bearer.as_str())],
            ),
            (
                "an OPTIONS with method overrides",
                vec![
                    ("X-HTTP-Method-Override", "DELETE"),
                    ("X-Method-Override", "POST"),
                ],
            ),
        ];
        for (what, headers) in &cases {
            let reply = exchange(proxy, "OPTIONS", "/v1/chat/completions", headers).await;
            assert_eq!(reply.status, 204, "{mode:?}, {what}: {}", reply.body);
            assert!(reply.body.is_empty(), "{mode:?}, {what}: {}", reply.body);
            assert!(
                !reply.head.contains("access-control-allow"),
                "{mode:?}, {what}: no origin is granted: {}",
                reply.head
            );
        }
        // With a body and a method override, as an attacker would send it.
        let (status, answer) = raw(
            proxy,
            "OPTIONS /v1/files HTTP/1.1\r\nHost: localhost\r\nX-HTTP-Method-Override: DELETE\r\n\
             Content-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n\
             {\"purge\": \"all\"}\r\n"
                .to_owned(),
        )
        .await;
        assert_eq!(status, 204, "{mode:?}: {answer}");
        // `OPTIONS *` too.
        let (status, answer) = raw(
            proxy,
            "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_owned(),
        )
        .await;
        assert_eq!(status, 204, "{mode:?}: {answer}");
    }
    assert!(
        upstream.requests().is_empty(),
        "OPTIONS reached the upstream: {:?}",
        upstream
            .requests()
            .iter()
            .map(|seen| (&seen.method, &seen.path_and_query))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn base_path_is_prefixed_and_a_key_query_parameter_is_dropped() {
    let upstream = upstream::start().await;
    let base = format!("{}/v1/", upstream.url());
    let proxy = start_proxy(ProxyAuthMode::Strict, upstream_at(&base, UPSTREAM_KEY)).await;

    let bearer = format!("Bearer {PROXY_KEY}");
    let reply = exchange(
        proxy,
        "GET",
        "/models?a=1&key=sk-in-url&b=2",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(upstream.requests()[0].path_and_query, "/v1/models?a=1&b=2");
}

#[tokio::test]
async fn dot_segments_cannot_climb_out_of_the_base_path() {
    let upstream = upstream::start().await;
    let base = format!("{}/v1", upstream.url());
    let proxy = start_proxy(ProxyAuthMode::Strict, upstream_at(&base, UPSTREAM_KEY)).await;

    // (path, what the 400's message names)
    let attacks = [
        ("/../admin", "`.` or `..` segment"),
        ("/models/./x", "`.` or `..` segment"),
        ("/%2E%2e/admin", "`.` or `..` segment"),
        ("/a/.%2e", "`.` or `..` segment"),
        ("/..%2fadmin", "encoded `/`"),
        ("/%2e%2e%2fadmin", "encoded `/`"),
        ("/..;/admin", "`.` or `..` segment"),
        ("/..;jsessionid=x/admin", "`.` or `..` segment"),
        ("/..%5cadmin", "encoded `/` or `\\`"),
        ("/%252e%252e/admin", "`.` or `..` segment"),
        ("/%252e%252e%252fadmin", "encoded `/`"),
        ("/models%2f..%2f..%2fadmin", "encoded `/`"),
    ];
    for (path, says) in attacks {
        let reply = exchange(proxy, "GET", path, &[("x-api-key", PROXY_KEY)]).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert!(
            reply.head.contains("x-proxy-error: bad_request"),
            "{}",
            reply.head
        );
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(says) && message.contains("not forwarded"),
            "{path}: {message}"
        );
    }
    // A raw `\` (hyper's client will not send one; a client may).
    for path in ["/..\\admin", "/models\\..\\..\\admin"] {
        let (status, answer) = raw(
            proxy,
            format!(
                "GET {path} HTTP/1.1\r\nHost: localhost\r\nx-api-key: {PROXY_KEY}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            status == 400 && answer.contains("x-proxy-error: bad_request"),
            "{path}: {answer}"
        );
    }
    // Dots inside a segment are ordinary characters.
    let reply = exchange(
        proxy,
        "GET",
        "/models/gpt-4.1..x",
        &[("x-api-key", PROXY_KEY)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(
        upstream.requests()[0].path_and_query,
        "/v1/models/gpt-4.1..x"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_stay_on_their_hop() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let bearer = format!("Bearer {PROXY_KEY}");
    let reply = exchange(
        proxy,
        "GET",
        "/v1/hop",
        &[
            ("Connection", "close, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "x-checksum"),
            ("Upgrade", "websocket"),
            ("X-End-To-End", "kept"),
            ("Authorization", &bearer),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let seen = &upstream.requests()[0];
    for name in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(seen.headers["x-end-to-end"], "kept");

    // And on the way back: the upstream's hop-by-hop headers stop here.
    for name in [
        "x-resp-hop",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !has_header(&reply, name),
            "{name} reached the client:\n{}",
            reply.head
        );
    }
    assert!(
        !reply.head.contains("connection: x-resp-hop"),
        "{}",
        reply.head
    );
    assert!(reply.head.contains("x-kept: yes"), "{}", reply.head);
    assert!(reply.head.contains("via: 1.1 proxy-auth"), "{}", reply.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_reach_the_client_one_by_one() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let request = Request::post(format!("http://{proxy}/v1/chat/completions"))
        .header("authorization", format!("Bearer {PROXY_KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from_static(
            br#"{"model":"test-model","stream":true,"messages":[]}"#,
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    // Arrival time of each complete event, however the bytes were framed.
    let mut body = response.into_body();
    let mut buffer = String::new();
    let mut events: Vec<(Instant, String)> = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            buffer.push_str(std::str::from_utf8(&data).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                events.push((Instant::now(), event));
            }
        }
    }

    assert_eq!(events.len(), upstream::EVENTS + 1, "{events:?}");
    assert_eq!(events.last().unwrap().1, "data: [DONE]\n\n");
    for (i, (_, event)) in events.iter().take(upstream::EVENTS).enumerate() {
        assert!(
            event.contains(&format!(r#""content":"{}""#, upstream::word(i))),
            "{event}"
        );
    }
    let sent = &upstream.sent()[0];
    assert_eq!(sent.len(), upstream::EVENTS);
    // Streaming, not buffering: every event reached the client before the
    // upstream sent the next one (the upstream pauses between events).
    for i in 0..upstream::EVENTS - 1 {
        assert!(
            events[i].0 < sent[i + 1].0,
            "event {i} arrived after the upstream sent event {}",
            i + 1
        );
    }
    let ms = |t: Instant| t.duration_since(sent[0].0).as_secs_f64() * 1e3;
    eprintln!(
        "sse: upstream sent at {:?} ms, client received at {:?} ms",
        sent.iter().map(|s| ms(s.0).round()).collect::<Vec<_>>(),
        events.iter().map(|e| ms(e.0).round()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_stops_the_upstream_stream() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let request = Request::post(format!("http://{proxy}/v1/chat/completions"))
        .header("authorization", format!("Bearer {PROXY_KEY}"))
        .header("x-events", "200")
        .header("x-pause-ms", "20")
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"data: "));
    drop(body);
    drop(client);

    // The hang-up travels client -> proxy -> upstream, which stops: an LLM
    // provider stops generating (and billing) for a client that left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.cancelled().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = upstream.cancelled();
    assert_eq!(cancelled.len(), 1, "the upstream kept streaming to nobody");
    assert!(cancelled[0] < 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_stream_finish_and_refuses_new_connections() {
    let upstream = upstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let shared =
        SharedSecurityConfig::new(ProxySecurityConfig::new(ProxyAuthMode::Strict, PROXY_KEY));
    let service =
        crate::common::forward_app(shared, upstream_at(&upstream.url(), UPSTREAM_KEY)).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(forward_example::serve(listener, service, async {
        let _ = stopped.await;
    }));

    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let request = Request::post(format!("http://{proxy}/v1/chat/completions"))
        .header("authorization", format!("Bearer {PROXY_KEY}"))
        .header("x-pause-ms", "50")
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut received = Vec::new();
    received.extend_from_slice(body.frame().await.unwrap().unwrap().data_ref().unwrap());

    stop.send(()).unwrap();
    received.extend_from_slice(body.frame().await.unwrap().unwrap().data_ref().unwrap());
    // Main returns when serve does, and that ends every stream: serve must
    // still be draining while this one is open.
    assert!(!server.is_finished(), "serve returned with a response open");
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(received).unwrap();
    assert_eq!(
        text.matches("data: ").count(),
        upstream::EVENTS + 1,
        "{text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returned once the open stream ended")
        .unwrap();
    assert!(TcpStream::connect(proxy).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_is_forwarded_to_an_http1_upstream() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<Bytes>>();
    let request = Request::get(format!("http://{proxy}/v1/models"))
        .header("x-goog-api-key", PROXY_KEY)
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["via"], "1.1 proxy-auth");
    let seen = &upstream.requests()[0];
    assert_eq!(seen.headers["via"], "2 proxy-auth");
    assert_eq!(seen.headers["x-goog-api-key"], UPSTREAM_KEY);
}

#[tokio::test]
async fn a_keyless_request_gets_the_proxys_401_and_never_reaches_the_upstream() {
    let upstream = upstream::start().await;
    let proxy = start_proxy(
        ProxyAuthMode::AllExceptHealth,
        upstream_at(&upstream.url(), UPSTREAM_KEY),
    )
    .await;

    let missing = exchange(proxy, "POST", "/v1/chat/completions", &[]).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.head.contains("x-proxy-auth-error: missing_key"),
        "{}",
        missing.head
    );

    let wrong = exchange(proxy, "GET", "/v1/models", &[("x-api-key", "sk-wrong")]).await;
    assert_eq!(wrong.status, 401);
    assert!(
        wrong.head.contains("x-proxy-auth-error: invalid_key"),
        "{}",
        wrong.head
    );

    let health = exchange(proxy, "GET", "/healthz", &[]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );

    assert!(upstream.requests().is_empty(), "{:?}", upstream.requests());
}

#[tokio::test]
async fn the_upstreams_401_reaches_the_client_unchanged_and_unmarked() {
    let upstream = upstream::start().await;
    // The operator configured the wrong upstream key: the proxy accepts the
    // client, the upstream refuses the proxy.
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&upstream.url(), "sk-revoked-upstream-key"),
    )
    .await;

    let reply = exchange(proxy, "GET", "/v1/models", &[("x-api-key", PROXY_KEY)]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, UPSTREAM_401);
    assert!(reply.head.contains("x-upstream-said: no"), "{}", reply.head);
    assert!(!has_header(&reply, "x-proxy-auth-error"), "{}", reply.head);
    assert!(!has_header(&reply, "x-proxy-error"), "{}", reply.head);
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_upstream_gets_a_502_with_a_json_error() {
    // A port that was just free: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = start_proxy(
        ProxyAuthMode::Strict,
        upstream_at(&format!("http://{closed}"), UPSTREAM_KEY),
    )
    .await;

    let reply = exchange(proxy, "GET", "/v1/models", &[("x-api-key", PROXY_KEY)]).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.head.contains("content-type: application/json"),
        "{}",
        reply.head
    );
    assert!(
        reply.head.contains("x-proxy-error: upstream_unreachable"),
        "{}",
        reply.head
    );
    assert!(!has_header(&reply, "x-proxy-auth-error"));
    let error: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(error["error"]["code"], "upstream_unreachable");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused"), "{message}");
    assert!(!reply.body.contains(UPSTREAM_KEY) && !reply.body.contains(PROXY_KEY));
}

#[tokio::test]
async fn an_upstream_that_never_completes_tls_gets_a_502_not_a_hang() {
    // Accepts TCP, then says nothing: the TLS handshake never finishes.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let mut upstream = upstream_at(&format!("https://{silent_addr}"), UPSTREAM_KEY);
    upstream.connect_timeout = Duration::from_millis(300);
    let proxy = start_proxy(ProxyAuthMode::Strict, upstream).await;

    let reply = exchange(proxy, "GET", "/v1/models", &[("x-api-key", PROXY_KEY)]).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply.head.contains("x-proxy-error: upstream_unreachable"),
        "{}",
        reply.head
    );
    assert!(
        reply.body.contains("no connection within"),
        "{}",
        reply.body
    );
}
