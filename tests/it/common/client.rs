//! One HTTP/1.1 request to a server on a loopback port, through hyper's
//! client on a fresh connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// What [`http1`] read back: the status, the head (the status line and the
/// headers, lowercased, as `name: value` lines) and the body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// [`http1_within`] 10 s.
pub async fn http1(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    http1_within(addr, method, path, headers, Duration::from_secs(10)).await
}

/// One request on a fresh connection, read to the end within `limit`.
/// `Host: localhost` and `Connection: close` are added unless `headers`
/// has its own.
pub async fn http1_within(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Reply {
    let has = |wanted: &str| {
        headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
    };
    let mut request = Request::builder().method(method).uri(path);
    if !has("host") {
        request = request.header("host", "localhost");
    }
    if !has("connection") {
        request = request.header("connection", "close");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the server accepts connections");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 connection");
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .expect("the server answers");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("the whole body").to_bytes();
        let mut head = format!("{:?} {}", parts.version, parts.status);
        for (name, value) in &parts.headers {
            head.push_str(&format!(
                "\r\n{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        Reply {
            status: parts.status.as_u16(),
            head: head.to_ascii_lowercase(),
            body: String::from_utf8(body.to_vec()).expect("a UTF-8 body"),
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| panic!("no whole answer within {limit:?}"))
}
