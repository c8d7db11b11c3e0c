//! Least privilege: which of the egress rules, methods and credentials a manifest declares an
//! integration really used (in fixture runs, or in an installation's audit trail), and the
//! `[[egress]]` fragment without the rest.
//!
//! Requests are matched again against the manifest's own rules, so the answer does not depend
//! on the grant or version in force when they were made. A request names the rule it matched
//! (`via`, its origin and path prefix: the audit trail keeps no path a guest built), and is
//! credited to the first rule of the manifest that allows its method and covers that rule. A
//! rule narrower than the one a request matched cannot be credited from the trail. OAuth scopes
//! cannot be told from traffic: they are listed with their credential, never called unused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use airlock_host_api::egress::{Decision, EgressEvent};
use airlock_host_api::policy::egress::Method;
use serde::Serialize;

use airlock_runtime::manifest::{CredentialDecl, Manifest};

/// What a set of invocations used.
#[derive(Debug, Default)]
pub struct Usage {
    invocations: u64,
    /// Rule index in the manifest → methods used under it.
    methods: BTreeMap<usize, BTreeSet<String>>,
}

impl Usage {
    /// Counts one invocation's egress attempts against `manifest`'s rules: those the policy
    /// allowed (sent, or failed on the wire).
    pub fn record(&mut self, manifest: &Manifest, events: &[EgressEvent]) {
        self.invocations += 1;
        let policy = manifest.egress_policy();
        for event in events {
            if event.decision == Decision::Denied {
                continue;
            }
            let Some(method) = Method::from_request(&event.method) else {
                continue;
            };
            let credited = match (&event.via, &event.target) {
                (Some(via), _) => policy
                    .rules()
                    .iter()
                    .position(|rule| rule.allows_method(method) && rule.covers(via)),
                // Records written before the trail kept `via` name the target itself.
                (None, Some(target)) => policy
                    .check(&event.method, target)
                    .ok()
                    .map(|allowed| allowed.rule_index),
                (None, None) => None,
            };
            if let Some(at) = credited {
                self.methods
                    .entry(at)
                    .or_default()
                    .insert(method.to_string());
            }
        }
    }
}

/// One declared rule and what of it was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleUse {
    pub url: String,
    pub declared: Vec<String>,
    pub used: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// One declared credential and whether any request carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialUse {
    pub name: String,
    pub kind: &'static str,
    /// OAuth scopes: listed, never judged (traffic does not show which a request needed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    pub used: bool,
}

/// The least-privilege report of one manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub invocations: u64,
    pub rules: Vec<RuleUse>,
    pub credentials: Vec<CredentialUse>,
}

impl Report {
    pub fn new(manifest: &Manifest, usage: &Usage) -> Self {
        let policy = manifest.egress_policy();
        let rules: Vec<RuleUse> = policy
            .rules()
            .iter()
            .enumerate()
            .map(|(at, rule)| {
                let used = usage.methods.get(&at);
                RuleUse {
                    url: rule.url().to_string(),
                    declared: rule.methods().iter().map(|m| m.to_string()).collect(),
                    used: rule
                        .methods()
                        .iter()
                        .map(|m| m.to_string())
                        .filter(|m| used.is_some_and(|u| u.contains(m)))
                        .collect(),
                    credential: rule.credential().map(str::to_string),
                }
            })
            .collect();
        let credentials = manifest
            .credentials
            .iter()
            .map(|(name, declared)| {
                let (kind, scopes) = match declared.get_ref() {
                    CredentialDecl::Bearer {} => ("bearer", Vec::new()),
                    CredentialDecl::Basic {} => ("basic", Vec::new()),
                    CredentialDecl::ApiKey(_) => ("api-key", Vec::new()),
                    CredentialDecl::Oauth2(oauth) => ("oauth2", oauth.scopes.clone()),
                };
                CredentialUse {
                    name: name.as_str().to_string(),
                    kind,
                    scopes,
                    used: rules.iter().any(|r| {
                        !r.used.is_empty() && r.credential.as_deref() == Some(name.as_str())
                    }),
                }
            })
            .collect();
        Self {
            invocations: usage.invocations,
            rules,
            credentials,
        }
    }

    /// Whether anything declared went unused.
    pub fn has_unused(&self) -> bool {
        self.rules.iter().any(|r| r.used.len() < r.declared.len())
            || self.credentials.iter().any(|c| !c.used)
    }

    /// One line per rule and credential: `used`, `UNUSED`, or the methods never used.
    pub fn render(&self) -> String {
        let mut out = format!(
            "least privilege, from {} invocation(s):\n",
            self.invocations
        );
        for rule in &self.rules {
            let verdict = if rule.used.is_empty() {
                "UNUSED".to_string()
            } else if rule.used.len() < rule.declared.len() {
                let unused: Vec<&str> = rule
                    .declared
                    .iter()
                    .filter(|m| !rule.used.contains(m))
                    .map(String::as_str)
                    .collect();
                format!("used; never {}", unused.join(","))
            } else {
                "used".to_string()
            };
            let _ = writeln!(
                out,
                "  egress     {} {} — {verdict}",
                rule.declared.join(","),
                rule.url
            );
        }
        for credential in &self.credentials {
            let scopes = if credential.scopes.is_empty() {
                String::new()
            } else {
                format!(
                    " (scopes {}: not visible in traffic; review them by hand)",
                    credential.scopes.join(" ")
                )
            };
            let verdict = if credential.used { "used" } else { "UNUSED" };
            let _ = writeln!(
                out,
                "  credential {} ({}) — {verdict}{scopes}",
                credential.name, credential.kind
            );
        }
        out
    }

    /// The `[[egress]]` entries cut to what was used, as manifest TOML, with the dropped ones
    /// named in comments; `None` when nothing would change.
    pub fn tightened(&self) -> Option<String> {
        if !self.has_unused() {
            return None;
        }
        let mut out = String::from("# least privilege: the egress this integration used\n");
        for rule in &self.rules {
            if rule.used.is_empty() {
                let _ = writeln!(out, "# removed, never used: {}", rule.url);
                continue;
            }
            let methods: Vec<String> = rule.used.iter().map(|m| format!("{m:?}")).collect();
            let _ = write!(
                out,
                "\n[[egress]]\nurl = {:?}\nmethods = [{}]\n",
                rule.url,
                methods.join(", ")
            );
            if let Some(credential) = &rule.credential {
                let _ = writeln!(out, "credential = {credential:?}");
            }
        }
        for credential in self.credentials.iter().filter(|c| !c.used) {
            let _ = writeln!(
                out,
                "# remove [credentials.{}]: no request used it",
                credential.name
            );
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use airlock_host_api::egress::Decision;

    use super::*;
    use airlock_runtime::manifest::LoadedManifest;

    fn manifest() -> Manifest {
        let text = r#"
[integration]
id = "acme/github-issues"
version = "0.1.0"
description = "Issues."
component = "c.wasm"

[publisher]
name = "Acme"
support = "mailto:support@acme.example"
privacy-policy = "https://acme.example/privacy"

[actions.list]
description = "Lists."
input = "in.json"
output = "out.json"

[[egress]]
url = "https://api.github.com/repos"
methods = ["GET", "POST"]
credential = "github"

[[egress]]
url = "https://api.github.com/repositories"
methods = ["GET"]
credential = "github"

[[egress]]
url = "https://uploads.github.com"
methods = ["POST"]
credential = "uploads"

[credentials.github]
type = "bearer"

[credentials.uploads]
type = "bearer"
"#;
        LoadedManifest::parse(Path::new("airlock.toml"), text)
            .expect("manifest")
            .manifest
    }

    /// An attempt as the trail keeps it: the rule it matched, no target.
    fn event(method: &str, via: &str, decision: Decision) -> EgressEvent {
        EgressEvent {
            method: method.into(),
            target: None,
            via: Some(via.into()),
            target_hash: Some("5f0c".into()),
            rule: Some(0),
            credential: None,
            decision,
            reason: None,
            status: None,
            retry_after_s: None,
            duration_us: 0,
            address: None,
            bytes_out: 0,
            bytes_in: 0,
            redactions: 0,
            hint: None,
        }
    }

    #[test]
    fn unused_rules_methods_and_credentials_are_named_and_cut() {
        let manifest = manifest();
        let mut usage = Usage::default();
        usage.record(
            &manifest,
            &[
                event("GET", "https://api.github.com/repos", Decision::Allowed),
                // Denied attempts use nothing, even under a declared host.
                event("POST", "https://uploads.github.com", Decision::Denied),
            ],
        );
        let report = Report::new(&manifest, &usage);
        assert_eq!(report.rules[0].used, ["GET"]);
        assert!(report.rules[1].used.is_empty());
        assert!(
            report
                .credentials
                .iter()
                .any(|c| c.name == "github" && c.used)
        );
        assert!(
            report
                .credentials
                .iter()
                .any(|c| c.name == "uploads" && !c.used)
        );
        let text = report.render();
        assert!(
            text.contains("GET,POST https://api.github.com/repos — used; never POST"),
            "{text}"
        );
        assert!(
            text.contains("GET https://api.github.com/repositories — UNUSED"),
            "{text}"
        );
        let fragment = report.tightened().expect("something to cut");
        assert!(
            fragment.contains(
                "[[egress]]\nurl = \"https://api.github.com/repos\"\nmethods = [\"GET\"]\ncredential = \"github\""
            ),
            "{fragment}"
        );
        assert!(fragment.contains("# removed, never used: https://api.github.com/repositories"));
        assert!(fragment.contains("# remove [credentials.uploads]"));
    }

    #[test]
    fn everything_used_needs_no_fragment() {
        let manifest = manifest();
        let mut usage = Usage::default();
        usage.record(
            &manifest,
            &[
                event("GET", "https://api.github.com/repos", Decision::Allowed),
                event("POST", "https://api.github.com/repos", Decision::Failed),
                event(
                    "GET",
                    "https://api.github.com/repositories",
                    Decision::Allowed,
                ),
                event("POST", "https://uploads.github.com", Decision::Allowed),
            ],
        );
        let report = Report::new(&manifest, &usage);
        assert!(!report.has_unused(), "{}", report.render());
        assert_eq!(report.tightened(), None);
    }

    #[test]
    fn requests_of_another_version_count_under_the_rules_that_cover_theirs() {
        let manifest = manifest();
        let mut usage = Usage::default();
        usage.record(
            &manifest,
            &[
                // Matched a narrower rule of an older version: under /repos, so it used it.
                event(
                    "GET",
                    "https://api.github.com/repos/acme",
                    Decision::Allowed,
                ),
                // Matched a wider one: it may have gone anywhere on the host, so it is no
                // evidence for either narrower rule.
                event("POST", "https://api.github.com", Decision::Allowed),
                // A method the covering rule does not allow credits nothing.
                event(
                    "DELETE",
                    "https://api.github.com/repositories/1",
                    Decision::Allowed,
                ),
            ],
        );
        let report = Report::new(&manifest, &usage);
        assert_eq!(report.rules[0].used, ["GET"]);
        assert!(report.rules[1].used.is_empty());
        assert!(report.rules[2].used.is_empty());
    }

    #[test]
    fn records_from_before_via_are_matched_by_their_target() {
        let manifest = manifest();
        let mut usage = Usage::default();
        let mut old = event("POST", "", Decision::Allowed);
        old.via = None;
        old.target = Some("https://uploads.github.com/f".into());
        usage.record(&manifest, &[old]);
        let report = Report::new(&manifest, &usage);
        assert_eq!(report.rules[2].used, ["POST"]);
    }
}
