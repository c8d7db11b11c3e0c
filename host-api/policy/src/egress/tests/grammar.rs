//! The `[[egress]]` rule URL grammar: what is accepted, its canonical form, and what is refused.

use super::*;

#[test]
fn valid_rules_parse_to_their_canonical_form() {
    // (as written, canonical)
    let cases = [
        ("https://api.example.com", "https://api.example.com"),
        ("https://api.example.com/", "https://api.example.com"),
        ("https://API.Example.COM", "https://api.example.com"),
        ("HTTPS://api.example.com", "https://api.example.com"),
        ("https://api.example.com.", "https://api.example.com"),
        ("https://api.example.com:443", "https://api.example.com"),
        ("https://api.example.com:0443", "https://api.example.com"),
        (
            "https://api.example.com:8443",
            "https://api.example.com:8443",
        ),
        ("https://api.example.com:1", "https://api.example.com:1"),
        (
            "https://api.example.com:65535",
            "https://api.example.com:65535",
        ),
        ("https://*.svc.example.com", "https://*.svc.example.com"),
        ("https://*.Example.com.", "https://*.example.com"),
        ("https://_dmarc.example.com", "https://_dmarc.example.com"),
        ("https://xn--80ak6aa92e.com", "https://xn--80ak6aa92e.com"),
        ("https://1.example.com", "https://1.example.com"),
        ("https://example.1e", "https://example.1e"),
        (
            "https://h.example.com:8443/services",
            "https://h.example.com:8443/services",
        ),
        (
            "https://h.example.com/api/v1/",
            "https://h.example.com/api/v1",
        ),
        (
            "https://h.example.com/%61pi/caf%c3%a9",
            "https://h.example.com/api/caf%C3%A9",
        ),
        (
            "https://h.example.com/a;v=1/@me:x",
            "https://h.example.com/a;v=1/@me:x",
        ),
    ];
    for (input, canonical) in cases {
        let rule = EgressRule::parse(input, &strings(&["GET"]), None)
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(rule.url(), canonical, "{input}");
        let reparsed = EgressRule::parse(rule.url(), &strings(&["GET"]), None).expect("canonical");
        assert_eq!(
            reparsed, rule,
            "canonical form of {input} re-parses to the same rule"
        );
    }
}

#[test]
fn rule_parts_are_exposed_canonically() {
    // (url, host pattern, port, path prefix)
    let cases = [
        (
            "https://API.example.com.:0443",
            "api.example.com",
            443,
            None,
        ),
        (
            "https://*.svc.example.com:8443",
            "*.svc.example.com",
            8443,
            None,
        ),
        (
            "https://h.example.com/api/",
            "h.example.com",
            443,
            Some("/api"),
        ),
        (
            "https://h.example.com:8443/a/b",
            "h.example.com",
            8443,
            Some("/a/b"),
        ),
    ];
    for (input, host, port, prefix) in cases {
        let rule = rule(input, &["GET"], None);
        assert_eq!(rule.origin().scheme(), "https", "{input}");
        assert_eq!(rule.origin().host().to_string(), host, "{input}");
        assert_eq!(rule.origin().port(), port, "{input}");
        assert_eq!(rule.path_prefix().as_deref(), prefix, "{input}");
    }
}

#[test]
fn a_rule_covers_the_rules_whose_requests_it_matches() {
    // (rule, recorded rule URL, covers)
    let cases = [
        ("https://api.example.com", "https://api.example.com", true),
        (
            "https://api.example.com",
            "https://api.example.com/repos",
            true,
        ),
        (
            "https://api.example.com/repos",
            "https://api.example.com/repos/a",
            true,
        ),
        (
            "https://api.example.com/repos",
            "https://api.example.com",
            false,
        ),
        (
            "https://api.example.com/repos",
            "https://api.example.com/repositories",
            false,
        ),
        (
            "https://api.example.com",
            "https://api.example.com:8443",
            false,
        ),
        (
            "https://api.example.com",
            "https://other.example.com",
            false,
        ),
        (
            "https://api.example.com",
            "https://*.api.example.com",
            false,
        ),
        ("https://*.example.com", "https://api.example.com/x", true),
        ("https://*.example.com", "https://*.svc.example.com", true),
        ("https://*.example.com", "https://*.example.com", true),
        ("https://*.example.com", "https://example.com", false),
        ("https://*.svc.example.com", "https://*.example.com", false),
        ("https://api.example.com", "not a rule", false),
    ];
    for (url, recorded, covers) in cases {
        assert_eq!(
            rule(url, &["GET"], None).covers(recorded),
            covers,
            "{url} covers {recorded}"
        );
    }
}

#[test]
fn invalid_rule_urls_are_refused_naming_the_problem() {
    use HostError as H;
    use RuleUrlError as U;
    const V4: RuleUrlError = U::IpLiteral("IPv4: a numeric last label is read as an address");
    let long_label = format!("https://{}.example.com", "a".repeat(64));
    let long_host = format!("https://{}example.com", "a.".repeat(124));
    let cases: &[(&str, RuleUrlError)] = &[
        ("", U::Empty),
        ("http://api.example.com", U::PlainHttp),
        ("HTTP://api.example.com", U::PlainHttp),
        ("ftp://api.example.com", U::SchemeNotAllowed("ftp".into())),
        ("api.example.com", U::MissingScheme),
        ("https:api.example.com", U::MissingScheme),
        ("https://user@api.example.com", U::Userinfo),
        ("https://user:token@api.example.com", U::Userinfo),
        ("https://@api.example.com", U::Userinfo),
        ("https://api.example.com/x?y=1", U::Query),
        ("https://api.example.com?", U::Query),
        ("https://api.example.com#frag", U::Fragment),
        ("https://api.example.com\\x", U::Backslash),
        (" https://api.example.com", U::ControlOrWhitespace),
        ("https://api.example.com/a b", U::ControlOrWhitespace),
        ("https://api.example.com\t", U::ControlOrWhitespace),
        ("https://\u{e9}x\u{e4}mple.com", U::NonAsciiHost),
        ("https://api.example\u{3002}com", U::NonAsciiHost),
        ("https://\u{ff11}\u{ff12}\u{ff17}.0.0.1", U::NonAsciiHost),
        ("https://127.0.0.1", V4),
        ("https://127.1", V4),
        ("https://0x7f000001", V4),
        ("https://2130706433", V4),
        ("https://2130706433.", V4),
        ("https://example.0x", V4),
        ("https://[::1]", U::IpLiteral("IPv6")),
        ("https://[fe80::1%25eth0]:443", U::IpLiteral("IPv6")),
        ("https://", U::Host(H::Empty)),
        ("https://:443", U::Host(H::Empty)),
        ("https://.example.com", U::Host(H::EmptyLabel)),
        ("https://api..example.com", U::Host(H::EmptyLabel)),
        ("https://api.example.com..", U::Host(H::EmptyLabel)),
        ("https://api%2eexample.com", U::Host(H::InvalidChar('%'))),
        ("https://a!b.example.com", U::Host(H::InvalidChar('!'))),
        (&long_label, U::Host(H::LabelTooLong)),
        (&long_host, U::Host(H::TooLong)),
        ("https://xn--api-.example.com", U::Host(H::InvalidPunycode)),
        ("https://xn--a.example.com", U::Host(H::InvalidPunycode)),
        ("https://localhost", U::Host(H::Localhost)),
        ("https://api.localhost", U::Host(H::Localhost)),
        ("https://intranet", U::Host(H::SingleLabel)),
        ("https://metadata.google.internal", U::Host(H::Metadata)),
        ("https://*.metadata.google.internal", U::Host(H::Metadata)),
        ("https://*", U::Wildcard(WildcardError::AllowAll)),
        ("https://*.", U::Wildcard(WildcardError::AllowAll)),
        ("https://*.com", U::Wildcard(WildcardError::TooBroad)),
        ("https://*.com.", U::Wildcard(WildcardError::TooBroad)),
        (
            "https://a.*.example.com",
            U::Wildcard(WildcardError::NotLeading),
        ),
        (
            "https://*example.com",
            U::Wildcard(WildcardError::NotLeading),
        ),
        ("https://example.*", U::Wildcard(WildcardError::NotLeading)),
        (
            "https://*.*.example.com",
            U::Wildcard(WildcardError::NotLeading),
        ),
        (
            "https://**.example.com",
            U::Wildcard(WildcardError::NotLeading),
        ),
        ("https://api.example.com:", U::Port(PortError::Empty)),
        (
            "https://api.example.com:+443",
            U::Port(PortError::NotDecimal),
        ),
        ("https://api.example.com:-1", U::Port(PortError::NotDecimal)),
        (
            "https://api.example.com:443:80",
            U::Port(PortError::NotDecimal),
        ),
        (
            "https://api.example.com:0x1bb",
            U::Port(PortError::NotDecimal),
        ),
        ("https://api.example.com:*", U::Port(PortError::NotDecimal)),
        ("https://api.example.com:0", U::Port(PortError::OutOfRange)),
        (
            "https://api.example.com:65536",
            U::Port(PortError::OutOfRange),
        ),
        (
            "https://api.example.com:99999999999",
            U::Port(PortError::OutOfRange),
        ),
        (
            "https://api.example.com/a/../b",
            U::Path(PathError::DotSegment),
        ),
        (
            "https://api.example.com/a/./b",
            U::Path(PathError::DotSegment),
        ),
        (
            "https://api.example.com/a/%2e%2E",
            U::Path(PathError::DotSegment),
        ),
        (
            "https://api.example.com/a/.%2e/b",
            U::Path(PathError::DotSegment),
        ),
        (
            "https://api.example.com/a/..;x",
            U::Path(PathError::DotSegment),
        ),
        (
            "https://api.example.com/a%2Fb",
            U::Path(PathError::EncodedSeparator),
        ),
        (
            "https://api.example.com/a%2fb",
            U::Path(PathError::EncodedSeparator),
        ),
        (
            "https://api.example.com/a%5Cb",
            U::Path(PathError::EncodedSeparator),
        ),
        (
            "https://api.example.com/a%252Fb",
            U::Path(PathError::EncodedSeparator),
        ),
        (
            "https://api.example.com/a%00",
            U::Path(PathError::EncodedControl),
        ),
        (
            "https://api.example.com/a%zz",
            U::Path(PathError::InvalidEscape),
        ),
        (
            "https://api.example.com/a//b",
            U::Path(PathError::EmptySegment),
        ),
        (
            "https://api.example.com//",
            U::Path(PathError::EmptySegment),
        ),
        (
            "https://api.example.com/a|b",
            U::Path(PathError::InvalidChar('|')),
        ),
        (
            "https://api.example.com/caf\u{e9}",
            U::Path(PathError::InvalidChar('\u{e9}')),
        ),
    ];
    for (input, expected) in cases {
        let got = EgressRule::parse(input, &strings(&["GET"]), None);
        assert_eq!(
            got,
            Err(EgressRuleError::Url(expected.clone())),
            "{input:?}"
        );
        let error = got.expect_err("refused");
        assert_eq!(error.part(), "url");
        assert!(error.to_string().starts_with("url: "), "{error}");
    }
}

#[test]
fn rule_errors_say_why_in_words() {
    let cases = [
        (
            "http://api.example.com",
            "url: plain http is never allowed; write https://",
        ),
        (
            "https://\u{e9}x\u{e4}mple.com",
            "url: host must be ASCII; write the Punycode (xn--) form",
        ),
        (
            "https://127.1",
            "url: host is an IP literal (IPv4: a numeric last label is read as an address); only DNS names are allowed",
        ),
        (
            "https://*.com",
            "url: `*.` must be followed by at least two labels (e.g. *.svc.example.com)",
        ),
        (
            "https://a.example.com:65536",
            "url: port must be in 1..=65535",
        ),
        (
            "https://a.example.com/x/%2F",
            "url: path prefix contains an encoded '/' or '\\' (%2F, %5C), which hides a segment boundary",
        ),
    ];
    for (input, message) in cases {
        let error = EgressRule::parse(input, &strings(&["GET"]), None).expect_err(input);
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn rule_errors_never_repeat_the_rule_url() {
    let inputs = [
        "https://user:SECRET@api.example.com",
        "http://api.example.com/SECRET",
        "https://SECRET",
        "https://api.example.com/SECRET?x",
    ];
    for input in inputs {
        let error = EgressRule::parse(input, &strings(&["GET"]), None).expect_err(input);
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }
}
