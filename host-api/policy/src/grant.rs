//! Grants: what an operator approves for one installation — always a subset of what the signed
//! manifest declares (rule 5, least privilege). Whatever the grant leaves out is denied.
//!
//! ```toml
//! # grant.toml
//! [[egress]]
//! url = "https://api.github.com"
//! methods = ["GET"]
//! ```
//!
//! A rule's credential comes with it: granting the rule grants sending that credential to that
//! rule's origin, nothing more.

use crate::egress::{EgressRule, Method};
use serde::{Deserialize, Serialize};

/// The operator's approval for one installation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default)]
    pub egress: Vec<GrantedEgress>,
}

/// One approved egress rule, naming a manifest rule by its URL, with some or all of its methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedEgress {
    pub url: String,
    pub methods: Vec<String>,
}

/// Why a grant was refused. Each names the entry (from 1) and what it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the grant is not valid TOML of the grant format: {0}")]
    Parse(String),
    #[error("grant egress entry {entry} ({url}) is invalid: {reason}")]
    Invalid {
        entry: usize,
        url: String,
        reason: String,
    },
    #[error(
        "grant egress entry {entry} ({url}) is not declared by the manifest, which declares: {declared}"
    )]
    Undeclared {
        entry: usize,
        url: String,
        declared: String,
    },
    #[error(
        "grant egress entry {entry} ({url}) grants {method}, which the manifest does not declare for it (it declares {declared})"
    )]
    Method {
        entry: usize,
        url: String,
        method: String,
        declared: String,
    },
    #[error("grant egress entry {entry} ({url}) repeats an earlier entry")]
    Duplicate { entry: usize, url: String },
}

impl Grant {
    /// Parses a grant file.
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        toml::from_str(text).map_err(|e| GrantError::Parse(e.message().to_string()))
    }

    /// A grant of everything `declared` asks for (what an operator approves by naming it all).
    pub fn everything(declared: &[EgressRule]) -> Self {
        Self {
            egress: declared
                .iter()
                .map(|rule| GrantedEgress {
                    url: rule.url().to_string(),
                    methods: rule.methods().iter().map(|m| m.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// Checks the grant against the manifest's `declared` rules and returns the rules in force:
    /// each granted manifest rule narrowed to the granted methods, in manifest order.
    pub fn apply(&self, declared: &[EgressRule]) -> Result<Vec<EgressRule>, GrantError> {
        let mut granted: Vec<Option<Vec<Method>>> = vec![None; declared.len()];
        for (i, entry) in self.egress.iter().enumerate() {
            let n = i + 1;
            let parsed = EgressRule::parse(&entry.url, &entry.methods, None).map_err(|e| {
                GrantError::Invalid {
                    entry: n,
                    url: entry.url.clone(),
                    reason: e.to_string(),
                }
            })?;
            let Some(at) = declared.iter().position(|r| r.url() == parsed.url()) else {
                return Err(GrantError::Undeclared {
                    entry: n,
                    url: entry.url.clone(),
                    declared: list(declared.iter().map(EgressRule::url)),
                });
            };
            let rule = &declared[at];
            if let Some(method) = parsed.methods().iter().find(|m| !rule.allows_method(**m)) {
                return Err(GrantError::Method {
                    entry: n,
                    url: entry.url.clone(),
                    method: method.to_string(),
                    declared: list(rule.methods().iter().map(|m| m.as_str())),
                });
            }
            if granted[at].replace(parsed.methods().to_vec()).is_some() {
                return Err(GrantError::Duplicate {
                    entry: n,
                    url: entry.url.clone(),
                });
            }
        }
        Ok(declared
            .iter()
            .zip(granted)
            .filter_map(|(rule, methods)| Some(narrow(rule, &methods?)))
            .collect())
    }

    /// This grant without the entries `declared` no longer has, and with each entry's methods
    /// cut to what `declared` still allows: what carries over to an upgrade that asks for less.
    pub fn carried_to(&self, declared: &[EgressRule]) -> Self {
        let egress = self
            .egress
            .iter()
            .filter_map(|entry| {
                let parsed = EgressRule::parse(&entry.url, &entry.methods, None).ok()?;
                let rule = declared.iter().find(|r| r.url() == parsed.url())?;
                let methods: Vec<String> = parsed
                    .methods()
                    .iter()
                    .filter(|m| rule.allows_method(**m))
                    .map(|m| m.to_string())
                    .collect();
                (!methods.is_empty()).then(|| GrantedEgress {
                    url: rule.url().to_string(),
                    methods,
                })
            })
            .collect();
        Self { egress }
    }
}

/// `rule` allowing only `methods` (a subset of its own).
fn narrow(rule: &EgressRule, methods: &[Method]) -> EgressRule {
    let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
    EgressRule::parse(rule.url(), &methods, rule.credential())
        .expect("a declared rule with fewer of its own methods is still valid")
        .with_trace(rule.traces())
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(url: &str, methods: &[&str], credential: Option<&str>) -> EgressRule {
        let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        EgressRule::parse(url, &methods, credential).expect("valid rule")
    }

    fn declared() -> Vec<EgressRule> {
        vec![
            rule("https://api.github.com", &["GET", "POST"], Some("github")),
            rule("https://uploads.github.com", &["PUT"], Some("github")),
        ]
    }

    fn grant(text: &str) -> Grant {
        Grant::parse(text).expect("grant parses")
    }

    #[test]
    fn a_grant_narrows_the_declared_rules_and_keeps_their_credentials() {
        let g = grant("[[egress]]\nurl = \"https://API.github.com/\"\nmethods = [\"get\"]\n");
        let rules = g.apply(&declared()).expect("a subset");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].url(), "https://api.github.com");
        assert_eq!(rules[0].methods(), [Method::Get]);
        assert_eq!(rules[0].credential(), Some("github"));
    }

    #[test]
    fn no_grant_means_no_egress() {
        assert!(
            Grant::default()
                .apply(&declared())
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn anything_beyond_the_manifest_is_refused_naming_it() {
        let undeclared = grant("[[egress]]\nurl = \"https://evil.example\"\nmethods = [\"GET\"]\n");
        assert!(matches!(
            undeclared.apply(&declared()),
            Err(GrantError::Undeclared { entry: 1, .. })
        ));
        let method = grant(
            "[[egress]]\nurl = \"https://uploads.github.com\"\nmethods = [\"PUT\", \"DELETE\"]\n",
        );
        let err = method
            .apply(&declared())
            .expect_err("DELETE is not declared");
        assert!(err.to_string().contains("DELETE"), "{err}");
        let twice = grant(
            "[[egress]]\nurl = \"https://api.github.com\"\nmethods = [\"GET\"]\n\
             [[egress]]\nurl = \"https://api.github.com/\"\nmethods = [\"POST\"]\n",
        );
        assert!(matches!(
            twice.apply(&declared()),
            Err(GrantError::Duplicate { entry: 2, .. })
        ));
        // A path-narrowed URL is another rule, not a subset the manifest declared.
        let path =
            grant("[[egress]]\nurl = \"https://api.github.com/repos\"\nmethods = [\"GET\"]\n");
        assert!(path.apply(&declared()).is_err());
        assert!(Grant::parse("[[egress]]\nurl = \"x\"\nmethods = []\nextra = 1\n").is_err());
    }

    #[test]
    fn everything_is_exactly_what_the_manifest_declares() {
        let all = Grant::everything(&declared());
        assert_eq!(all.apply(&declared()).expect("subset"), declared());
    }

    #[test]
    fn a_grant_carries_over_to_a_manifest_that_asks_for_less() {
        let g = Grant::everything(&declared());
        let fewer = vec![rule("https://api.github.com", &["GET"], Some("github"))];
        let carried = g.carried_to(&fewer);
        assert_eq!(carried.apply(&fewer).expect("subset"), fewer);
    }
}
