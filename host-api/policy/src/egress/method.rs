//! The HTTP methods a rule may allow.
//!
//! A closed set on purpose: `CONNECT` would turn the broker into a tunnel and `TRACE` echoes
//! request headers (including injected credentials) back to the guest, so neither can be
//! granted, and an extension method is not something an integration needs to declare.

use std::fmt;

/// An HTTP method an egress rule can allow; variants are the RFC 9110 methods of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl Method {
    /// Every method a rule can name.
    pub const ALL: [Method; 7] = [
        Self::Get,
        Self::Post,
        Self::Put,
        Self::Patch,
        Self::Delete,
        Self::Head,
        Self::Options,
    ];

    /// The canonical (uppercase) token, as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
        }
    }

    /// Reads a manifest token. Manifests are configuration, so case is forgiven (`get` = `GET`).
    pub fn from_manifest(token: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(token))
    }

    /// Reads a request's method. Methods are case-sensitive on the wire (RFC 9110 §9.1): a guest
    /// sending `get` sends a different method from `GET`, so only the exact token matches.
    pub fn from_request(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == token)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// True when `token` is a syntactically valid HTTP method token (RFC 9110 `token`).
pub(crate) fn is_token(token: &str) -> bool {
    !token.is_empty() && http::Method::from_bytes(token.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_tokens_ignore_case_but_request_tokens_do_not() {
        let cases: &[(&str, Option<Method>, Option<Method>)] = &[
            ("GET", Some(Method::Get), Some(Method::Get)),
            ("get", Some(Method::Get), None),
            ("Options", Some(Method::Options), None),
            ("DELETE", Some(Method::Delete), Some(Method::Delete)),
            ("CONNECT", None, None),
            ("TRACE", None, None),
            ("", None, None),
        ];
        for (token, manifest, request) in cases {
            assert_eq!(
                Method::from_manifest(token),
                *manifest,
                "manifest {token:?}"
            );
            assert_eq!(Method::from_request(token), *request, "request {token:?}");
        }
    }

    #[test]
    fn tokens_follow_rfc_9110() {
        for (token, valid) in [
            ("GET", true),
            ("X-CUSTOM", true),
            ("G ET", false),
            ("", false),
        ] {
            assert_eq!(is_token(token), valid, "{token:?}");
        }
    }
}
