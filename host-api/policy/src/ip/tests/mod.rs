//! Tests of the address classifier, by subject: the classification tables, IPv4 embedded in
//! IPv6, an independent re-spelling of the tables, and allow ranges with the classifier.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;

mod allow_and_classifier;
mod classify;
mod embeddings;
mod tables;

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|err| panic!("bad test address {text:?}: {err}"))
}

pub(super) fn v4(text: &str) -> Ipv4Addr {
    text.parse()
        .unwrap_or_else(|err| panic!("bad test address {text:?}: {err}"))
}

pub(super) fn sock(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|err| panic!("bad test socket address {text:?}: {err}"))
}

pub(super) fn allow(text: &str) -> AllowRanges {
    text.parse()
        .unwrap_or_else(|err| panic!("bad test allow range {text:?}: {err}"))
}

pub(super) fn embedded(embedding: Ipv4Embedding, inner: &str) -> IpDenyReason {
    IpDenyReason::Ipv4Embedded {
        embedding,
        inner: v4(inner),
    }
}

/// An (address, expected verdict) row of a table-driven test.
pub(super) type Row<'a> = (&'a str, Result<(), IpDenyReason>);

/// Asserts `classify` for each (address, expected) row, reporting every mismatch at once.
pub(super) fn assert_classify(rows: &[Row<'_>]) {
    let failures: Vec<String> = rows
        .iter()
        .filter(|(addr, want)| classify(ip(addr)) != *want)
        .map(|(addr, want)| format!("{addr}: want {want:?}, got {:?}", classify(ip(addr))))
        .collect();
    assert!(
        failures.is_empty(),
        "misclassified:\n{}",
        failures.join("\n")
    );
}

/// Asserts `check` for each (address:port, expected) row under one classifier.
pub(super) fn assert_check(classifier: &IpClassifier, rows: &[Row<'_>]) {
    let failures: Vec<String> = rows
        .iter()
        .filter(|(addr, want)| classifier.check(sock(addr)) != *want)
        .map(|(addr, want)| {
            let got = classifier.check(sock(addr));
            format!("{addr}: want {want:?}, got {got:?}")
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{classifier:?}:\n{}",
        failures.join("\n")
    );
}
