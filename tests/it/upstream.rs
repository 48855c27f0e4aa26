//! A local stand-in for an LLM provider, for the forward example's tests
//! and benchmark: a hyper server on an ephemeral loopback port that checks
//! the upstream key like a provider does, records every request it gets,
//! and streams OpenAI-style SSE with pauses.
//!
//! Routes: `/v1/chat/completions` streams `EVENTS` chat-completion chunks,
//! `PAUSE` apart, then `data: [DONE]`; `/v1/upload` counts the request
//! body's bytes without keeping them; `/v1/hop` answers with hop-by-hop
//! headers; anything else echoes `{"ok": true}`. A request without the
//! upstream key, in any of the three key headers, gets a provider-style 401.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub const UPSTREAM_KEY: &str = "sk-upstream-0123456789abcdef";
pub const EVENTS: usize = 5;
pub const PAUSE: Duration = Duration::from_millis(150);
/// The provider's own 401 body, which the client must receive unchanged.
pub const UPSTREAM_401: &str = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// What the upstream saw and when it sent each SSE event.
#[derive(Default)]
pub struct Log {
    pub requests: Vec<Seen>,
    /// Per SSE response, when each event was handed to hyper: `Instant`
    /// (for tests in this process) and wall-clock seconds (for a client in
    /// another process).
    pub sent: Vec<Vec<(Instant, f64)>>,
    /// Per SSE response cut short because the proxy went away: how many
    /// events had been sent.
    pub cancelled: Vec<usize>,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
}

impl Upstream {
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().requests.clone()
    }

    pub fn sent(&self) -> Vec<Vec<(Instant, f64)>> {
        self.log.lock().unwrap().sent.clone()
    }

    pub fn cancelled(&self) -> Vec<usize> {
        self.log.lock().unwrap().cancelled.clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the upstream on the current tokio runtime.
pub async fn start() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = Upstream {
        addr: listener.local_addr().unwrap(),
        log: Arc::default(),
    };
    let log = upstream.log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let log = log.clone();
            let service = tower::service_fn(move |request| handle(request, log.clone()));
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    upstream
}

pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<UpstreamBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed_unsync())
        .unwrap()
}

fn has_upstream_key(headers: &HeaderMap) -> bool {
    let is = |name: &str, want: &str| headers.get(name).is_some_and(|v| v == want);
    is("authorization", &format!("Bearer {UPSTREAM_KEY}"))
        || is("x-api-key", UPSTREAM_KEY)
        || is("x-goog-api-key", UPSTREAM_KEY)
}

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Log>>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let seen = Seen {
        method: request.method().to_string(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map_or("/".into(), |p| p.to_string()),
        headers: request.headers().clone(),
    };
    log.lock().unwrap().requests.push(seen);

    if !has_upstream_key(request.headers()) {
        let mut response = full(StatusCode::UNAUTHORIZED, "application/json", UPSTREAM_401);
        response
            .headers_mut()
            .insert("x-upstream-said", "no".parse().unwrap());
        return Ok(response);
    }
    let path = request.uri().path().to_owned();
    Ok(match path.as_str() {
        "/v1/chat/completions" => {
            // `x-events` and `x-pause-ms` let a test ask for a longer stream.
            let number = |name: &str| -> Option<u64> {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
            };
            let events = number("x-events").map_or(EVENTS, |n| n as usize);
            let pause = number("x-pause-ms").map_or(PAUSE, Duration::from_millis);
            // Drain the (small) JSON request first, as a provider would.
            let _ = request.into_body().collect().await;
            sse(log, events, pause)
        }
        "/v1/upload" => {
            let mut body = request.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
                    Err(e) => {
                        return Ok(full(
                            StatusCode::BAD_REQUEST,
                            "text/plain",
                            format!("body failed after {bytes} bytes: {e}"),
                        ))
                    }
                }
            }
            full(
                StatusCode::OK,
                "application/json",
                format!(r#"{{"bytes":{bytes}}}"#),
            )
        }
        "/v1/hop" => {
            let mut response = full(StatusCode::OK, "application/json", r#"{"ok":true}"#);
            let headers = response.headers_mut();
            headers.insert("connection", "x-resp-hop".parse().unwrap());
            headers.insert("x-resp-hop", "1".parse().unwrap());
            headers.insert("keep-alive", "timeout=5".parse().unwrap());
            headers.insert("proxy-connection", "keep-alive".parse().unwrap());
            headers.insert("trailer", "x-checksum".parse().unwrap());
            headers.insert("upgrade", "h2c".parse().unwrap());
            headers.insert("x-kept", "yes".parse().unwrap());
            response
        }
        _ => full(StatusCode::OK, "application/json", r#"{"ok":true}"#),
    })
}

/// The chunk text of event `i`; what a client must reassemble.
pub fn word(i: usize) -> String {
    format!("w{i} ")
}

fn sse(log: Arc<Mutex<Log>>, events: usize, pause: Duration) -> Response<UpstreamBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let index = {
        let mut log = log.lock().unwrap();
        log.sent.push(Vec::new());
        log.sent.len() - 1
    };
    tokio::spawn(async move {
        for i in 0..events {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            let chunk = serde_json::json!({
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "test-model",
                "choices": [{
                    "index": 0,
                    "delta": { "content": word(i) },
                    "finish_reason": if i + 1 == events { serde_json::json!("stop") } else { serde_json::Value::Null },
                }],
            });
            let event = Bytes::from(format!("data: {chunk}\n\n"));
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            log.lock().unwrap().sent[index].push((Instant::now(), wall));
            if tx.send(event).await.is_err() {
                // The connection is gone: a provider stops generating here.
                log.lock().unwrap().cancelled.push(i);
                return;
            }
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(ChannelBody(rx).boxed_unsync())
        .unwrap()
}

/// A body fed by a channel: each message is one frame, sent when it comes.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

/// A request body made chunk by chunk as the connection asks for it, so the
/// sender holds one chunk at a time however large the total.
pub struct Generated {
    pub remaining: usize,
    pub chunk: usize,
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}
