//! Keep-alive connections in the broker (docs/security-model.md, "Connection reuse"): a
//! connection is reused within one tenant's installation, never across tenants or
//! installations; every request on it is still judged, resolved, given its own credential and
//! recorded; TLS sessions resume from the installation's own cache only.

use airlock_host_api::credentials::CredentialScope;
use airlock_runtime::Invocation;
use airlock_testkit::Reply;
use serde_json::json;

use crate::egress::{Egress, outcomes, upstreams};

const URL: &str = "https://vault.allowed.test/items";

/// The exfil guest's `fetch` of [`URL`] as `tenant`'s `installation`, holding `token`.
async fn fetch(egress: &Egress, tenant: &str, installation: &str, token: &str) -> Invocation {
    egress
        .run_as(
            CredentialScope::new(tenant, installation),
            "exfil",
            "fetch",
            json!({ "url": URL }),
            &[("token", token)],
        )
        .await
}

#[tokio::test]
async fn a_connection_is_reused_within_one_installation_and_never_across() {
    let (mock, egress) = upstreams(&["vault.allowed.test"], |_| Reply::status(200));
    let calls = [
        ("acme", "crm"),
        ("acme", "crm"),
        ("acme", "crm"),
        ("globex", "crm"),
        ("acme", "billing"),
        ("acme", "crm"),
        ("globex", "crm"),
    ];
    for (tenant, installation) in calls {
        let token = format!("{tenant}-{installation}-token");
        let ran = fetch(&egress, tenant, installation, &token).await;
        assert_eq!(outcomes(&ran), ["ok 200"], "{tenant}/{installation}");
        assert_eq!(ran.egress.len(), 1, "each request is recorded on its own");
    }
    let seen: Vec<(usize, String)> = mock
        .requests()
        .iter()
        .map(|r| (r.connection, r.header("authorization").join(",")))
        .collect();
    let bearer = |tenant: &str, installation: &str| format!("Bearer {tenant}-{installation}-token");
    assert_eq!(
        seen,
        [
            (1, bearer("acme", "crm")),
            (1, bearer("acme", "crm")),
            (1, bearer("acme", "crm")),
            (2, bearer("globex", "crm")),
            (3, bearer("acme", "billing")),
            (1, bearer("acme", "crm")),
            (2, bearer("globex", "crm")),
        ],
        "one connection per installation, each request with its own installation's credential"
    );
    assert_eq!(mock.accepts(), 3);
}

#[tokio::test]
async fn a_connection_the_upstream_closes_is_not_reused_and_tls_resumes_per_installation() {
    let (mock, egress) = upstreams(&["vault.allowed.test"], |_| {
        Reply::status(200).header("connection", "close")
    });
    for (tenant, installation) in [
        ("acme", "crm"),
        ("acme", "crm"),
        ("globex", "crm"),
        ("globex", "crm"),
        ("acme", "billing"),
    ] {
        let ran = fetch(&egress, tenant, installation, "token-0123456789").await;
        assert_eq!(outcomes(&ran), ["ok 200"], "{tenant}/{installation}");
    }
    let seen: Vec<(usize, bool)> = mock
        .requests()
        .iter()
        .map(|r| (r.connection, r.resumed))
        .collect();
    assert_eq!(
        seen,
        [(1, false), (2, true), (3, false), (4, true), (5, false)],
        "a new connection for each closed one; a session resumed only by the installation \
         whose handshake made it"
    );
}

#[tokio::test]
async fn a_response_body_cut_short_closes_its_connection() {
    // The first body is larger than the guest helper reads (8 MiB): the guest drops it half
    // read, so that connection closes, and the next request dials anew.
    let (mock, egress) = upstreams(&["vault.allowed.test"], |request| {
        if request.path_and_query == "/big" {
            Reply::bytes(200, vec![b'x'; 9 << 20])
        } else {
            Reply::status(200)
        }
    });
    let big = egress
        .run_as(
            CredentialScope::new("acme", "crm"),
            "exfil",
            "fetch",
            json!({ "url": "https://vault.allowed.test/big" }),
            &[("token", "token-0123456789")],
        )
        .await;
    assert_eq!(outcomes(&big), ["BodyTooLarge"]);
    let ran = fetch(&egress, "acme", "crm", "token-0123456789").await;
    assert_eq!(outcomes(&ran), ["ok 200"]);
    let connections: Vec<usize> = mock.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, [1, 2]);
}
