//! Request canonicalisation, idempotence and denial hygiene.

use super::*;

#[test]
fn hosts_that_are_not_public_dns_names_are_denied() {
    let long_label = format!("https://{}.allowed.test/", "a".repeat(64));
    let long_host = format!("https://{}allowed.test/", "a.".repeat(122));
    let too_long_url = format!("https://api.allowed.test/{}", "a".repeat(MAX_URL_LEN));
    assert_table(&[
        ("GET", "https://intranet/", Err(SingleLabelHost)),
        ("GET", "https://intranet./", Err(SingleLabelHost)),
        ("GET", "https://localhost/", Err(ReservedHost)),
        ("GET", "https://api.localhost/", Err(ReservedHost)),
        ("GET", "https://a!b.svc.allowed.test/", Err(InvalidHost)),
        ("GET", &long_label, Err(InvalidHost)),
        ("GET", &long_host, Err(InvalidHost)),
        ("GET", &too_long_url, Err(InvalidUrl)),
        ("GET", "https://api.allowed.test/\t", Err(InvalidUrl)),
        ("GET", " https://api.allowed.test/", Err(InvalidUrl)),
        ("GET", "https://api.allowed.test/ x", Err(InvalidUrl)),
        ("GET", "https://api.allowed\n.test/", Err(InvalidUrl)),
        ("GET", "", Err(InvalidUrl)),
        ("GET", "/relative", Err(InvalidUrl)),
        ("GET", "https://", Err(InvalidUrl)),
    ]);
}

#[test]
fn targets_are_canonical() {
    // (input, canonical URI sent, loggable display)
    let cases = [
        (
            "https://api.allowed.test",
            "https://api.allowed.test/",
            "https://api.allowed.test/",
        ),
        (
            "https://API.allowed.test.:0443/a/./b/../c?q=1#frag",
            "https://api.allowed.test/a/c?q=1",
            "https://api.allowed.test/a/c",
        ),
        (
            "https://h.allowed.test:8443/%7e%41/caf%c3%a9",
            "https://h.allowed.test:8443/~A/caf%C3%A9",
            "https://h.allowed.test:8443/~A/caf%C3%A9",
        ),
        (
            "https://h.allowed.test/caf\u{e9}?n=\u{e9}",
            "https://h.allowed.test/caf%C3%A9?n=%C3%A9",
            "https://h.allowed.test/caf%C3%A9",
        ),
        (
            "https://h.allowed.test/a|b",
            "https://h.allowed.test/a%7Cb",
            "https://h.allowed.test/a%7Cb",
        ),
        (
            "https://h.allowed.test/x?",
            "https://h.allowed.test/x?",
            "https://h.allowed.test/x",
        ),
        (
            "https://h.allowed.test/x?a=%2F&b=..",
            "https://h.allowed.test/x?a=%2F&b=..",
            "https://h.allowed.test/x",
        ),
    ];
    for (input, uri, display) in cases {
        let target = RequestTarget::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(target.to_uri_string(), uri, "{input}");
        assert_eq!(target.to_string(), display, "{input}");
        assert_eq!(target.scheme(), "https");
    }
}

#[test]
fn canonical_targets_reparse_to_themselves() {
    let inputs = [
        "https://api.allowed.test",
        "https://API.allowed.test.:0443/a/./b/../c?q=1#frag",
        "https://h.allowed.test:8443/%7e%41/caf%c3%a9?x=%zz&y=\u{e9}",
        "https://h.allowed.test/a|b^c[d]/x;p=1/@:!$&'()*+,=",
        "https://h.allowed.test/x?",
        "https://xn--80ak6aa92e.allowed.test/",
        "https://a_b.allowed.test/100%25",
    ];
    for input in inputs {
        let target = RequestTarget::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_idempotent(&target);
        let shown = RequestTarget::parse(&target.to_string()).expect("display re-parses");
        assert_eq!(
            (shown.host(), shown.port(), shown.path()),
            (target.host(), target.port(), target.path())
        );
        assert_eq!(shown.query(), None, "display drops the query");
    }
}

#[test]
fn denials_never_contain_the_query_userinfo_or_path() {
    let urls = [
        "https://evil.test/CANARY?api_key=CANARY",
        "https://evil.test?@CANARY",
        "https://u:CANARY@api.allowed.test/",
        "https://CANARY@evil.test/",
        "https://api.allowed.test:8443/CANARY?k=CANARY",
        "https://hooks.allowed.test:8443/CANARY?k=CANARY",
        "https://hooks.allowed.test:8443/services/%2F/CANARY?k=CANARY",
        "http://api.allowed.test/?k=CANARY",
        "https://127.0.0.1/?k=CANARY",
        "https://api.allowed.test\\CANARY?k=CANARY",
        "https://api.allowed.test:99999/CANARY?k=CANARY",
        "https://api.allowed.test/\tCANARY",
    ];
    let policy = fixture();
    for url in urls {
        for method in ["DELETE", "GET", "POST"] {
            let Err(denial) = policy.check(method, url) else {
                panic!("{method} {url} should be denied");
            };
            let shown = format!("{denial} {denial:?}");
            assert!(!shown.contains("CANARY"), "{method} {url}: {shown}");
        }
    }
    let target = RequestTarget::parse("https://api.allowed.test/p?api_key=CANARY").expect("valid");
    assert!(!target.to_string().contains("CANARY"));
    assert_eq!(target.query(), Some("api_key=CANARY"));
}

#[test]
fn denials_carry_stable_codes_and_useful_detail() {
    let policy = fixture();
    let cases = [
        (
            "GET",
            "https://evil.test/",
            "no-matching-rule",
            Some("evil.test"),
        ),
        (
            "GET",
            "https://api.allowed.test:8443/",
            "port-not-allowed",
            Some("api.allowed.test:8443"),
        ),
        (
            "POST",
            "https://hooks.allowed.test:8443/admin",
            "path-not-allowed",
            Some("hooks.allowed.test:8443"),
        ),
        (
            "DELETE",
            "https://api.allowed.test/",
            "method-not-allowed",
            Some("DELETE api.allowed.test:443"),
        ),
        ("GET", "https://u@api.allowed.test/", "userinfo", None),
        ("GET", "https://0x7f.1/", "ip-literal", Some("127.0.0.1")),
        (
            "GET",
            "https://metadata.goog/",
            "metadata-host",
            Some("metadata.goog is a cloud metadata service name"),
        ),
        (
            "GET",
            "gopher://api.allowed.test/",
            "scheme-not-allowed",
            Some("scheme gopher"),
        ),
    ];
    for (method, url, code, detail) in cases {
        let denial = policy.check(method, url).expect_err(url);
        assert_eq!((denial.code(), denial.detail()), (code, detail), "{url}");
    }
}

/// Every combination of awkward hosts, ports, paths and queries either is denied or
/// canonicalises to a fixed point whose host, port and path obey the invariants.
#[test]
fn canonicalisation_is_idempotent_over_a_grid() {
    let hosts = [
        "api.allowed.test",
        "API.Allowed.Test.",
        "a_b.x.test",
        "xn--80ak6aa92e.test",
        "h..test",
        "127.1",
        "a%2e.test",
    ];
    let ports = ["", ":", ":443", ":0443", ":8443", ":65535", ":0"];
    let paths = [
        "",
        "/",
        "/a/./b/../c",
        "/%7e%41/%c3%a9",
        "/a|b^[c]",
        "/x/%2e%2E/y",
        "/%2F",
        "/a;b=c/@:!",
        "/caf\u{e9}",
        "//x",
    ];
    let queries = ["", "?", "?a=1&b=%2F", "?q=\u{e9}", "?x=..%2F#f", "#frag"];
    let mut accepted = 0;
    for host in hosts {
        for port in ports {
            for path in paths {
                for query in queries {
                    let input = format!("https://{host}{port}{path}{query}");
                    let Ok(target) = RequestTarget::parse(&input) else {
                        continue;
                    };
                    accepted += 1;
                    assert_idempotent(&target);
                    assert_eq!(target.host(), target.host().to_ascii_lowercase(), "{input}");
                    assert!(!target.host().ends_with('.'), "{input}");
                    assert!(target.path().starts_with('/'), "{input}");
                    assert!(
                        !target.path().to_ascii_lowercase().contains("%2f"),
                        "{input}"
                    );
                    assert!(!target.to_string().contains('?'), "{input}");
                }
            }
        }
    }
    assert!(
        accepted > 500,
        "the grid exercises accepted targets too ({accepted})"
    );
}
