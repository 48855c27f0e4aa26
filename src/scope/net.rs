//! Network scopes: CIDR blocks, and the client address a request comes
//! from (the connection's, or a trusted proxy's report of it).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::{Extensions, HeaderMap};

/// A block of addresses: `10.0.0.0/8`, `2001:db8::/32`, or one address
/// (a `/32` or `/128`), parsed with [`str::parse`]. An IPv4-mapped IPv6
/// address is read as its IPv4 address. A block with bits set past its
/// prefix (`10.0.0.1/8`) is refused rather than guessed at.
///
/// ```
/// use proxy_auth::scope::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// let err = "10.0.0.1/8".parse::<IpNet>().unwrap_err();
/// assert!(err.to_string().contains("write the block's first address (10.0.0.0/8)"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not an [`IpNet`]; the message names the text and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IpNetError(String);

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(text: &str) -> Result<Self, IpNetError> {
        IpNet::parse(text).map_err(IpNetError)
    }
}

impl IpNet {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| format!("{text:?} is not an address or CIDR block (such as \"10.0.0.0/8\" or \"2001:db8::/32\")"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(|| {
                    format!("{text:?} has a prefix length that is not 0 to {max}")
                })?,
            };
        let net = IpNet { addr, prefix };
        if net.network() != addr {
            return Err(format!(
                "{text:?} has bits set past its /{prefix}; write the block's first address ({}/{prefix})",
                net.network()
            ));
        }
        Ok(net)
    }

    fn mask(&self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    fn network(&self) -> IpAddr {
        self.mask(self.addr)
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && self.mask(ip) == self.addr
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The address of the connection a request arrived on, as a request
/// extension: a hyper server inserts it for each connection (axum's
/// `ConnectInfo<SocketAddr>` is read too, with the `axum` feature). Keys
/// with `allowed_ips` are checked against it, or against what a trusted
/// proxy reports (see
/// [`ProxyAuthLayer::trusted_proxies`](crate::ProxyAuthLayer::trusted_proxies)).
///
/// ```
/// use std::net::SocketAddr;
/// use proxy_auth::ClientAddr;
///
/// // In a hyper accept loop: `let (stream, peer) = listener.accept().await?;`,
/// // then for each request of that connection:
/// let peer: SocketAddr = "10.1.2.3:51000".parse().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(ClientAddr(peer));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// Where a request comes from, as far as the layer can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// This address.
    Known(IpAddr),
    /// The server did not say which connection the request came on.
    NoConnection,
    /// The connection is a trusted proxy's, and what it forwarded cannot
    /// be read for certain.
    Unreadable(&'static str),
}

/// The connection's peer address: [`ClientAddr`], or axum's `ConnectInfo`.
fn peer(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(ClientAddr(addr)) = extensions.get::<ClientAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

/// The client's address: the connection's, unless that is a trusted proxy,
/// in which case the rightmost address in `X-Forwarded-For` (or
/// `Forwarded: for=`) that is not a trusted proxy. Forwarding headers from
/// anyone else are ignored.
pub(crate) fn origin(extensions: &Extensions, headers: &HeaderMap, trusted: &[IpNet]) -> Origin {
    let Some(peer) = peer(extensions) else {
        return Origin::NoConnection;
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Origin::Known(peer);
    }
    let xff = hops(headers, "x-forwarded-for", parse_xff_hop);
    let fwd = hops(headers, "forwarded", parse_forwarded_hop);
    let chain = match (xff, fwd) {
        (Err(why), _) | (_, Err(why)) => return Origin::Unreadable(why),
        (Ok(None), Ok(None)) => return Origin::Known(peer),
        (Ok(Some(chain)), Ok(None)) | (Ok(None), Ok(Some(chain))) => chain,
        (Ok(Some(a)), Ok(Some(b))) if a == b => a,
        (Ok(Some(_)), Ok(Some(_))) => {
            return Origin::Unreadable("X-Forwarded-For and Forwarded name different clients")
        }
    };
    // Rightmost first: each proxy appends the address it saw.
    match chain.iter().rev().find(|&&ip| !is_trusted(ip)) {
        Some(&ip) => Origin::Known(ip),
        // Every hop is a trusted proxy: the first one saw the client.
        None => chain
            .first()
            .map_or(Origin::Known(peer), |&ip| Origin::Known(ip)),
    }
}

type Hops = Result<Option<Vec<IpAddr>>, &'static str>;

/// Every hop of every `name` header, in order; `None` if there is none.
fn hops(headers: &HeaderMap, name: &str, parse: fn(&str) -> Option<IpAddr>) -> Hops {
    let mut chain = Vec::new();
    let mut any = false;
    for value in headers.get_all(name) {
        any = true;
        let value = value
            .to_str()
            .map_err(|_| "a forwarding header is not ASCII")?;
        for hop in value.split(',') {
            chain.push(
                parse(hop.trim()).ok_or("a forwarding header has a hop that is not an address")?,
            );
        }
    }
    Ok(any.then_some(chain))
}

fn parse_xff_hop(hop: &str) -> Option<IpAddr> {
    parse_addr(hop)
}

/// `for=192.0.2.60;proto=https`, `for="[2001:db8::17]:4711"`; an
/// obfuscated or `unknown` node is no address.
fn parse_forwarded_hop(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(parse_addr(value.trim().trim_matches('"'))?);
        }
    }
    found
}

/// `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::17`, `[2001:db8::17]:4711`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(ip);
    }
    SocketAddr::from_str(text).ok().map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks() {
        let ten = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.255.0.1")) && !ten.contains(ip("11.0.0.1")));
        assert!(
            ten.contains(ip("::ffff:10.1.2.3")),
            "v4-mapped v6 is the v4 address"
        );
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpNet::parse("10.1.2.3/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("ten").is_err());
        assert!(IpNet::parse("10.0.0.0/x").is_err());
    }

    fn request(peer: Option<&str>, headers: &[(&str, &str)]) -> (Extensions, HeaderMap) {
        let mut extensions = Extensions::new();
        if let Some(peer) = peer {
            extensions.insert(ClientAddr(peer.parse().unwrap()));
        }
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (extensions, map)
    }

    #[test]
    fn forwarding_headers_are_believed_from_trusted_proxies_only() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let at = |peer, headers: &[(&str, &str)]| {
            let (e, h) = request(peer, headers);
            origin(&e, &h, &trusted)
        };
        assert_eq!(at(None, &[]), Origin::NoConnection);
        // From anyone else, forwarding headers are ignored.
        assert_eq!(
            at(Some("203.0.113.9:1"), &[("x-forwarded-for", "127.0.0.1")]),
            Origin::Known(ip("203.0.113.9"))
        );
        // From a trusted proxy: the rightmost untrusted hop.
        assert_eq!(
            at(
                Some("10.0.0.2:1"),
                &[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")]
            ),
            Origin::Known(ip("198.51.100.7"))
        );
        assert_eq!(
            at(
                Some("10.0.0.2:1"),
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "198.51.100.7")
                ]
            ),
            Origin::Known(ip("198.51.100.7"))
        );
        assert_eq!(
            at(
                Some("10.0.0.2:1"),
                &[(
                    "forwarded",
                    "for=192.0.2.60;proto=https, for=\"[2001:db8::17]:4711\""
                )]
            ),
            Origin::Known(ip("2001:db8::17"))
        );
        assert_eq!(at(Some("10.0.0.2:1"), &[]), Origin::Known(ip("10.0.0.2")));
        assert_eq!(
            at(Some("10.0.0.2:1"), &[("x-forwarded-for", "10.0.0.7")]),
            Origin::Known(ip("10.0.0.7"))
        );
        for bad in [
            vec![("x-forwarded-for", "not-an-ip")],
            vec![("forwarded", "for=unknown")],
            vec![("forwarded", "for=_hidden")],
            vec![("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")],
        ] {
            assert!(
                matches!(at(Some("10.0.0.2:1"), &bad), Origin::Unreadable(_)),
                "{bad:?}"
            );
        }
        assert_eq!(
            at(
                Some("10.0.0.2:1"),
                &[("x-forwarded-for", "5.6.7.8"), ("forwarded", "for=5.6.7.8")]
            ),
            Origin::Known(ip("5.6.7.8"))
        );
    }
}
