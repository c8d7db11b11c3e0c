//! Many `airlock serve` nodes on one PostgreSQL database (docs/deploy.md): what one node
//! creates the others serve, a trust revocation made through one stops the next invocation on
//! every other, the CLI works on the store while they run, and the one audit trail they all
//! write verifies. Under load with a node killed, nothing a node answered is lost; a webhook
//! delivery sent to two nodes at once runs once. The fairness caps are the cluster's, shared
//! among the live nodes. Skipped, saying why, without a PostgreSQL server (tests/testkit's
//! `scripts/test` starts one; CI never skips).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use airlock_store::postgres::testing::TestDatabase;

use crate::isolation::{metric, most_running};
use crate::operator::Operator;
use crate::serving::{
    Body, Server, TENANT_SCOPES, assert_trail_verifies, mapper_input, records_of,
};
use crate::support::read_example;
use crate::webhooks::{deliver, endpoint, now, standard};

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
        .map(|(n, dir)| Server::node(&op, dir.path(), &format!("node-{}", n + 1), &[]))
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

const KV: &str = "/v1/installations/hostile/actions/kv";

/// The hostile example with room in its kv store for the load's writes (its own quota is 100
/// keys in 64 KiB), signed as "Airlock Examples".
pub(crate) fn roomy_hostile(op: &Operator) -> std::path::PathBuf {
    let manifest = read_example("hostile", "airlock.toml");
    let quota = "[kv]\nmax-bytes = \"64 KiB\"\nmax-keys = 100\n";
    assert!(
        manifest.contains(quota),
        "hostile's kv quota moved:\n{manifest}"
    );
    let manifest = manifest.replace(quota, "[kv]\nmax-bytes = \"8 MiB\"\nmax-keys = 20000\n");
    op.sign(
        "hostile",
        "hostile.wasm",
        &manifest,
        "hostile-roomy.airlock",
    )
}

/// What a node answered to one request: status, `airlock-audit-record`, JSON body; or the
/// transport's error (refused, reset: the node is gone).
async fn send(
    http: &Client,
    base: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> Result<(StatusCode, Option<u64>, Value), reqwest::Error> {
    let response = http
        .post(format!("{base}{path}"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    let record = response
        .headers()
        .get("airlock-audit-record")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response.bytes().await?;
    Ok((
        status,
        record,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// A client of its own per load task: connections never sit idle in its pool long enough for a
/// node's 10 s keep-alive limit to close one under a request.
fn client() -> Client {
    Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// The nodes as the load's clients see them: where, and which they found dead.
struct Cluster {
    bases: Vec<String>,
    dead: Vec<AtomicBool>,
    /// Operations finished (answered or given up), for the killer to wait on.
    done: AtomicUsize,
}

/// One invocation a node answered 200, with its record's number.
struct Answered {
    node: usize,
    tenant: &'static str,
    installation: &'static str,
    seq: u64,
    /// The kv key and value it set, if it was a set.
    set: Option<(String, String)>,
}

/// What one load client saw.
#[derive(Default)]
struct Seen {
    answered: Vec<Answered>,
    /// (node, error) of every request that got no HTTP response.
    transport: Vec<(usize, String)>,
    /// Every response that was not a 200 with a record (and `{}` for a set).
    wrong: Vec<String>,
    /// Operations no node answered.
    unanswered: usize,
}

/// One load client: `each` operations for `tenant`, two kv sets under keys of its own for
/// every mapper run, the first try of each on the next node in turn; a node that gave no
/// response is taken for dead and the operation goes to the next.
async fn load_client(
    cluster: Arc<Cluster>,
    c: usize,
    tenant: &'static str,
    key: String,
    each: usize,
) -> Seen {
    let http = client();
    let nodes = cluster.bases.len();
    let input = mapper_input();
    let mut seen = Seen::default();
    for i in 0..each {
        let (path, installation, body, set) = if i % 3 == 2 {
            (ACTION, "mapper", input.clone(), None)
        } else {
            let (k, v) = (format!("c{c:02}-{i:04}"), format!("{tenant}-{c}-{i}"));
            let body = json!({"op": "set", "key": k, "value": v});
            (KV, "hostile", body, Some((k, v)))
        };
        let mut answered = false;
        for hop in 0..nodes {
            let n = (c + i + hop) % nodes;
            if cluster.dead[n].load(Ordering::SeqCst) {
                continue;
            }
            match send(&http, &cluster.bases[n], path, &key, &body).await {
                Err(e) => {
                    cluster.dead[n].store(true, Ordering::SeqCst);
                    seen.transport.push((n, e.to_string()));
                }
                Ok((status, record, reply)) => {
                    match record {
                        Some(seq)
                            if status == StatusCode::OK
                                && (set.is_none() || reply == json!({})) =>
                        {
                            seen.answered.push(Answered {
                                node: n,
                                tenant,
                                installation,
                                seq,
                                set: set.clone(),
                            });
                            answered = true;
                        }
                        _ => seen.wrong.push(format!(
                            "node {n}, {path}: {status}, record {record:?}: {reply}"
                        )),
                    }
                    break;
                }
            }
        }
        if !answered {
            seen.unanswered += 1;
        }
        cluster.done.fetch_add(1, Ordering::SeqCst);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_nothing_another_node_answered_or_wrote() {
    const NODES: usize = 3;
    const CLIENTS: usize = 16;
    const EACH: usize = 200;
    const TOTAL: usize = CLIENTS * EACH;
    const TENANTS: [&str; 2] = ["acme", "globex"];
    let Some(database) = TestDatabase::create("cluster_kill") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..NODES)
        .map(|_| TempDir::new().expect("temp dir"))
        .collect();
    let names: Vec<String> = (1..=NODES).map(|n| format!("node-{n}")).collect();
    let mut nodes: Vec<Server> = dirs
        .iter()
        .zip(&names)
        .map(|(dir, name)| Server::node(&op, dir.path(), name, &[]))
        .collect();

    // Each tenant made, and its two installations made, through a node of its own.
    let mapper = nodes[0]
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let hostile = nodes[0].upload(&roomy_hostile(&op)).await;
    let mut keys = Vec::new();
    for (t, tenant) in TENANTS.iter().enumerate() {
        let node = &nodes[t];
        let key = node
            .tenant(tenant, &["invoke", "installations:write"])
            .await;
        let installed = node.install_mapper(&key, &mapper).await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
        let installed = node
            .post("/v1/installations", &key, json!({"bundle": hostile}))
            .await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
        keys.push(key);
    }

    let cluster = Arc::new(Cluster {
        bases: nodes.iter().map(|n| n.base.clone()).collect(),
        dead: (0..NODES).map(|_| AtomicBool::new(false)).collect(),
        done: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let t = c % TENANTS.len();
            tokio::spawn(load_client(
                cluster.clone(),
                c,
                TENANTS[t],
                keys[t].clone(),
                EACH,
            ))
        })
        .collect();

    // A third of the way in, node 3 dies mid-request, as a crash would take it.
    while cluster.done.load(Ordering::SeqCst) < TOTAL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = NODES - 1;
    nodes.pop().expect("node 3").kill();
    let killed_after = cluster.done.load(Ordering::SeqCst);

    let mut seen = Seen::default();
    for client in clients {
        let s = client.await.expect("load client");
        seen.answered.extend(s.answered);
        seen.transport.extend(s.transport);
        seen.wrong.extend(s.wrong);
        seen.unanswered += s.unanswered;
    }
    let per_node: Vec<usize> = (0..NODES)
        .map(|n| seen.answered.iter().filter(|a| a.node == n).count())
        .collect();
    let sets = seen.answered.iter().filter(|a| a.set.is_some()).count();
    eprintln!(
        "cluster load: {TOTAL} operations in {:.2?}, node 3 killed after {killed_after}; \
         answered {} ({sets} kv sets) by node: {per_node:?}; {} requests got no response",
        started.elapsed(),
        seen.answered.len(),
        seen.transport.len(),
    );
    assert!(
        seen.wrong.is_empty(),
        "{} wrong answers: {:?}",
        seen.wrong.len(),
        &seen.wrong[..seen.wrong.len().min(5)]
    );
    assert_eq!(
        seen.unanswered, 0,
        "every operation found a node that answered"
    );
    assert_eq!(seen.answered.len(), TOTAL);
    assert!(
        seen.transport.iter().all(|(n, _)| *n == killed),
        "only the killed node failed to answer: {:?}",
        seen.transport
    );
    assert!(
        !seen.transport.is_empty(),
        "requests went to the dead node and failed"
    );
    assert!(per_node[killed] > 0, "node 3 served before it died");
    let seqs: HashSet<u64> = seen.answered.iter().map(|a| a.seq).collect();
    assert_eq!(seqs.len(), TOTAL, "every answer names a record of its own");

    // The survivors keep serving, each for both tenants.
    for node in &nodes {
        for key in &keys {
            let reply = node.post(ACTION, key, mapper_input()).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            assert!(reply.record.is_some());
        }
    }

    // Every kv set that was answered reads back, through the survivors, for its own tenant.
    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.base.clone()).collect());
    let mut writes: Vec<(usize, String, String)> = seen
        .answered
        .iter()
        .filter_map(|a| {
            let t = TENANTS.iter().position(|t| *t == a.tenant).expect("tenant");
            a.set.clone().map(|(k, v)| (t, k, v))
        })
        .collect();
    writes.sort();
    let keys = Arc::new(keys);
    let readers: Vec<_> = (0..CLIENTS)
        .map(|r| {
            let mine: Vec<_> = writes.iter().skip(r).step_by(CLIENTS).cloned().collect();
            let (bases, keys) = (bases.clone(), keys.clone());
            tokio::spawn(async move {
                let http = client();
                let mut lost = Vec::new();
                for (i, (t, k, v)) in mine.into_iter().enumerate() {
                    let base = &bases[(r + i) % bases.len()];
                    let get = json!({"op": "get", "key": k});
                    let (status, _, reply) = send(&http, base, KV, &keys[t], &get)
                        .await
                        .expect("a survivor answers");
                    if status != StatusCode::OK || reply != json!({"found": true, "value": v}) {
                        lost.push(format!("{} {k}: {status} {reply}", TENANTS[t]));
                    }
                }
                lost
            })
        })
        .collect();
    let mut lost = Vec::new();
    for reader in readers {
        lost.extend(reader.await.expect("reader"));
    }
    assert!(
        lost.is_empty(),
        "{} of {} answered kv sets lost: {:?}",
        lost.len(),
        writes.len(),
        &lost[..lost.len().min(5)]
    );

    for node in nodes {
        node.stop();
    }
    // The one trail verifies though node 3 never signed its last records, and holds every
    // answered invocation as the node that answered it wrote it.
    assert_trail_verifies(&op);
    let trail: HashMap<u64, Value> = records_of(&op, "invocation")
        .into_iter()
        .map(|r| (r["seq"].as_u64().expect("seq"), r))
        .collect();
    for a in &seen.answered {
        let record = trail.get(&a.seq).unwrap_or_else(|| {
            panic!(
                "record {} answered by {} is not in the trail",
                a.seq, names[a.node]
            )
        });
        let writes = u64::from(a.set.is_some());
        assert!(
            record["tenant"] == a.tenant
                && record["installation"] == a.installation
                && record["node"] == names[a.node].as_str()
                && record["trigger"] == "api"
                && record["outcome"] == "ok"
                && record["kv"]["writes"].as_u64().unwrap_or(0) == writes,
            "record {} is not the invocation {} answered for {}/{}: {record}",
            a.seq,
            names[a.node],
            a.tenant,
            a.installation
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_sent_to_two_nodes_at_once_runs_once() {
    const DELIVERIES: usize = 20;
    let Some(database) = TestDatabase::create("cluster_hooks") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().expect("temp dir")).collect();
    let nodes: Vec<Server> = dirs
        .iter()
        .enumerate()
        .map(|(n, dir)| Server::node(&op, dir.path(), &format!("node-{}", n + 1), &[]))
        .collect();
    let digest = nodes[0]
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let key = nodes[0].tenant("acme", &TENANT_SCOPES).await;
    let installed = nodes[0].install_mapper(&key, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let (path, secret, _) = endpoint(
        &nodes[0],
        &key,
        json!({"installation": "mapper", "action": "map-contact"}),
    )
    .await;
    let body = serde_json::to_vec(&mapper_input()).expect("JSON");

    let mut runs = Vec::new();
    let mut wins = [0usize; 2];
    for d in 0..DELIVERIES {
        let headers = standard(&secret, &format!("msg_race_{d}"), now(), &body);
        let (one, two) = tokio::join!(
            deliver(&nodes[0], &path, &headers, &body),
            deliver(&nodes[1], &path, &headers, &body),
        );
        let (won, winner, lost) = match (one.status, two.status) {
            (StatusCode::OK, StatusCode::CONFLICT) => (one, 0, two),
            (StatusCode::CONFLICT, StatusCode::OK) => (two, 1, one),
            (a, b) => panic!(
                "delivery {d}: node 1 {a} {}, node 2 {b} {}: not one run and one duplicate",
                one.body, two.body
            ),
        };
        assert_eq!(won.body["email"], "ada@example.com", "{}", won.body);
        assert_eq!(lost.code(), "duplicate-delivery", "{}", lost.body);
        wins[winner] += 1;
        runs.push(won.record.expect("the run's audit record number"));
    }
    eprintln!("webhook race: {DELIVERIES} deliveries, won by node 1 / node 2: {wins:?}");

    for node in nodes {
        node.stop();
    }
    assert_trail_verifies(&op);
    let mut recorded: Vec<u64> = records_of(&op, "invocation")
        .into_iter()
        .filter(|r| r["trigger"] == "webhook")
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    recorded.sort();
    runs.sort();
    assert_eq!(
        recorded, runs,
        "the trail holds one webhook run per delivery id: the winner's"
    );
    let replays = records_of(&op, "webhook-refused")
        .into_iter()
        .filter(|r| r["reason"] == "replayed")
        .count();
    assert!(replays > 0, "the losing copies are refused as replays");
}

const SLEEP: &str = "/v1/installations/hostile/actions/sleep";

/// The caps of every node below: four per tenant and six in all, for the cluster. A heartbeat
/// of 1s: a dead node is forgotten within seconds, and a live one is not taken for dead while
/// the tests beside this one load the machine (three missed beats).
const CAPS: [&str; 6] = [
    "--tenant-concurrent",
    "4",
    "--max-concurrent",
    "6",
    "--heartbeat",
    "1s",
];

/// The fairness caps hold for the cluster: each live node admits its share, and the shares
/// follow the nodes as they join, die (SIGKILL: forgotten after three missed heartbeats) and
/// leave (SIGTERM: at once). Each share is what the node admits, not only what it reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fairness_caps_are_shared_among_the_live_nodes_as_they_join_and_die() {
    let Some(database) = TestDatabase::create("cluster_caps") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().expect("temp dir")).collect();
    let start = |n: usize| {
        Arc::new(Server::node(
            &op,
            dirs[n].path(),
            &format!("node-{}", n + 1),
            &CAPS,
        ))
    };
    let first = start(0);
    assert_eq!(
        shares(&[&first], 1).await,
        [(6, 4)],
        "alone: the whole caps"
    );
    let hostile = first.upload(&op.example("hostile", "hostile.wasm")).await;
    let key = first.tenant("acme", &TENANT_SCOPES).await;
    let installed = first
        .post("/v1/installations", &key, json!({"bundle": hostile}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    assert_eq!(most_admitted(&first, &key).await, 4);

    // A second node joins: each admits two of the tenant's four, even with both loaded at once.
    let second = start(1);
    assert_eq!(shares(&[&first, &second], 2).await, [(3, 2), (3, 2)]);
    let (one, two) = tokio::join!(most_admitted(&first, &key), most_admitted(&second, &key));
    assert_eq!(
        (one, two),
        (2, 2),
        "the tenant's four, split between two nodes"
    );

    // A third: the remainder goes to the first node in the store's order.
    let third = start(2);
    assert_eq!(
        shares(&[&first, &second, &third], 3).await,
        [(2, 2), (2, 1), (2, 1)]
    );
    assert_eq!(most_admitted(&third, &key).await, 1);

    // The third dies without a word: the others take its share once its mark expires.
    Arc::into_inner(third).expect("no calls left").kill();
    assert_eq!(shares(&[&first, &second], 2).await, [(3, 2), (3, 2)]);

    // The second stops cleanly and leaves: the first admits the whole caps again.
    Arc::into_inner(second).expect("no calls left").stop();
    assert_eq!(shares(&[&first], 1).await, [(6, 4)]);
    assert_eq!(most_admitted(&first, &key).await, 4);
    Arc::into_inner(first).expect("no calls left").stop();
}

/// Once every one of `nodes` counts `live` nodes: each one's `(max-concurrent, tenant-
/// concurrent)` share as its metrics report them.
async fn shares(nodes: &[&Arc<Server>], live: u64) -> Vec<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in nodes {
        while metric(node, "airlock_cluster_nodes").await != live {
            assert!(
                Instant::now() < deadline,
                "{} never counted {live} live nodes",
                node.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut shares = Vec::new();
    for node in nodes {
        shares.push((
            metric(node, "airlock_server_max_concurrent").await,
            metric(node, "airlock_server_tenant_concurrent").await,
        ));
    }
    shares
}

/// Sends six sleeps of 400 ms to `node` at once and returns the most it ran at once; every
/// sleep is answered (the ones beyond the share wait for a slot).
async fn most_admitted(node: &Arc<Server>, key: &str) -> u64 {
    let (most, done) = most_running(node);
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (node, key) = (node.clone(), key.to_string());
            tokio::spawn(async move { node.post(SLEEP, &key, json!({ "ms": 400 })).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.expect("call");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    done.store(true, Ordering::Relaxed);
    most.await.expect("sampler")
}
