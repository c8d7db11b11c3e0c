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

/// Times `n` calls of `f` one by one, after a tenth as many to warm up.
pub fn sample(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..n / 10 + 1 {
        f();
    }
    Stats::of(
        (0..n)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

/// Completions per second of `tasks` concurrent loops of `call` over `window`.
pub fn throughput<F, Fut>(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    window: Duration,
    call: F,
) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    rt.block_on(async {
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (call, done) = (call.clone(), done.clone());
            loops.spawn(async move {
                while Instant::now() < deadline {
                    call().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while loops.join_next().await.is_some() {}
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
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
