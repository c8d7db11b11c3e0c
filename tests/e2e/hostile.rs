//! A hostile guest tries every way out of its limits; each attempt ends in its documented
//! class and the host stays healthy for the next invocation.

use std::time::Duration;

use crate::support::{invoke, load, mapper_config, outcome, read_example};

/// The hostile example's manifest timeout and memory limit.
const TIMEOUT: Duration = Duration::from_secs(1);
const MEMORY: u64 = 32 << 20;

async fn attack(action: &str) -> airlock_runtime::Invocation {
    let hostile = load("hostile");
    let none = hostile.validate_config(None).expect("no config needed");
    invoke(&hostile, &none, action, "{}").await
}

/// After any attack, an ordinary invocation on the same runtime still succeeds.
async fn assert_host_healthy() {
    let mapper = load("contact-mapper");
    let config = mapper_config(&mapper);
    let sample = read_example("contact-mapper", "sample-input.json");
    let next = invoke(&mapper, &config, "map-contact", &sample).await;
    assert_eq!(outcome(&next), "ok", "{:?}", next.result);
}

#[tokio::test]
async fn spin_forever_is_stopped_within_the_timeout_plus_100ms() {
    let ran = attack("spin-forever").await;
    assert_eq!(outcome(&ran), "limit-timeout", "{:?}", ran.result);
    assert!(ran.duration >= TIMEOUT, "stopped early: {:?}", ran.duration);
    assert!(
        ran.duration <= TIMEOUT + Duration::from_millis(100),
        "stopped late: {:?}",
        ran.duration
    );
    assert_host_healthy().await;
}

#[tokio::test]
async fn grow_memory_fails_at_the_ceiling() {
    let ran = attack("grow-memory").await;
    assert_eq!(outcome(&ran), "limit-memory", "{:?}", ran.result);
    assert!(
        ran.memory_peak <= MEMORY,
        "peak {} over the limit",
        ran.memory_peak
    );
    assert!(
        ran.memory_peak > MEMORY / 2,
        "peak {} never neared the limit",
        ran.memory_peak
    );
    assert_host_healthy().await;
}

#[tokio::test]
async fn recurse_forever_exhausts_the_wasm_stack() {
    let ran = attack("recurse-forever").await;
    assert_eq!(outcome(&ran), "limit-stack", "{:?}", ran.result);
    assert_host_healthy().await;
}

#[tokio::test]
async fn huge_output_is_refused_by_the_output_limit() {
    let ran = attack("huge-output").await;
    assert_eq!(outcome(&ran), "limit-output", "{:?}", ran.result);
    assert_host_healthy().await;
}

#[tokio::test]
async fn flood_log_is_capped_and_counted() {
    let ran = attack("flood-log").await;
    assert_eq!(outcome(&ran), "ok", "{:?}", ran.result);
    let kept: usize = ran
        .log
        .lines
        .iter()
        .map(|l| {
            l.message.len()
                + l.fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    assert!(kept <= (1 << 20) + 8, "kept {kept} bytes of guest log");
    assert!(ran.log.dropped > 0, "200,000 lines must overflow the cap");
    assert_host_healthy().await;
}

#[tokio::test]
async fn read_env_sees_no_host_environment_or_arguments() {
    // The host certainly has an environment (PATH at least); the guest must see none of it.
    assert!(std::env::var_os("PATH").is_some());
    let ran = attack("read-env").await;
    let output = ran.result.expect("read-env returns what it saw").to_value();
    assert_eq!(output["vars"], serde_json::json!([]), "{output}");
    assert_eq!(output["args"], serde_json::json!([]), "{output}");
}

#[tokio::test]
async fn read_files_can_open_nothing() {
    let ran = attack("read-files").await;
    let output = ran
        .result
        .expect("read-files returns what it saw")
        .to_value();
    assert_eq!(output["read"], serde_json::json!([]), "{output}");
    let errors = output["errors"].as_array().expect("errors list");
    assert!(errors.len() >= 4, "every attempt should fail: {output}");
}

/// Scratch space (`[scratch] size = "1 MiB"`): a fresh, empty directory at `/scratch` each
/// invocation, written up to its size and refused past it, `..` and absolute paths refused,
/// and nothing left on the host once the invocation ends; a size above the operator's ceiling
/// is refused at load.
#[tokio::test]
async fn scratch_holds_its_size_is_fresh_each_time_and_cannot_be_left() {
    let (dir, runtime) = crate::support::fresh();
    let hostile = runtime
        .load(&crate::support::example("hostile"))
        .expect("hostile loads");
    let none = hostile.validate_config(None).expect("no config needed");
    let write =
        |bytes: u64, name: &str| serde_json::json!({"bytes": bytes, "name": name}).to_string();
    let within = runtime
        .invoke(&hostile, &none, "scratch", &write(1 << 20, "all"))
        .await;
    let output = within.result.expect("scratch reports").to_value();
    assert_eq!(output["found"], "", "empty at first: {output}");
    assert_eq!(
        (output["write"].as_str(), output["kept"].as_str()),
        (Some("ok"), Some("1048576")),
        "up to its size: {output}"
    );
    for escape in [
        "/scratch/../etc/passwd",
        "/etc/passwd",
        "../etc/passwd",
        "/scratch/../../etc/passwd",
    ] {
        let read = output[escape].as_str().unwrap_or("");
        assert!(
            read.starts_with("error: "),
            "{escape} left the directory: {output}"
        );
    }

    let past = runtime
        .invoke(&hostile, &none, "scratch", &write(3 << 20, "more"))
        .await;
    let output = past.result.expect("scratch reports").to_value();
    assert_eq!(
        output["found"], "",
        "the first invocation's file is gone: {output}"
    );
    assert!(
        output["write"]
            .as_str()
            .unwrap_or("")
            .starts_with("error: "),
        "a write past the size fails: {output}"
    );
    assert_eq!(output["written"], "1048576", "{output}");
    assert_eq!(output["kept"], "1048576", "not a byte past it: {output}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("scratch"))
        .expect("the scratch root")
        .collect();
    assert!(
        left.is_empty(),
        "every invocation's directory is removed: {left:?}"
    );

    let (_ceiling_dir, strict) = {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut settings = airlock_runtime::engine::EngineSettings::default();
        settings.ceilings.scratch = 512 << 10;
        let runtime = airlock_runtime::Runtime::new(dir.path(), settings).expect("runtime");
        (dir, runtime)
    };
    let refused = strict
        .load(&crate::support::example("hostile"))
        .map(drop)
        .expect_err("1 MiB is above a 512 KiB ceiling");
    assert!(
        refused
            .to_string()
            .contains("scratch.size = 1 MiB exceeds the operator's ceiling of 512 KiB"),
        "{refused}"
    );
}
