//! How the benchmarks measure and report: latencies sampled one by one, rates of concurrent
//! loops over a window, and the markdown table they print.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Median and 99th percentile of some durations.
#[derive(Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub p99: Duration,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

/// Rounds that measurements taken side by side alternate over, every other round in reverse
/// order (a b, b a, a b, …): on a machine whose speed drifts during a run (a shared VM does),
/// the drift then weighs on each alike instead of landing in their ratio.
const ROUNDS: usize = 6;

/// The order of `count` measurements in `round`: forward, then reversed, and so on.
fn round_order(round: usize, count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Times `n` calls of `f` one by one, after a tenth as many to warm up.
pub fn sample(n: usize, mut f: impl FnMut()) -> Stats {
    sample_side_by_side(n, &mut [&mut f])[0]
}

/// Times `n` calls of each of `fs` one by one, after a tenth as many of each to warm up, in
/// alternating rounds (see [`ROUNDS`]); the statistics come back in the order of `fs`.
pub fn sample_side_by_side(n: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<Stats> {
    for f in fs.iter_mut() {
        for _ in 0..n / 10 + 1 {
            f();
        }
    }
    let mut times = vec![Vec::with_capacity(n); fs.len()];
    for round in 0..ROUNDS {
        let calls = n * (round + 1) / ROUNDS - n * round / ROUNDS;
        for which in round_order(round, fs.len()) {
            for _ in 0..calls {
                let start = Instant::now();
                fs[which]();
                times[which].push(start.elapsed());
            }
        }
    }
    times.into_iter().map(Stats::of).collect()
}

/// What a throughput row drives: each concurrent loop holds the load and calls it again and
/// again, so nothing of the harness's own (a handle cloned per call) is counted in it.
pub trait Load: Send + Sync + 'static {
    fn call(&self) -> impl Future<Output = ()> + Send;
}

impl<F, Fut> Load for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    fn call(&self) -> impl Future<Output = ()> + Send {
        self()
    }
}

/// Completions per second of `tasks` concurrent loops of `load` over `window`.
pub fn throughput(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    window: Duration,
    load: impl Load,
) -> f64 {
    let (done, took) = round(rt, tasks, window, &Arc::new(load));
    done as f64 / took.as_secs_f64()
}

/// Completions per second of `tasks` concurrent loops of `a`, and of `b`, each over `window`
/// in all, in alternating rounds (see [`ROUNDS`]).
pub fn throughput_side_by_side(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    window: Duration,
    a: impl Load,
    b: impl Load,
) -> (f64, f64) {
    let (a, b) = (Arc::new(a), Arc::new(b));
    let slice = window / ROUNDS as u32;
    let mut totals = [(0, Duration::ZERO); 2];
    for turn in 0..ROUNDS {
        for which in round_order(turn, 2) {
            let (done, took) = match which {
                0 => round(rt, tasks, slice, &a),
                _ => round(rt, tasks, slice, &b),
            };
            totals[which].0 += done;
            totals[which].1 += took;
        }
    }
    let rate = |(done, took): (u64, Duration)| done as f64 / took.as_secs_f64();
    (rate(totals[0]), rate(totals[1]))
}

/// Completions of `tasks` concurrent loops of `load` until `window` has passed, and how long
/// they took (the last calls end a little after it).
fn round<L: Load>(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    window: Duration,
    load: &Arc<L>,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    rt.block_on(async {
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (load, done) = (load.clone(), done.clone());
            loops.spawn(async move {
                while Instant::now() < deadline {
                    load.call().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while loops.join_next().await.is_some() {}
    });
    (done.load(Ordering::Relaxed), start.elapsed())
}

pub fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The markdown table, one row at a time.
#[derive(Default)]
pub struct Table(Vec<[String; 4]>);

impl Table {
    pub fn latency(&mut self, what: &str, stats: Stats, base: Stats) {
        self.0.push([
            what.into(),
            micros(stats.median),
            micros(stats.p99),
            format!("{:.2}", ratio(stats.median, base.median)),
        ]);
    }

    pub fn row(&mut self, what: &str, value: String, note: &str) {
        self.0
            .push([what.into(), value, note.into(), String::new()]);
    }

    pub fn rate(&mut self, what: &str, per_second: f64, base: f64, base_name: &str) {
        self.0.push([
            what.into(),
            format!("{per_second:.0}/s"),
            format!("{base_name} {base:.0}/s"),
            format!("{:.2}", per_second / base),
        ]);
    }

    pub fn print(&self) {
        println!("| what | median (or rate) | p99 (or note) | ratio |\n|---|---|---|---|");
        for [a, b, c, d] in &self.0 {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
