//! Invariants over generated inputs that a fuzzer cannot see whole (docs/security-model.md):
//! canonicalisation is idempotent, and a grant accepted for a manifest is always a subset of
//! it, in its rules and in what its policy allows.

use airlock_policy::egress::{EgressPolicy, EgressRule, RequestTarget};
use airlock_policy::grant::{Grant, GrantedEgress};
use proptest::prelude::*;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// URLs as guests and authors write them, tricks included: mixed case, escapes, IP literals,
/// ports out of range, dot segments, queries.
fn url() -> impl Strategy<Value = String> {
    let scheme = prop_oneof!["https", "HTTPS", "hTTps", "http"];
    let host = prop_oneof![
        "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}",
        "(api\\.github\\.com|API\\.GitHub\\.com\\.?|x\\.slack\\.com|hooks\\.example\\.com)",
        "[A-Za-z0-9%._-]{1,24}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        "\\[[0-9a-fA-F:.]{2,24}\\]",
        "\\*\\.[a-z]{1,8}\\.com",
    ];
    let port = proptest::option::of(prop_oneof![Just(443u32), Just(8443), 0u32..70_000]);
    let path = "(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}|\\.\\.?){0,6}){0,4}";
    let query = proptest::option::of("[A-Za-z0-9%=&/?._-]{0,12}");
    (scheme, host, port, path, query).prop_map(|(scheme, host, port, path, query)| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{scheme}://{host}{port}{path}{query}")
    })
}

fn methods() -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(METHODS.to_vec(), 0..=METHODS.len())
        .prop_map(|m| m.into_iter().map(str::to_string).collect())
}

/// A manifest's declared rules: distinct canonical URLs, each with some methods.
fn declared() -> impl Strategy<Value = Vec<EgressRule>> {
    let credential = proptest::option::of("(github|slack|crm)");
    proptest::collection::vec((url(), methods(), credential), 1..6).prop_map(|entries| {
        let mut rules: Vec<EgressRule> = Vec::new();
        for (url, methods, credential) in entries {
            if let Ok(rule) = EgressRule::parse(&url, &methods, credential.as_deref())
                && !rules.iter().any(|r| r.url() == rule.url())
            {
                rules.push(rule);
            }
        }
        rules
    })
}

/// A grant against `declared`: entries naming declared rules (as written or re-cased) or
/// other URLs, each with any methods.
fn grant(declared: Vec<EgressRule>) -> impl Strategy<Value = (Vec<EgressRule>, Grant)> {
    let urls: Vec<String> = declared.iter().map(|r| r.url().to_string()).collect();
    let named = proptest::sample::select(urls.clone());
    let entry_url = prop_oneof![
        3 => named.clone(),
        1 => named.prop_map(|u| u.to_uppercase()),
        1 => url(),
    ];
    proptest::collection::vec((entry_url, methods()), 0..6).prop_map(move |entries| {
        let egress = entries
            .into_iter()
            .map(|(url, methods)| GrantedEgress { url, methods })
            .collect();
        (declared.clone(), Grant { egress })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn canonicalisation_is_idempotent(url in prop_oneof![4 => url(), 1 => any::<String>()]) {
        if let Ok(target) = RequestTarget::parse(&url) {
            let canonical = target.to_uri_string();
            let again = RequestTarget::parse(&canonical).expect("a canonical URL parses");
            prop_assert_eq!(&again, &target);
            prop_assert_eq!(again.to_uri_string(), canonical);
        }
        let get = ["GET".to_string()];
        if let Ok(rule) = EgressRule::parse(&url, &get, None) {
            prop_assert_eq!(EgressRule::parse(rule.url(), &get, None).expect("canonical"), rule);
        }
    }

    #[test]
    fn an_accepted_grant_is_a_subset_of_the_manifest(
        (declared, grant) in declared()
            .prop_filter("something declared", |d| !d.is_empty())
            .prop_flat_map(grant),
        requests in proptest::collection::vec((proptest::sample::select(METHODS.to_vec()), url()), 8),
    ) {
        let Ok(in_force) = grant.apply(&declared) else {
            return Ok(());
        };
        prop_assert!(in_force.len() <= declared.len());
        for rule in &in_force {
            let of = declared.iter().find(|d| d.url() == rule.url());
            prop_assert!(of.is_some(), "{} is not declared", rule.url());
            let of = of.expect("checked");
            prop_assert_eq!(rule.origin(), of.origin());
            prop_assert_eq!(rule.path_prefix(), of.path_prefix());
            prop_assert_eq!(rule.credential(), of.credential());
            prop_assert!(rule.methods().iter().all(|m| of.allows_method(*m)));
        }
        let (granted, manifest) = (EgressPolicy::new(in_force), EgressPolicy::new(declared));
        for (method, url) in requests {
            if let Ok(allowed) = granted.check(method, &url) {
                let declared = manifest.check(method, &url);
                prop_assert!(declared.is_ok(), "{method} {url} is granted but not declared");
                let declared = declared.expect("checked");
                prop_assert_eq!(allowed.rule.credential(), declared.rule.credential());
            }
        }
    }
}
