//! One HTTP/1.1 request, written by hand on a fresh connection.

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
