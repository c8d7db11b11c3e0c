//! Canonicalising the URL a guest asks for, exactly once, before any policy decision.
//!
//! Order of checks (the first failure decides the [`DenyReason`]):
//! 1. length cap; no whitespace or control characters (WHATWG silently strips them);
//! 2. WHATWG parse (`url::Url`), the canonicaliser: IDNA, IPv4 number forms, dot segments;
//! 3. scheme `https`; no userinfo; the host is not an IP literal;
//! 4. differential: `http::Uri` (what the request is finally sent with, and what wasi:http's
//!    `set-authority` validates) must parse the same input to the same scheme, host and port,
//!    with no `@` in the authority; a raw backslash is refused since WHATWG reads it as `/`;
//! 5. host canonical form: one trailing dot stripped, DNS syntax, names denied by name;
//! 6. path: RFC 3986 normal form, refusing anything servers could read differently.
//!
//! The fragment is dropped (it is never sent); the query is kept verbatim but only reachable
//! through [`RequestTarget::query`], so that logging a target never logs it.
//!
//! Choice on IDNA: a host that only WHATWG can read (U+3002 `。`, a Cyrillic homograph, a
//! percent-encoded host) is refused as a parser disagreement rather than canonicalised. A guest
//! going through wasi:http cannot send one anyway (its authority must parse as `http::Uri`), so
//! the refusal costs nothing and keeps one rule with no IDN exception path. ASCII `xn--` hosts
//! are accepted, validated by the IDNA parser, and compared as they are.

use std::borrow::Cow;
use std::fmt;

use url::{Host, Url};

use super::denial::{Denial, DenyReason};
use super::host::{self, HostError};
use super::path;
use super::rule::HTTPS_PORT;

/// Longest URL considered at all; bounds the work done on guest input.
pub const MAX_URL_LEN: usize = 16 * 1024;

/// A request URL in canonical form: the only thing policy, credential binding and the HTTP
/// client look at, so all three see the same host, port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    host: String,
    port: u16,
    path: String,
    query: Option<String>,
}

impl RequestTarget {
    /// Canonicalises a guest URL or says why it can never be sent.
    pub fn parse(input: &str) -> Result<Self, Denial> {
        if input.len() > MAX_URL_LEN {
            return Err(Denial::with(DenyReason::InvalidUrl, "URL too long"));
        }
        if input.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Denial::with(
                DenyReason::InvalidUrl,
                "whitespace or control character",
            ));
        }
        let url = Url::parse(input).map_err(url_error)?;
        if url.scheme() != "https" {
            let detail = match url.scheme() {
                "http" => "plain http is never allowed".to_owned(),
                other => format!("scheme {}", other.chars().take(16).collect::<String>()),
            };
            return Err(Denial::with(DenyReason::SchemeNotAllowed, detail));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Denial::new(DenyReason::Userinfo));
        }
        let domain = match url.host() {
            Some(Host::Domain(domain)) => domain,
            Some(Host::Ipv4(ip)) => {
                return Err(Denial::with(DenyReason::IpLiteral, ip.to_string()));
            }
            Some(Host::Ipv6(ip)) => {
                return Err(Denial::with(DenyReason::IpLiteral, format!("[{ip}]")));
            }
            None => return Err(Denial::with(DenyReason::InvalidUrl, "no host")),
        };
        check_differential(input, &url)?;
        let host = host::strip_one_trailing_dot(domain);
        host::check_syntax(host)
            .and_then(|()| host::check_reachable(host))
            .map_err(|e| host_denial(host, e))?;
        let path = path::canonical_path(url.path())
            .map_err(|e| Denial::with(DenyReason::AmbiguousPath, format!("path {e}")))?;
        Ok(Self {
            host: host.to_owned(),
            port: url.port_or_known_default().unwrap_or(HTTPS_PORT),
            path,
            query: url.query().map(str::to_owned),
        })
    }

    /// Always `https`.
    pub fn scheme(&self) -> &'static str {
        "https"
    }

    /// Canonical host: lowercase ASCII (Punycode), no trailing dot. Send this as Host and SNI.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to dial: explicit, or 443.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host` or `host:port` (port only when not 443), for the Host header.
    pub fn authority(&self) -> String {
        match self.port {
            HTTPS_PORT => self.host.clone(),
            port => format!("{}:{port}", self.host),
        }
    }

    /// `https://authority`, written as a rule's origin is ([`super::RuleOrigin`]'s `Display`),
    /// so the two compare: what a credential is bound to.
    pub fn origin(&self) -> String {
        format!("https://{}", self.authority())
    }

    /// Canonical path (`/a/b`), dot segments removed, RFC 3986 normal form.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw (WHATWG-encoded) query. Kept behind an accessor because it often carries keys:
    /// audit records and errors use [`fmt::Display`], which omits it.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query as sent in the request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }

    /// The full canonical URL to send, query included: never log it.
    pub fn to_uri_string(&self) -> String {
        format!("https://{}{}", self.authority(), self.path_and_query())
    }
}

/// The loggable form: scheme, authority and path, never the query.
impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.path)
    }
}

fn url_error(e: url::ParseError) -> Denial {
    match e {
        // Invalid Punycode, and also forbidden characters once the host is percent-decoded
        // (`%2F`, `%00`: the curl CVE-2022-27780 class).
        url::ParseError::IdnaError => Denial::with(
            DenyReason::InvalidHost,
            "rejected by IDNA processing (invalid Punycode or forbidden character)",
        ),
        url::ParseError::InvalidIpv4Address => {
            Denial::with(DenyReason::IpLiteral, "malformed IPv4 address")
        }
        url::ParseError::InvalidIpv6Address => Denial::with(
            DenyReason::IpLiteral,
            "malformed IPv6 address (zone ids are not accepted)",
        ),
        other => Denial::with(DenyReason::InvalidUrl, other.to_string()),
    }
}

fn host_denial(host: &str, error: HostError) -> Denial {
    let reason = match error {
        HostError::SingleLabel => DenyReason::SingleLabelHost,
        HostError::Metadata => DenyReason::MetadataHost,
        HostError::Localhost => DenyReason::ReservedHost,
        _ => DenyReason::InvalidHost,
    };
    match error {
        HostError::TooLong | HostError::LabelTooLong | HostError::Empty => {
            Denial::with(reason, format!("host {error}"))
        }
        _ => Denial::with(reason, format!("{host} {error}")),
    }
}

/// Refuses the URL unless `http::Uri` reads the same scheme, host and port as WHATWG.
///
/// Hosts are compared after running `http::Uri`'s host through the same WHATWG host parser, so
/// the check is about where each parser finds the authority, not about canonicalisation.
fn check_differential(input: &str, url: &Url) -> Result<(), Denial> {
    let disagree = |what: &str| Err(Denial::with(DenyReason::ParserDisagreement, what));
    if input.contains('\\') {
        return disagree("backslash: WHATWG reads it as '/', RFC 3986 forbids it");
    }
    let Ok(uri) = encode_non_ascii(input).parse::<http::Uri>() else {
        return disagree("not a valid RFC 3986 URI (http::Uri rejects it)");
    };
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return disagree("scheme");
    }
    let Some(authority) = uri.authority() else {
        return disagree("authority");
    };
    if authority.as_str().contains('@') {
        return Err(Denial::new(DenyReason::Userinfo));
    }
    if Host::parse(authority.host()).ok() != url.host().map(|h| h.to_owned()) {
        return disagree("host");
    }
    if explicit_port(authority) != url.port_or_known_default() {
        return disagree("port");
    }
    Ok(())
}

/// The port `http::Uri` would dial. Read from the authority text because `Authority::port()`
/// returns `None` for a port it cannot parse (`:65536`), which a caller would take for 443.
fn explicit_port(authority: &http::uri::Authority) -> Option<u16> {
    let rest = authority.as_str().strip_prefix(authority.host())?;
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some(HTTPS_PORT),
        Some("") => Some(HTTPS_PORT),
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok(),
        _ => None,
    }
}

/// Percent-encodes non-ASCII bytes, as WHATWG does in paths and queries, so that `http::Uri`
/// judges the structure rather than refusing UTF-8 outright. In the authority this still fails
/// (`%` is not allowed there), which is the IDNA choice documented above.
fn encode_non_ascii(input: &str) -> Cow<'_, str> {
    if input.is_ascii() {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() * 3);
    for b in input.bytes() {
        match b.is_ascii() {
            true => out.push(char::from(b)),
            false => out.push_str(&format!("%{b:02X}")),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No known input reaches these comparisons past the earlier checks, so feed the
    /// differential mismatched pairs directly: it must refuse every disagreement.
    #[test]
    fn differential_refuses_any_scheme_host_or_port_mismatch() {
        // (raw input, what WHATWG is pretended to have read, expected detail or None = agree)
        let cases = [
            (
                "https://API.allowed.test./",
                "https://api.allowed.test./",
                None,
            ),
            (
                "https://api.allowed.test:/",
                "https://api.allowed.test/",
                None,
            ),
            (
                "https://api.allowed.test:0443/",
                "https://api.allowed.test/",
                None,
            ),
            (
                "https://evil.test/",
                "https://api.allowed.test/",
                Some("host"),
            ),
            (
                "https://api.allowed.test:8443/",
                "https://api.allowed.test/",
                Some("port"),
            ),
            (
                "https://api.allowed.test:+443/",
                "https://api.allowed.test/",
                Some("port"),
            ),
            (
                "https://api.allowed.test:65536/",
                "https://api.allowed.test/",
                Some("port"),
            ),
            (
                "http://api.allowed.test/",
                "https://api.allowed.test/",
                Some("scheme"),
            ),
            (
                "/api.allowed.test/",
                "https://api.allowed.test/",
                Some("scheme"),
            ),
            (
                "https://u@api.allowed.test/",
                "https://api.allowed.test/",
                Some("userinfo"),
            ),
        ];
        for (input, whatwg, expected) in cases {
            let url = Url::parse(whatwg).expect("valid");
            let got = check_differential(input, &url).map_err(|d| match d.reason {
                DenyReason::Userinfo => "userinfo".to_owned(),
                _ => d.detail().unwrap_or_default().to_owned(),
            });
            assert_eq!(got.err().as_deref(), expected, "{input}");
        }
    }
}
