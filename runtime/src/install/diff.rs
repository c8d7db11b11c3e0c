//! The capability diff of an upgrade: what a new manifest declares that the installed one did
//! not. An upgrade that asks for nothing new replaces the old version; one that asks for more
//! waits for an operator's approval (rule 5).

use crate::manifest::Manifest;

/// What `new` declares beyond `old`, one human-readable item each: egress rules (or methods of
/// a rule), and credentials that are new or declared differently (type, scopes, token URL).
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
    added
}
