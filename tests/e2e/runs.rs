//! Durable runs (docs/api.md, "Runs"): `?async=true` queues a run (`202`) after checking its
//! input, a worker runs it under the tenant's caps, and its history shows how it went; a run
//! queued before a SIGKILL runs once after the restart, or on another node of a cluster; a
//! run that keeps timing out is retried with backoff, then dead, and `retry` queues it again;
//! one whose upstream answers 503 twice succeeds on its third attempt, after the waits its
//! upstream asked for; a webhook delivery is queued, answered `202`, survives a SIGKILL and
//! runs once; a tenant's pending runs are capped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use airlock_store::postgres::testing::TestDatabase;
use airlock_testkit::{Reply, TestCa, Upstream};

use crate::egress::UPSTREAM_IP;
use crate::operator::Operator;
use crate::serving::{
    Body, Server, TENANT_SCOPES, assert_trail_verifies, mapper_input, records_of,
};

const MAP: &str = "/v1/installations/mapper/actions/map-contact?async=true";

/// Queues `input` on `path`; the run's id, after checking the `202`.
async fn queue(server: &Server, key: &str, path: &str, input: Value) -> String {
    let response = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&input).expect("JSON"))
        .send()
        .await
        .expect("queue");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "queued", "{body}");
    let run = body["run"].as_str().expect("a run id").to_string();
    assert_eq!(location, format!("/v1/runs/{run}"));
    run
}

/// The run once `done` says it is, polled for up to 60 s.
async fn until(server: &Server, key: &str, run: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = server.get(&format!("/v1/runs/{run}"), key).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        if done(&reply.body) {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} never got there: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /v1/runs/{run}/retry`.
async fn retry(server: &Server, key: &str, run: &str) -> crate::serving::Reply {
    server
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/retry"),
            Some(key),
            Body::None,
        )
        .await
}

fn ended(run: &Value) -> bool {
    ["succeeded", "failed", "dead"].contains(&run["status"].as_str().unwrap_or(""))
}

/// The mapper installed for tenant `acme` through `server`; acme's key.
async fn mapper(op: &Operator, server: &Server) -> String {
    let digest = server
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server.install_mapper(&key, &digest).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_invocation_is_queued_run_once_and_kept_in_the_history() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let key = mapper(&op, &server).await;

    let run = queue(&server, &key, MAP, mapper_input()).await;
    let done = until(&server, &key, &run, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["trigger"], "api");
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1), "{done}");
    assert_eq!(done["attempts"][0]["outcome"], "ok");
    assert_eq!(
        done["input_kept"], false,
        "a finished run's input is destroyed"
    );
    assert!(
        !done.to_string().contains("ada@example.com"),
        "a run is metadata only: {done}"
    );

    // A run that could never start is refused, not queued.
    let refused = server.post(MAP, &key, json!({"not": "a contact"})).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["code"], "input-rejected");
    let unknown = server
        .post(
            "/v1/installations/mapper/actions/no-such-action?async=true",
            &key,
            mapper_input(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);

    let history = server.get("/v1/runs?installation=mapper", &key).await;
    let ids: Vec<&str> = history.body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [run.as_str()], "one run queued: {}", history.body);
    let succeeded = server.get("/v1/runs?status=succeeded", &key).await;
    assert_eq!(succeeded.body["runs"].as_array().map(Vec::len), Some(1));
    let dead = server.get("/v1/runs?status=dead", &key).await;
    assert_eq!(dead.body["runs"].as_array().map(Vec::len), Some(0));

    // Only a dead or failed run is retried.
    let retried = retry(&server, &key, &run).await;
    assert_eq!(retried.status, StatusCode::CONFLICT, "{}", retried.body);

    // Another tenant sees nothing of it.
    let beta = server.tenant("beta", &TENANT_SCOPES).await;
    let other = server.get(&format!("/v1/runs/{run}"), &beta).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.body);

    // The CLI lists through the running server, then from the store once it stopped.
    let listed = op.ok(&["runs", "list", "--tenant", "acme"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&run) && listed.contains("succeeded"),
        "{listed}"
    );
    server.stop();
    let shown = op.ok(&["runs", "show", "--tenant", "acme", &run, "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["attempts"][0]["outcome"], "ok", "{shown}");
    let dead = op.ok(&[
        "runs", "list", "--tenant", "acme", "--status", "dead", "--json",
    ]);
    assert_eq!(
        serde_json::from_slice::<Value>(&dead.stdout).expect("JSON"),
        json!([])
    );
    for refused in [
        op.airlock(&["runs", "retry", "--tenant", "acme", &run]),
        op.airlock(&["runs", "show", "--tenant", "beta", &run]),
    ] {
        assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    }
    assert_trail_verifies(&op);
    assert_eq!(
        records_of(&op, "invocation").len(),
        1,
        "one run, one invocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_queued_before_a_sigkill_run_once_after_the_restart() {
    let op = Operator::new();
    let queuing = Server::start(&op, &[], &["--workers", "0"]);
    let key = mapper(&op, &queuing).await;
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(queue(&queuing, &key, MAP, mapper_input()).await);
    }
    let waiting = queuing.get(&format!("/v1/runs/{}", runs[0]), &key).await;
    assert_eq!(waiting.body["status"], "queued", "no worker ran it");
    queuing.kill();

    let server = Server::start(&op, &[], &[]);
    for run in &runs {
        let done = until(&server, &key, run, ended).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1), "{done}");
    }
    server.stop();
    assert_trail_verifies(&op);
    assert_eq!(
        records_of(&op, "invocation").len(),
        runs.len(),
        "each run ran exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_keeps_timing_out_is_retried_then_dead_and_retry_queues_it_again() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let digest = server.upload(&op.example("hostile", "hostile.wasm")).await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server
        .post("/v1/installations", &key, json!({"bundle": digest}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);

    let spin = "/v1/installations/hostile/actions/spin-forever?async=true";
    let run = queue(&server, &key, spin, json!({})).await;
    let dead = until(&server, &key, &run, ended).await;
    assert_eq!(dead["status"], "dead", "{dead}");
    let attempts = dead["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 3, "max attempts: {dead}");
    for pair in attempts.windows(2) {
        assert_eq!(pair[0]["outcome"], "limit-timeout", "{dead}");
        assert!(
            pair[1]["started"].as_u64() >= pair[0]["ended"].as_u64(),
            "each retry starts after the attempt before it ended: {dead}"
        );
    }
    assert_eq!(
        dead["input_kept"], true,
        "a dead run keeps its input for retry"
    );

    let retried = retry(&server, &key, &run).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{}", retried.body);
    assert_eq!(retried.body["trigger"], "retry");
    let again = until(&server, &key, &run, |r| {
        r["attempts"].as_array().map_or(0, Vec::len) > 3
    })
    .await;
    assert_eq!(again["trigger"], "retry", "{again}");
    assert_eq!(again["attempts"][2]["outcome"], "limit-timeout", "{again}");
    server.stop();
}

/// With PostgreSQL: a run queued through a node without workers runs on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_queued_on_one_node_runs_on_another() {
    let Some(database) = TestDatabase::create("runs_nodes") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().expect("temp dir")).collect();
    let queuing = Server::node(&op, dirs[0].path(), "node-1", &["--workers", "0"]);
    let key = mapper(&op, &queuing).await;
    let run = queue(&queuing, &key, MAP, mapper_input()).await;
    let working = Server::node(&op, dirs[1].path(), "node-2", &[]);
    let done = until(&queuing, &key, &run, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    queuing.stop();
    working.stop();
    assert_trail_verifies(&op);
    let ran: Vec<Value> = records_of(&op, "invocation");
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0]["node"], "node-2", "{ran:?}");
}

/// Uninstall, through the API and the CLI: the installation's kv, webhook endpoints and runs
/// go with it (read back from the store itself), another installation's stay until it is
/// uninstalled too, each removal is in the trail, and the trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_leaves_nothing_of_the_installation_in_the_store() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &["--workers", "0"]);
    let digest = server.upload(&op.example("hostile", "hostile.wasm")).await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let mut schedules = Vec::new();
    for name in ["gone", "kept"] {
        let installed = server
            .post(
                "/v1/installations",
                &key,
                json!({"bundle": digest, "installation": name}),
            )
            .await;
        assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
        let set = server
            .post(
                &format!("/v1/installations/{name}/actions/kv"),
                &key,
                json!({"op": "set", "key": "cursor", "value": "42"}),
            )
            .await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.body);
        crate::webhooks::endpoint(&server, &key, json!({"installation": name, "action": "kv"}))
            .await;
        let scheduled = server
            .post(
                &format!("/v1/installations/{name}/schedules"),
                &key,
                json!({"cron": "0 0 1 1 *", "input": {"op": "get", "key": "cursor"}}),
            )
            .await;
        assert_eq!(scheduled.status, StatusCode::CREATED, "{}", scheduled.body);
        schedules.push(scheduled.body["id"].as_str().expect("an id").to_string());
        queue(
            &server,
            &key,
            &format!("/v1/installations/{name}/actions/kv?async=true"),
            json!({"op": "get", "key": "cursor"}),
        )
        .await;
    }

    let removed = server
        .call(
            Method::DELETE,
            "/v1/installations/gone",
            Some(&key),
            Body::None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(removed.body["kv_entries"], 1, "{}", removed.body);
    assert_eq!(removed.body["webhooks"], 1, "{}", removed.body);
    assert_eq!(removed.body["schedules"], 1, "{}", removed.body);
    assert_eq!(removed.body["runs"], 1, "{}", removed.body);
    let after = server.get("/v1/installations/gone", &key).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.body);
    let again = server
        .call(
            Method::DELETE,
            "/v1/installations/gone",
            Some(&key),
            Body::None,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    // The CLI lists schedules through the running server, and changes them once it is gone.
    let listed = op.ok(&["schedules", "list", "--tenant", "acme"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(&schedules[1]) && listed.contains("kept/kv \"0 0 1 1 *\" UTC"),
        "{listed}"
    );
    assert!(
        !listed.contains(&schedules[0]),
        "uninstalled with gone: {listed}"
    );
    server.stop();
    op.ok(&["schedules", "pause", "--tenant", "acme", &schedules[1]]);
    let listed = op.ok(&["schedules", "list", "--tenant", "acme", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed[0]["paused"], true, "{listed}");
    let unknown = op.airlock(&["schedules", "delete", "--tenant", "acme", "sch_nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");

    // The CLI uninstalls too; an installation that is not there is a usage error.
    let out = op.ok(&["uninstall", "--tenant", "acme", "--installation", "kept"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("1 kv entries, 1 webhook endpoints, 1 schedules, 1 runs"),
        "{said}"
    );
    let missing = op.airlock(&["uninstall", "--tenant", "acme", "--installation", "kept"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("kept"),
        "{missing:?}"
    );

    let store = airlock_store::Store::open(op.data(), None).expect("the store");
    let acme: airlock_runtime::ids::TenantId = "acme".parse().expect("tenant");
    let mut left = Vec::new();
    for name in ["gone", "kept"] {
        let id: airlock_runtime::ids::InstallationId = name.parse().expect("installation");
        use airlock_store::{
            Connections, Credentials, Installations, KvNamespaces, Runs, Schedules, Webhooks,
        };
        let runs = store
            .runs(
                &acme,
                &airlock_store::runs::RunQuery {
                    installation: Some(name.into()),
                    limit: 10,
                    ..Default::default()
                },
            )
            .expect("runs");
        let webhooks = store
            .webhooks_of(&acme, u64::MAX / 2)
            .expect("webhooks")
            .into_iter()
            .filter(|w| w.installation == name)
            .count();
        left.push((
            store.installation(&acme, &id).expect("read").is_some(),
            store
                .list_credentials(&acme, &id)
                .expect("credentials")
                .len()
                + store.connections_of(&acme, &id).expect("connections").len(),
            store.kv_usage(&acme, &id).expect("kv").keys,
            webhooks,
            store.schedules(&acme, Some(&id)).expect("schedules").len(),
            runs.len(),
        ));
    }
    assert_eq!(left, [(false, 0, 0, 0, 0, 0), (false, 0, 0, 0, 0, 0)]);
    drop(store);
    assert_trail_verifies(&op);
    let changed: Vec<Value> = records_of(&op, "installation-changed")
        .into_iter()
        .filter(|r| r["change"] == "uninstalled")
        .collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    let data = records_of(&op, "installation-data-deleted");
    assert_eq!(data.len(), 4, "kv and runs, twice: {data:?}");
    let webhooks = records_of(&op, "webhook-changed")
        .into_iter()
        .filter(|r| r["change"] == "deleted")
        .count();
    assert_eq!(webhooks, 2);
    let records = records_of(&op, "schedule-changed");
    let changes: Vec<&str> = records
        .iter()
        .map(|r| r["change"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        changes,
        ["set", "set", "deleted", "paused", "deleted"],
        "{records:?}"
    );
}

/// A stand-in GitHub that answers 503 with `Retry-After: 1` twice, then creates the issue: the
/// run's first two attempts end `upstream-503`, each next one starts at least a second later,
/// and the third succeeds. The tenant's limit on pending runs refuses the run past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_upstream_answers_503_twice_succeeds_on_its_third_attempt() {
    let ca = TestCa::new().expect("test CA");
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let github = Upstream::start(&ca, &["api.github.com"], UPSTREAM_IP, move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::json(503, json!({"message": "Service Unavailable"})).header("retry-after", "1")
        } else {
            Reply::json(
                201,
                json!({"number": 7, "html_url": "https://github.com/acme/widgets/issues/7"}),
            )
        }
    })
    .expect("upstream starts");
    let op = Operator::new();
    let ca_path = ca.write_pem(op.keys.path()).expect("CA written");
    let resolve = format!("api.github.com={}", github.addr());
    let server = Server::start(
        &op,
        &[
            "--resolve",
            &resolve,
            "--allow-private",
            "127.0.0.0/8",
            "--extra-root-ca",
            &ca_path.display().to_string(),
        ],
        &["--dev-insecure", "--tenant-runs", "1"],
    );
    let digest = server
        .upload(&op.example("github-issues", "github_issues.wasm"))
        .await;
    let mut scopes = TENANT_SCOPES.to_vec();
    scopes.push("credentials:write");
    let key = server.tenant("acme", &scopes).await;
    let installed = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "installation": "gh",
                   "grant": {"egress": [{"url": "https://api.github.com/repos", "methods": ["POST"]}]}}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let stored = server
        .call(
            Method::PUT,
            "/v1/installations/gh/credentials/github",
            Some(&key),
            Body::Json(json!({"value": "ghp_runs_canary"})),
        )
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);

    let path = "/v1/installations/gh/actions/create?async=true";
    let issue = json!({"owner": "acme", "repo": "widgets", "title": "Flaky upstream"});
    let run = queue(&server, &key, path, issue.clone()).await;
    let second = server
        .call(Method::POST, path, Some(&key), Body::Json(issue))
        .await;
    assert_eq!(
        (second.status, second.body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("busy")),
        "one run pending is all --tenant-runs 1 allows: {}",
        second.body
    );

    let done = until(&server, &key, &run, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let attempts = done["attempts"].as_array().expect("attempts");
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["upstream-503", "upstream-503", "ok"], "{done}");
    for pair in attempts.windows(2) {
        let waited = pair[1]["started"].as_u64().unwrap_or(0)
            - pair[0]["ended"].as_u64().unwrap_or(u64::MAX);
        assert!(
            waited >= 1_000,
            "the next attempt waits at least the upstream's Retry-After: {done}"
        );
    }
    assert_eq!(answered.load(Ordering::SeqCst), 3);
    assert!(
        !done.to_string().contains("Flaky upstream"),
        "metadata only: {done}"
    );
    server.stop();
    assert_trail_verifies(&op);
}

/// A webhook delivery to an action that does not ask for `mode = "sync"` is verified,
/// deduplicated, queued and answered `202` at once; accepted by a node without workers and
/// SIGKILLed, it runs once after the restart, with trigger `webhook`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_is_queued_answered_202_and_runs_once_after_a_sigkill() {
    let op = Operator::new();
    let accepting = Server::start(&op, &[], &["--workers", "0"]);
    let digest = accepting
        .upload(&op.example("hostile", "hostile.wasm"))
        .await;
    let key = accepting.tenant("acme", &TENANT_SCOPES).await;
    let installed = accepting
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "installation": "hooked"}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let (path, secret, _) = crate::webhooks::endpoint(
        &accepting,
        &key,
        json!({"installation": "hooked", "action": "kv"}),
    )
    .await;
    let body =
        serde_json::to_vec(&json!({"op": "set", "key": "hooked", "value": "once"})).expect("JSON");
    let headers = crate::webhooks::standard(&secret, "msg_async_1", crate::webhooks::now(), &body);
    let accepted = crate::webhooks::deliver(&accepting, &path, &headers, &body).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let run = accepted.body["run"].as_str().expect("a run id").to_string();
    let replay = crate::webhooks::deliver(&accepting, &path, &headers, &body).await;
    assert_eq!(
        (replay.status, replay.code()),
        (StatusCode::CONFLICT, "duplicate-delivery"),
        "{}",
        replay.body
    );
    let invalid = serde_json::to_vec(&json!({"op": 5})).expect("JSON");
    let refused = crate::webhooks::deliver(
        &accepting,
        &path,
        &crate::webhooks::standard(&secret, "msg_async_2", crate::webhooks::now(), &invalid),
        &invalid,
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "input-rejected"),
        "a delivery its action could never take is refused, not queued: {}",
        refused.body
    );
    let waiting = accepting.get(&format!("/v1/runs/{run}"), &key).await;
    assert_eq!(waiting.body["status"], "queued", "{}", waiting.body);
    assert_eq!(waiting.body["trigger"], "webhook", "{}", waiting.body);
    accepting.kill();

    let server = Server::start(&op, &[], &[]);
    let done = until(&server, &key, &run, ended).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"].as_array().map(Vec::len), Some(1), "{done}");
    let replay = crate::webhooks::deliver(&server, &path, &headers, &body).await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{}", replay.body);
    let listed = server.get("/v1/runs?installation=hooked", &key).await;
    assert_eq!(
        listed.body["runs"].as_array().map(Vec::len),
        Some(1),
        "one delivery, one run: {}",
        listed.body
    );
    server.stop();
    assert_trail_verifies(&op);
    let ran = records_of(&op, "invocation");
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(ran[0]["trigger"], "webhook", "{ran:?}");
}

/// Runs per second end to end (queued through the API, run by the workers, recorded) against
/// direct invocations through the same server in the same run, on sled and, when a server is
/// named, on PostgreSQL. Figures go to stderr (docs/benchmarks.md); what is asserted is that
/// every run and every invocation happened exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_runs_against_direct_invocations_per_second() {
    let database = TestDatabase::create("runs_throughput");
    let mut stores = vec![("sled", None)];
    if let Some(database) = &database {
        stores.push(("postgres", Some(database.url.clone())));
    }
    for (store, url) in stores {
        let op = match &url {
            Some(url) => Operator::on_postgres(url),
            None => Operator::new(),
        };
        let server = std::sync::Arc::new(Server::start(&op, &[], &[]));
        let key = mapper(&op, &server).await;
        let direct = load(
            &server,
            &key,
            "/v1/installations/mapper/actions/map-contact",
            StatusCode::OK,
        )
        .await;
        let started = Instant::now();
        let queued = load(&server, &key, MAP, StatusCode::ACCEPTED).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        while succeeded(&server, &key).await < LOAD {
            assert!(Instant::now() < deadline, "queued runs never all succeeded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let end_to_end = LOAD as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "throughput ({store}): {LOAD} direct invocations {direct:.0}/s; {LOAD} queued runs \
             enqueued {queued:.0}/s, run and recorded {end_to_end:.0}/s end to end \
             ({:.2} × direct)",
            end_to_end / direct
        );
        let server = std::sync::Arc::into_inner(server).expect("clients are done");
        server.stop();
        assert_trail_verifies(&op);
        assert_eq!(
            records_of(&op, "invocation").len(),
            2 * LOAD,
            "each exactly once"
        );
    }
}

/// Invocations or runs of the load test.
const LOAD: usize = 400;
/// Clients sending them at once.
const CLIENTS: usize = 8;

/// Sends [`LOAD`] mapper inputs to `path` from [`CLIENTS`] clients, each answered `expect`;
/// how many per second.
async fn load(server: &std::sync::Arc<Server>, key: &str, path: &str, expect: StatusCode) -> f64 {
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (server, key, path) = (server.clone(), key.to_string(), path.to_string());
            tokio::spawn(async move {
                for _ in 0..LOAD / CLIENTS {
                    let reply = server.post(&path, &key, mapper_input()).await;
                    assert_eq!(reply.status, expect, "{}", reply.body);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    LOAD as f64 / started.elapsed().as_secs_f64()
}

/// How many of the tenant's runs succeeded, read a page at a time.
async fn succeeded(server: &Server, key: &str) -> usize {
    let mut count = 0;
    let mut after = String::new();
    loop {
        let page = server
            .get(&format!("/v1/runs?status=succeeded{after}"), key)
            .await;
        count += page.body["runs"].as_array().map_or(0, Vec::len);
        match page.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return count,
        }
    }
}
