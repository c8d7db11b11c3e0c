//! [`Recorded`]: what the upstream saw of one request, in plain strings for assertions.

use http::request::Parts;

/// One request an [`Upstream`](crate::Upstream) received, as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// As sent in the request line (origin form), e.g. `/v1/items?x=1`.
    pub path_and_query: String,
    /// Lowercase names, every value (repeated headers appear once per value), in the order
    /// hyper's `HeaderMap` keeps (first occurrence of each name). Non-UTF-8 bytes are replaced.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server name the client sent in its TLS `ClientHello`; `None` if it sent none (rustls
    /// sends none when connecting to an IP address).
    pub sni: Option<String>,
    /// Which of the upstream's TLS connections carried it, counted from 1 in the order their
    /// handshakes completed: requests that share a number shared a connection.
    pub connection: usize,
    /// Whether that connection's TLS handshake resumed an earlier session.
    pub resumed: bool,
}

/// The TLS connection a request came on (see [`Recorded::connection`]).
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    pub sni: Option<String>,
    pub connection: usize,
    pub resumed: bool,
}

impl Recorded {
    /// Every value of header `name` (matched case-insensitively), in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The request as received on the connection `arrival` describes.
    pub(crate) fn of(parts: &Parts, body: &[u8], arrival: Arrival) -> Self {
        Self {
            method: parts.method.as_str().to_owned(),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
            sni: arrival.sni,
            connection: arrival.connection,
            resumed: arrival.resumed,
        }
    }
}
