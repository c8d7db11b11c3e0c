//! IPv4 embedded in IPv6: every embedding of a denied address is denied.

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

/// Denied IPv4 addresses covering every IPv4 reason, with range edges.
#[rustfmt::skip]
pub(super) const DENIED_V4: [&str; 40] = [
    "0.0.0.0", "0.0.0.1", "0.255.255.255", "10.0.0.0", "10.0.0.1", "10.0.0.5",
    "10.255.255.255", "100.64.0.0", "100.64.0.1", "100.100.1.1", "100.100.100.200", "100.127.255.255",
    "127.0.0.1", "127.0.0.53", "127.255.255.255", "168.63.129.16", "169.254.0.1", "169.254.169.254",
    "169.254.170.2", "169.254.170.23", "169.254.255.255", "172.16.0.1", "172.31.255.255", "192.0.0.1",
    "192.0.0.192", "192.0.0.255", "192.0.2.1", "192.88.99.1", "192.168.0.1", "192.168.255.255",
    "198.18.0.1", "198.19.255.255", "198.51.100.1", "203.0.113.10", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "250.1.2.3", "255.255.255.254", "255.255.255.255",
];

#[rustfmt::skip]
pub(super) const PUBLIC_V4: [&str; 5] = [
    "8.8.8.8", "1.1.1.1", "100.63.255.254", "100.128.0.1", "93.184.215.14",
];

/// Every IPv6 spelling of `addr`: (name, address, the embedding `classify` should report).
pub(super) fn embeddings_of(
    addr: Ipv4Addr,
) -> [(&'static str, Ipv6Addr, Option<Ipv4Embedding>); 7] {
    let bits = u128::from(u32::from(addr));
    let public = u128::from(u32::from(Ipv4Addr::new(65, 54, 227, 120)));
    let teredo = 0x2001_0000_u128 << 96 | 0x8000_1234_u128 << 32;
    let at = |value: u128| Ipv6Addr::from(value);
    [
        ("mapped", addr.to_ipv6_mapped(), None),
        ("compatible", at(bits), Some(Ipv4Compatible)),
        ("nat64", at(0x0064_ff9b_u128 << 96 | bits), Some(Nat64)),
        (
            "nat64 local-use",
            at(0x0064_ff9b_0001_u128 << 80 | bits),
            Some(Nat64LocalUse),
        ),
        (
            "6to4",
            at(0x2002_u128 << 112 | bits << 80 | 0x1_0000_0000_0000_0001),
            Some(SixToFour),
        ),
        (
            "teredo server",
            at(teredo | bits << 64 | u128::from(!0x0808_0808_u32)),
            Some(Teredo),
        ),
        (
            "teredo client",
            at(teredo | public << 64 | (!bits & 0xffff_ffff)),
            Some(Teredo),
        ),
    ]
}

#[test]
pub(super) fn every_embedding_of_a_denied_ipv4_is_denied() {
    let mut failures = Vec::new();
    for text in DENIED_V4 {
        let plain = v4(text);
        let plain_reason = classify(IpAddr::V4(plain));
        assert!(plain_reason.is_err(), "{text} must be a denied address");
        for (name, addr, embedding) in embeddings_of(plain) {
            let got = classify(IpAddr::V6(addr));
            let ok = match embedding {
                None => got == plain_reason,
                // `::` and `::1` are unspecified and loopback, not 0.0.0.0 and 0.0.0.1.
                Some(Ipv4Compatible) if text == "0.0.0.0" => got == Err(Unspecified),
                Some(Ipv4Compatible) if text == "0.0.0.1" => got == Err(Loopback),
                Some(embedding) => {
                    got == Err(IpDenyReason::Ipv4Embedded {
                        embedding,
                        inner: plain,
                    }) && got.err().and_then(|r| r.inner_reason()) == plain_reason.err()
                }
            };
            if !ok {
                failures.push(format!("{text} as {name} ({addr}): got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
pub(super) fn embeddings_stay_denied_even_when_every_range_is_allowed() {
    let everything = IpClassifier::new(allow("0.0.0.0/0,::/0"));
    for text in DENIED_V4.iter().chain(&PUBLIC_V4) {
        let plain = v4(text);
        let plain_verdict = everything.check(SocketAddr::new(IpAddr::V4(plain), 443));
        for (name, addr, embedding) in embeddings_of(plain) {
            let got = everything.check(SocketAddr::new(IpAddr::V6(addr), 443));
            match embedding {
                None => assert_eq!(got, plain_verdict, "{text} as {name}"),
                Some(Ipv4Compatible) if *text == "0.0.0.0" || *text == "0.0.0.1" => {}
                Some(_) => assert!(
                    matches!(got, Err(IpDenyReason::Ipv4Embedded { .. })),
                    "{text} as {name} ({addr}): got {got:?}"
                ),
            }
        }
    }
}

#[test]
pub(super) fn public_ipv4_is_dialable_when_mapped_but_denied_in_every_transition_embedding() {
    for text in PUBLIC_V4 {
        let plain = v4(text);
        assert_eq!(classify(IpAddr::V4(plain)), Ok(()), "{text}");
        for (name, addr, embedding) in embeddings_of(plain) {
            let got = classify(IpAddr::V6(addr));
            // With both Teredo addresses public, the client (8.8.8.8 here) is reported.
            let inner = if name == "teredo server" {
                v4("8.8.8.8")
            } else {
                plain
            };
            let want = match embedding {
                None => Ok(()),
                Some(embedding) => Err(IpDenyReason::Ipv4Embedded { embedding, inner }),
            };
            assert_eq!(got, want, "{text} as {name} ({addr})");
            assert_eq!(got.err().and_then(|r| r.inner_reason()), None);
        }
    }
}
