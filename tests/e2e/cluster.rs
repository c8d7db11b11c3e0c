//! Many `airlock serve` nodes on one PostgreSQL database (docs/deploy.md): what one node
//! creates the others serve, a trust revocation made through one stops the next invocation on
//! every other, the CLI works on the store while they run, and the one audit trail they all
//! write verifies. Skipped, saying why, without a PostgreSQL server (tests/testkit's
//! `scripts/test` starts one; CI never skips).

use reqwest::{Method, StatusCode};
use serde_json::json;
use tempfile::TempDir;

use airlock_store::postgres::testing::TestDatabase;

use crate::operator::Operator;
use crate::serving::{Body, Server, assert_trail_verifies, mapper_input};

const ACTION: &str = "/v1/installations/mapper/actions/map-contact";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_one_database_serve_each_others_changes_and_a_revocation_stops_them_all() {
    let Some(database) = TestDatabase::create("cluster") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let nodes: Vec<Server> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| Server::node(&op, dir.path(), &format!("node-{}", n + 1)))
        .collect();

    // Created through node 1: a bundle, a key, an installation.
    let bundle = op.example("contact-mapper", "contact_mapper.wasm");
    let digest = nodes[0].upload(&bundle).await;
    let key = nodes[0]
        .tenant("acme", &["invoke", "installations:write"])
        .await;
    let installed = nodes[0].install_mapper(&key, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);

    // Served by nodes 2 and 3, each record in the one trail.
    let mut records = Vec::new();
    for node in &nodes[1..] {
        let reply = node.post(ACTION, &key, mapper_input()).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        records.push(reply.record.expect("an audit record number"));
    }
    assert_ne!(
        records[0], records[1],
        "two nodes, two records of one chain"
    );

    // The CLI reads and verifies the shared store while all three run.
    assert_trail_verifies(&op);
    let listed = op.ok(&["install", "list", "--tenant", "acme"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("mapper"),
        "the CLI sees node 1's installation"
    );

    // A revocation through node 3 stops the next invocation on node 1.
    let trusted = nodes[2].get("/v1/trust", &nodes[2].admin).await;
    let key_id = trusted.body["keys"][0]["key_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a trusted key: {}", trusted.body))
        .to_string();
    let revoked = nodes[2]
        .call(
            Method::DELETE,
            &format!("/v1/trust/{key_id}"),
            Some(&nodes[2].admin),
            Body::None,
        )
        .await;
    assert!(revoked.status.is_success(), "{}", revoked.body);
    let refused = nodes[0].post(ACTION, &key, mapper_input()).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "node 1 ran code whose key node 3 revoked: {}",
        refused.body
    );
    assert_eq!(
        refused.body["error"]["code"],
        json!("untrusted"),
        "{}",
        refused.body
    );

    for node in nodes {
        node.stop();
    }
    assert_trail_verifies(&op);
}
