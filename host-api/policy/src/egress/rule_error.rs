//! Why a rule was refused: which part of the `[[egress]]` entry, and what is wrong with it.
//!
//! Each variant is specific enough to act on without reading the parser, because the person
//! reading it is an integration author fixing a manifest or an operator deciding on a grant.

use super::host::HostError;
use super::method::Method;
use super::path::PathError;

/// Longest credential name.
pub const MAX_CREDENTIAL_NAME_LEN: usize = 64;

/// A rule was refused; says which part (`url`, `methods`, `credential`) and why.
///
/// Messages never repeat the rule URL: an author who pasted `https://user:token@host` must not
/// find the token in a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRuleError {
    #[error("url: {0}")]
    Url(#[from] RuleUrlError),
    #[error("methods: {0}")]
    Methods(#[from] RuleMethodsError),
    #[error("credential: {0}")]
    Credential(#[from] CredentialNameError),
}

impl EgressRuleError {
    /// Which field of the `[[egress]]` entry is wrong.
    pub fn part(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Methods(_) => "methods",
            Self::Credential(_) => "credential",
        }
    }
}

/// What is wrong with a rule URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleUrlError {
    #[error("is empty")]
    Empty,
    #[error("contains whitespace or a control character")]
    ControlOrWhitespace,
    #[error("has no scheme; write https://host")]
    MissingScheme,
    #[error("plain http is never allowed; write https://")]
    PlainHttp,
    #[error("scheme {0:?} is not allowed; only https is")]
    SchemeNotAllowed(String),
    #[error("must not contain userinfo (user@ or user:password@)")]
    Userinfo,
    #[error("must not contain a query (?)")]
    Query,
    #[error("must not contain a fragment (#)")]
    Fragment,
    #[error("must not contain a backslash")]
    Backslash,
    #[error("host must be ASCII; write the Punycode (xn--) form")]
    NonAsciiHost,
    #[error("host is an IP literal ({0}); only DNS names are allowed")]
    IpLiteral(&'static str),
    #[error("host {0}")]
    Host(HostError),
    #[error("{0}")]
    Wildcard(WildcardError),
    #[error("port {0}")]
    Port(PortError),
    #[error("path prefix {0}")]
    Path(PathError),
}

/// Misuse of `*` in a rule host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WildcardError {
    #[error("`*` alone would allow every host; there is no allow-all rule")]
    AllowAll,
    #[error("`*` is only allowed as a single leading `*.` label")]
    NotLeading,
    #[error("`*.` must be followed by at least two labels (e.g. *.svc.example.com)")]
    TooBroad,
}

/// What is wrong with a rule port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("is empty; omit the ':' for 443")]
    Empty,
    #[error("must be decimal digits only")]
    NotDecimal,
    #[error("must be in 1..=65535")]
    OutOfRange,
}

/// What is wrong with a rule's method list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleMethodsError {
    #[error("must list at least one method")]
    Empty,
    #[error("`*` is not allowed; list each method")]
    Wildcard,
    #[error("{0:?} is not an HTTP method token")]
    InvalidToken(String),
    #[error("{0:?} is not supported; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS")]
    Unsupported(String),
    #[error("{0} is listed twice")]
    Duplicate(Method),
}

/// What is wrong with a credential name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialNameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_CREDENTIAL_NAME_LEN} characters")]
    TooLong,
    #[error("must start with a lowercase letter")]
    MustStartWithLetter,
    #[error("contains {0:?}; use a-z, 0-9 and '-'")]
    InvalidChar(char),
}
