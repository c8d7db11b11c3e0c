//! The capability diff of an upgrade: what a new manifest declares that the installed one did
//! not. An upgrade that asks for nothing new replaces the old version; one that asks for more
//! waits for an approval (rule 5). An addition that changes where a stored secret is sent (an
//! `oauth2` credential's `token-url` or `authorize-url`) only the operator's admin key may
//! approve: a tenant could otherwise point its platform's client secret anywhere.

use airlock_host_api::kv::KvQuota;
use airlock_host_api::policy::Ceilings;
use serde::{Deserialize, Serialize};

use airlock_runtime::manifest::{
    CredentialDecl, CredentialName, KvSection, Manifest, OAuth2, Publisher,
};

/// One thing an upgrade asks for beyond the installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addition {
    /// What it is, in words, naming the rule, credential or URL.
    pub item: String,
    /// Only the operator's admin key may approve it (it changes where a secret is sent).
    pub admin: bool,
}

impl Addition {
    fn tenant(item: String) -> Self {
        Self { item, admin: false }
    }
}

/// The quota `kv` asks for, defaults filled in, before any operator's ceiling.
fn quota(kv: &KvSection) -> Option<KvQuota> {
    let unbounded = Ceilings {
        kv_bytes: u64::MAX,
        kv_keys: u64::MAX,
        ..Ceilings::default()
    };
    KvQuota::resolve(kv.requested(), &unbounded).ok()
}

/// What `new` declares beyond `old`, one item each: egress rules (or methods of a rule),
/// credentials that are new or declared differently (type, scopes, grant, and, for the admin
/// alone, token or authorize URL), a kv store that is new or larger, and a publisher support
/// contact or privacy policy other than the one the operator trusted.
pub fn additions(old: &Manifest, new: &Manifest) -> Vec<Addition> {
    let mut added = Vec::new();
    for entry in &new.egress {
        let rule = entry.rule();
        let before = old.egress.iter().find(|e| e.rule().url() == rule.url());
        let credential = rule
            .credential()
            .map_or(String::new(), |c| format!(" with credential `{c}`"));
        match before {
            None => {
                let methods: Vec<&str> = rule.methods().iter().map(|m| m.as_str()).collect();
                let traced = if rule.traces() {
                    " with the trace context"
                } else {
                    ""
                };
                added.push(Addition::tenant(format!(
                    "egress {} {}{credential}{traced}",
                    methods.join(","),
                    rule.url()
                )));
            }
            Some(before) => {
                let before = before.rule();
                let methods: Vec<&str> = rule
                    .methods()
                    .iter()
                    .filter(|m| !before.allows_method(**m))
                    .map(|m| m.as_str())
                    .collect();
                if !methods.is_empty() {
                    added.push(Addition::tenant(format!(
                        "egress {} {}",
                        methods.join(","),
                        rule.url()
                    )));
                }
                if rule.credential().is_some() && rule.credential() != before.credential() {
                    added.push(Addition::tenant(format!(
                        "egress {}{credential}",
                        rule.url()
                    )));
                }
                if rule.traces() && !before.traces() {
                    added.push(Addition::tenant(format!(
                        "egress {} with the trace context",
                        rule.url()
                    )));
                }
            }
        }
    }
    for (name, decl) in &new.credentials {
        match old.credentials.get(name) {
            None => added.push(Addition::tenant(format!("credential `{}`", name.as_str()))),
            Some(before) => credential(name, before.get_ref(), decl.get_ref(), &mut added),
        }
    }
    if let Some(kv) = &new.kv {
        let grew = match (quota(kv), old.kv.as_ref().map(quota)) {
            (Some(new), Some(Some(before))) => {
                new.max_bytes > before.max_bytes
                    || new.max_keys > before.max_keys
                    || new.max_value_bytes > before.max_value_bytes
            }
            _ => true,
        };
        if grew {
            added.push(Addition::tenant(format!("kv store of {}", kv.max_bytes)));
        }
    }
    publisher(&old.publisher, &new.publisher, &mut added);
    added
}

/// How credential `name` is declared differently, if it is.
fn credential(
    name: &CredentialName,
    old: &CredentialDecl,
    new: &CredentialDecl,
    added: &mut Vec<Addition>,
) {
    if old == new {
        return;
    }
    let name = name.as_str();
    let (CredentialDecl::Oauth2(old), CredentialDecl::Oauth2(new)) = (old, new) else {
        added.push(Addition::tenant(format!(
            "credential `{name}` declared differently"
        )));
        return;
    };
    let OAuth2 {
        grant,
        token_url,
        authorize_url,
        scopes,
        per_user,
    } = new;
    if token_url != &old.token_url {
        added.push(Addition {
            item: format!(
                "credential `{name}` sends its client secret and refresh token to a new \
                 token-url: {token_url} (was {})",
                old.token_url
            ),
            admin: true,
        });
    }
    if authorize_url != &old.authorize_url {
        let shown = |url: &Option<airlock_runtime::manifest::HttpsUrl>| {
            url.as_ref().map_or("none".to_string(), ToString::to_string)
        };
        added.push(Addition {
            item: format!(
                "credential `{name}` sends people to consent at a new authorize-url: {} (was {})",
                shown(authorize_url),
                shown(&old.authorize_url)
            ),
            admin: true,
        });
    }
    let wider: Vec<&str> = scopes
        .iter()
        .filter(|s| !old.scopes.contains(s))
        .map(String::as_str)
        .collect();
    if !wider.is_empty() {
        added.push(Addition::tenant(format!(
            "credential `{name}` scopes {}",
            wider.join(" ")
        )));
    }
    if grant != &old.grant || per_user != &old.per_user {
        added.push(Addition::tenant(format!(
            "credential `{name}` declared differently (grant or per-user)"
        )));
    }
}

/// A publisher support contact or privacy policy other than the installed version's: the
/// operator trusted a publisher reachable there.
fn publisher(old: &Publisher, new: &Publisher, added: &mut Vec<Addition>) {
    if new.support != old.support {
        added.push(Addition::tenant(format!(
            "publisher support contact {} (was {})",
            new.support, old.support
        )));
    }
    if new.privacy_policy != old.privacy_policy {
        added.push(Addition::tenant(format!(
            "publisher privacy policy {} (was {})",
            new.privacy_policy.as_str(),
            old.privacy_policy.as_str()
        )));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use airlock_runtime::manifest::LoadedManifest;

    fn parse(text: &str) -> Manifest {
        LoadedManifest::parse(Path::new("airlock.toml"), text)
            .expect("valid manifest")
            .manifest
    }

    fn manifest(kv: &str) -> Manifest {
        parse(
            &include_str!("../../../../guest-examples/hostile/airlock.toml").replace(
                "[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 100\nmax-value-bytes = \"4 KiB\"\n",
                kv,
            ),
        )
    }

    fn items(added: &[Addition]) -> Vec<(&str, bool)> {
        added.iter().map(|a| (a.item.as_str(), a.admin)).collect()
    }

    #[test]
    fn a_new_or_larger_kv_store_is_an_addition() {
        let none = manifest("");
        let small = manifest("[kv]\nmax-bytes = \"64 KiB\"\n");
        let more_keys = manifest("[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 20000\n");
        let large = manifest("[kv]\nmax-bytes = \"1 MiB\"\n");
        assert_eq!(
            items(&additions(&none, &small)),
            [("kv store of 64 KiB", false)]
        );
        assert_eq!(
            items(&additions(&small, &more_keys)),
            [("kv store of 64 KiB", false)]
        );
        assert_eq!(
            items(&additions(&small, &large)),
            [("kv store of 1 MiB", false)]
        );
        assert!(additions(&large, &small).is_empty());
        assert!(additions(&small, &none).is_empty());
    }

    const SLACK: &str = include_str!("../../../../guest-examples/slack-notifier/airlock.toml");

    #[test]
    fn sending_the_trace_context_is_an_addition() {
        let old = parse(SLACK);
        let rule = "url = \"https://slack.com/api/chat.postMessage\"";
        let traced = parse(&SLACK.replacen(rule, &format!("{rule}\ntrace = true"), 1));
        assert_eq!(
            items(&additions(&old, &traced)),
            [(
                "egress https://slack.com/api/chat.postMessage with the trace context",
                false
            )]
        );
        assert!(additions(&traced, &old).is_empty());
    }

    #[test]
    fn a_secret_sent_elsewhere_is_for_the_admin_to_approve() {
        let old = parse(SLACK);
        let token = parse(&SLACK.replace(
            "https://slack.com/api/oauth.v2.access",
            "https://slack.com.evil.example/token",
        ));
        assert_eq!(
            items(&additions(&old, &token)),
            [(
                "credential `slack` sends its client secret and refresh token to a new \
                 token-url: https://slack.com.evil.example/token (was \
                 https://slack.com/api/oauth.v2.access)",
                true
            )]
        );
        // Another path on the same host is still another place: the admin's call too.
        let path = parse(&SLACK.replace("/api/oauth.v2.access", "/api/other"));
        assert!(additions(&old, &path).iter().all(|a| a.admin));
        let authorize = parse(&SLACK.replace(
            "https://slack.com/oauth/v2/authorize",
            "https://consent.evil.example/authorize",
        ));
        let added = additions(&old, &authorize);
        assert_eq!(added.len(), 1);
        assert!(added[0].admin && added[0].item.contains("consent.evil.example"));
        // More scopes are the tenant's to approve, and fewer are nothing new.
        let wider = parse(&SLACK.replace("[\"chat:write\"]", "[\"chat:write\", \"admin\"]"));
        assert_eq!(
            items(&additions(&old, &wider)),
            [("credential `slack` scopes admin", false)]
        );
        assert!(additions(&wider, &old).is_empty());
    }

    #[test]
    fn a_new_publisher_contact_or_privacy_policy_is_an_addition() {
        let old = parse(SLACK);
        let moved = parse(
            &SLACK
                .replace("mailto:support@acme.example", "https://help.other.example")
                .replace(
                    "https://acme.example/privacy",
                    "https://other.example/privacy",
                ),
        );
        assert_eq!(
            items(&additions(&old, &moved)),
            [
                (
                    "publisher support contact https://help.other.example (was \
                     mailto:support@acme.example)",
                    false
                ),
                (
                    "publisher privacy policy https://other.example/privacy (was \
                     https://acme.example/privacy)",
                    false
                ),
            ]
        );
    }
}
