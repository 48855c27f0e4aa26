//! Helpers shared by the test modules.

#![allow(dead_code)]

mod logs;
mod process;

pub use logs::Logs;
pub use process::rerun_alone;

use http::{Method, Request, Response};

/// A key of the shape `generate_api_key` produces (35 bytes).
pub const KEY: &str = "sk-0123456789abcdef0123456789abcdef";

/// A request with the given headers and an empty body.
pub fn request<B: Default>(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<B> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(B::default()).expect("valid test request")
}

pub fn get<B: Default>(path: &str, headers: &[(&str, &str)]) -> Request<B> {
    request(Method::GET, path, headers)
}

/// A response header as text, if present.
pub fn header<B>(response: &Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The `x-proxy-auth-error` header: set only on the layer's own 401s.
pub fn reason<B>(response: &Response<B>) -> Option<String> {
    header(response, "x-proxy-auth-error")
}

/// What [`http1`] read back: the status, the head (lowercased) and the body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One HTTP/1.1 request written by hand on a fresh connection
/// (`Connection: close`), headers exactly as given (whitespace included),
/// read to the end within 10 s.
pub async fn http1(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    http1_within(
        addr,
        method,
        path,
        headers,
        std::time::Duration::from_secs(10),
    )
    .await
}

/// [`http1`] with its own time limit. A `Connection` header among
/// `headers` replaces the default `Connection: close`, so hop-by-hop
/// headers can be sent exactly as a test means them.
pub async fn http1_within(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    limit: std::time::Duration,
) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("connection"))
    {
        request.push_str("Connection: close\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("server answered and closed within {limit:?}"))
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    Reply {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}
