//! Security catalogue §5.2, the inputs a pure hostname layer can decide. EG-03..06, EG-16..19
//! and EG-21..26 need DNS, sockets or the HTTP client and are tested end to end.

use super::*;

#[test]
fn eg01_literal_internal_ips_are_denied_as_ip_literals() {
    assert_all_denied(
        DenyReason::IpLiteral,
        &[
            "https://127.0.0.1/",
            "https://10.0.0.1/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/",
            "https://100.100.100.200/",
            "https://192.0.0.192/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fd00::1]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://240.0.0.1/",
            "https://198.18.0.1/",
            "https://8.8.8.8/",
            "https://[2001:4860:4860::8888]/",
        ],
    );
}

#[test]
fn eg01_zone_ids_and_malformed_literals_are_denied_as_ip_literals() {
    assert_all_denied(
        DenyReason::IpLiteral,
        &[
            "https://[fe80::1%25eth0]/",
            "https://[::1/",
            "https://1.2.3.4.5/",
            "https://a.0x/",
        ],
    );
}

#[test]
fn eg02_numeric_host_encodings_are_denied_as_ip_literals() {
    assert_all_denied(
        DenyReason::IpLiteral,
        &[
            "https://2130706433/",
            "https://0x7f000001/",
            "https://0177.0.0.1/",
            "https://0x7f.1/",
            "https://127.1/",
            "https://017700000001/",
            "https://0/",
            "https://2130706433./",
            "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
            "https://0x7f.0x0.0x0.0x1/",
            "https://\u{2460}\u{2461}\u{2466}.0.0.1/",
        ],
    );
}

#[test]
fn eg03_ipv6_embedded_ipv4_is_denied_as_ip_literal() {
    assert_all_denied(
        DenyReason::IpLiteral,
        &[
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://[::127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[64:ff9b:1::a9fe:a9fe]/",
            "https://[2002:a9fe:a9fe::]/",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "https://[64:ff9b::808:808]/",
        ],
    );
}

#[test]
fn eg07_userinfo_is_denied_even_when_the_host_is_allowed() {
    assert_all_denied(
        DenyReason::Userinfo,
        &[
            "https://api.allowed.test@evil.test/",
            "https://api.allowed.test:443@127.0.0.1:8080/",
            "https://u:p@api.allowed.test/",
            "https://u@api.allowed.test/",
            "https://@api.allowed.test/",
            "https://:@api.allowed.test/",
            "https://:p@api.allowed.test/",
        ],
    );
}

#[test]
fn eg08_backslash_and_scheme_differentials_are_denied() {
    assert_all_denied(
        DenyReason::ParserDisagreement,
        &[
            "https://evil.test\\@api.allowed.test/",
            "https:/\\/api.allowed.test/",
            "https://api.allowed.test\\.evil.test/",
            "https:\\\\api.allowed.test\\",
            "https://api.allowed.test/a\\b",
            "https:api.allowed.test/",
            "https:/api.allowed.test/",
            "https:///api.allowed.test/",
        ],
    );
}

#[test]
fn eg09_fragment_and_query_at_signs_keep_the_real_host() {
    assert_table(&[
        (
            "GET",
            "https://evil.test#@api.allowed.test/",
            Err(NoMatchingRule),
        ),
        (
            "GET",
            "https://evil.test?@api.allowed.test/",
            Err(NoMatchingRule),
        ),
        (
            "GET",
            "https://evil.test/#@api.allowed.test/",
            Err(NoMatchingRule),
        ),
        ("GET", "https://api.allowed.test#@evil.test/", API),
        ("GET", "https://api.allowed.test?@evil.test/", API),
    ]);
}

/// Choice: hosts only WHATWG can read (U+3002, Unicode homographs, `%2e`) are refused as a
/// parser disagreement; wasi:http could not carry them anyway. ASCII Punycode is compared as is.
#[test]
fn eg10_idn_tricks_are_denied() {
    assert_table(&[
        (
            "GET",
            "https://api.allowed\u{3002}test/",
            Err(ParserDisagreement),
        ),
        (
            "GET",
            "https://api\u{ff0e}allowed.test/",
            Err(ParserDisagreement),
        ),
        (
            "GET",
            "https://\u{430}pi.allowed.test/",
            Err(ParserDisagreement),
        ),
        (
            "GET",
            "https://api.allowed.test%2e/",
            Err(ParserDisagreement),
        ),
        (
            "GET",
            "https://%61pi.allowed.test/",
            Err(ParserDisagreement),
        ),
        (
            "GET",
            "https://API.allowed.test%2F10.0.0.1/",
            Err(InvalidHost),
        ),
        (
            "GET",
            "https://api.allowed.test%00.evil.test/",
            Err(InvalidHost),
        ),
        (
            "GET",
            "https://xn--pi-6kc.allowed.test/",
            Err(NoMatchingRule),
        ),
        ("GET", "https://xn--api-.allowed.test/", Err(InvalidHost)),
        ("GET", "https://xn--.allowed.test/", Err(InvalidHost)),
        ("GET", "https://xn--a.allowed.test/", Err(InvalidHost)),
    ]);
}

#[test]
fn eg10_homograph_canonicalises_to_punycode_not_ascii() {
    let url = url::Url::parse("https://\u{430}pi.allowed.test/").expect("WHATWG parses it");
    assert_eq!(url.host_str(), Some("xn--pi-6kc.allowed.test"));
    assert_ne!(url.host_str(), Some("api.allowed.test"));
}

#[test]
fn eg11_one_trailing_dot_matches_and_is_stripped_others_are_invalid() {
    assert_table(&[
        ("GET", "https://api.allowed.test./", API),
        ("GET", "https://a.svc.allowed.test./", SVC),
        ("GET", "https://api.allowed.test../", Err(InvalidHost)),
        ("GET", "https://.api.allowed.test/", Err(InvalidHost)),
        ("GET", "https://api..allowed.test/", Err(InvalidHost)),
        ("GET", "https://..svc.allowed.test/", Err(InvalidHost)),
    ]);
    let policy = fixture();
    let allowed = policy
        .check("GET", "https://api.allowed.test./x")
        .expect("allowed");
    assert_eq!(allowed.target.host(), "api.allowed.test");
    assert_eq!(allowed.target.authority(), "api.allowed.test");
}

#[test]
fn eg12_uppercase_hosts_are_allowed_and_sent_lowercase() {
    assert_table(&[
        ("GET", "https://API.ALLOWED.TEST/", API),
        ("GET", "HTTPS://Api.Allowed.Test/", API),
        ("GET", "https://X.SVC.ALLOWED.TEST/", SVC),
    ]);
    let policy = fixture();
    let allowed = policy
        .check("GET", "https://API.ALLOWED.TEST/v1")
        .expect("allowed");
    assert_eq!(
        allowed.target.to_uri_string(),
        "https://api.allowed.test/v1"
    );
}

#[test]
fn eg13_suffix_and_wildcard_confusion_follows_glob_semantics() {
    assert_table(&[
        (
            "GET",
            "https://api.allowed.test.evil.test/",
            Err(NoMatchingRule),
        ),
        ("GET", "https://evilapi.allowed.test/", Err(NoMatchingRule)),
        (
            "GET",
            "https://api.allowed.test-evil.test/",
            Err(NoMatchingRule),
        ),
        ("GET", "https://svc.allowed.test/", Err(NoMatchingRule)),
        ("GET", "https://a.b.svc.allowed.test/", SVC),
        ("GET", "https://x.svc.allowed.test/", SVC),
        ("GET", "https://xsvc.allowed.test/", Err(NoMatchingRule)),
        (
            "GET",
            "https://x.svc.allowed.test.evil.test/",
            Err(NoMatchingRule),
        ),
        ("GET", "https://sub.api.allowed.test/", Err(NoMatchingRule)),
        ("GET", "https://allowed.test/", Err(NoMatchingRule)),
        ("GET", "https://*.svc.allowed.test/", Err(InvalidHost)),
    ]);
}

#[test]
fn eg14_port_confusion_is_parsed_once_and_compared_exactly() {
    assert_table(&[
        ("GET", "https://api.allowed.test:65536/", Err(InvalidUrl)),
        ("GET", "https://api.allowed.test:+443/", Err(InvalidUrl)),
        ("GET", "https://api.allowed.test:0443/", API),
        ("GET", "https://api.allowed.test:443:80/", Err(InvalidUrl)),
        ("GET", "https://api.allowed.test:8443/", Err(PortNotAllowed)),
        ("GET", "https://api.allowed.test:22/", Err(PortNotAllowed)),
        ("GET", "https://api.allowed.test:6379/", Err(PortNotAllowed)),
        ("GET", "https://api.allowed.test:/", API),
        ("GET", "https://api.allowed.test:443/", API),
        ("GET", "https://api.allowed.test:0/", Err(PortNotAllowed)),
        ("GET", "https://api.allowed.test:-1/", Err(InvalidUrl)),
        ("GET", "https://api.allowed.test:0x1bb/", Err(InvalidUrl)),
        ("POST", "https://hooks.allowed.test:8443/services", HOOKS),
        (
            "POST",
            "https://hooks.allowed.test/services",
            Err(PortNotAllowed),
        ),
        ("POST", "https://hooks.allowed.test:08443/services", HOOKS),
    ]);
    let policy = fixture();
    for (url, port) in [
        ("https://api.allowed.test:0443/", 443),
        ("https://api.allowed.test:/", 443),
        ("https://hooks.allowed.test:08443/services", 8443),
    ] {
        let allowed = policy.check(if port == 443 { "GET" } else { "POST" }, url);
        assert_eq!(allowed.map(|a| a.target.port()), Ok(port), "{url}");
    }
}

#[test]
fn eg15_only_https_is_allowed() {
    assert_all_denied(
        DenyReason::SchemeNotAllowed,
        &[
            "http://api.allowed.test/",
            "HTTP://api.allowed.test/",
            "gopher://api.allowed.test/",
            "file:///etc/passwd",
            "ftp://api.allowed.test/",
            "ws://api.allowed.test/",
            "wss://api.allowed.test/",
            "data:text/plain,hello",
            "javascript:alert(1)",
            "httpss://api.allowed.test/",
        ],
    );
    let denial = fixture()
        .check("GET", "http://api.allowed.test/")
        .expect_err("plain http");
    assert_eq!(denial.detail(), Some("plain http is never allowed"));
}

#[test]
fn eg20_metadata_hosts_are_denied_by_name() {
    assert_table(&[
        (
            "GET",
            "https://metadata.google.internal/",
            Err(MetadataHost),
        ),
        (
            "GET",
            "https://METADATA.GOOGLE.INTERNAL./",
            Err(MetadataHost),
        ),
        ("GET", "https://metadata.goog/", Err(MetadataHost)),
        ("GET", "https://metadata.amazonaws.com/", Err(MetadataHost)),
        ("GET", "https://metadata.azure.com/", Err(MetadataHost)),
        ("GET", "https://instance-data/", Err(MetadataHost)),
        (
            "GET",
            "https://instance-data.ec2.internal/",
            Err(MetadataHost),
        ),
        ("GET", "https://metadata/", Err(MetadataHost)),
        (
            "GET",
            "https://computeMetadata.metadata.google.internal/",
            Err(MetadataHost),
        ),
        // Needs the resolver layer: a name like any other here.
        (
            "GET",
            "https://169.254.169.254.nip.io/",
            Err(NoMatchingRule),
        ),
    ]);
}

#[test]
fn metadata_hosts_are_denied_even_under_an_allowing_wildcard() {
    let policy = EgressPolicy::new(vec![rule("https://*.amazonaws.com", &["GET"], None)]);
    let denial = policy
        .check("GET", "https://metadata.amazonaws.com/")
        .expect_err("metadata");
    assert_eq!(denial.reason, DenyReason::MetadataHost);
    assert!(policy.check("GET", "https://s3.amazonaws.com/").is_ok());
}
