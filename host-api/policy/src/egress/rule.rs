//! The grammar of one declared egress rule: `https://host[:port][/path-prefix]` plus methods and
//! an optional credential name.
//!
//! Rules are parsed by hand, not with a URL library, because a library would quietly repair
//! what we want refused: it maps Unicode, decodes `%2e`, turns `127.1` into an address and
//! drops `:443`. A rule is written once by a person and read by an operator approving it, so
//! it must already be in the form that is enforced.

use std::fmt;

use serde::ser::SerializeStruct;

use super::host::{self, HostError};
use super::method::{self, Method};
use super::path;
use super::rule_error::{
    CredentialNameError, EgressRuleError, MAX_CREDENTIAL_NAME_LEN, PortError, RuleMethodsError,
    RuleUrlError, WildcardError,
};

/// Default (and only implicit) port.
pub const HTTPS_PORT: u16 = 443;

/// One `[[egress]]` entry, parsed and canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRule {
    origin: RuleOrigin,
    path_prefix: Vec<String>,
    methods: Vec<Method>,
    credential: Option<String>,
    url: String,
    /// Whether requests this rule allows carry the invocation's W3C trace context
    /// (`traceparent`), when the server traces.
    trace: bool,
}

/// The (scheme, host pattern, port) a rule grants; credentials are bound to these so that a
/// redirect to another host, port or scheme never carries them (curl CVE-2022-27776).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleOrigin {
    host: HostPattern,
    port: u16,
}

/// A canonical host name, or `*.name` meaning every name strictly below `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    name: String,
    wildcard: bool,
}

impl EgressRule {
    /// Parses one manifest entry; refused entries fail the whole manifest (fail closed).
    pub fn parse(
        url: &str,
        methods: &[String],
        credential: Option<&str>,
    ) -> Result<Self, EgressRuleError> {
        let (origin, path_prefix) = parse_url(url)?;
        let methods = parse_methods(methods)?;
        let credential = credential.map(parse_credential).transpose()?;
        let url = format!("{origin}{}", path::render_prefix(&path_prefix));
        Ok(Self {
            origin,
            path_prefix,
            methods,
            credential,
            url,
            trace: false,
        })
    }

    /// This rule, its requests carrying the trace context (`trace = true`) or not.
    pub fn with_trace(mut self, trace: bool) -> Self {
        self.trace = trace;
        self
    }

    /// Whether requests this rule allows carry the invocation's trace context.
    pub fn traces(&self) -> bool {
        self.trace
    }

    /// Canonical form, e.g. `https://*.svc.example.com` or `https://h.example.com:8443/api`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Allowed methods, in declared order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Name of the credential injected into requests this rule allows.
    pub fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// The origin this rule grants (what a credential is bound to).
    pub fn origin(&self) -> &RuleOrigin {
        &self.origin
    }

    /// Canonical path prefix (`/services`), or `None` when any path is allowed.
    pub fn path_prefix(&self) -> Option<String> {
        (!self.path_prefix.is_empty()).then(|| path::render_prefix(&self.path_prefix))
    }

    /// True when this rule allows `method`.
    pub fn allows_method(&self, method: Method) -> bool {
        self.methods.contains(&method)
    }

    pub(crate) fn path_matches(&self, canonical_path: &str) -> bool {
        path::prefix_matches(&self.path_prefix, canonical_path)
    }

    /// Whether this rule matches every request the rule with canonical URL `rule_url` can:
    /// the same port, a host pattern at least as wide, and a path prefix `rule_url`'s starts
    /// with. The audit trail names the rule a request matched, not its path, so this is how a
    /// recorded request is credited to the rules of a manifest (`airlock audit privileges`).
    pub fn covers(&self, rule_url: &str) -> bool {
        let Ok((origin, prefix)) = parse_url(rule_url) else {
            return false;
        };
        origin.port == self.origin.port
            && self.origin.host.covers(&origin.host)
            && prefix.starts_with(&self.path_prefix)
    }
}

impl serde::Serialize for EgressRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut rule = s.serialize_struct("EgressRule", 4)?;
        rule.serialize_field("url", &self.url)?;
        rule.serialize_field("methods", &self.methods)?;
        rule.serialize_field("credential", &self.credential)?;
        if self.trace {
            rule.serialize_field("trace", &true)?;
        } else {
            rule.skip_field("trace")?;
        }
        rule.end()
    }
}

impl RuleOrigin {
    /// Always `https`: plain http never carries a credential, so it is not grantable.
    pub fn scheme(&self) -> &'static str {
        "https"
    }

    /// The host pattern.
    pub fn host(&self) -> &HostPattern {
        &self.host
    }

    /// The port (443 unless the rule named another).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.host)?;
        match self.port {
            HTTPS_PORT => Ok(()),
            port => write!(f, ":{port}"),
        }
    }
}

impl HostPattern {
    /// The canonical name; for `*.svc.example.com` this is `svc.example.com`, which the
    /// pattern itself does not match.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for `*.name` patterns.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// Matches a canonical request host: exactly, or strictly below the apex for `*.`.
    pub fn matches(&self, host: &str) -> bool {
        match self.wildcard {
            false => host == self.name,
            true => host::is_within(host, &self.name) && host != self.name,
        }
    }

    /// Whether this pattern matches every host `other` matches.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self.wildcard, other.wildcard) {
            (_, false) => self.matches(&other.name),
            (true, true) => host::is_within(&other.name, &self.name),
            (false, true) => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.wildcard {
            true => write!(f, "*.{}", self.name),
            false => f.write_str(&self.name),
        }
    }
}

fn parse_url(input: &str) -> Result<(RuleOrigin, Vec<String>), RuleUrlError> {
    if input.is_empty() {
        return Err(RuleUrlError::Empty);
    }
    if input.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(RuleUrlError::ControlOrWhitespace);
    }
    let (scheme, rest) = input.split_once("://").ok_or(RuleUrlError::MissingScheme)?;
    if scheme.eq_ignore_ascii_case("http") {
        return Err(RuleUrlError::PlainHttp);
    }
    if !scheme.eq_ignore_ascii_case("https") {
        return Err(RuleUrlError::SchemeNotAllowed(shown(scheme)));
    }
    if rest.contains('\\') {
        return Err(RuleUrlError::Backslash);
    }
    if rest.contains('#') {
        return Err(RuleUrlError::Fragment);
    }
    if rest.contains('?') {
        return Err(RuleUrlError::Query);
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(RuleUrlError::Userinfo);
    }
    if authority.starts_with('[') {
        return Err(RuleUrlError::IpLiteral("IPv6"));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (authority, HTTPS_PORT),
    };
    let host = parse_host(host)?;
    let prefix = path::parse_prefix(path).map_err(RuleUrlError::Path)?;
    Ok((RuleOrigin { host, port }, prefix))
}

fn parse_port(port: &str) -> Result<u16, RuleUrlError> {
    let err = |e| Err(RuleUrlError::Port(e));
    if port.is_empty() {
        return err(PortError::Empty);
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return err(PortError::NotDecimal);
    }
    let digits = port.trim_start_matches('0');
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => err(PortError::OutOfRange),
        Ok(n) => Ok(n),
    }
}

fn parse_host(raw: &str) -> Result<HostPattern, RuleUrlError> {
    if !raw.is_ascii() {
        return Err(RuleUrlError::NonAsciiHost);
    }
    let lower = raw.to_ascii_lowercase();
    let name = host::strip_one_trailing_dot(&lower);
    if name == "*" {
        return Err(RuleUrlError::Wildcard(WildcardError::AllowAll));
    }
    let (wildcard, name) = match name.strip_prefix("*.") {
        Some(apex) => (true, apex),
        None => (false, name),
    };
    if name.contains('*') {
        return Err(RuleUrlError::Wildcard(WildcardError::NotLeading));
    }
    if host::ends_in_a_number(name) {
        return Err(RuleUrlError::IpLiteral(
            "IPv4: a numeric last label is read as an address",
        ));
    }
    host::check_syntax(name).map_err(RuleUrlError::Host)?;
    if wildcard && !name.contains('.') {
        return Err(RuleUrlError::Wildcard(WildcardError::TooBroad));
    }
    // The WHATWG host parser is what request hosts go through; a rule host it would change
    // (invalid Punycode) could never match, so refuse it here rather than at runtime.
    match url::Host::parse(name) {
        Ok(url::Host::Domain(parsed)) if parsed == name => {}
        Ok(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            return Err(RuleUrlError::IpLiteral("IPv4"));
        }
        _ => return Err(RuleUrlError::Host(HostError::InvalidPunycode)),
    }
    host::check_reachable(name).map_err(RuleUrlError::Host)?;
    Ok(HostPattern {
        name: name.to_owned(),
        wildcard,
    })
}

fn parse_methods(tokens: &[String]) -> Result<Vec<Method>, RuleMethodsError> {
    if tokens.is_empty() {
        return Err(RuleMethodsError::Empty);
    }
    let mut methods = Vec::with_capacity(tokens.len());
    for token in tokens {
        if token == "*" {
            return Err(RuleMethodsError::Wildcard);
        }
        let method = match Method::from_manifest(token) {
            Some(method) => method,
            None if method::is_token(token) => {
                return Err(RuleMethodsError::Unsupported(shown(token)));
            }
            None => return Err(RuleMethodsError::InvalidToken(shown(token))),
        };
        if methods.contains(&method) {
            return Err(RuleMethodsError::Duplicate(method));
        }
        methods.push(method);
    }
    Ok(methods)
}

/// Checks a credential name (`[a-z0-9-]`, starting with a letter): the same rule for the
/// `credential` of an egress rule and the `[credentials.<name>]` table that declares it.
pub fn parse_credential(name: &str) -> Result<String, CredentialNameError> {
    let first = name.chars().next().ok_or(CredentialNameError::Empty)?;
    if name.len() > MAX_CREDENTIAL_NAME_LEN {
        return Err(CredentialNameError::TooLong);
    }
    if !first.is_ascii_lowercase() {
        return Err(CredentialNameError::MustStartWithLetter);
    }
    match name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        Some(c) => Err(CredentialNameError::InvalidChar(c)),
        None => Ok(name.to_owned()),
    }
}

/// A bounded excerpt of an offending manifest token, for error messages.
fn shown(token: &str) -> String {
    token.chars().take(32).collect()
}
