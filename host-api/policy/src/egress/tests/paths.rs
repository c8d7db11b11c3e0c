//! Path-prefix matching, path attacks, rule order and the most specific denial.

use super::*;

#[test]
fn path_prefixes_match_whole_segments_only() {
    assert_table(&[
        ("POST", "https://hooks.allowed.test:8443/services", HOOKS),
        ("POST", "https://hooks.allowed.test:8443/services/", HOOKS),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/a/b?x=1",
            HOOKS,
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/./a",
            HOOKS,
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/%73ervices/a",
            HOOKS,
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/servicesx",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/Services",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443//services",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/admin/services",
            Err(PathNotAllowed),
        ),
    ]);
}

#[test]
fn dot_segment_and_encoded_separator_attacks_never_escape_the_prefix() {
    assert_table(&[
        // WHATWG removes these dot segments first; what is left is checked (and sent).
        (
            "POST",
            "https://hooks.allowed.test:8443/services/../admin",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%2e%2e/admin",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/.%2E/admin",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/x/../../admin",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/x/../y",
            HOOKS,
        ),
        // Anything a server might decode into a separator or a dot segment is refused.
        (
            "POST",
            "https://hooks.allowed.test:8443/services%2F..%2Fadmin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/..%2Fadmin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%2e%2e%2fadmin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%5c..%5cadmin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%252e%252e/admin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%252F/admin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/..;/admin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%00/admin",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services/%zz",
            Err(AmbiguousPath),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/services\\..\\admin",
            Err(ParserDisagreement),
        ),
    ]);
}

#[test]
fn the_most_specific_reason_is_reported() {
    assert_table(&[
        (
            "DELETE",
            "https://api.allowed.test/x",
            Err(MethodNotAllowed),
        ),
        ("get", "https://api.allowed.test/x", Err(MethodNotAllowed)),
        (
            "CONNECT",
            "https://api.allowed.test/x",
            Err(MethodNotAllowed),
        ),
        ("TRACE", "https://api.allowed.test/x", Err(MethodNotAllowed)),
        ("POST", "https://x.svc.allowed.test/", Err(MethodNotAllowed)),
        (
            "GET",
            "https://hooks.allowed.test:8443/services",
            Err(MethodNotAllowed),
        ),
        (
            "GET",
            "https://hooks.allowed.test:8443/admin",
            Err(PathNotAllowed),
        ),
        (
            "POST",
            "https://hooks.allowed.test:9443/services",
            Err(PortNotAllowed),
        ),
        ("GET", "https://other.allowed.test/", Err(NoMatchingRule)),
        ("G ET", "https://api.allowed.test/", Err(InvalidMethod)),
        ("", "https://api.allowed.test/", Err(InvalidMethod)),
        // The URL is judged before the method.
        ("G ET", "https://127.0.0.1/", Err(IpLiteral)),
    ]);
}

#[test]
fn specificity_takes_the_furthest_rule_not_the_first() {
    let policy = EgressPolicy::new(vec![
        rule("https://api.example.com:8443", &["GET"], None),
        rule("https://api.example.com/v1", &["GET"], None),
        rule("https://api.example.com/v2", &["POST"], None),
    ]);
    let reason = |method, url| {
        policy
            .check(method, url)
            .map(|a| a.rule_index)
            .map_err(|d| d.reason)
    };
    assert_eq!(
        reason("GET", "https://api.example.com/v3"),
        Err(PathNotAllowed)
    );
    assert_eq!(
        reason("GET", "https://api.example.com/v2"),
        Err(MethodNotAllowed)
    );
    assert_eq!(
        reason("GET", "https://api.example.com:9000/v1"),
        Err(PortNotAllowed)
    );
    assert_eq!(reason("POST", "https://api.example.com/v2/x"), Ok(2));
}

#[test]
fn the_first_matching_rule_wins_and_brings_its_credential() {
    let policy = EgressPolicy::new(vec![
        rule("https://api.example.com/admin", &["GET"], Some("admin")),
        rule("https://api.example.com", &["GET", "POST"], Some("user")),
        rule("https://*.example.com", &["GET"], Some("wild")),
    ]);
    let pick = |method, url| {
        policy
            .check(method, url)
            .map(|a| (a.rule_index, a.rule.credential()))
    };
    assert_eq!(
        pick("GET", "https://api.example.com/admin/x"),
        Ok((0, Some("admin")))
    );
    assert_eq!(
        pick("POST", "https://api.example.com/admin/x"),
        Ok((1, Some("user")))
    );
    assert_eq!(
        pick("GET", "https://api.example.com/other"),
        Ok((1, Some("user")))
    );
    assert_eq!(
        pick("GET", "https://www.example.com/"),
        Ok((2, Some("wild")))
    );
    let allowed = policy
        .check("POST", "https://api.example.com/x")
        .expect("allowed");
    assert_eq!(allowed.method, Method::Post);
}

#[test]
fn an_empty_policy_denies_everything() {
    let policy = EgressPolicy::new(Vec::new());
    assert!(policy.is_empty());
    for url in ["https://api.allowed.test/", "https://example.com/"] {
        assert_eq!(
            policy.check("GET", url).map_err(|d| d.reason),
            Err(NoMatchingRule)
        );
    }
}

#[test]
fn a_denial_is_explained_by_the_rules_on_its_host() {
    let policy = EgressPolicy::new(vec![
        rule(
            "https://api.hubapi.com/crm/v3/contacts",
            &["GET", "POST"],
            None,
        ),
        rule("https://slack.com/api", &["POST"], None),
    ]);
    let url = "https://api.hubapi.com/crm/v3/objects/contacts?limit=10";
    assert_eq!(
        policy.check("POST", url).err().map(|d| d.code()),
        Some("path-not-allowed")
    );
    assert_eq!(
        policy.explain_denial("POST", url).as_deref(),
        Some(
            "rules for api.hubapi.com allow GET,POST https://api.hubapi.com/crm/v3/contacts; \
             this request is POST api.hubapi.com:443/crm/v3/objects/contacts"
        )
    );
    assert_eq!(
        policy
            .explain_denial("GET", "https://evil.example/x")
            .as_deref(),
        Some("no rule names evil.example; the rules name api.hubapi.com, slack.com")
    );
    assert_eq!(policy.explain_denial("GET", "not a url"), None);
    assert_eq!(
        EgressPolicy::new(Vec::new())
            .explain_denial("GET", "https://a.example/")
            .as_deref(),
        Some("the manifest declares no egress")
    );
}
