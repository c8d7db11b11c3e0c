//! The store under an audited invocation (issue: PostgreSQL and many nodes), in one process and
//! one run: invocations per second with the audit trail on, on sled with one node and on
//! PostgreSQL with one node and with two, and the latency one audited invocation has on each.
//!
//! Two nodes are two runtimes in this process, each with its own connection pool and its own
//! audit trail writing the cluster's one chain (docs/audit.md, "Many nodes"), loaded in turn:
//! the database, the chain and the machine's two cores are what they share, as two processes
//! on this host would. PostgreSQL is the server `AIRLOCK_TEST_POSTGRES` names (`scripts/test`
//! starts one); without it the PostgreSQL rows say they were not measured.
//!
//! `cargo bench -p airlock --bench cluster` measures in full; under `cargo test` it runs a few
//! seconds in a quick mode so it cannot rot, asserting nothing about time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock_audit::{AuditDir, AuditTrail, Node};
use airlock_runtime::engine::EngineSettings;
use airlock_runtime::{Integration, Runtime, ValidatedConfig};
use airlock_store::postgres::testing::TestDatabase;
use tempfile::TempDir;

mod common;

use common::measure::{Stats, Table, micros, sample, throughput};

/// Invocations in flight at once in the throughput rows: enough to keep two cores busy while
/// some wait on the database.
const TASKS: usize = 8;

/// One node: its runtime, recording to the trail it opened on its store, and the mapper loaded.
struct NodeUnderTest {
    runtime: Runtime,
    mapper: Integration,
    config: ValidatedConfig,
    _data: TempDir,
}

impl NodeUnderTest {
    fn open(trail: impl FnOnce(&Path) -> AuditTrail, examples: &Path, config: &str) -> Self {
        let data = TempDir::new().expect("temp dir");
        let runtime = Runtime::new(data.path(), EngineSettings::default())
            .expect("runtime")
            .with_audit(trail(data.path()));
        let mapper = runtime
            .load(&examples.join("contact-mapper"))
            .expect("loads");
        let config = mapper.validate_config(Some(config)).expect("config");
        Self {
            runtime,
            mapper,
            config,
            _data: data,
        }
    }

    async fn invoke(&self, input: &str) {
        let ran = self
            .runtime
            .invoke(&self.mapper, &self.config, "map-contact", input)
            .await;
        assert!(ran.result.is_ok() && ran.record.is_some());
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (samples, window) = if full {
        (1_000, Duration::from_secs(5))
    } else {
        (20, Duration::from_millis(200))
    };
    let examples = common::built_examples();
    let input = Arc::new(common::mapper_file(&examples, "sample-input.json"));
    let config = common::mapper_file(&examples, "sample-config.json");
    let (current, multi) = common::executors();
    let audit = TempDir::new().expect("temp dir");
    let mut table = Table::default();

    let latency = |node: &NodeUnderTest| sample(samples, || current.block_on(node.invoke(&input)));
    let rate = |nodes: Vec<NodeUnderTest>| {
        let (nodes, turn, input) = (
            Arc::new(nodes),
            Arc::new(AtomicUsize::new(0)),
            input.clone(),
        );
        throughput(&multi, TASKS, window, move || {
            let (nodes, turn, input) = (nodes.clone(), turn.clone(), input.clone());
            async move {
                let node = &nodes[turn.fetch_add(1, Ordering::Relaxed) % nodes.len()];
                node.invoke(&input).await;
            }
        })
    };

    let sled_node = || {
        NodeUnderTest::open(
            |data| {
                let store = airlock_store::Store::open(data, None).expect("store");
                let dir = AuditDir::open(audit.path(), data).expect("audit dir");
                AuditTrail::open(&store, dir).expect("trail")
            },
            &examples,
            &config,
        )
    };
    let sled_latency = latency(&sled_node());
    let sled_rate = rate(vec![sled_node()]);
    table.row(
        "one audited invocation, sled (one fsync per invocation)",
        micros(sled_latency.median),
        &format!("p99 {}", micros(sled_latency.p99)),
    );
    table.row(
        &format!("invocations/s with the audit trail, sled, 1 node, {TASKS} in flight"),
        format!("{sled_rate:.0}/s"),
        "",
    );

    let mut figures = format!("ratios: sled={sled_rate:.0}/s");
    match TestDatabase::create("the cluster benchmark") {
        None => table.row(
            "PostgreSQL rows",
            "not measured".into(),
            "no PostgreSQL: set AIRLOCK_TEST_POSTGRES (scripts/test starts one)",
        ),
        Some(database) => {
            let master = audit.path().join("unused-master.key");
            let pg_node = |name: &str| {
                let store = database.store(&master);
                let node: Node = name.parse().expect("node name");
                NodeUnderTest::open(
                    |data| {
                        let dir = AuditDir::open(audit.path(), data).expect("audit dir");
                        AuditTrail::open_as(&store, dir, node).expect("trail")
                    },
                    &examples,
                    &config,
                )
            };
            let pg_latency: Stats = latency(&pg_node("bench-1"));
            let one = rate(vec![pg_node("bench-1")]);
            let two = rate(vec![pg_node("bench-1"), pg_node("bench-2")]);
            table.row(
                "one audited invocation, PostgreSQL (the record committed)",
                micros(pg_latency.median),
                &format!(
                    "p99 {}; {:+.1} µs against sled",
                    micros(pg_latency.p99),
                    (pg_latency.median.as_secs_f64() - sled_latency.median.as_secs_f64()) * 1e6
                ),
            );
            for (nodes, per_second) in [(1, one), (2, two)] {
                table.row(
                    &format!(
                        "invocations/s with the audit trail, PostgreSQL, {nodes} node(s), {TASKS} in flight"
                    ),
                    format!("{per_second:.0}/s"),
                    &format!("{:.2} of sled's", per_second / sled_rate),
                );
            }
            figures.push_str(&format!(
                " pg1={one:.0}/s pg2={two:.0}/s pg1/sled={:.2} pg2/pg1={:.2} pg_latency/sled={:.2}",
                one / sled_rate,
                two / one,
                pg_latency.median.as_secs_f64() / sled_latency.median.as_secs_f64()
            ));
        }
    }
    println!(
        "\n## The store under audited invocations ({} mode)\n",
        if full { "full" } else { "quick" }
    );
    table.print();
    println!("\n{figures}");
}
