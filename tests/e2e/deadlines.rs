//! A guest cannot outlive its timeout, whatever it does in or between host calls, and whatever
//! its upstream does (SB-06, SB-07, SB-14; security round 2, item 1).
//!
//! The hostile guest blocks in a request body it streams after handing the request over, on a
//! response head that never comes, on a body that drips a byte at a time, on clock pollables,
//! and in floods of cheap host calls; the upstream is a [`Tarpit`] that stalls each connection
//! one way or another. Each invocation must end within its timeout plus
//! [`DEADLINE_GRACE`], with every request still in flight aborted (the tarpit sees its
//! connections close) and recorded as aborted.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_host_api::egress::{ABORTED, Decision};
use airlock_runtime::Invocation;
use airlock_runtime::invoke::DEADLINE_GRACE;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::egress::{Egress, UPSTREAM_IP};
use crate::mock::{Stall, Tarpit, sockets_to};
use crate::operator::Operator;
use crate::serving::{Reply, Server, TENANT_SCOPES, records_of};
use crate::support::{airlock_command, dev_switches, outcome, read_example, run_against_mocks};
use airlock_testkit::TestCa;

/// The hostile example's declared timeout.
const TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const SINK: &str = "sink.hostile.test";
pub(crate) const URL: &str = "https://sink.hostile.test/upload";

/// A tarpit for [`SINK`] stalling as `stall`, and a runtime pinning the name to it.
pub(crate) fn tarpit(stall: Stall) -> (Tarpit, Egress) {
    let ca = TestCa::new().expect("test CA");
    let tarpit = Tarpit::start(&ca, &[SINK], UPSTREAM_IP, stall);
    let egress = Egress::new(&[format!("{SINK}={}", tarpit.addr())], true, Some(&ca));
    (tarpit, egress)
}

/// Runs a hostile action; asserts it ended as `expected` within the timeout and its grace,
/// measured by the invocation and from outside it.
async fn attack(egress: &Egress, action: &str, input: Value, expected: &str) -> Invocation {
    let hostile = egress.load("hostile");
    let config = hostile.validate_config(None).expect("no config");
    let started = Instant::now();
    let ran = egress
        .runtime
        .invoke(&hostile, &config, action, &input.to_string())
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        outcome(&ran),
        expected,
        "{action} {input}: {:?}",
        ran.result
    );
    if expected == "limit-timeout" {
        assert!(ran.duration >= TIMEOUT, "{action}: stopped early");
    }
    for took in [ran.duration, elapsed] {
        assert!(
            took <= TIMEOUT + DEADLINE_GRACE,
            "{action} {input}: ended after {took:?}, past {TIMEOUT:?} + {DEADLINE_GRACE:?}"
        );
    }
    ran
}

/// Waits (briefly) until this process holds no connection to the tarpit.
pub(crate) async fn assert_connections_closed(tarpit: &Tarpit, what: &str) {
    let until = Instant::now() + Duration::from_secs(1);
    while sockets_to(tarpit.addr()) > 0 {
        assert!(
            Instant::now() < until,
            "{what}: a connection is still open after the invocation ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tarpit.accepts() > 0, "{what}: the tarpit was never reached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_requests_end_at_the_timeout_and_are_aborted() {
    // (stall, action, whether the request is still in flight at the deadline)
    let cases = [
        (Stall::Silent, "stream-after-handle", true),
        (Stall::Silent, "await-response", true),
        // Swallowed: the 10 MiB request body limit fails the request first; the guest then
        // waits on the failed response forever.
        (Stall::Swallow, "stream-after-handle", false),
        (Stall::Swallow, "await-response", true),
        (Stall::DripHead, "stream-after-handle", true),
        (Stall::DripHead, "await-response", true),
        (Stall::DripBody, "stream-after-handle", true),
        (Stall::DripBody, "await-response", true),
    ];
    for (stall, action, in_flight) in cases {
        let (tarpit, egress) = tarpit(stall);
        let ran = attack(&egress, action, json!({ "url": URL }), "limit-timeout").await;
        let what = format!("{stall:?} {action}");
        assert_eq!(ran.egress.len(), 1, "{what}: {:?}", ran.egress);
        let event = &ran.egress[0];
        if in_flight {
            assert_eq!(event.reason.as_deref(), Some(ABORTED), "{what}: {event:?}");
        } else {
            assert_eq!(event.decision, Decision::Failed, "{what}: {event:?}");
            assert_ne!(event.reason.as_deref(), Some(ABORTED), "{what}: {event:?}");
        }
        assert_connections_closed(&tarpit, &what).await;
    }
}

/// Upstream faults through the broker: whatever the upstream breaks, the invocation ends
/// within its timeout and the exchange is recorded with the class of what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_end_within_the_timeout_with_a_recorded_class() {
    // (fault, outcome, the exchange's decision and reason, body bytes the guest read)
    let cases = [
        (
            Stall::NoHandshake,
            "limit-timeout",
            Decision::Failed,
            Some(ABORTED),
            None,
        ),
        (
            Stall::Trickle,
            "limit-timeout",
            Decision::Failed,
            Some(ABORTED),
            None,
        ),
        (
            Stall::ResetMidBody,
            "ok",
            Decision::Failed,
            Some("response-body-reset"),
            Some(1000),
        ),
        (
            Stall::EndlessBody,
            "ok",
            Decision::Failed,
            Some("response-body-too-large"),
            Some(10 << 20),
        ),
        // Read to its length; the excess could pose as the next response, so the connection
        // closes instead of going back to the pool (asserted below, as for every case).
        (
            Stall::LongerThanLength,
            "ok",
            Decision::Allowed,
            None,
            Some(10),
        ),
        (
            Stall::BadChunks,
            "ok",
            Decision::Failed,
            Some("response-body-invalid"),
            Some(4),
        ),
        (
            Stall::ManyHeaders,
            "guest-error",
            Decision::Failed,
            Some("response-head-too-large"),
            None,
        ),
    ];
    for (stall, expected, decision, reason, read) in cases {
        let (tarpit, egress) = tarpit(stall);
        let ran = attack(&egress, "await-response", json!({ "url": URL }), expected).await;
        let what = format!("{stall:?}");
        assert_eq!(ran.egress.len(), 1, "{what}: {:?}", ran.egress);
        let event = &ran.egress[0];
        assert_eq!(event.decision, decision, "{what}: {event:?}");
        assert_eq!(event.reason.as_deref(), reason, "{what}: {event:?}");
        if let Some(read) = read {
            let output = ran.result.as_ref().expect("an output").to_value();
            assert_eq!(output["bytes"], read, "{what}: {output}");
        }
        assert_connections_closed(&tarpit, &what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_held_unread_are_aborted_with_the_invocation() {
    let (tarpit, egress) = tarpit(Stall::DripBody);
    let ran = attack(
        &egress,
        "hoard-responses",
        json!({ "url": URL, "count": 4 }),
        "limit-timeout",
    )
    .await;
    assert_eq!(ran.egress.len(), 4, "{:?}", ran.egress);
    for event in &ran.egress {
        assert_eq!(event.decision, Decision::Allowed, "{event:?}");
        assert_eq!(event.status, Some(200), "{event:?}");
        assert_eq!(event.reason.as_deref(), Some(ABORTED), "{event:?}");
    }
    assert_connections_closed(&tarpit, "hoard-responses").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_pollables_and_host_call_floods_end_at_the_timeout() {
    let egress = Egress::new(&[], false, None);
    for (action, input) in [
        ("sleep", json!({})),
        ("poll-many", json!({ "count": 64 })),
        ("flood-calls", json!({ "what": "log" })),
        ("flood-calls", json!({ "what": "kv" })),
        ("flood-calls", json!({ "what": "clock" })),
    ] {
        attack(&egress, action, input, "limit-timeout").await;
    }
    // The same pollable, due before the deadline, lets the guest finish: the host stops only
    // what runs past it.
    let woke = attack(&egress, "sleep", json!({ "ms": 100 }), "ok").await;
    assert!(woke.duration >= Duration::from_millis(100));
}

/// `airlock run` of a guest streaming a body into an upstream that never reads it: the
/// process exits with the timeout's code, its invocation within the grace.
#[test]
fn the_cli_exits_when_its_guest_blocks_in_a_request_body() {
    let ca = TestCa::new().expect("test CA");
    let data = tempfile::TempDir::new().expect("temp dir");
    let tarpit = Tarpit::start(&ca, &[SINK], UPSTREAM_IP, Stall::Silent);
    let pem = ca.write_pem(data.path()).expect("CA written");
    let pin = format!("{SINK}={}", tarpit.addr());
    let mut args = run_against_mocks(&[pin], &pem, "hostile", "stream-after-handle");
    args.extend([
        "--input".into(),
        json!({ "url": URL }).to_string(),
        "--json".into(),
    ]);
    let started = Instant::now();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = airlock_command(data.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("airlock runs");
    // Generous for compiling the component on a loaded machine; a hung process never exits.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("airlock run still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(5), "{stderr}");
    // `--json` prints the output and the summary as one JSON object on stdout.
    let document: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let summary = &document["summary"];
    assert_eq!(summary["outcome"], "limit-timeout", "{summary}");
    let took = Duration::from_micros(summary["duration_us"].as_u64().expect("duration"));
    assert!(took <= TIMEOUT + DEADLINE_GRACE, "{took:?}");
    assert_eq!(summary["egress"][0]["reason"], ABORTED, "{summary}");
}

/// `airlock serve` with the hostile example installed under `timeout` (egress granted to
/// [`SINK`], pinned to `tarpit`), admitting `running` invocations at once.
pub(crate) async fn hostile_server(
    op: &Operator,
    ca: &TestCa,
    tarpit: &SocketAddr,
    running: &str,
    timeout: &str,
) -> (Server, String) {
    let pem = ca.write_pem(op.keys.path()).expect("CA written");
    let switches = dev_switches(&[format!("{SINK}={tarpit}")], &pem);
    let switches: Vec<&str> = switches.iter().map(String::as_str).collect();
    let manifest = read_example("hostile", "airlock.toml")
        .replace("timeout = \"1s\"", &format!("timeout = \"{timeout}\""));
    let hostile = op.sign("hostile", "hostile.wasm", &manifest, "hostile.airlock");
    let server = Server::start(
        op,
        &switches,
        &[
            "--dev-insecure",
            "--max-concurrent",
            running,
            "--tenant-concurrent",
            running,
        ],
    );
    let digest = server.upload(&hostile).await;
    let key = server.tenant("acme", &TENANT_SCOPES).await;
    let grant =
        json!({"egress": [{"url": "https://sink.hostile.test", "methods": ["GET", "POST"]}]});
    let reply = server
        .post(
            "/v1/installations",
            &key,
            json!({"bundle": digest, "installation": "hostile", "grant": grant}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    (server, key)
}

/// Runs `count` invocations of `action` at once; returns each reply and when it came.
pub(crate) async fn at_once(
    server: &Arc<Server>,
    key: &str,
    action: &str,
    input: Value,
    count: usize,
) -> Vec<(Reply, Duration)> {
    let started = Instant::now();
    let calls = (0..count).map(|_| {
        let (server, key, input) = (server.clone(), key.to_string(), input.clone());
        let path = format!("/v1/installations/hostile/actions/{action}");
        tokio::spawn(async move {
            let reply = server.post(&path, &key, input).await;
            (reply, started.elapsed())
        })
    });
    let mut replies = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        replies.push(call.await.expect("call task"));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gets_its_slots_back_at_each_timeout() {
    let ca = TestCa::new().expect("test CA");
    let tarpit = Tarpit::start(&ca, &[SINK], UPSTREAM_IP, Stall::Silent);
    let op = Operator::new();
    let (server, key) = hostile_server(&op, &ca, &tarpit.addr(), "2", "1s").await;
    let server = Arc::new(server);
    // Six guests blocked in request bodies, two slots: three waves, each ended by the timeout.
    let replies = at_once(
        &server,
        &key,
        "stream-after-handle",
        json!({ "url": URL }),
        6,
    )
    .await;
    for (reply, _) in &replies {
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
        assert_eq!(
            reply.body["error"]["code"], "limit-timeout",
            "{}",
            reply.body
        );
    }
    let last = replies.iter().map(|(_, at)| *at).max().expect("replies");
    let waves = 3;
    let bound = (TIMEOUT + DEADLINE_GRACE) * waves + Duration::from_secs(1);
    assert!(
        last <= bound,
        "the last blocked guest ended after {last:?} (bound {bound:?})"
    );
    // Every slot is free again: a quick call runs at once.
    let woke = server
        .post(
            "/v1/installations/hostile/actions/sleep",
            &key,
            json!({ "ms": 1 }),
        )
        .await;
    assert_eq!(woke.status, StatusCode::OK, "{}", woke.body);
    Arc::into_inner(server).expect("calls are done").stop();
    let aborted = records_of(&op, "invocation")
        .iter()
        .filter(|r| r["action"] == "stream-after-handle")
        .inspect(|r| assert_eq!(r["outcome"], "limit-timeout", "{r}"))
        .filter(|r| r["egress"][0]["reason"] == ABORTED)
        .count();
    assert_eq!(
        aborted, 6,
        "each blocked request is on the record as aborted"
    );
}
