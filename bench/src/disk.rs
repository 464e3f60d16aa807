//! The disk's own limit: latency of one `fdatasync` after a 4 KiB write,
//! the floor under any durable write that syncs once. Two ways:
//!
//! - **append**: the file grows, so `fdatasync` must also commit the new
//!   size (on ext4 a journal commit): what a log that appends to plain
//!   files pays;
//! - **preallocated**: 4 KiB writes into a file whose blocks were written
//!   and synced beforehand, as etcd's WAL (64 MiB segments) does: data only;
//! - **replicated** ([`crate::floor`]): a leader and two followers on
//!   loopback, each syncing its own preallocated file, done at the leader's
//!   sync and the first follower's answer: the floor of a 3-replica write.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const BLOCK: usize = 4096;

/// `fdatasync` latency of 4 KiB writes, µs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FsyncResult {
    pub dir: String,
    pub append: SyncLatency,
    pub preallocated: SyncLatency,
    /// Absent in results written before 2026-12-02.
    #[serde(default)]
    pub replicated: Option<SyncLatency>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyncLatency {
    pub writes: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub mean_us: f64,
}

/// Runs both probes, `count` writes each or at most `budget` each, in a
/// scratch file under `dir` (removed afterwards).
pub fn measure(dir: &Path, count: u64, budget: Duration) -> anyhow::Result<FsyncResult> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe.dat");
    let append = probe(&path, count, budget, false)?;
    let preallocated = probe(&path, count, budget, true)?;
    std::fs::remove_file(&path)?;
    let replicated = crate::floor::measure(dir, count, budget)?;
    Ok(FsyncResult {
        dir: dir.display().to_string(),
        append,
        preallocated,
        replicated: Some(replicated),
    })
}

/// The append probe alone (`count` writes or at most `budget`), in its own
/// scratch file under `dir`: the disk limit a paired round compares with.
pub fn append_probe(dir: &Path, count: u64, budget: Duration) -> anyhow::Result<SyncLatency> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-paired-probe.dat");
    let latency = probe(&path, count, budget, false)?;
    std::fs::remove_file(&path)?;
    Ok(latency)
}

fn probe(path: &Path, count: u64, budget: Duration, prealloc: bool) -> anyhow::Result<SyncLatency> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let block = [0x5au8; BLOCK];
    if prealloc {
        for _ in 0..count {
            file.write_all(&block)?;
        }
        file.sync_all()?;
        file.seek(SeekFrom::Start(0))?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let start = Instant::now();
    while hist.len() < count && start.elapsed() < budget {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        hist.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    Ok(SyncLatency::of(&hist))
}

impl SyncLatency {
    /// The summary of a histogram of latencies in µs.
    pub fn of(hist: &Histogram<u64>) -> SyncLatency {
        SyncLatency {
            writes: hist.len(),
            p50_us: hist.value_at_quantile(0.5),
            p99_us: hist.value_at_quantile(0.99),
            mean_us: hist.mean(),
        }
    }
}
