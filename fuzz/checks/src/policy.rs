//! airlock-policy's parsers: egress URLs against a policy, grants, API keys in `Authorization`,
//! webhook deliveries.

use airlock_policy::apikey;
use airlock_policy::egress::{EgressPolicy, EgressRule, RequestTarget};
use airlock_policy::grant::Grant;
use airlock_policy::webhook::{Scheme, WebhookSecret};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::decode;

/// What a manifest declares: exact and wildcard hosts, a port, path prefixes, a credential.
fn declared() -> Vec<EgressRule> {
    let rule = |url: &str, methods: &[&str], credential: Option<&str>| {
        let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        EgressRule::parse(url, &methods, credential).expect("a valid declared rule")
    };
    vec![
        rule(
            "https://api.github.com/repos",
            &["GET", "POST"],
            Some("github"),
        ),
        rule("https://*.slack.com", &["POST"], Some("slack")),
        rule(
            "https://hooks.example.com:8443/in/",
            &["PUT", "DELETE"],
            None,
        ),
        rule("https://xn--bcher-kva.example", &["GET"], None),
    ]
}

/// A URL a guest builds: canonicalisation is idempotent, and the policy decides the same on
/// the canonical form as on the raw one, by the same rule, whose host is the one dialed.
pub fn egress_target(data: &[u8]) {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = RequestTarget::parse(url) {
        let again = RequestTarget::parse(&target.to_uri_string()).expect("a canonical URL parses");
        assert_eq!(again, target, "canonicalisation is idempotent");
    }
    if let Ok(rule) = EgressRule::parse(url, &["GET".to_string()], None) {
        let again = EgressRule::parse(rule.url(), &["GET".to_string()], None)
            .expect("a canonical rule parses");
        assert_eq!(again, rule, "a rule's canonical URL is the same rule");
    }
    let policy = EgressPolicy::new(declared());
    for method in ["GET", "POST", "PUT", "DELETE", "get"] {
        let Ok(allowed) = policy.check(method, url) else {
            continue;
        };
        let host = allowed.rule.origin().host();
        assert!(host.matches(allowed.target.host()));
        if !host.is_wildcard() {
            assert_eq!(host.name(), allowed.target.host(), "dials the rule's host");
        }
        assert_eq!(allowed.rule.origin().port(), allowed.target.port());
        let canonical = policy
            .check(method, &allowed.target.to_uri_string())
            .expect("the canonical form of an allowed URL is allowed");
        assert_eq!(canonical.rule_index, allowed.rule_index);
        assert_eq!(canonical.target, allowed.target);
    }
}

/// A grant parses or is refused; one accepted for the manifest is a subset of it: each rule in
/// force is a declared rule with no method it lacks and the same credential.
pub fn grant(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(grant) = Grant::parse(text) else {
        return;
    };
    let declared = declared();
    for granted in [grant.clone(), grant.carried_to(&declared[1..])] {
        let Ok(rules) = granted.apply(&declared) else {
            continue;
        };
        for rule in &rules {
            let of = declared
                .iter()
                .find(|d| d.url() == rule.url())
                .expect("a rule in force is a declared rule");
            assert!(rule.methods().iter().all(|m| of.allows_method(*m)));
            assert_eq!(rule.credential(), of.credential());
        }
    }
}

/// `Authorization` values: the bearer token and the key id it claims are read without a panic
/// and the id never holds the secret part.
pub fn api_key(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    for presented in [Some(header), apikey::bearer(header)].into_iter().flatten() {
        if let Some(id) = apikey::claimed_id(presented) {
            assert_eq!(id.len(), 16);
            assert!(id.len() < presented.len());
        }
    }
}

/// A webhook delivery as a fuzzer makes it: header fields, body, the receiver's clock.
type Delivery = (Vec<(String, Vec<u8>)>, Vec<u8>, u64);

/// Verifies a delivery under `scheme` with a fixed key, as the server does: a refusal, never
/// a panic.
fn verify_delivery(scheme: Scheme, data: &[u8]) {
    let Some((fields, body, now)) = decode::<Delivery>(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (name, value) in fields.into_iter().take(32) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(&value))
        {
            headers.append(name, value);
        }
    }
    let secret = WebhookSecret::from_stored(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/HoRBzaO4fk="
            .to_string()
            .into(),
    );
    let key = secret.signing_key(scheme);
    let _ = airlock_policy::webhook::verify::verify(scheme, &[key], &headers, &body, now);
}

pub fn webhook_standard(data: &[u8]) {
    verify_delivery(Scheme::Standard, data);
}

pub fn webhook_github(data: &[u8]) {
    verify_delivery(Scheme::Github, data);
}

pub fn webhook_slack(data: &[u8]) {
    verify_delivery(Scheme::Slack, data);
}
