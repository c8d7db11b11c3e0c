//! Rule parts other than the URL grammar: methods, credentials, host patterns, origins, JSON.

use super::*;

#[test]
fn invalid_method_lists_are_refused_naming_the_problem() {
    use RuleMethodsError as M;
    let cases: &[(&[&str], RuleMethodsError)] = &[
        (&[], M::Empty),
        (&["*"], M::Wildcard),
        (&["GET", "*"], M::Wildcard),
        (&["TRACE"], M::Unsupported("TRACE".into())),
        (&["CONNECT"], M::Unsupported("CONNECT".into())),
        (&["PURGE"], M::Unsupported("PURGE".into())),
        (&["G ET"], M::InvalidToken("G ET".into())),
        (&[" GET"], M::InvalidToken(" GET".into())),
        (&[""], M::InvalidToken("".into())),
        (&["GET", "get"], M::Duplicate(Method::Get)),
        (&["POST", "PUT", "POST"], M::Duplicate(Method::Post)),
    ];
    for (methods, expected) in cases {
        let got = EgressRule::parse("https://api.example.com", &strings(methods), None);
        assert_eq!(
            got,
            Err(EgressRuleError::Methods(expected.clone())),
            "{methods:?}"
        );
        assert_eq!(got.map_err(|e| e.part()), Err("methods"));
    }
}

#[test]
fn methods_are_canonical_uppercase_in_declared_order() {
    let rule = rule(
        "https://api.example.com",
        &["post", "Get", "OPTIONS", "head"],
        None,
    );
    assert_eq!(
        rule.methods(),
        &[Method::Post, Method::Get, Method::Options, Method::Head]
    );
    let all = rule_with_all_methods();
    assert_eq!(all.methods(), &Method::ALL);
}

fn rule_with_all_methods() -> EgressRule {
    rule(
        "https://api.example.com",
        &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        None,
    )
}

#[test]
fn credential_names_are_checked_syntactically() {
    use CredentialNameError as C;
    let long = "a".repeat(65);
    let max = "a".repeat(64);
    let cases: &[(&str, Result<&str, CredentialNameError>)] = &[
        ("github", Ok("github")),
        ("api-token-2", Ok("api-token-2")),
        (&max, Ok(&max)),
        ("", Err(C::Empty)),
        (&long, Err(C::TooLong)),
        ("2fa", Err(C::MustStartWithLetter)),
        ("-x", Err(C::MustStartWithLetter)),
        ("Github", Err(C::MustStartWithLetter)),
        ("git_hub", Err(C::InvalidChar('_'))),
        ("gitHub", Err(C::InvalidChar('H'))),
        ("git hub", Err(C::InvalidChar(' '))),
    ];
    for (name, expected) in cases {
        let got = EgressRule::parse("https://api.example.com", &strings(&["GET"]), Some(name));
        match expected {
            Ok(name) => assert_eq!(got.expect("valid").credential(), Some(*name)),
            Err(e) => assert_eq!(got, Err(EgressRuleError::Credential(e.clone())), "{name:?}"),
        }
    }
    assert_eq!(
        rule("https://api.example.com", &["GET"], None).credential(),
        None
    );
}

#[test]
fn host_patterns_match_exactly_or_strictly_below_the_apex() {
    let exact = rule("https://api.example.com", &["GET"], None);
    let wild = rule("https://*.svc.example.com", &["GET"], None);
    let cases = [
        ("api.example.com", true, false),
        ("x.api.example.com", false, false),
        ("svc.example.com", false, false),
        ("a.svc.example.com", false, true),
        ("a.b.c.svc.example.com", false, true),
        ("asvc.example.com", false, false),
        ("svc.example.com.evil.test", false, false),
    ];
    for (host, in_exact, in_wild) in cases {
        assert_eq!(
            exact.origin().host().matches(host),
            in_exact,
            "exact {host}"
        );
        assert_eq!(
            wild.origin().host().matches(host),
            in_wild,
            "wildcard {host}"
        );
    }
    assert!(wild.origin().host().is_wildcard());
    assert_eq!(wild.origin().host().name(), "svc.example.com");
}

#[test]
fn origins_identify_scheme_host_pattern_and_port() {
    let a = rule("https://api.example.com/v1", &["GET"], Some("token"));
    let b = rule("https://API.example.com:443/v2", &["POST"], None);
    let c = rule("https://api.example.com:8443", &["GET"], None);
    assert_eq!(
        a.origin(),
        b.origin(),
        "path and methods are not part of the origin"
    );
    assert_ne!(a.origin(), c.origin(), "the port is");
    assert_eq!(a.origin().to_string(), "https://api.example.com");
    assert_eq!(c.origin().to_string(), "https://api.example.com:8443");
}

#[test]
fn rules_serialize_as_url_methods_and_credential() {
    let policy = fixture();
    let json = serde_json::to_value(&policy).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!([
            {"url": "https://api.allowed.test", "methods": ["GET", "POST"], "credential": "api-token"},
            {"url": "https://*.svc.allowed.test", "methods": ["GET"], "credential": null},
            {"url": "https://hooks.allowed.test:8443/services", "methods": ["POST"], "credential": "hooks"},
        ])
    );
}
