//! Egress policy: may this guest send this method to this URL?
//!
//! This is the hostname layer of Airlock's SSRF defence, the first of two (smokescreen's
//! model): it decides on the URL as the guest wrote it, canonicalised once. The second layer,
//! classifying every resolved address and dialing only a checked one, lives with the HTTP
//! client; a name that passes here may still be refused after DNS.
//!
//! Principles:
//! - Empty means deny: a policy with no rules allows nothing, and there is no allow-all rule.
//! - Canonicalise exactly once ([`RequestTarget::parse`]); everything downstream (matching,
//!   credential binding, the Host header, SNI, the request line) uses that one form.
//! - Refuse what parsers could read differently instead of picking a reading (catalogue §3.1).
//! - Denials carry a stable code ([`DenyReason::code`]) and never the query or path.
//!
//! # Layout
//! - [`rule`]: the `[[egress]]` grammar ([`EgressRule`]); [`rule_error`]: why one is refused.
//! - [`target`]: request URL canonicalisation ([`RequestTarget`]).
//! - `host`, `path`: DNS-name and path-segment rules shared by both sides.
//! - [`denial`], [`method`]: reasons and the closed method set.

pub mod denial;
mod host;
pub mod method;
mod path;
pub mod rule;
pub mod rule_error;
pub mod target;

#[cfg(test)]
mod tests;

pub use denial::{Denial, DenyReason};
pub use host::{HostError, MAX_HOST_LEN, MAX_LABEL_LEN, METADATA_HOSTS};
pub use method::Method;
pub use path::PathError;
pub use rule::{EgressRule, HTTPS_PORT, HostPattern, RuleOrigin, parse_credential};
pub use rule_error::{
    CredentialNameError, EgressRuleError, MAX_CREDENTIAL_NAME_LEN, PortError, RuleMethodsError,
    RuleUrlError, WildcardError,
};
pub use target::{MAX_URL_LEN, RequestTarget};

/// The egress rules of one grant, checked in declared order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct EgressPolicy {
    rules: Vec<EgressRule>,
}

/// A request the policy allows, and the rule that allowed it (whose credential, if any, is the
/// one to inject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed<'a> {
    /// The first rule that matched; its credential and origin govern the request.
    pub rule: &'a EgressRule,
    /// Position of [`Self::rule`] in the policy, for audit records.
    pub rule_index: usize,
    /// The request's method, now known to be one the rule allows.
    pub method: Method,
    /// The canonical target: send exactly this.
    pub target: RequestTarget,
}

/// How far a request got against the best rule; decides the most specific denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reached {
    Nothing,
    Host,
    Port,
    Path,
}

impl EgressPolicy {
    /// A policy from parsed rules; an empty list denies everything.
    pub fn new(rules: Vec<EgressRule>) -> Self {
        Self { rules }
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[EgressRule] {
        &self.rules
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides one request; the first rule that matches scheme+host+port+path and method wins.
    pub fn check(&self, method: &str, url: &str) -> Result<Allowed<'_>, Denial> {
        self.check_target(method, RequestTarget::parse(url)?)
    }

    /// Like [`Self::check`] for a target that is already canonical.
    ///
    /// When the host matches a rule but something else does not, the denial names the most
    /// specific failure (port, then path, then method) so an author can see what to declare.
    pub fn check_target(&self, method: &str, target: RequestTarget) -> Result<Allowed<'_>, Denial> {
        if !method::is_token(method) {
            return Err(Denial::new(DenyReason::InvalidMethod));
        }
        let wanted = Method::from_request(method);
        let mut reached = Reached::Nothing;
        for (rule_index, rule) in self.rules.iter().enumerate() {
            if !rule.origin().host().matches(target.host()) {
                continue;
            }
            reached = reached.max(Reached::Host);
            if rule.origin().port() != target.port() {
                continue;
            }
            reached = reached.max(Reached::Port);
            if !rule.path_matches(target.path()) {
                continue;
            }
            reached = reached.max(Reached::Path);
            if let Some(method) = wanted.filter(|m| rule.allows_method(*m)) {
                return Ok(Allowed {
                    rule,
                    rule_index,
                    method,
                    target,
                });
            }
        }
        Err(match reached {
            Reached::Nothing => Denial::with(DenyReason::NoMatchingRule, target.host()),
            Reached::Host => Denial::with(DenyReason::PortNotAllowed, origin_of(&target)),
            Reached::Port => Denial::with(DenyReason::PathNotAllowed, origin_of(&target)),
            Reached::Path => Denial::with(
                DenyReason::MethodNotAllowed,
                format!("{} {}", shown_method(method), origin_of(&target)),
            ),
        })
    }
}

impl EgressPolicy {
    /// For an author's own run, never a record (the URL carries the caller's data): the rules
    /// on the host of a denied `url` and what the request is, side by side, so the report
    /// points at the manifest line to change. `None` when the URL does not parse.
    pub fn explain_denial(&self, method: &str, url: &str) -> Option<String> {
        let target = RequestTarget::parse(url).ok()?;
        let on_host: Vec<String> = self
            .rules
            .iter()
            .filter(|rule| rule.origin().host().matches(target.host()))
            .map(|rule| {
                let methods: Vec<&str> = rule.methods().iter().map(|m| m.as_str()).collect();
                format!("{} {}", methods.join(","), rule.url())
            })
            .collect();
        if on_host.is_empty() {
            let mut hosts: Vec<&str> = self
                .rules
                .iter()
                .map(|rule| rule.origin().host().name())
                .collect();
            hosts.dedup();
            return Some(match hosts.is_empty() {
                true => "the manifest declares no egress".to_string(),
                false => format!(
                    "no rule names {}; the rules name {}",
                    target.host(),
                    hosts.join(", ")
                ),
            });
        }
        Some(format!(
            "rules for {} allow {}; this request is {} {}:{}{}",
            target.host(),
            on_host.join("; "),
            shown_method(method),
            target.host(),
            target.port(),
            target.path()
        ))
    }
}

/// `host:port` with the port always shown, so a port denial says which port.
fn origin_of(target: &RequestTarget) -> String {
    format!("{}:{}", target.host(), target.port())
}

/// A method token is a guest string; show it only when short (it is already a valid token,
/// so it holds no spaces or controls).
fn shown_method(method: &str) -> &str {
    match method.len() {
        0..=16 => method,
        _ => "(long method)",
    }
}
