//! Why a request was refused: a stable reason code plus an optional short detail.
//!
//! The code is what audit records, metrics and guest-visible errors key on, so it never changes
//! once published. The detail is for humans and is built only from canonical, non-secret parts
//! (host, port, method): never the query, the path, userinfo or the raw guest input.

use std::fmt;

/// The reason an outgoing request was denied.
///
/// Variants are ordered roughly by where in the pipeline they are decided: URL parsing,
/// host canonicalisation, then matching against the rules.
///
/// Deliberately not `#[non_exhaustive]`: code that maps reasons (audit, guest errors) should
/// fail to compile when a reason is added, not fall into a catch-all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The URL is not a valid WHATWG URL, or is too long, or contains whitespace or controls.
    InvalidUrl,
    /// `url::Url` and `http::Uri` read different (scheme, host, port), or `http::Uri` (what the
    /// request is sent with) cannot read it at all. Both parsers must agree before we trust one.
    ParserDisagreement,
    /// The URL carries userinfo (`user@`, `user:pass@`, even an empty `@`).
    Userinfo,
    /// The scheme is not `https`.
    SchemeNotAllowed,
    /// The host is an IP literal in any encoding a URL parser accepts (`127.1`, `0x7f000001`,
    /// `[::1]`, full-width digits...). Only DNS names are ever allowed.
    IpLiteral,
    /// The host is not a usable DNS name: empty labels, bad characters, invalid Punycode, too long.
    InvalidHost,
    /// The host is a cloud metadata service name (or below one).
    MetadataHost,
    /// The host is a name that resolvers answer locally (`*.localhost`, RFC 6761).
    ReservedHost,
    /// The host has a single label (`intranet`, `localhost`): not a public FQDN.
    SingleLabelHost,
    /// The path is ambiguous across servers: encoded `/` or `\`, dot segments hidden behind
    /// (multiple) percent-encoding or `;` parameters, encoded controls, invalid escapes.
    AmbiguousPath,
    /// The method is not a valid HTTP token.
    InvalidMethod,
    /// No rule names this host.
    NoMatchingRule,
    /// A rule names this host, but none allows this port.
    PortNotAllowed,
    /// A rule names this host and port, but none allows this path.
    PathNotAllowed,
    /// A rule names this host, port and path, but none allows this method.
    MethodNotAllowed,
}

impl DenyReason {
    /// Every reason, for exhaustive tests and documentation.
    pub const ALL: [DenyReason; 15] = [
        Self::InvalidUrl,
        Self::ParserDisagreement,
        Self::Userinfo,
        Self::SchemeNotAllowed,
        Self::IpLiteral,
        Self::InvalidHost,
        Self::MetadataHost,
        Self::ReservedHost,
        Self::SingleLabelHost,
        Self::AmbiguousPath,
        Self::InvalidMethod,
        Self::NoMatchingRule,
        Self::PortNotAllowed,
        Self::PathNotAllowed,
        Self::MethodNotAllowed,
    ];

    /// Stable kebab-case code used in audit records and guest-visible errors.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidUrl => "invalid-url",
            Self::ParserDisagreement => "parser-disagreement",
            Self::Userinfo => "userinfo",
            Self::SchemeNotAllowed => "scheme-not-allowed",
            Self::IpLiteral => "ip-literal",
            Self::InvalidHost => "invalid-host",
            Self::MetadataHost => "metadata-host",
            Self::ReservedHost => "reserved-host",
            Self::SingleLabelHost => "single-label-host",
            Self::AmbiguousPath => "ambiguous-path",
            Self::InvalidMethod => "invalid-method",
            Self::NoMatchingRule => "no-matching-rule",
            Self::PortNotAllowed => "port-not-allowed",
            Self::PathNotAllowed => "path-not-allowed",
            Self::MethodNotAllowed => "method-not-allowed",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::InvalidUrl => "the URL is not valid",
            Self::ParserDisagreement => "the URL is read differently by different parsers",
            Self::Userinfo => "userinfo (user@) in a URL is never allowed",
            Self::SchemeNotAllowed => "only https is allowed",
            Self::IpLiteral => "IP-literal hosts are never allowed",
            Self::InvalidHost => "the host is not a valid DNS name",
            Self::MetadataHost => "cloud metadata hosts are never allowed",
            Self::ReservedHost => "localhost names are never allowed",
            Self::SingleLabelHost => "single-label hosts are never allowed",
            Self::AmbiguousPath => "the path is ambiguous",
            Self::InvalidMethod => "the method is not a valid HTTP method",
            Self::NoMatchingRule => "no egress rule allows this host",
            Self::PortNotAllowed => "no egress rule allows this port for the host",
            Self::PathNotAllowed => "no egress rule allows this path for the host",
            Self::MethodNotAllowed => "no egress rule allows this method for the URL",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl serde::Serialize for DenyReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// A refused request: the reason plus a short detail safe to log and show to the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}", DetailSuffix(self.detail.as_deref()))]
pub struct Denial {
    /// Why; use [`DenyReason::code`] for machine-readable output.
    pub reason: DenyReason,
    detail: Option<String>,
}

impl Denial {
    pub(crate) fn new(reason: DenyReason) -> Self {
        Self {
            reason,
            detail: None,
        }
    }

    /// Detail must be built from canonical, non-secret parts only (see the module docs).
    pub(crate) fn with(reason: DenyReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: Some(detail.into()),
        }
    }

    /// The stable code of [`Self::reason`].
    pub fn code(&self) -> &'static str {
        self.reason.code()
    }

    /// Short human detail (host, port, which check failed); never the query or the path.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

struct DetailSuffix<'a>(Option<&'a str>);

impl fmt::Display for DetailSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(detail) => write!(f, " ({detail})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in DenyReason::ALL {
            let code = reason.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{code} is not kebab-case"
            );
        }
    }

    #[test]
    fn display_appends_detail_in_parentheses() {
        let denial = Denial::with(DenyReason::PortNotAllowed, "api.allowed.test:8443");
        assert_eq!(
            denial.to_string(),
            "no egress rule allows this port for the host (api.allowed.test:8443)"
        );
        assert_eq!(
            Denial::new(DenyReason::Userinfo).to_string(),
            "userinfo (user@) in a URL is never allowed"
        );
    }
}
