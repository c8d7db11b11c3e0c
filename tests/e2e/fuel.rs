//! Fuel metering: a deterministic budget, off by default, that stops a guest like any limit.

use airlock_runtime::{EngineSettings, Runtime};
use tempfile::TempDir;

use crate::support::{example, mapper_config, outcome, read_example, run_hostile, stderr};

fn fuelled(budget: u64) -> (TempDir, Runtime) {
    let dir = TempDir::new().expect("temp dir");
    let settings = EngineSettings {
        fuel: Some(budget),
        ..EngineSettings::default()
    };
    let runtime = Runtime::new(dir.path(), settings).expect("runtime");
    (dir, runtime)
}

#[tokio::test]
async fn spinning_guest_runs_out_of_fuel_before_its_timeout() {
    let (_dir, runtime) = fuelled(50_000_000);
    let hostile = runtime.load(&example("hostile")).expect("loads");
    let none = hostile.validate_config(None).expect("no config");
    let ran = runtime.invoke(&hostile, &none, "spin-forever", "{}").await;
    assert_eq!(outcome(&ran), "limit-fuel", "{:?}", ran.result);
    assert_eq!(ran.result.expect_err("stopped").exit_code(), 5);
    assert_eq!(ran.fuel_used, Some(50_000_000));
}

#[tokio::test]
async fn fuel_used_is_reported_and_deterministic() {
    let (_dir, runtime) = fuelled(1_000_000_000);
    let mapper = runtime.load(&example("contact-mapper")).expect("loads");
    let config = mapper_config(&mapper);
    let sample = read_example("contact-mapper", "sample-input.json");
    let first = runtime
        .invoke(&mapper, &config, "map-contact", &sample)
        .await;
    let second = runtime
        .invoke(&mapper, &config, "map-contact", &sample)
        .await;
    assert_eq!(outcome(&first), "ok");
    let used = first.fuel_used.expect("metered");
    assert!(used > 0 && used < 1_000_000_000);
    assert_eq!(second.fuel_used, Some(used), "same input, same fuel");
}

#[test]
fn cli_fuel_flag_stops_a_spinning_guest_with_exit_5() {
    let data = TempDir::new().expect("temp");
    let out = run_hostile(data.path(), &["--fuel", "50000000"], "spin-forever");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("fuel budget of 50000000 exhausted"),
        "{message}"
    );
}
