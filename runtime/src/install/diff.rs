//! The capability diff of an upgrade: what a new manifest declares that the installed one did
//! not. An upgrade that asks for nothing new replaces the old version; one that asks for more
//! waits for an operator's approval (rule 5).

use airlock_host_api::kv::KvQuota;
use airlock_host_api::policy::Ceilings;

use crate::manifest::{KvSection, Manifest};

/// The quota `kv` asks for, defaults filled in, before any operator's ceiling.
fn quota(kv: &KvSection) -> Option<KvQuota> {
    let unbounded = Ceilings {
        kv_bytes: u64::MAX,
        kv_keys: u64::MAX,
        ..Ceilings::default()
    };
    KvQuota::resolve(kv.requested(), &unbounded).ok()
}

/// What `new` declares beyond `old`, one human-readable item each: egress rules (or methods of
/// a rule), credentials that are new or declared differently (type, scopes, token URL), and a
/// kv store that is new or larger.
pub fn additions(old: &Manifest, new: &Manifest) -> Vec<String> {
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
                added.push(format!(
                    "egress {} {}{credential}",
                    methods.join(","),
                    rule.url()
                ));
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
                    added.push(format!("egress {} {}", methods.join(","), rule.url()));
                }
                if rule.credential().is_some() && rule.credential() != before.credential() {
                    added.push(format!("egress {}{credential}", rule.url()));
                }
            }
        }
    }
    for (name, decl) in &new.credentials {
        match old.credentials.get(name) {
            None => added.push(format!("credential `{}`", name.as_str())),
            Some(before) if before.get_ref() != decl.get_ref() => {
                added.push(format!(
                    "credential `{}` declared differently",
                    name.as_str()
                ));
            }
            Some(_) => {}
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
            added.push(format!("kv store of {}", kv.max_bytes));
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::LoadedManifest;

    fn manifest(kv: &str) -> Manifest {
        let text = include_str!("../../../guest-examples/hostile/airlock.toml").replace(
            "[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 100\nmax-value-bytes = \"4 KiB\"\n",
            kv,
        );
        LoadedManifest::parse(Path::new("airlock.toml"), &text)
            .expect("valid manifest")
            .manifest
    }

    #[test]
    fn a_new_or_larger_kv_store_is_an_addition() {
        let none = manifest("");
        let small = manifest("[kv]\nmax-bytes = \"64 KiB\"\n");
        let more_keys = manifest("[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 20000\n");
        let large = manifest("[kv]\nmax-bytes = \"1 MiB\"\n");
        assert_eq!(additions(&none, &small), ["kv store of 64 KiB"]);
        assert_eq!(additions(&small, &more_keys), ["kv store of 64 KiB"]);
        assert_eq!(additions(&small, &large), ["kv store of 1 MiB"]);
        assert!(additions(&large, &small).is_empty());
        assert!(additions(&small, &none).is_empty());
    }
}
