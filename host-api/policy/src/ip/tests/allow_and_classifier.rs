//! Allow ranges, self addresses and answer-set filtering.

#![allow(
    unused_imports,
    reason = "each file takes the shared test prelude whole"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use super::embeddings::{DENIED_V4, PUBLIC_V4};
use super::*;
use crate::ip::*;
use IpDenyReason::*;
use Ipv4Embedding::*;

#[test]
fn allow_ranges_parse_cidrs_bare_addresses_lists_and_mapped_forms() {
    for (input, want) in [
        ("127.0.0.0/8", vec!["127.0.0.0/8"]),
        ("127.0.0.1", vec!["127.0.0.1/32"]),
        ("::1", vec!["::1/128"]),
        (" 10.0.0.0/8 , fd00::/8 ", vec!["10.0.0.0/8", "fd00::/8"]),
        ("::ffff:127.0.0.0/104", vec!["127.0.0.0/8"]),
        ("::ffff:10.0.0.5", vec!["10.0.0.5/32"]),
        ("0.0.0.0/0,::/0", vec!["0.0.0.0/0", "::/0"]),
    ] {
        let got: Vec<String> = allow(input)
            .ranges()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want, "{input:?}");
    }
    assert!(AllowRanges::none().is_empty());
    assert!(!allow("::1").is_empty());
}

#[test]
fn allow_ranges_reject_malformed_entries_with_typed_errors() {
    let invalid = |input: &str| AllowRangeError::Invalid {
        input: input.to_owned(),
    };
    for (input, want) in [
        ("", AllowRangeError::Empty),
        ("10.0.0.0/8,", AllowRangeError::Empty),
        ("localhost", invalid("localhost")),
        ("10.0.0.0/33", invalid("10.0.0.0/33")),
        ("fe80::1%eth0", invalid("fe80::1%eth0")),
        ("127.1", invalid("127.1")),
        ("0x7f000001", invalid("0x7f000001")),
        (
            "10.0.0.1/8",
            AllowRangeError::HostBitsSet {
                input: "10.0.0.1/8".to_owned(),
                network: "10.0.0.0/8".parse().expect("net"),
            },
        ),
    ] {
        assert_eq!(input.parse::<AllowRanges>(), Err(want), "{input:?}");
    }
    let message = "bad\u{1b}[2J"
        .parse::<AllowRanges>()
        .expect_err("escape")
        .to_string();
    assert!(message.contains(r"\u{1b}"), "{message}");
}

#[test]
fn allow_ranges_display_round_trips_and_serializes_as_a_string_list() {
    let ranges = allow("127.0.0.0/8,::1,10.0.0.0/8");
    assert_eq!(ranges.to_string(), "127.0.0.0/8,::1/128,10.0.0.0/8");
    assert_eq!(allow(&ranges.to_string()), ranges);

    let json = serde_json::to_string(&ranges).expect("serialize");
    assert_eq!(json, r#"["127.0.0.0/8","::1/128","10.0.0.0/8"]"#);
    let back: AllowRanges = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, ranges);
    assert!(serde_json::from_str::<AllowRanges>(r#"["10.0.0.1/8"]"#).is_err());
}

#[test]
fn allow_ranges_collect_merges_repeated_flags() {
    let merged: AllowRanges = [allow("127.0.0.0/8"), allow("::1"), AllowRanges::none()]
        .into_iter()
        .collect();
    assert_eq!(merged, allow("127.0.0.0/8,::1"));
}

#[test]
fn allow_ranges_exempt_only_private_network_denials_inside_the_range() {
    let cases: [(&str, &[Row<'_>]); 7] = [
        (
            "127.0.0.0/8",
            &[
                ("127.0.0.1:8080", Ok(())),
                ("127.255.255.254:1", Ok(())),
                ("[::ffff:127.0.0.1]:8080", Ok(())), // mapped is exempted like its IPv4
                ("[::1]:8080", Err(Loopback)),       // a different family, not covered
                ("10.0.0.1:443", Err(Private)),
                ("[64:ff9b::7f00:1]:443", Err(embedded(Nat64, "127.0.0.1"))),
            ],
        ),
        (
            "169.254.0.0/16",
            &[
                ("169.254.0.1:80", Ok(())),
                ("169.254.169.254:80", Err(Metadata)),
                ("169.254.170.2:80", Err(Metadata)),
                ("[::ffff:169.254.169.254]:80", Err(Metadata)),
            ],
        ),
        (
            "169.254.169.254/32",
            &[("169.254.169.254:80", Err(Metadata))],
        ),
        (
            "100.64.0.0/10",
            &[
                ("100.64.0.1:443", Ok(())),
                ("100.100.100.200:80", Err(Metadata)),
            ],
        ),
        (
            "fd00::/8",
            &[
                ("[fd00::1]:443", Ok(())),
                ("[fd00:ec2::254]:80", Err(Metadata)),
                ("[fd00:ec2::23]:80", Err(Metadata)),
            ],
        ),
        (
            "192.0.0.0/24",
            &[
                ("192.0.0.1:443", Err(ProtocolAssignment)),
                ("192.0.0.192:80", Err(Metadata)),
            ],
        ),
        (
            "::ffff:10.0.0.0/104",
            &[("10.1.2.3:443", Ok(())), ("[::ffff:10.1.2.3]:443", Ok(()))],
        ),
    ];
    for (ranges, rows) in cases {
        assert_check(&IpClassifier::new(allow(ranges)), rows);
    }
}

#[test]
fn allowing_everything_still_denies_unexemptible_reasons() {
    assert_check(
        &IpClassifier::new(allow("0.0.0.0/0,::/0")),
        &[
            ("0.0.0.0:443", Err(Unspecified)),
            ("0.1.2.3:443", Err(ThisNetwork)),
            ("[::]:443", Err(Unspecified)),
            ("224.0.0.1:443", Err(Multicast)),
            ("[ff02::1]:443", Err(Multicast)),
            ("255.255.255.255:443", Err(Broadcast)),
            ("240.0.0.1:443", Err(Reserved)),
            ("[5f00::1]:443", Err(Reserved)),
            ("[100::1]:443", Err(Discard)),
            ("192.0.0.1:443", Err(ProtocolAssignment)),
            ("169.254.169.254:80", Err(Metadata)),
            (
                "[::127.0.0.1]:443",
                Err(embedded(Ipv4Compatible, "127.0.0.1")),
            ),
            ("[2002:7f00:1::]:443", Err(embedded(SixToFour, "127.0.0.1"))),
            ("10.0.0.1:443", Ok(())),
            ("172.16.0.1:443", Ok(())),
            ("100.64.0.1:443", Ok(())),
            ("127.0.0.1:443", Ok(())),
            ("[fe80::1]:443", Ok(())),
            ("[fc00::1]:443", Ok(())),
            ("192.0.2.1:443", Ok(())),
            ("198.18.0.1:443", Ok(())),
            ("[2001:db8::1]:443", Ok(())),
            ("[2001:2::1]:443", Ok(())),
            ("8.8.8.8:443", Ok(())),
        ],
    );
}

#[test]
fn default_classifier_checks_like_classify_whatever_the_port() {
    let classifier = IpClassifier::default();
    assert!(classifier.allow_ranges().is_empty());
    assert!(classifier.self_addresses().is_empty());
    for text in DENIED_V4
        .iter()
        .chain(&PUBLIC_V4)
        .chain(&["::1", "2001:4860:4860::8888"])
    {
        for port in [0, 80, 443, 65535] {
            let addr = SocketAddr::new(ip(text), port);
            assert_eq!(classifier.check(addr), classify(ip(text)), "{addr}");
        }
    }
}

#[test]
fn self_addresses_are_denied_even_inside_allowed_ranges() {
    let classifier =
        IpClassifier::new(allow("127.0.0.0/8,::1,10.0.0.0/8")).with_self_addresses(vec![
            sock("127.0.0.1:8080"),
            sock("[::]:9090"),
            sock("10.0.0.5:7000"),
            sock("0.0.0.0:9100"),
        ]);
    assert_check(
        &classifier,
        &[
            ("127.0.0.1:8080", Err(SelfAddress)),
            ("[::ffff:127.0.0.1]:8080", Err(SelfAddress)),
            ("127.0.0.2:8080", Err(SelfAddress)), // host-local on a self port: conservative
            ("[::1]:8080", Err(SelfAddress)),
            ("0.0.0.0:8080", Err(SelfAddress)),
            ("127.0.0.1:8081", Ok(())), // the loopback mock the allow range is for
            ("[::1]:9090", Err(SelfAddress)),
            ("127.0.0.9:9090", Err(SelfAddress)), // [::] is dual-stack
            ("[::ffff:127.0.0.1]:9090", Err(SelfAddress)),
            ("127.0.0.1:9100", Err(SelfAddress)),
            ("[::1]:9100", Err(SelfAddress)),
            ("10.0.0.5:7000", Err(SelfAddress)), // an interface address the caller listed
            ("[::ffff:10.0.0.5]:7000", Err(SelfAddress)),
            ("10.0.0.6:7000", Ok(())),
            ("10.0.0.5:7001", Ok(())),
            ("8.8.8.8:8080", Ok(())), // a public host on the same port is not us
            ("[fe80::1]:8080", Err(LinkLocal)),
        ],
    );
    assert_eq!(classifier.self_addresses().len(), 4);
}

#[test]
fn self_check_needs_no_allow_range_and_precedes_other_reasons() {
    let classifier =
        IpClassifier::new(AllowRanges::none()).with_self_addresses(vec![sock("[::]:8443")]);
    assert_check(
        &classifier,
        &[
            ("127.0.0.1:8443", Err(SelfAddress)),
            ("[::]:8443", Err(SelfAddress)),
            ("127.0.0.1:8444", Err(Loopback)),
            ("[::]:8444", Err(Unspecified)),
        ],
    );
}

#[test]
fn filter_keeps_only_the_dialable_addresses_of_a_mixed_answer_in_either_order() {
    // EG-06 uses 203.0.113.10 as the upstream, so its harness exempts that documentation range.
    let harness = IpClassifier::new(allow("203.0.113.0/24"));
    let up = sock("203.0.113.10:443");
    let local = sock("127.0.0.1:443");
    assert_eq!(harness.filter(&[up, local]), Ok(vec![up]));
    assert_eq!(harness.filter(&[local, up]), Ok(vec![up]));

    let public = sock("8.8.8.8:443");
    assert_eq!(
        IpClassifier::default().filter(&[local, public]),
        Ok(vec![public])
    );
    assert_eq!(
        IpClassifier::default().filter(&[public, local]),
        Ok(vec![public])
    );

    let answer = [
        sock("[::1]:443"),
        sock("[2606:4700:4700::1111]:443"),
        sock("10.0.0.1:443"),
        sock("1.1.1.1:443"),
        sock("[64:ff9b::101:101]:443"),
    ];
    assert_eq!(
        IpClassifier::default().filter(&answer),
        Ok(vec![answer[1], answer[3]])
    );
}

#[test]
fn filter_of_an_all_denied_answer_reports_the_first_denial() {
    let classifier = IpClassifier::default();
    let (local, private) = (sock("127.0.0.1:443"), sock("10.0.0.1:443"));
    assert_eq!(classifier.filter(&[local, private]), Err(Loopback));
    assert_eq!(classifier.filter(&[private, local]), Err(Private));
    assert_eq!(classifier.filter(&[]), Err(NoAddresses));
}

#[test]
fn filter_denies_an_allowed_name_resolving_to_internal_addresses_eg04() {
    let classifier = IpClassifier::default();
    for (answer, want) in [
        ("10.0.0.5:443", "private"),
        ("127.0.0.1:443", "loopback"),
        ("169.254.169.254:443", "metadata"),
        ("[::1]:443", "loopback"),
        ("[::ffff:10.0.0.5]:443", "private"),
        ("[64:ff9b::a00:5]:443", "ipv4-embedded"),
    ] {
        let got = classifier
            .filter(&[sock(answer)])
            .map_err(|reason| reason.code());
        assert_eq!(got, Err(want), "{answer}");
    }
}
