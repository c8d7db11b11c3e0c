//! Cron schedules (docs/api.md, "Schedules"): validated on entry (a schedulable action, a cron
//! expression, a time zone, an input its schema takes); each tick queues one run with trigger
//! `schedule`; paused, nothing fires; every change audited. With two nodes on PostgreSQL, a
//! schedule of every second fires each tick once: none twice, none lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

use airlock_store::postgres::testing::TestDatabase;

use crate::operator::Operator;
use crate::serving::{Body, Server, TENANT_SCOPES, assert_trail_verifies, records_of};

const EVERY_SECOND: &str = "*/1 * * * * *";

/// The hostile example installed as `ticker` for tenant acme through `server`; acme's key.
async fn ticker(server: &Server, op: &Operator) -> String {
    let digest = server.upload(&op.example("hostile", "hostile.wasm")).await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let installed = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "installation": "ticker"}),
        )
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    key
}

async fn schedule(server: &Server, key: &str, request: Value) -> crate::serving::Reply {
    server
        .post("/v1/installations/ticker/schedules", key, request)
        .await
}

/// The schedule once `done` says it is, polled for up to 30 s.
async fn until(server: &Server, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = server.get("/v1/schedules?installation=ticker", key).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        let schedule = listed.body["schedules"][0].clone();
        if done(&schedule) {
            return schedule;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule never got there: {schedule}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn set_paused(server: &Server, key: &str, id: &str, paused: bool) -> Value {
    let verb = if paused { "pause" } else { "resume" };
    let reply = server
        .call(
            Method::POST,
            &format!("/v1/schedules/{id}/{verb}"),
            Some(key),
            Body::None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// The ticks of the installation's runs, in order, once every run has ended.
async fn ticks(server: &Server, key: &str) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = server.get("/v1/runs?installation=ticker", key).await;
        let runs = listed.body["runs"].as_array().cloned().unwrap_or_default();
        let ended = runs.iter().all(|r| r["status"] == "succeeded");
        if ended {
            assert!(runs.iter().all(|r| r["trigger"] == "schedule"), "{runs:?}");
            let mut ticks: Vec<u64> = runs.iter().filter_map(|r| r["tick"].as_u64()).collect();
            assert_eq!(
                ticks.len(),
                runs.len(),
                "every run names its tick: {runs:?}"
            );
            ticks.sort_unstable();
            return ticks;
        }
        assert!(Instant::now() < deadline, "runs never ended: {runs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ticks` hold no tick twice and miss none between the first and the last.
fn each_second_once(ticks: &[u64]) {
    let distinct: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a tick was lost: {ticks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_and_nothing_while_paused() {
    let op = Operator::new();
    let server = Server::start(&op, &[], &[]);
    let key = ticker(&server, &op).await;

    for (request, says) in [
        (
            json!({"action": "spin-forever", "cron": "* * * * *"}),
            "no schedulable action `spin-forever`",
        ),
        (json!({"cron": "61 * * * *"}), "invalid cron expression"),
        (
            json!({"cron": "* * * * *", "timezone": "Mars/Olympus"}),
            "unknown time zone",
        ),
        (json!({"cron": "0 0 30 2 *"}), "never fires"),
    ] {
        let refused = schedule(&server, &key, request).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            refused.body
        );
        assert_eq!(refused.body["error"]["code"], "schedule-rejected");
        assert!(
            refused.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(says),
            "{}",
            refused.body
        );
    }
    let bad_input = schedule(
        &server,
        &key,
        json!({"cron": EVERY_SECOND, "input": {"op": 5}}),
    )
    .await;
    assert_eq!(
        (bad_input.status, bad_input.body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("input-rejected")),
        "{}",
        bad_input.body
    );

    let created = schedule(
        &server,
        &key,
        json!({"cron": EVERY_SECOND, "timezone": "Europe/Berlin",
               "input": {"op": "set", "key": "ticked", "value": "yes"}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["action"], "kv", "the one schedulable action");
    let id = created.body["id"].as_str().expect("an id").to_string();
    until(&server, &key, |s| s["fired"].as_u64() >= Some(3)).await;
    let paused = set_paused(&server, &key, &id, true).await;
    assert_eq!(paused["paused"], true);
    assert!(paused.get("next_tick").is_none(), "{paused}");
    let fired = paused["fired"].as_u64().expect("fired");
    let ticks = ticks(&server, &key).await;
    assert_eq!(ticks.len() as u64, fired, "{ticks:?}");
    each_second_once(&ticks);

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = until(&server, &key, |_| true).await;
    assert_eq!(
        still["fired"].as_u64(),
        Some(fired),
        "nothing fires while paused: {still}"
    );
    let resumed = set_paused(&server, &key, &id, false).await;
    assert!(
        resumed["next_tick"].as_u64() > paused["last_tick"].as_u64(),
        "{resumed}"
    );
    until(&server, &key, |s| s["fired"].as_u64() > Some(fired)).await;
    let deleted = server
        .call(
            Method::DELETE,
            &format!("/v1/schedules/{id}"),
            Some(&key),
            Body::None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let listed = server.get("/v1/schedules", &key).await;
    assert_eq!(listed.body["schedules"], json!([]), "{}", listed.body);
    server.stop();

    assert_trail_verifies(&op);
    let changes: Vec<Value> = records_of(&op, "schedule-changed")
        .iter()
        .map(|r| r["change"].clone())
        .collect();
    assert_eq!(changes, ["set", "paused", "resumed", "deleted"]);
    let runs = records_of(&op, "invocation");
    assert!(runs.iter().all(|r| r["trigger"] == "schedule"), "{runs:?}");
}

/// Two nodes on one PostgreSQL, both firing schedules: every second fires once, on one node
/// or the other, and no second between the first and the last is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_fire_each_tick_of_a_schedule_once() {
    let Some(database) = TestDatabase::create("schedules_nodes") else {
        return;
    };
    let op = Operator::on_postgres(&database.url);
    let dirs: Vec<TempDir> = (0..2).map(|_| TempDir::new().expect("temp dir")).collect();
    let first = Server::node(&op, dirs[0].path(), "node-1", &[]);
    let second = Server::node(&op, dirs[1].path(), "node-2", &[]);
    let key = ticker(&first, &op).await;
    let created = schedule(
        &first,
        &key,
        json!({"cron": EVERY_SECOND, "input": {"op": "get", "key": "ticked"}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("an id").to_string();
    until(&second, &key, |s| s["fired"].as_u64() >= Some(6)).await;
    let paused = set_paused(&second, &key, &id, true).await;
    assert_eq!(
        paused["skipped"], 0,
        "no tick lost while the nodes lived: {paused}"
    );
    let ticks = ticks(&first, &key).await;
    assert_eq!(ticks.len() as u64, paused["fired"].as_u64().expect("fired"));
    each_second_once(&ticks);
    first.stop();
    second.stop();
    assert_trail_verifies(&op);
}
