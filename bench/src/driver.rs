//! The closed loop: N workers, each with one request in flight, issuing the
//! case's operations back to back. Operations that start in the warm-up are
//! not counted; the measured window is `duration` long after it.
//!
//! A worker that gets an error counts it (by kind), pauses 10 ms so a dead
//! endpoint does not turn into a spin loop, and goes on; the driver never
//! retries (the Atoll client retries inside its own deadline).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::kv::Kv;
use crate::procstat::{ProcUsage, ProcWindow};
use crate::workload::{key, value, Case, KeyChooser, Op};

const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub case: Case,
    /// Preloaded keys; the case picks among them.
    pub keys: u64,
    pub value_size: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// The measured outcome of one case on one system.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CaseResult {
    pub system: String,
    pub case: String,
    pub clients: usize,
    pub connections: usize,
    pub duration_s: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Sum over the server processes, % of one core.
    pub cpu_pct: f64,
    /// Largest peak RSS of one server process, MiB.
    pub peak_rss_mib: f64,
    pub servers: Vec<ProcUsage>,
    /// `/proc/loadavg` when the measured window opened.
    pub loadavg: String,
    /// CPU time the hypervisor stole over the window, % of all CPU time
    /// (`procstat`); `None` where the kernel does not report it.
    #[serde(default)]
    pub steal_pct: Option<f64>,
    /// The worst stalls: operations slower than p99 (and than 3 ms),
    /// grouped when they started within 50 ms of each other, slowest first
    /// (at most 10), to match against the servers' logs.
    #[serde(default)]
    pub stalls: Vec<Stall>,
}

/// A group of slow operations that started close together.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stall {
    /// When the first of them started, UTC (`HH:MM:SS.mmm`).
    pub at: String,
    /// The slowest of them, ms.
    pub max_ms: f64,
    /// How many there were.
    pub ops: u64,
}

/// Operations slower than this are kept, with their start time.
const SLOW_US: u64 = 3_000;

/// What one worker saw in the measured window.
struct Tally {
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// Completion times of acknowledged puts, µs since the run started
    /// (kept only when asked: the failover case).
    acks: Vec<u64>,
    /// Operations slower than [`SLOW_US`]: (start, µs since the Unix epoch;
    /// latency, µs).
    slow: Vec<(u64, u64)>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
            acks: Vec::new(),
            slow: Vec::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.hist.add(&other.hist).expect("same bounds");
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.acks.extend(other.acks);
        self.slow.extend(other.slow);
    }
}

/// Runs `spec` with its clients spread over `conns` handles; samples the
/// server processes `pids` over the measured window.
pub async fn run_case<K: Kv>(system: &str, conns: &[K], spec: &Spec, pids: &[u32]) -> CaseResult {
    let clients = spec.case.clients();
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let tally = spawn_workers(conns, spec, clients, start, measure_from, end, false);
    tokio::time::sleep_until(measure_from).await;
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let window = ProcWindow::open(pids);
    tokio::time::sleep_until(end).await;
    let steal_pct = window.steal_pct();
    let servers = window.close();
    let tally = tally.await;
    let secs = spec.duration.as_secs_f64();
    let ops = tally.hist.len();
    let p99_us = tally.hist.value_at_quantile(0.99);
    CaseResult {
        system: system.into(),
        case: spec.case.name(),
        clients,
        connections: conns.len(),
        duration_s: secs,
        ops,
        ops_per_s: ops as f64 / secs,
        p50_us: tally.hist.value_at_quantile(0.5),
        p99_us,
        p999_us: tally.hist.value_at_quantile(0.999),
        max_us: tally.hist.max(),
        errors: tally.errors.values().sum(),
        error_kinds: tally.errors,
        cpu_pct: servers.iter().map(|s| s.cpu_pct).sum(),
        peak_rss_mib: servers.iter().map(|s| s.peak_rss_mib).fold(0.0, f64::max),
        servers,
        loadavg: loadavg.trim().to_string(),
        steal_pct,
        stalls: stalls(tally.slow, p99_us.max(SLOW_US)),
    }
}

/// Groups the operations slower than `over_us` into stalls (see
/// [`CaseResult::stalls`]).
fn stalls(mut slow: Vec<(u64, u64)>, over_us: u64) -> Vec<Stall> {
    slow.retain(|&(_, us)| us > over_us);
    slow.sort_unstable();
    let mut groups: Vec<(u64, u64, u64)> = Vec::new(); // (first start, max µs, ops)
    let mut last_start = 0;
    for (start, us) in slow {
        match groups.last_mut() {
            Some(g) if start <= last_start + 50_000 => {
                g.1 = g.1.max(us);
                g.2 += 1;
            }
            _ => groups.push((start, us, 1)),
        }
        last_start = start;
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    groups.truncate(10);
    groups
        .into_iter()
        .map(|(start, us, ops)| {
            let ms_of_day = (start / 1000) % 86_400_000;
            let at = format!(
                "{:02}:{:02}:{:02}.{:03}",
                ms_of_day / 3_600_000,
                ms_of_day / 60_000 % 60,
                ms_of_day / 1000 % 60,
                ms_of_day % 1000
            );
            Stall {
                at,
                max_ms: us as f64 / 1e3,
                ops,
            }
        })
        .collect()
}

/// Starts `clients` workers and returns a future of their merged tally.
fn spawn_workers<K: Kv>(
    conns: &[K],
    spec: &Spec,
    clients: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    keep_acks: bool,
) -> impl std::future::Future<Output = Tally> {
    let handles: Vec<_> = (0..clients)
        .map(|w| {
            let kv = conns[w % conns.len()].clone();
            let case = spec.case;
            let chooser = case.keys(spec.keys);
            let value = value(spec.value_size, w as u64);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 + 1);
                worker(
                    kv,
                    case,
                    chooser,
                    value,
                    &mut rng,
                    (start, measure_from, end),
                    keep_acks,
                )
                .await
            })
        })
        .collect();
    async move {
        let mut total = Tally::new();
        for h in handles {
            total.merge(h.await.expect("worker panicked"));
        }
        total
    }
}

async fn worker<K: Kv>(
    kv: K,
    case: Case,
    chooser: KeyChooser,
    value: Vec<u8>,
    rng: &mut StdRng,
    (start, measure_from, end): (Instant, Instant, Instant),
    keep_acks: bool,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            return tally;
        }
        let k = key(chooser.pick(rng));
        let op = case.next_op(rng);
        let outcome = match op {
            Op::Put => kv.put(k, value.clone()).await,
            Op::Get(read) => kv.get(k, read).await.map(|_| ()),
        };
        let t1 = Instant::now();
        let counted = t0 >= measure_from && t1 <= end;
        match outcome {
            Ok(()) => {
                if counted {
                    let us = (t1 - t0).as_micros().max(1) as u64;
                    tally.hist.saturating_record(us);
                    if us > SLOW_US {
                        tally.slow.push((unix_us_at(t0), us));
                    }
                }
                if keep_acks && op == Op::Put && t1 <= end {
                    tally.acks.push((t1 - start).as_micros() as u64);
                }
            }
            Err(kind) => {
                if counted || keep_acks {
                    *tally.errors.entry(kind).or_default() += 1;
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
}

/// `at` as µs since the Unix epoch.
fn unix_us_at(at: Instant) -> u64 {
    let since = Instant::now().saturating_duration_since(at);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(since).as_micros() as u64
}

/// The outcome of the failover case.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailoverResult {
    pub system: String,
    pub clients: usize,
    pub duration_s: f64,
    /// When the leader was killed (SIGKILL sent), s after the writers started.
    pub kill_at_s: f64,
    pub killed_endpoint: String,
    pub acked_writes: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Longest time between two successive acknowledged writes (any
    /// writers), after the first second.
    pub longest_gap_ms: f64,
    /// Where that gap began, ms after the kill (negative: before it).
    pub gap_start_after_kill_ms: f64,
    /// Acknowledged writes/s before the kill, and from the end of the gap
    /// to the end of the run.
    pub writes_per_s_before: f64,
    pub writes_per_s_after: f64,
}

/// Writes from `clients` workers for `duration`; after `kill_after`, calls
/// `kill` (which kills the leader and names it) once.
pub async fn failover<K, F>(
    system: &str,
    conns: &[K],
    spec: &Spec,
    kill_after: Duration,
    kill: F,
) -> anyhow::Result<FailoverResult>
where
    K: Kv,
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let clients = spec.case.clients();
    let start = Instant::now();
    let end = start + spec.duration;
    let tally = spawn_workers(conns, spec, clients, start, start, end, true);
    tokio::time::sleep_until(start + kill_after).await;
    // `kill` first asks who leads (an RPC, slow on a loaded leader); the
    // kill is timed when the signal has been sent.
    let killed = kill.await?;
    let kill_at = start.elapsed();
    let mut tally = tally.await;
    tally.acks.sort_unstable();
    let kill_us = kill_at.as_micros() as u64;
    let (gap_from, gap_to) = longest_gap(&tally.acks, 1_000_000);
    let before = tally.acks.iter().filter(|&&t| t < kill_us).count();
    let after = tally.acks.iter().filter(|&&t| t >= gap_to).count();
    let after_secs = (spec.duration.as_micros() as u64).saturating_sub(gap_to) as f64 / 1e6;
    Ok(FailoverResult {
        system: system.into(),
        clients,
        duration_s: spec.duration.as_secs_f64(),
        kill_at_s: kill_at.as_secs_f64(),
        killed_endpoint: killed,
        acked_writes: tally.acks.len() as u64,
        errors: tally.errors.values().sum(),
        error_kinds: tally.errors,
        longest_gap_ms: (gap_to - gap_from) as f64 / 1000.0,
        gap_start_after_kill_ms: (gap_from as f64 - kill_us as f64) / 1000.0,
        writes_per_s_before: before as f64 / kill_at.as_secs_f64().max(1e-9),
        writes_per_s_after: after as f64 / after_secs.max(1e-9),
    })
}

/// The longest interval between successive sorted times at or after
/// `from`, as `(start, end)`; `(0, 0)` with fewer than two.
fn longest_gap(sorted: &[u64], from: u64) -> (u64, u64) {
    let tail: Vec<u64> = sorted.iter().copied().filter(|&t| t >= from).collect();
    tail.windows(2)
        .map(|w| (w[0], w[1]))
        .max_by_key(|(a, b)| b - a)
        .unwrap_or((0, 0))
}

/// Writes keys `0..keys` once each, from `clients` workers.
pub async fn preload<K: Kv>(conns: &[K], keys: u64, value_size: usize, clients: usize) -> u64 {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|w| {
            let kv = conns[w % conns.len()].clone();
            let next = next.clone();
            tokio::spawn(async move {
                let mut errors = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= keys {
                        return errors;
                    }
                    // Retry each key until it is in: the cases read them.
                    while kv.put(key(i), value(value_size, i)).await.is_err() {
                        errors += 1;
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            })
        })
        .collect();
    let mut errors = 0;
    for h in handles {
        errors += h.await.expect("preload worker panicked");
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_ignores_the_first_second_and_finds_the_widest_hole() {
        let acks = [0, 500_000, 1_000_000, 1_100_000, 2_900_000, 3_000_000];
        assert_eq!(longest_gap(&acks, 1_000_000), (1_100_000, 2_900_000));
        assert_eq!(longest_gap(&[5], 0), (0, 0));
    }

    #[test]
    fn slow_operations_close_together_make_one_stall() {
        let ms = |m: u64| m * 1000;
        let slow = vec![
            (ms(1_000), ms(30)),
            (ms(1_020), ms(80)),
            (ms(1_060), ms(20)),
            (ms(5_000), ms(40)),
            (ms(9_000), ms(11)), // not over the threshold
        ];
        let got = stalls(slow, ms(15));
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].max_ms, got[0].ops), (80.0, 3));
        assert_eq!(got[0].at, "00:00:01.000");
        assert_eq!((got[1].max_ms, got[1].ops), (40.0, 1));
    }
}
