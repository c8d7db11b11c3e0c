//! An independent spelling of the deny tables, compared across the address space; reason codes.

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

/// The deny set spelled independently of the tables, as in the brief, parsed by `ipnet`.
#[rustfmt::skip]
const SPEC_V4: [&str; 16] = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "168.63.129.16/32",
];
#[rustfmt::skip]
const SPEC_V6: [&str; 12] = [
    "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
];

fn spec(nets: &[&str]) -> Vec<IpNet> {
    let parse = |text: &&str| text.parse().unwrap_or_else(|err| panic!("{text}: {err}"));
    nets.iter().map(parse).collect()
}

fn spec_denies_v4(nets: &[IpNet], addr: Ipv4Addr) -> bool {
    nets.iter().any(|net| net.contains(&IpAddr::V4(addr)))
}

/// Mapped addresses follow the IPv4 spec; everything outside `2000::/3` is denied.
fn spec_denies_v6(v4_nets: &[IpNet], v6_nets: &[IpNet], addr: Ipv6Addr) -> bool {
    if let Some(inner) = addr.to_ipv4_mapped() {
        return spec_denies_v4(v4_nets, inner);
    }
    let global_unicast: IpNet = "2000::/3".parse().expect("2000::/3");
    let addr = IpAddr::V6(addr);
    v6_nets.iter().any(|net| net.contains(&addr)) || !global_unicast.contains(&addr)
}

/// Probe addresses at and just outside both ends of every range.
fn edges(nets: &[IpNet]) -> Vec<IpAddr> {
    let mut probes = Vec::new();
    for net in nets {
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                for p in [
                    lo.wrapping_sub(1),
                    lo,
                    lo.wrapping_add(1),
                    hi.wrapping_sub(1),
                    hi,
                    hi.wrapping_add(1),
                ] {
                    probes.push(IpAddr::V4(Ipv4Addr::from(p)));
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                for p in [
                    lo.wrapping_sub(1),
                    lo,
                    lo.wrapping_add(1),
                    hi.wrapping_sub(1),
                    hi,
                    hi.wrapping_add(1),
                ] {
                    probes.push(IpAddr::V6(Ipv6Addr::from(p)));
                }
            }
        }
    }
    probes
}

#[test]
fn ipv4_tables_agree_with_an_independent_spelling_and_std_across_the_address_space() {
    let nets = spec(&SPEC_V4);
    let sweep = (0..=u32::from(u16::MAX)).flat_map(|hi| {
        [0, 1, 0x7f07, 0xfffe, 0xffff].map(|lo| IpAddr::V4(Ipv4Addr::from(hi << 16 | lo)))
    });
    let mut checked = 0;
    for addr in sweep.chain(edges(&nets)) {
        let IpAddr::V4(a) = addr else {
            unreachable!("IPv4 sweep")
        };
        let got = classify(addr);
        assert_eq!(got.is_err(), spec_denies_v4(&nets, a), "{a}: {got:?}");
        // std's stable predicates and our reasons must agree in both directions.
        assert_eq!(a.is_unspecified(), got == Err(Unspecified), "{a}");
        assert_eq!(a.is_loopback(), got == Err(Loopback), "{a}");
        assert_eq!(a.is_private(), got == Err(Private), "{a}");
        assert_eq!(
            a.is_link_local(),
            got == Err(LinkLocal) || (got == Err(Metadata) && a.octets()[..2] == [169, 254]),
            "{a}"
        );
        assert_eq!(a.is_multicast(), got == Err(Multicast), "{a}");
        assert_eq!(a.is_broadcast(), got == Err(Broadcast), "{a}");
        assert_eq!(a.is_documentation(), got == Err(Documentation), "{a}");
        checked += 1;
    }
    assert!(checked > 300_000, "sweep too small: {checked}");
}

#[test]
fn ipv6_tables_agree_with_an_independent_spelling_and_std() {
    let (v4_nets, v6_nets) = (spec(&SPEC_V4), spec(&SPEC_V6));
    // Deterministic pseudo-random probes, half of them forced into global unicast 2000::/3.
    let mut state = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834_u128;
    let mut random = Vec::new();
    for i in 0..20_000 {
        state = state
            .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
            .wrapping_add(1);
        let bits = if i % 2 == 0 {
            state
        } else {
            (state >> 3) | 1 << 125
        };
        random.push(IpAddr::V6(Ipv6Addr::from(bits)));
    }
    let known = [
        "fd00:ec2::254",
        "fd00:ec2::23",
        "fd20:ce::254",
        "2606:4700:4700::1111",
    ]
    .map(ip);
    let edge_nets = spec(&[&SPEC_V6[..], &["2000::/3", "::ffff:0:0/96"]].concat());
    for addr in edges(&edge_nets).into_iter().chain(random).chain(known) {
        let IpAddr::V6(a) = addr else {
            unreachable!("IPv6 probes")
        };
        let got = classify(addr);
        assert_eq!(
            got.is_err(),
            spec_denies_v6(&v4_nets, &v6_nets, a),
            "{a}: {got:?}"
        );
        if a.to_ipv4_mapped().is_none() {
            assert_eq!(a.is_unspecified(), got == Err(Unspecified), "{a}");
            assert_eq!(a.is_loopback(), got == Err(Loopback), "{a}");
            assert_eq!(a.is_multicast(), got == Err(Multicast), "{a}");
            assert_eq!(a.is_unicast_link_local(), got == Err(LinkLocal), "{a}");
            assert_eq!(
                a.is_unique_local(),
                got == Err(UniqueLocal) || got == Err(Metadata),
                "{a}"
            );
        }
    }
}

#[test]
fn range_tables_have_no_host_bits_set() {
    for (net, len, reason) in V4_RANGES {
        let canonical = Ipv4Net::new(net, len).map(|n| n.trunc().addr());
        assert_eq!(canonical, Ok(net), "{net}/{len} ({reason:?})");
    }
    for (net, len, _) in V6_RANGES {
        let canonical = ipnet::Ipv6Net::new(net, len).map(|n| n.trunc().addr());
        assert_eq!(canonical, Ok(net), "{net}/{len}");
    }
}

#[test]
fn reason_codes_are_stable_kebab_case_and_match_serialization() {
    let all = [
        (Unspecified, "unspecified"),
        (ThisNetwork, "this-network"),
        (Loopback, "loopback"),
        (Private, "private"),
        (SharedCgnat, "shared-cgnat"),
        (LinkLocal, "link-local"),
        (Metadata, "metadata"),
        (UniqueLocal, "unique-local"),
        (Multicast, "multicast"),
        (Broadcast, "broadcast"),
        (Documentation, "documentation"),
        (Benchmarking, "benchmarking"),
        (ProtocolAssignment, "protocol-assignment"),
        (Discard, "discard"),
        (Reserved, "reserved"),
        (embedded(Nat64, "10.0.0.1"), "ipv4-embedded"),
        (SelfAddress, "self-address"),
        (NoAddresses, "no-addresses"),
    ];
    for (reason, code) in all {
        // No wildcard: a new variant fails to compile here until it is added to the table.
        match reason {
            Unspecified
            | ThisNetwork
            | Loopback
            | Private
            | SharedCgnat
            | LinkLocal
            | Metadata
            | UniqueLocal
            | Multicast
            | Broadcast
            | Documentation
            | Benchmarking
            | ProtocolAssignment
            | Discard
            | Reserved
            | Ipv4Embedded { .. }
            | SelfAddress
            | NoAddresses => {}
        }
        assert_eq!(reason.code(), code);
        let json = serde_json::to_value(reason).expect("serialize reason");
        assert_eq!(json["code"], code, "{json}");
    }
    let json = serde_json::to_value(embedded(SixToFour, "169.254.169.254")).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({"code": "ipv4-embedded", "embedding": "6to4", "inner": "169.254.169.254"})
    );
    for embedding in [Ipv4Compatible, Nat64, Nat64LocalUse, SixToFour, Teredo] {
        let json = serde_json::to_value(embedding).expect("serialize embedding");
        assert_eq!(json, embedding.code());
    }
}

#[test]
fn embedded_reason_message_names_the_inner_address_and_its_own_reason() {
    assert_eq!(
        embedded(Nat64, "169.254.169.254").to_string(),
        "IPv6 NAT64 address embedding IPv4 169.254.169.254 (cloud metadata or credential endpoint)"
    );
    assert!(
        embedded(Teredo, "8.8.8.8")
            .to_string()
            .contains("8.8.8.8 (public,")
    );
}

#[test]
fn only_private_network_reasons_are_exemptible() {
    let exemptible = [
        Loopback,
        Private,
        SharedCgnat,
        LinkLocal,
        UniqueLocal,
        Documentation,
        Benchmarking,
    ];
    let never = [
        Unspecified,
        ThisNetwork,
        Metadata,
        Multicast,
        Broadcast,
        ProtocolAssignment,
        Discard,
        Reserved,
        embedded(Nat64, "10.0.0.1"),
        SelfAddress,
        NoAddresses,
    ];
    assert!(exemptible.iter().all(IpDenyReason::is_exemptible));
    assert!(!never.iter().any(IpDenyReason::is_exemptible));
}
