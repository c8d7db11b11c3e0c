//! Which client a request comes from: the TCP peer, or, when the peer is one of the operator's
//! trusted proxies (`--trusted-proxy CIDR`), the address that proxy says it forwarded for.
//!
//! Only the right end of a forwarding header can be believed: each proxy appends the address
//! it received the request from, and everything to the left of what a trusted proxy appended
//! came from the client. So the walk goes right to left, past addresses in trusted ranges, and
//! stops at the first address outside them. A header the walk cannot parse is not believed,
//! and neither are `Forwarded` and `X-Forwarded-For` together (a proxy that writes one passes
//! the other through from the client, and we cannot tell which it wrote): the client is then
//! the peer. Without `--trusted-proxy`, or from any other peer, both headers are ignored.
//! docs/api.md ("Behind a proxy") describes this for operators.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use airlock_host_api::egress::ip::AllowRanges;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";

/// The client a request comes from (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

impl Client {
    /// What failure limits count against: the address, or for IPv6 its /64, which one
    /// subscriber usually holds whole (counting single addresses would let them rotate freely).
    pub fn bucket(self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let prefix = v6.to_bits() & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from_bits(prefix))
            }
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Server state that knows which peers are trusted proxies (`--trusted-proxy`).
pub trait ProxyTrust {
    fn trusted_proxies(&self) -> &AllowRanges;
}

impl<S: ProxyTrust + Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(resolve(peer, &parts.headers, state.trusted_proxies()))
    }
}

/// One hop of a forwarding header: an address, or one that cannot be told (`unknown`, an
/// obfuscated name, or text that is not a node at all).
enum Hop {
    At(IpAddr),
    Unclear,
}

/// The client of a request from `peer` with `headers`, believing forwarding headers only from
/// a peer in `trusted`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &AllowRanges) -> Client {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return Client(peer);
    }
    match (joined(headers, X_FORWARDED_FOR), joined(headers, FORWARDED)) {
        // Element by element from the right, so what the client wrote left of the hops we
        // believe is never even parsed.
        (Some(Some(list)), None) => walk(
            peer,
            trusted,
            list.rsplit(',').map(|element| {
                node(element.trim_matches([' ', '\t'])).map_or(Hop::Unclear, Hop::At)
            }),
        ),
        // Quoted strings may hold commas: parsed whole, then walked from the right.
        (None, Some(Some(list))) => match forwarded(&list) {
            Some(hops) => walk(peer, trusted, hops.into_iter().rev()),
            None => Client(peer),
        },
        // Neither header, both (which one the proxy wrote cannot be told), or unreadable.
        _ => Client(peer),
    }
}

/// The first hop from the right outside `trusted`; the farthest hop if all are trusted; the
/// peer if an unclear hop comes first.
fn walk(peer: IpAddr, trusted: &AllowRanges, hops: impl Iterator<Item = Hop>) -> Client {
    let mut farthest = peer;
    for hop in hops {
        match hop {
            Hop::At(ip) if trusted.contains(ip) => farthest = ip,
            Hop::At(ip) => return Client(ip),
            Hop::Unclear => return Client(peer),
        }
    }
    Client(farthest)
}

/// Every field of header `name` as one list (RFC 9110 §5.3): `None` if there is none,
/// `Some(None)` if a field is not visible ASCII.
fn joined(headers: &HeaderMap, name: &str) -> Option<Option<String>> {
    let mut fields = headers.get_all(name).iter().peekable();
    fields.peek()?;
    Some(
        fields
            .map(|v| v.to_str().ok())
            .collect::<Option<Vec<_>>>()
            .map(|fields| fields.join(",")),
    )
}

/// The `for=` node of each element of `Forwarded` (RFC 7239), left to right. `None` if the
/// syntax is broken anywhere, or an element has no (or a repeated) `for`.
fn forwarded(list: &str) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    let mut rest = list;
    loop {
        let mut node = None;
        let mut names: Vec<String> = Vec::new();
        // One element: pairs separated by `;` (empty pairs and elements are allowed).
        loop {
            rest = rest.trim_start_matches([' ', '\t']);
            if !(rest.is_empty() || rest.starts_with([';', ','])) {
                let name_len = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
                let name = rest[..name_len].to_ascii_lowercase();
                let (value, after) = value(rest[name_len..].strip_prefix('=')?)?;
                rest = after.trim_start_matches([' ', '\t']);
                if name.is_empty() || names.contains(&name) {
                    return None;
                }
                if name == "for" {
                    node = Some(value);
                }
                names.push(name);
            }
            match rest.strip_prefix(';') {
                Some(after) => rest = after,
                None => break,
            }
        }
        if !names.is_empty() {
            hops.push(forwarded_node(&node?)?);
        }
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None if rest.is_empty() => break,
            None => return None,
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// A `token` or `quoted-string` at the start of `text`, and what follows it.
fn value(text: &str) -> Option<(String, &str)> {
    let Some(quoted) = text.strip_prefix('"') else {
        let len = text.find(|c: char| !is_tchar(c)).unwrap_or(text.len());
        return (len > 0).then(|| (text[..len].to_string(), &text[len..]));
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &quoted[i + 1..])),
            '\\' => out.push(chars.next().filter(|(_, c)| is_qdtext(*c))?.1),
            c if is_qdtext(c) => out.push(c),
            _ => return None,
        }
    }
    None
}

/// A `for=` node (RFC 7239 §6): an IPv4 address or a bracketed IPv6 address, `unknown` or an
/// obfuscated name, each with an optional port (a number or obfuscated).
fn forwarded_node(text: &str) -> Option<Hop> {
    let (name, port) = if text.starts_with('[') {
        text.split_at(text.find(']')? + 1)
    } else {
        text.split_at(text.find(':').unwrap_or(text.len()))
    };
    if !(port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| port_number(p) || obfuscated(p)))
    {
        return None;
    }
    if name.eq_ignore_ascii_case("unknown") || obfuscated(name) {
        return Some(Hop::Unclear);
    }
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(name.parse().ok()?),
    };
    Some(Hop::At(ip.to_canonical()))
}

/// An `X-Forwarded-For` element: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`, or a bare IPv6 address. Mapped IPv4 addresses come out as IPv4.
fn node(text: &str) -> Option<IpAddr> {
    let ip = if let Some(bracketed) = text.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port_number)) {
            return None;
        }
        IpAddr::V6(ip.parse().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (ip, port) = text.split_once(':')?;
        if !port_number(port) {
            return None;
        }
        IpAddr::V4(ip.parse().ok()?)
    };
    Some(ip.to_canonical())
}

/// A decimal port: 1 to 5 digits, at most 65535.
fn port_number(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// `_` followed by letters, digits, `.`, `_` or `-` (RFC 7239 §6.3).
fn obfuscated(text: &str) -> bool {
    text.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// What a quoted string may hold (RFC 9110 `qdtext` and quoted pairs), ASCII only.
fn is_qdtext(c: char) -> bool {
    c == '\t' || (' '..='~').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const PEER: &str = "127.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn client(peer: &str, trusted: &str, headers: &[(&str, &str)]) -> IpAddr {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let trusted = if trusted.is_empty() {
            AllowRanges::none()
        } else {
            trusted.parse().expect("ranges")
        };
        resolve(ip(peer), &map, &trusted).0
    }

    fn xff(value: &str) -> IpAddr {
        client(PEER, "127.0.0.1/32,10.0.0.0/8", &[(X_FORWARDED_FOR, value)])
    }

    fn fwd(value: &str) -> IpAddr {
        client(PEER, "127.0.0.1/32,10.0.0.0/8", &[(FORWARDED, value)])
    }

    #[test]
    fn headers_count_only_from_a_trusted_peer() {
        let spoofed = [(X_FORWARDED_FOR, "203.0.113.7")];
        assert_eq!(client(PEER, "", &spoofed), ip(PEER));
        assert_eq!(client(PEER, "192.0.2.0/24", &spoofed), ip(PEER));
        assert_eq!(client("192.0.2.9", "127.0.0.1", &spoofed), ip("192.0.2.9"));
        assert_eq!(client(PEER, "127.0.0.1", &spoofed), ip("203.0.113.7"));
        // A mapped peer is its IPv4 address.
        assert_eq!(
            client("::ffff:127.0.0.1", "127.0.0.1", &spoofed),
            ip("203.0.113.7")
        );
        assert_eq!(client(PEER, "127.0.0.1", &[]), ip(PEER));
    }

    #[test]
    fn the_rightmost_address_outside_the_trusted_ranges_is_the_client() {
        assert_eq!(xff("203.0.113.7"), ip("203.0.113.7"));
        // What the client wrote itself is to the left of what the proxy appended.
        assert_eq!(xff("198.51.100.1, 203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(xff("203.0.113.7, 10.1.2.3"), ip("203.0.113.7"));
        assert_eq!(xff("203.0.113.7,10.1.2.3,\t127.0.0.1"), ip("203.0.113.7"));
        // Garbage the client sent left of the real hop is never read.
        assert_eq!(xff("not-an-address, 203.0.113.7"), ip("203.0.113.7"));
        // Every hop trusted: the farthest is the client.
        assert_eq!(xff("10.9.9.9, 10.1.2.3"), ip("10.9.9.9"));
        // Ports and brackets; mapped addresses are IPv4.
        assert_eq!(xff("203.0.113.7:4711"), ip("203.0.113.7"));
        assert_eq!(xff("[2001:db8::1]:4711"), ip("2001:db8::1"));
        assert_eq!(xff("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(xff("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(xff("::ffff:203.0.113.7"), ip("203.0.113.7"));
        // Several fields are one list, in order.
        let two = client(
            PEER,
            "127.0.0.1",
            &[
                (X_FORWARDED_FOR, "198.51.100.1"),
                (X_FORWARDED_FOR, "203.0.113.7"),
            ],
        );
        assert_eq!(two, ip("203.0.113.7"));
    }

    #[test]
    fn a_malformed_forwarding_header_is_not_believed() {
        for bad in [
            "",
            " ",
            "203.0.113.7,",
            "203.0.113.7, bogus",
            "203.0.113.7 10.1.2.3",
            "203.0.113.7:99999",
            "203.0.113.7:",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[203.0.113.7]",
            "fe80::1%eth0",
            "unknown",
            "203.0.113.007",
            "1.2.3",
        ] {
            assert_eq!(xff(bad), ip(PEER), "{bad:?}");
        }
        // Both headers: which one the proxy wrote cannot be told.
        let both = client(
            PEER,
            "127.0.0.1",
            &[
                (X_FORWARDED_FOR, "203.0.113.7"),
                (FORWARDED, "for=198.51.100.1"),
            ],
        );
        assert_eq!(both, ip(PEER));
    }

    #[test]
    fn forwarded_is_parsed_strictly() {
        assert_eq!(fwd("for=203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(
            fwd("for=198.51.100.1;proto=http, For=\"203.0.113.7:4711\";by=10.0.0.1"),
            ip("203.0.113.7")
        );
        assert_eq!(
            fwd("for=\"[2001:db8:cafe::17]:4711\""),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(fwd("for=203.0.113.7, for=10.1.2.3"), ip("203.0.113.7"));
        assert_eq!(fwd("for=203.0.113.7;;proto=https"), ip("203.0.113.7"));
        // A comma inside a quoted string does not split elements.
        assert_eq!(
            fwd("for=203.0.113.7;ext=\"a, for=198.51.100.1\""),
            ip("203.0.113.7")
        );
        // Names that hide the hop, and hops that are not there: the peer.
        for unclear in [
            "for=unknown",
            "for=_hidden",
            "for=\"_hidden:_port\"",
            "for=203.0.113.7, proto=https",
            "for=203.0.113.7, for=unknown",
        ] {
            assert_eq!(fwd(unclear), ip(PEER), "{unclear:?}");
        }
        // An unknown hop left of the client's real one is never reached.
        assert_eq!(fwd("for=unknown, for=203.0.113.7"), ip("203.0.113.7"));
        for bad in [
            "",
            "for",
            "for=",
            "for=203.0.113.7;for=198.51.100.1",
            "for=2001:db8::1",
            "for=\"2001:db8::1\"",
            "for=\"[2001:db8::1]",
            "for=\"203.0.113.7",
            "for=203.0.113.7 x",
            "for=203.0.113.7,,for=\"",
            "=203.0.113.7",
            "for=[2001:db8::1]",
            "for=\"203.0.113.7:port\"",
        ] {
            assert_eq!(fwd(bad), ip(PEER), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a = Client(ip("2001:db8:1:2:aaaa::1"));
        let b = Client(ip("2001:db8:1:2:bbbb::2"));
        let c = Client(ip("2001:db8:1:3::1"));
        assert_eq!(a.bucket(), b.bucket());
        assert_ne!(a.bucket(), c.bucket());
        assert_eq!(Client(ip("203.0.113.7")).bucket(), ip("203.0.113.7"));
    }
}
