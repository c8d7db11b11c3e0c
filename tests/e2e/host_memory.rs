//! What the host holds on a guest's behalf is bounded and charged: `wasi:http` resources,
//! unsent bodies, pollables, random bytes, log lines and host calls (SB-07, SB-10, SB-11, SB-12;
//! security round 2, item 2). The hostile guest hoards each until the host stops it; the
//! invocation ends with `limit-host-memory` (or `limit-host-calls`) and reports the host-side
//! peak beside its linear-memory peak.

use std::time::Duration;

use airlock_host_api::budget::{FIELD_SIZE_LIMIT, MAX_RESOURCES};
use airlock_host_api::policy::Limits;
use airlock_runtime::Invocation;
use serde_json::{Value, json};

use std::sync::Arc;

use reqwest::StatusCode;

use crate::deadlines::{at_once, hostile_server};
use crate::egress::{Egress, UPSTREAM_IP};
use crate::mock::{Stall, Tarpit};
use crate::operator::Operator;
use crate::support::{custom_integration, outcome, read_example};
use airlock_testkit::TestCa;

/// The hostile example's memory limit: host-side hoards must not count against it, nor hide
/// behind it.
const MEMORY: u64 = 32 << 20;

async fn attack(egress: &Egress, manifest: Option<&str>, action: &str, input: Value) -> Invocation {
    let hostile = match manifest {
        None => egress.load("hostile"),
        Some(text) => {
            let dir = custom_integration("hostile", "hostile.wasm", text);
            egress
                .runtime
                .load(dir.path())
                .expect("custom hostile loads")
        }
    };
    let config = hostile.validate_config(None).expect("no config");
    egress
        .runtime
        .invoke(&hostile, &config, action, &input.to_string())
        .await
}

/// The hostile manifest with `component.wasm` and `limits` in place of its `[limits]` values.
pub(crate) fn hostile_manifest(limits: &str) -> String {
    read_example("hostile", "airlock.toml")
        .replace(
            "component = \"../target/wasm32-wasip2/release/hostile.wasm\"",
            "component = \"component.wasm\"",
        )
        .replace("timeout = \"1s\"\n", limits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarded_host_resources_end_the_invocation_within_the_budget() {
    let egress = Egress::new(&[], false, None);
    let budget = Limits::DEFAULT_HOST_MEMORY;
    // (kind, bytes each holds, whether the bytes reach the budget before the handles reach
    // the table's cap)
    for (what, size, by_bytes) in [
        ("fields", 12 * 1024, true),
        ("bodies", 64 * 1024, true),
        ("requests", 0, false),
        ("options", 0, false),
        ("pollables", 0, false),
    ] {
        let ran = attack(
            &egress,
            None,
            "hoard",
            json!({ "what": what, "size": size }),
        )
        .await;
        assert_eq!(
            outcome(&ran),
            "limit-host-memory",
            "{what}: {:?}",
            ran.result
        );
        // Stopped within one host call's worth of the budget, however fast it hoarded; and
        // none of it was linear memory, which stayed far below its own limit.
        let slack = 2 * FIELD_SIZE_LIMIT as u64 + 128 * 1024;
        assert!(
            ran.host_memory_peak <= budget + slack,
            "{what}: the host held {} for the guest",
            ran.host_memory_peak
        );
        assert!(ran.memory_peak < MEMORY / 4, "{what}: {}", ran.memory_peak);
        let message = ran.result.as_ref().err().map(ToString::to_string);
        if by_bytes {
            assert!(
                ran.host_memory_peak > budget,
                "{what}: {}",
                ran.host_memory_peak
            );
        } else {
            // Small handles: the table's cap stops them before their bytes add up.
            let cap = format!("more than {MAX_RESOURCES} host resources");
            assert!(
                message.as_deref().is_some_and(|m| m.contains(&cap)),
                "{what}: {message:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_the_manifests_and_bounded_by_the_ceiling() {
    let egress = Egress::new(&[], false, None);
    let small = hostile_manifest("timeout = \"1s\"\nhost-memory = \"1 MiB\"\n");
    let ran = attack(
        &egress,
        Some(&small),
        "hoard",
        json!({ "what": "fields", "size": 8192 }),
    )
    .await;
    assert_eq!(outcome(&ran), "limit-host-memory", "{:?}", ran.result);
    assert!(
        ran.host_memory_peak <= (1 << 20) + 64 * 1024,
        "{}",
        ran.host_memory_peak
    );
    let error = ran.result.expect_err("stopped").to_string();
    assert!(error.contains("host memory budget of 1 MiB"), "{error}");

    let greedy = hostile_manifest("timeout = \"1s\"\nhost-memory = \"1 GiB\"\n");
    let dir = custom_integration("hostile", "hostile.wasm", &greedy);
    let refused = egress
        .runtime
        .load(dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("limits.host-memory = 1 GiB exceeds the operator's ceiling of 64 MiB"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_charged_before_they_are_made() {
    let egress = Egress::new(&[], false, None);
    let ran = attack(&egress, None, "random-bytes", json!({ "len": 64 << 20 })).await;
    assert_eq!(outcome(&ran), "limit-host-memory", "{:?}", ran.result);
    assert!(ran.host_memory_peak > Limits::DEFAULT_HOST_MEMORY);
    let ran = attack(&egress, None, "random-bytes", json!({ "len": 4096 })).await;
    assert_eq!(outcome(&ran), "ok", "{:?}", ran.result);
    assert_eq!(ran.result.expect("ok").to_value()["bytes"], 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_floods_are_bounded_in_lines_as_well_as_bytes() {
    let egress = Egress::new(&[], false, None);
    // Empty lines until the timeout: without a per-line cost the host would keep every one.
    let ran = attack(&egress, None, "flood-calls", json!({ "what": "log" })).await;
    assert_eq!(outcome(&ran), "limit-timeout", "{:?}", ran.result);
    assert!(
        ran.log.lines.len() <= (1 << 20) / 64,
        "{} lines kept",
        ran.log.lines.len()
    );
    assert!(ran.log.dropped > 0);
    // Large fields meet the same cap.
    let ran = attack(
        &egress,
        None,
        "log-fields",
        json!({ "count": 200, "size": 64 * 1024 }),
    )
    .await;
    assert_eq!(outcome(&ran), "ok", "{:?}", ran.result);
    let kept: usize = ran
        .log
        .lines
        .iter()
        .flat_map(|l| l.fields.iter().map(|(k, v)| k.len() + v.len()))
        .sum();
    assert!(kept <= 1 << 20, "kept {kept} bytes of fields");
    assert!(ran.host_memory_peak <= Limits::DEFAULT_HOST_MEMORY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_host_calls_is_stopped_by_the_call_cap() {
    let egress = Egress::new(&[], false, None);
    let patient = hostile_manifest("timeout = \"1m\"\n");
    let ran = attack(
        &egress,
        Some(&patient),
        "flood-calls",
        json!({ "what": "clock" }),
    )
    .await;
    assert_eq!(outcome(&ran), "limit-host-calls", "{:?}", ran.result);
    assert!(ran.duration < Duration::from_secs(60));
}

/// The attack at scale: eight guests hoarding `fields` on one server at once. Each ends
/// with the limit class, and the server's resident peak grows by at most what eight budgets
/// and eight sandboxes allow (before the budget, one such guest took a process from 22 MiB to
/// 918 MiB in 0.65 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_hoarding_guests_leave_the_server_within_its_bound() {
    let ca = TestCa::new().expect("test CA");
    let idle = Tarpit::start(&ca, &["sink.hostile.test"], UPSTREAM_IP, Stall::Silent);
    let op = Operator::new();
    // A long timeout: only the budget may stop them, however slowly a loaded machine runs them.
    let (server, key) = hostile_server(&op, &ca, &idle.addr(), "8", "30s").await;
    let server = Arc::new(server);
    // Warm up: compile the component and run one invocation before measuring.
    let warm = server
        .post(
            "/v1/installations/hostile/actions/sleep",
            &key,
            json!({ "ms": 1 }),
        )
        .await;
    assert_eq!(warm.status, StatusCode::OK, "{}", warm.body);
    let (before, _) = server.resident();
    // Sampled while the guests run: the process's peak may predate them (compilation).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (server, done) = (server.clone(), done.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(server.resident().0);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let input = json!({ "what": "fields", "size": 8192 });
    for (reply, _) in at_once(&server, &key, "hoard", input, 8).await {
        assert_eq!(
            reply.body["error"]["code"], "limit-host-memory",
            "{}",
            reply.body
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    // Eight budgets, plus eight sandboxes' working set and their threads.
    let bound = 8 * Limits::DEFAULT_HOST_MEMORY + 64 * MIB;
    eprintln!(
        "eight hoarding guests: server resident {} MiB before, peak {} MiB (bound +{} MiB)",
        before / MIB,
        peak / MIB,
        bound / MIB
    );
    assert!(
        peak <= before + bound,
        "resident peak grew by {} MiB",
        (peak - before) / MIB
    );
    Arc::into_inner(server).expect("calls are done").stop();
}

const MIB: u64 = 1 << 20;
