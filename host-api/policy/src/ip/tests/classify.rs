//! The classification tables: catalogue literals, reference tables, range edges.

#![allow(
    unused_imports,
    reason = "each file takes the shared test prelude whole"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use super::*;
use crate::ip::*;
use IpDenyReason::*;
use Ipv4Embedding::*;

#[test]
fn classify_denies_catalogue_eg01_literals_with_specific_reasons() {
    assert_classify(&[
        ("127.0.0.1", Err(Loopback)),
        ("10.0.0.1", Err(Private)),
        ("172.16.0.1", Err(Private)),
        ("192.168.1.1", Err(Private)),
        ("169.254.169.254", Err(Metadata)),
        ("100.100.100.200", Err(Metadata)),
        ("192.0.0.192", Err(Metadata)),
        ("0.0.0.0", Err(Unspecified)),
        ("::1", Err(Loopback)),
        ("::", Err(Unspecified)),
        ("fd00::1", Err(UniqueLocal)),
        ("fd00:ec2::254", Err(Metadata)),
        ("fe80::1", Err(LinkLocal)),
        ("224.0.0.1", Err(Multicast)),
        ("255.255.255.255", Err(Broadcast)),
        ("240.0.0.1", Err(Reserved)),
        ("198.18.0.1", Err(Benchmarking)),
    ]);
}

#[test]
fn classify_matches_smokescreen_and_spin_reference_tables() {
    assert_classify(&[
        // smokescreen TestClassifyAddr (no allow or deny ranges configured).
        ("8.8.8.8", Ok(())),
        ("10.0.0.1", Err(Private)),
        ("172.16.0.1", Err(Private)),
        ("192.168.0.1", Err(Private)),
        ("127.0.0.1", Err(Loopback)),
        ("127.255.255.255", Err(Loopback)),
        ("::1", Err(Loopback)),
        ("169.254.169.254", Err(Metadata)),
        ("255.255.255.255", Err(Broadcast)),
        ("ff02::2", Err(Multicast)),
        ("64:ff9b::1", Err(embedded(Nat64, "0.0.0.1"))),
        // Spin blocked_networks test_is_blocked_private.
        ("0.0.0.0", Err(Unspecified)),
        ("10.10.10.10", Err(Private)),
        ("100.64.1.1", Err(SharedCgnat)),
        ("169.254.0.1", Err(LinkLocal)),
        ("192.0.0.1", Err(ProtocolAssignment)),
        ("::ffff:10.10.10.10", Err(Private)),
        ("fc00::f00d", Err(UniqueLocal)),
        ("123.123.123.123", Ok(())),
        ("2600::beef", Ok(())),
    ]);
}

#[test]
fn classify_covers_every_special_purpose_range_at_its_edges() {
    assert_classify(&[
        ("0.1.2.3", Err(ThisNetwork)),
        ("0.255.255.255", Err(ThisNetwork)),
        ("10.255.255.255", Err(Private)),
        ("172.31.255.255", Err(Private)),
        ("192.168.255.255", Err(Private)),
        ("169.254.255.255", Err(LinkLocal)),
        ("169.254.170.2", Err(Metadata)),
        ("169.254.170.23", Err(Metadata)),
        ("168.63.129.16", Err(Metadata)),
        ("192.0.0.255", Err(ProtocolAssignment)),
        ("192.0.2.1", Err(Documentation)),
        ("198.51.100.7", Err(Documentation)),
        ("203.0.113.10", Err(Documentation)),
        ("198.19.255.255", Err(Benchmarking)),
        ("192.88.99.1", Err(Reserved)),
        ("239.255.255.255", Err(Multicast)),
        ("255.255.255.254", Err(Reserved)),
        ("febf:ffff::1", Err(LinkLocal)),
        ("fec0::1", Err(Reserved)), // deprecated site-local, outside 2000::/3
        ("ff05::1:3", Err(Multicast)),
        ("100::1", Err(Discard)),
        ("100:0:0:1::1", Err(Reserved)), // past 100::/64, still outside 2000::/3
        ("2001:1::1", Err(ProtocolAssignment)),
        ("2001:10::1", Err(ProtocolAssignment)),
        ("2001:1ff:ffff::1", Err(ProtocolAssignment)),
        ("2001:2::1", Err(Benchmarking)),
        ("2001:db8::1", Err(Documentation)),
        ("3fff::1", Err(Documentation)),
        ("3fff:fff:ffff::1", Err(Documentation)),
        ("5f00::1", Err(Reserved)),
        ("fd00:ec2::23", Err(Metadata)),
        ("fd20:ce::254", Err(Metadata)),
        ("4000::1", Err(Reserved)),
        ("1::1", Err(Reserved)),
        ("::ffff:0:1.2.3.4", Err(Reserved)), // SIIT IPv4-translated: not mapped
    ]);
}

#[test]
fn classify_allows_public_unicast_including_range_neighbours() {
    assert_classify(&[
        ("8.8.8.8", Ok(())),
        ("1.1.1.1", Ok(())),
        ("2001:4860:4860::8888", Ok(())),
        ("2606:4700:4700::1111", Ok(())),
        ("::ffff:8.8.8.8", Ok(())),
        ("9.255.255.255", Ok(())),
        ("11.0.0.1", Ok(())),
        ("169.253.255.255", Ok(())),
        ("169.255.0.1", Ok(())),
        ("172.15.255.255", Ok(())),
        ("172.32.0.1", Ok(())),
        ("192.0.1.1", Ok(())),
        ("192.31.196.1", Ok(())), // AS112: globally reachable per IANA
        ("192.167.255.255", Ok(())),
        ("192.169.0.1", Ok(())),
        ("198.17.255.255", Ok(())),
        ("198.20.0.1", Ok(())),
        ("223.255.255.255", Ok(())),
        ("2001:200::1", Ok(())), // first address past 2001::/23
        ("2001:db9::1", Ok(())),
        ("2003::1", Ok(())),
        ("3fff:1000::1", Ok(())), // past 3fff::/20
        ("2a00:1450:4001::1", Ok(())),
    ]);
}

#[test]
fn cgnat_boundaries_match_smokescreen() {
    assert_classify(&[
        ("100.63.255.254", Ok(())),
        ("100.64.0.1", Err(SharedCgnat)),
        ("100.127.255.254", Err(SharedCgnat)),
        ("100.128.0.1", Ok(())),
    ]);
}

#[test]
fn ipv4_mapped_addresses_classify_exactly_like_their_ipv4() {
    for text in [
        "127.0.0.1",
        "10.0.0.5",
        "169.254.169.254",
        "0.0.0.0",
        "8.8.8.8",
        "224.0.0.1",
    ] {
        let plain = v4(text);
        let mapped = IpAddr::V6(plain.to_ipv6_mapped());
        assert_eq!(classify(mapped), classify(IpAddr::V4(plain)), "{mapped}");
    }
}

#[test]
fn classify_denies_catalogue_eg03_embeddings_and_names_the_inner_ipv4() {
    assert_classify(&[
        ("::ffff:127.0.0.1", Err(Loopback)),
        ("::ffff:7f00:1", Err(Loopback)),
        ("::ffff:a9fe:a9fe", Err(Metadata)),
        ("::127.0.0.1", Err(embedded(Ipv4Compatible, "127.0.0.1"))),
        (
            "64:ff9b::a9fe:a9fe",
            Err(embedded(Nat64, "169.254.169.254")),
        ),
        (
            "64:ff9b:1::a9fe:a9fe",
            Err(embedded(Nat64LocalUse, "169.254.169.254")),
        ),
        (
            "2002:a9fe:a9fe::",
            Err(embedded(SixToFour, "169.254.169.254")),
        ),
        (
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            Err(embedded(Teredo, "192.0.2.45")),
        ),
        ("64:ff9b::808:808", Err(embedded(Nat64, "8.8.8.8"))),
    ]);
    let nat64_metadata = embedded(Nat64, "169.254.169.254");
    assert_eq!(nat64_metadata.inner_reason(), Some(Metadata));
    assert_eq!(embedded(Nat64, "8.8.8.8").inner_reason(), None);
    assert_eq!(Loopback.inner_reason(), None);
}

#[test]
fn transition_prefixes_are_recognised_across_their_whole_range() {
    // Most transition prefixes lie outside 2000::/3, where a wrong prefix length would still
    // deny (as reserved). These rows pin down the reason at each prefix's far edge.
    assert_classify(&[
        (
            "::ffff:ffff",
            Err(embedded(Ipv4Compatible, "255.255.255.255")),
        ),
        (
            "64:ff9b::ffff:ffff",
            Err(embedded(Nat64, "255.255.255.255")),
        ),
        ("64:ff9b::1:0:0", Err(Reserved)),
        ("64:ff9b:1::", Err(embedded(Nat64LocalUse, "0.0.0.0"))),
        (
            "64:ff9b:1:ffff:ffff:ffff:a00:1",
            Err(embedded(Nat64LocalUse, "10.0.0.1")),
        ),
        ("64:ff9b:2::", Err(Reserved)),
        (
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            Err(embedded(SixToFour, "255.255.255.255")),
        ),
        (
            "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
            Err(embedded(Teredo, "0.0.0.0")),
        ),
        ("2001:1::", Err(ProtocolAssignment)),
        ("2003::", Ok(())),
    ]);
}

#[test]
fn ipv4_compatible_space_leaves_unspecified_and_loopback_alone() {
    // Catalogue §3.1: `::1`.to_ipv4() is 0.0.0.1, so the compatible rule must come second.
    assert_classify(&[
        ("::", Err(Unspecified)),
        ("::1", Err(Loopback)),
        ("::2", Err(embedded(Ipv4Compatible, "0.0.0.2"))),
    ]);
}

#[test]
fn teredo_reports_the_client_unless_only_the_server_is_special_purpose() {
    // 2001:0:SERVER:SERVER:flags:port:!CLIENT:!CLIENT
    fn teredo(server: &str, client: &str) -> IpAddr {
        let bits = (0x2001_0000_u128 << 96)
            | (u128::from(u32::from(v4(server))) << 64)
            | (0x8000_1234_u128 << 32)
            | u128::from(!u32::from(v4(client)));
        IpAddr::V6(Ipv6Addr::from(bits))
    }
    for (server, client, inner) in [
        ("65.54.227.120", "192.0.2.45", "192.0.2.45"),
        ("10.0.0.1", "8.8.8.8", "10.0.0.1"),
        ("65.54.227.120", "8.8.8.8", "8.8.8.8"),
        ("10.0.0.1", "127.0.0.1", "127.0.0.1"),
    ] {
        let addr = teredo(server, client);
        assert_eq!(classify(addr), Err(embedded(Teredo, inner)), "{addr}");
    }
}
