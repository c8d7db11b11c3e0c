//! DNS-name rules shared by rule hosts and request hosts.
//!
//! Both sides go through the same checks so that a rule can only name hosts a request can
//! reach, and a request host is compared with rule hosts only after both are canonical:
//! lowercase ASCII (Punycode), one trailing dot stripped, `[a-z0-9-_]` labels.

/// Longest host name we accept (RFC 1035 presentation form, without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Names of cloud instance-metadata services, denied whatever the rules say.
///
/// Metadata endpoints hand out instance credentials; an allow-list entry naming one is far more
/// likely an attack than a need. Names below these (`x.metadata.google.internal`) are denied too.
/// The IP classifier after DNS resolution is the second layer (169.254.169.254 and friends).
pub const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata.amazonaws.com",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata",
];

/// Why a name is not an acceptable host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("is empty")]
    Empty,
    #[error("has an empty label (a leading dot, `..`, or more than one trailing dot)")]
    EmptyLabel,
    #[error("is longer than {MAX_HOST_LEN} characters")]
    TooLong,
    #[error("has a label longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong,
    #[error("contains {0:?}; labels may only use a-z, 0-9, '-' and '_'")]
    InvalidChar(char),
    #[error("is not a valid internationalised name (bad Punycode in an xn-- label)")]
    InvalidPunycode,
    #[error("is a single label; only fully qualified names can be reached")]
    SingleLabel,
    #[error("is a cloud metadata service name")]
    Metadata,
    #[error("is a localhost name, which resolvers may answer with loopback (RFC 6761)")]
    Localhost,
}

/// Strips exactly one trailing dot: `example.com.` and `example.com` are the same FQDN, but
/// `example.com..` must stay invalid rather than being normalised into something valid.
pub(crate) fn strip_one_trailing_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// Checks the syntax of a lowercase ASCII name that has already lost its trailing dot.
pub(crate) fn check_syntax(name: &str) -> Result<(), HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(HostError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-' | '_'))
        {
            return Err(HostError::InvalidChar(c));
        }
    }
    Ok(())
}

/// Refuses names that must never be reached whatever the rules say: metadata services,
/// the localhost tree and single-label names (which resolve through search domains to
/// whatever the host's network calls them, never to a public FQDN).
pub(crate) fn check_reachable(name: &str) -> Result<(), HostError> {
    if METADATA_HOSTS.iter().any(|m| is_within(name, m)) {
        return Err(HostError::Metadata);
    }
    if is_within(name, "localhost") {
        return Err(HostError::Localhost);
    }
    if !name.contains('.') {
        return Err(HostError::SingleLabel);
    }
    Ok(())
}

/// `name` equals `zone` or is a subdomain of it (whole labels only).
pub(crate) fn is_within(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

/// WHATWG's "ends in a number" check: such a host is parsed as IPv4 (`127.1`, `0x7f000001`,
/// `2130706433`), so a rule naming it would name an IP address, and never a DNS name.
pub(crate) fn ends_in_a_number(name: &str) -> bool {
    let name = strip_one_trailing_dot(name);
    let last = name.rsplit('.').next().unwrap_or(name);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_accepts_ldh_and_underscore_only() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", "a.".repeat(125));
        let cases: &[(&str, Result<(), HostError>)] = &[
            ("api.example.com", Ok(())),
            ("_dmarc.example.com", Ok(())),
            ("xn--80ak6aa92e.com", Ok(())),
            ("", Err(HostError::Empty)),
            (".example.com", Err(HostError::EmptyLabel)),
            ("a..example.com", Err(HostError::EmptyLabel)),
            ("example.com.", Err(HostError::EmptyLabel)),
            ("a*.example.com", Err(HostError::InvalidChar('*'))),
            ("a!b.example.com", Err(HostError::InvalidChar('!'))),
            (&long_label, Err(HostError::LabelTooLong)),
            (&long_name, Err(HostError::TooLong)),
        ];
        for (name, expected) in cases {
            assert_eq!(check_syntax(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn reachable_denies_metadata_localhost_and_single_labels() {
        let cases: &[(&str, Result<(), HostError>)] = &[
            ("api.example.com", Ok(())),
            ("metadata.google.internal", Err(HostError::Metadata)),
            ("x.metadata.google.internal", Err(HostError::Metadata)),
            ("notmetadata.google.internal", Ok(())),
            ("metadata", Err(HostError::Metadata)),
            ("instance-data", Err(HostError::Metadata)),
            ("localhost", Err(HostError::Localhost)),
            ("api.localhost", Err(HostError::Localhost)),
            ("localhost.example.com", Ok(())),
            ("intranet", Err(HostError::SingleLabel)),
        ];
        for (name, expected) in cases {
            assert_eq!(check_reachable(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn ends_in_a_number_follows_whatwg() {
        let cases = [
            ("127.1", true),
            ("2130706433", true),
            ("2130706433.", true),
            ("0x7f000001", true),
            ("a.0x", true),
            ("1.2.3.4.5", true),
            ("example.com", false),
            ("foo.1e", false),
            ("a.0xg", false),
        ];
        for (name, expected) in cases {
            assert_eq!(ends_in_a_number(name), expected, "{name:?}");
        }
    }
}
