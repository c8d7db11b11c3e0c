//! Table-driven tests for the egress policy.
//!
//! - `catalogue`: the security catalogue's EG cases, one test per case, against its setup.
//! - `grammar`, `rule_parts`: rule parsing.
//! - `paths`: prefix matching, path attacks, rule order, the most specific denial.
//! - `requests`: request canonicalisation, idempotence, denial hygiene.

mod catalogue;
mod grammar;
mod paths;
mod requests;
mod rule_parts;

use super::*;
#[allow(unused_imports)]
use DenyReason::*;

/// Catalogue 5.2 setup, plus a rule with a port and a path prefix.
fn fixture() -> EgressPolicy {
    EgressPolicy::new(vec![
        rule(
            "https://api.allowed.test",
            &["GET", "POST"],
            Some("api-token"),
        ),
        rule("https://*.svc.allowed.test", &["GET"], None),
        rule(
            "https://hooks.allowed.test:8443/services",
            &["POST"],
            Some("hooks"),
        ),
    ])
}

fn rule(url: &str, methods: &[&str], credential: Option<&str>) -> EgressRule {
    EgressRule::parse(url, &strings(methods), credential).expect(url)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Allowed by the rule at this index, or denied for this reason.
type Outcome = Result<usize, DenyReason>;

const API: Outcome = Ok(0);
const SVC: Outcome = Ok(1);
const HOOKS: Outcome = Ok(2);

/// Runs `(method, url, expected)` rows against the fixture and reports every mismatch at once.
fn assert_table(cases: &[(&str, &str, Outcome)]) {
    let policy = fixture();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(method, url, expected)| {
            let checked = policy.check(method, url);
            if let Ok(allowed) = &checked {
                assert_idempotent(&allowed.target);
            }
            let got = checked
                .map(|allowed| allowed.rule_index)
                .map_err(|denial| denial.reason);
            (got != *expected)
                .then(|| format!("{method} {url:?}: expected {expected:?}, got {got:?}"))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every URL in `urls` is denied for `reason` (method GET).
fn assert_all_denied(reason: DenyReason, urls: &[&str]) {
    let rows: Vec<_> = urls.iter().map(|url| ("GET", *url, Err(reason))).collect();
    assert_table(&rows);
}

/// The canonical URI re-parses to the same target, and `http::Uri` (what sends it) accepts it.
fn assert_idempotent(target: &RequestTarget) {
    let uri = target.to_uri_string();
    assert_eq!(
        RequestTarget::parse(&uri).as_ref(),
        Ok(target),
        "{uri} re-parses"
    );
    assert!(uri.parse::<http::Uri>().is_ok(), "http::Uri accepts {uri}");
}
