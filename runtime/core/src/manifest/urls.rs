//! The publisher's addresses: [`HttpsUrl`] and [`SupportContact`] (`mailto:` or `https://`).
//! Users follow these links, so only unambiguous, encrypted forms are accepted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fields::{FromStrVisitor, InvalidValue, invalid, string_newtype_serde};

/// Longest accepted [`HttpsUrl`] or [`SupportContact`], in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// No whitespace or control characters, at most [`MAX_URL_BYTES`].
fn check_uri_chars(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL_BYTES {
        return Err(format!("longer than {MAX_URL_BYTES} bytes"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("must not contain {c:?}"));
    }
    Ok(())
}

/// Strips `prefix` from `s`, ignoring ASCII case (URI schemes are case-insensitive).
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// An absolute `https://` URL with a host, no credentials, and no whitespace.
///
/// This is a syntactic check, not a full URL parser: the scheme must be `https`, the authority
/// (up to the first `/`, `?` or `#`) must be non-empty, must not contain `@` (user info could
/// disguise the real host), and a port, if any, must be numeric.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpsUrl(String);

impl HttpsUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn check(s: &str) -> Result<(), String> {
        check_uri_chars(s)?;
        let Some(rest) = strip_prefix_ignore_case(s, "https://") else {
            return Err(if strip_prefix_ignore_case(s, "http://").is_some() {
                "plain http:// is not allowed; use an https:// URL".into()
            } else {
                "expected an https:// URL".into()
            });
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err("must not contain user info ('@') before the host".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal like [::1] has colons inside the brackets.
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (authority, None),
        };
        if host.is_empty() {
            return Err("missing host".into());
        }
        if let Some(port) = port
            && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(format!("invalid port {port:?}"));
        }
        Ok(())
    }
}

impl FromStr for HttpsUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s).map_err(|why| invalid(format!("invalid URL {s:?}: {why}")))?;
        Ok(HttpsUrl(s.to_owned()))
    }
}

string_newtype_serde!(HttpsUrl, "an https:// URL");

/// Where users get support: a `mailto:` address or an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SupportContact {
    /// The address after `mailto:`, e.g. `support@acme.example`.
    Email(String),
    Url(HttpsUrl),
}

impl SupportContact {
    /// The contact as written in the manifest form: `mailto:ADDRESS` or the URL.
    pub fn as_uri(&self) -> String {
        self.to_string()
    }
}

impl FromStr for SupportContact {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| invalid(format!("invalid support contact {s:?}: {why}"));
        if let Some(address) = strip_prefix_ignore_case(s, "mailto:") {
            check_uri_chars(s).map_err(fail)?;
            let valid = match address.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains(['@', '/', '?', '#'])
                }
                None => false,
            };
            if !valid {
                return Err(fail(
                    "expected \"mailto:\" followed by one address like support@acme.example".into(),
                ));
            }
            return Ok(SupportContact::Email(address.to_owned()));
        }
        if strip_prefix_ignore_case(s, "https://").is_some() {
            return HttpsUrl::check(s)
                .map(|()| SupportContact::Url(HttpsUrl(s.to_owned())))
                .map_err(fail);
        }
        let why = if strip_prefix_ignore_case(s, "http://").is_some() {
            "plain http:// is not allowed; use an https:// URL or a mailto: address"
        } else {
            "expected a mailto: address or an https:// URL"
        };
        Err(fail(why.into()))
    }
}

impl fmt::Display for SupportContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupportContact::Email(address) => write!(f, "mailto:{address}"),
            SupportContact::Url(url) => f.write_str(url.as_str()),
        }
    }
}

impl Serialize for SupportContact {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SupportContact {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::<SupportContact>::new(
            "a mailto: address or an https:// URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_contact_and_https_url_rules() {
        for ok in [
            "mailto:support@acme.example",
            "MAILTO:help@acme.example",
            "https://acme.example",
            "https://acme.example:8443/help?x=1#top",
            "https://[::1]:8443/",
        ] {
            assert!(ok.parse::<SupportContact>().is_ok(), "{ok}");
        }
        for bad in [
            "http://acme.example/help",
            "ftp://acme.example",
            "mailto:",
            "mailto:nobody",
            "mailto:a@b@c",
            "mailto:@acme.example",
            "https://",
            "https:///path",
            "https://user@evil.example",
            "https://acme.example:port/",
            "https://acme.example/a b",
            "support@acme.example",
            "",
        ] {
            assert!(bad.parse::<SupportContact>().is_err(), "{bad:?}");
        }
        assert!("https://acme.example/privacy".parse::<HttpsUrl>().is_ok());
        for bad in ["mailto:a@b.example", "http://acme.example", "https://"] {
            assert!(bad.parse::<HttpsUrl>().is_err(), "{bad:?}");
        }
        let contact: SupportContact = "mailto:a@b.example".parse().expect("mailto");
        assert_eq!(contact.as_uri(), "mailto:a@b.example");
    }
}
