//! Crash at any moment: `airlock serve` is SIGKILLed at a random point of a mixed load
//! (installs, credential writes, kv writes, invocations, webhook deliveries), 50 times in a row,
//! and restarted on the same store each time. The store opens every time, the audit trail
//! verifies after every crash, and every write the server acknowledged to a client is there,
//! right after its crash and at the end (docs/deploy.md, "Crashes, full disks and damaged
//! stores"). On sled, and on PostgreSQL (skipped, saying why, without one; CI never skips).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use airlock_store::postgres::testing::TestDatabase;

use crate::cluster::roomy_hostile;
use crate::operator::Operator;
use crate::serving::{Server, TENANT_SCOPES, mapper_input};
use crate::support::stdout;
use crate::webhooks::{now, standard};

const CYCLES: usize = 50;
const MAPPER: &str = "/v1/installations/mapper/actions/map-contact";
const KV: &str = "/v1/installations/hostile/actions/kv";

/// A write the server acknowledged to its client.
#[derive(Debug, Clone)]
enum Acked {
    /// An installation answered `201`.
    Installed(String),
    /// The `github` credential of an installation, answered `201`.
    Credential(String),
    /// A kv key set to a value, answered `{}`.
    Kv(String, String),
    /// An invocation answered `200`, by its audit record.
    Invoked(u64),
    /// A webhook delivery answered `202`, by the run it queued.
    Queued(String),
}

/// What every cycle's load needs: the tenant's key, the bundle it installs, the webhook
/// endpoint it delivers to.
struct Setup {
    key: String,
    github: String,
    hook: String,
    secret: String,
}

/// A small xorshift generator: the kill points, reproducible from the seed the test prints
/// (`AIRLOCK_CRASH_SEED`).
struct Points(u64);

impl Points {
    fn new() -> Self {
        let seed = std::env::var("AIRLOCK_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("after 1970")
                    .subsec_nanos()
                    .into()
            })
            | 1;
        eprintln!("crash points: AIRLOCK_CRASH_SEED={seed}");
        Self(seed)
    }

    /// How long into a cycle's load the server dies: 50 ms to 1 s.
    fn next(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(50 + self.0 % 950)
    }
}

/// Status, `airlock-audit-record` and JSON body of one request; the transport's error once
/// the server is gone.
async fn send(
    http: &Client,
    base: &str,
    method: Method,
    path: &str,
    key: Option<&str>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<(StatusCode, Option<u64>, Value), reqwest::Error> {
    let mut request = http
        .request(method, format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await?;
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

fn json_body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

/// One load client of `kind` (0 installs and stores a credential, 1 sets kv keys, 2 invokes,
/// 3 delivers webhooks, each queueing a run of `hostile`'s kv action) until the server is gone; returns what was acknowledged and any
/// answer that was wrong while the server lived.
async fn load(
    base: String,
    setup: Arc<Setup>,
    cycle: usize,
    kind: usize,
) -> (Vec<Acked>, Vec<String>) {
    let http = Client::new();
    let key = Some(setup.key.as_str());
    let (mut acked, mut wrong) = (Vec::new(), Vec::new());
    for i in 0.. {
        let tag = format!("{cycle}-{i}");
        let answered = match kind {
            0 => {
                let installation = format!("gh-{tag}");
                let request = json!({
                    "bundle": setup.github,
                    "installation": installation,
                    "grant": {"egress": [{"url": "https://api.github.com/repos", "methods": ["GET"]}]},
                });
                let path = "/v1/installations";
                match send(
                    &http,
                    &base,
                    Method::POST,
                    path,
                    key,
                    &[],
                    json_body(&request),
                )
                .await
                {
                    Ok((StatusCode::CREATED, ..)) => {
                        acked.push(Acked::Installed(installation.clone()));
                        let path = format!("/v1/installations/{installation}/credentials/github");
                        let value = json!({ "value": format!("ghp_{tag}") });
                        send(
                            &http,
                            &base,
                            Method::PUT,
                            &path,
                            key,
                            &[],
                            json_body(&value),
                        )
                        .await
                        .map(|(status, _, body)| {
                            if status == StatusCode::CREATED {
                                acked.push(Acked::Credential(installation));
                            } else {
                                wrong.push(format!("credential {tag}: {status} {body}"));
                            }
                        })
                    }
                    Ok((status, _, body)) => {
                        wrong.push(format!("install {tag}: {status} {body}"));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            1 => {
                let (k, v) = (format!("k-{tag}"), format!("v-{tag}"));
                let set = json!({"op": "set", "key": k, "value": v});
                send(&http, &base, Method::POST, KV, key, &[], json_body(&set))
                    .await
                    .map(|(status, _, body)| {
                        if status == StatusCode::OK && body == json!({}) {
                            acked.push(Acked::Kv(k, v));
                        } else {
                            wrong.push(format!("kv {tag}: {status} {body}"));
                        }
                    })
            }
            2 => send(
                &http,
                &base,
                Method::POST,
                MAPPER,
                key,
                &[],
                json_body(&mapper_input()),
            )
            .await
            .map(|(status, record, body)| match record {
                Some(seq) if status == StatusCode::OK => acked.push(Acked::Invoked(seq)),
                _ => wrong.push(format!("invoke {tag}: {status} {body}")),
            }),
            _ => {
                let body = json_body(&json!({"op": "get", "key": format!("k-{tag}")}));
                let headers = standard(&setup.secret, &format!("msg_{tag}"), now(), &body);
                send(
                    &http,
                    &base,
                    Method::POST,
                    &setup.hook,
                    None,
                    &headers,
                    body,
                )
                .await
                .map(|(status, _, body)| match body["run"].as_str() {
                    Some(run) if status == StatusCode::ACCEPTED => {
                        acked.push(Acked::Queued(run.to_string()));
                    }
                    _ => wrong.push(format!("delivery {tag}: {status} {body}")),
                })
            }
        };
        if answered.is_err() {
            break;
        }
    }
    (acked, wrong)
}

/// The type of every record in the trail, by sequence number, read with the CLI.
fn trail(op: &Operator) -> HashMap<u64, String> {
    stdout(&op.ok(&["audit", "export"]))
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("a record");
            let seq = record["seq"].as_u64().expect("seq");
            (seq, record["type"].as_str().expect("type").to_string())
        })
        .collect()
}

/// Checks every write in `acked` is there, through `server`; returns those that are not.
async fn missing(server: &Server, setup: &Setup, acked: &[Acked]) -> Vec<String> {
    let key = Some(setup.key.as_str());
    let get = async |path: String| {
        let got = send(
            &server.http,
            &server.base,
            Method::GET,
            &path,
            key,
            &[],
            Vec::new(),
        );
        got.await.expect("the server answers")
    };
    let mut lost = Vec::new();
    for write in acked {
        let there = match write {
            Acked::Installed(id) => {
                get(format!("/v1/installations/{id}")).await.0 == StatusCode::OK
            }
            Acked::Credential(id) => {
                let (_, _, body) = get(format!("/v1/installations/{id}/credentials")).await;
                body["credentials"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "github"))
            }
            Acked::Kv(k, v) => {
                let read = json_body(&json!({"op": "get", "key": k}));
                let got = send(&server.http, &server.base, Method::POST, KV, key, &[], read);
                got.await.expect("the server answers").2 == json!({"found": true, "value": v})
            }
            Acked::Queued(run) => get(format!("/v1/runs/{run}")).await.0 == StatusCode::OK,
            Acked::Invoked(_) => true,
        };
        if !there {
            lost.push(format!("{write:?}"));
        }
    }
    lost
}

/// Invocations acknowledged with a record the trail does not hold as an invocation.
fn unrecorded(trail: &HashMap<u64, String>, acked: &[Acked]) -> Vec<u64> {
    acked
        .iter()
        .filter_map(|write| match write {
            Acked::Invoked(seq) if trail.get(seq).map(String::as_str) != Some("invocation") => {
                Some(*seq)
            }
            _ => None,
        })
        .collect()
}

/// The whole test on `op`'s store.
async fn crash_fifty_times(op: &Operator) {
    let server = Server::start(op, &[], &[]);
    let mapper = server
        .upload(&op.example("contact-mapper", "contact_mapper.wasm"))
        .await;
    let hostile = server.upload(&roomy_hostile(op)).await;
    let github = server
        .upload(&op.example("github-issues", "github_issues.wasm"))
        .await;
    let scopes = [&TENANT_SCOPES[..], &["credentials:write"]].concat();
    let key = server.key("acme", &scopes, None).await;
    let installed = server.install_mapper(&key, &mapper).await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let installed = server
        .post("/v1/installations", &key, json!({"bundle": hostile}))
        .await;
    assert_eq!(installed.status, StatusCode::CREATED, "{}", installed.body);
    let hook = server
        .post(
            "/v1/webhooks",
            &key,
            json!({"installation": "hostile", "action": "kv"}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let field = |name: &str| hook.body[name].as_str().expect(name).to_string();
    let setup = Arc::new(Setup {
        key,
        github,
        hook: field("path"),
        secret: field("secret"),
    });

    let mut points = Points::new();
    let mut server = server;
    let (mut all, mut wrong) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for cycle in 0..CYCLES {
        let loads: Vec<_> = (0..4)
            .map(|kind| tokio::spawn(load(server.base.clone(), setup.clone(), cycle, kind)))
            .collect();
        tokio::time::sleep(points.next()).await;
        server.kill();
        let mut acked = Vec::new();
        for load in loads {
            let (a, w) = load.await.expect("a load client");
            acked.extend(a);
            wrong.extend(w);
        }
        // The store as the crash left it: the trail verifies and holds every invocation
        // answered; then it opens for a server that has every other write answered.
        op.ok(&["audit", "verify"]);
        let lost = unrecorded(&trail(op), &acked);
        assert!(
            lost.is_empty(),
            "cycle {cycle}: answered, not in the trail: {lost:?}"
        );
        server = Server::start(op, &[], &[]);
        let lost = missing(&server, &setup, &acked).await;
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} writes lost: {lost:?}",
            lost.len()
        );
        all.extend(acked);
    }
    let count = |kind: fn(&Acked) -> bool| all.iter().filter(|a| kind(a)).count();
    let counts = [
        count(|a| matches!(a, Acked::Installed(_))),
        count(|a| matches!(a, Acked::Credential(_))),
        count(|a| matches!(a, Acked::Kv(..))),
        count(|a| matches!(a, Acked::Invoked(_))),
        count(|a| matches!(a, Acked::Queued(_))),
    ];
    eprintln!(
        "{CYCLES} crashes in {:.1?}: acknowledged installs, credentials, kv sets, invocations, \
         deliveries: {counts:?}",
        started.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers, the first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(
        counts.iter().all(|n| *n > 0),
        "every kind of write was made: {counts:?}"
    );
    let lost = missing(&server, &setup, &all).await;
    assert!(
        lost.is_empty(),
        "at the end, {} writes lost: {lost:?}",
        lost.len()
    );
    server.stop();
    op.ok(&["audit", "verify"]);
    let lost = unrecorded(&trail(op), &all);
    assert!(
        lost.is_empty(),
        "at the end, answered, not in the trail: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_killed_fifty_times_under_load_opens_verifies_and_keeps_every_acknowledged_write() {
    crash_fifty_times(&Operator::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_fifty_times_under_load_opens_verifies_and_keeps_every_acknowledged_write()
{
    let Some(database) = TestDatabase::create("crashes") else {
        return;
    };
    crash_fifty_times(&Operator::on_postgres(&database.url)).await;
}
