//! The machine's floor for a replicated durable write: what any 3-replica
//! store pays for one write at one client here, with no software of its own
//! in the way. A leader thread and two follower threads, each with its own
//! preallocated file in the probe directory, connected by loopback TCP
//! (`TCP_NODELAY`):
//!
//! 1. the leader sends the 4 KiB record to both followers, writes it to its
//!    own file and `fdatasync`s it;
//! 2. each follower reads it, writes it, `fdatasync`s, and answers 8 bytes;
//! 3. the write is done when the leader's own sync and one follower's
//!    answer are in (a majority of three, as Raft commits).
//!
//! The three syncs share the machine's one disk, and the hops share its
//! cores, as a real cluster on one machine does. A store that answers
//! after commit (Atoll, etcd) adds its own work on top: framing, Raft,
//! applying the write, and the client's two hops.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::disk::SyncLatency;

const BLOCK: usize = 4096;

/// Runs `count` replicated writes (at most `budget` of them) under `dir`;
/// removes its files afterwards.
pub fn measure(dir: &Path, count: u64, budget: Duration) -> anyhow::Result<SyncLatency> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("floor-probe-{i}.dat")))
        .collect();
    let result = run(&paths, count, budget);
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn run(paths: &[PathBuf], count: u64, budget: Duration) -> anyhow::Result<SyncLatency> {
    let files = paths
        .iter()
        .map(|p| preallocated(p, count))
        .collect::<anyhow::Result<Vec<File>>>()?;
    let [own, f1, f2]: [File; 3] = files
        .try_into()
        .map_err(|_| anyhow::anyhow!("three probe files"))?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut followers = Vec::new();
    for file in [f1, f2] {
        let conn = TcpStream::connect(addr)?;
        conn.set_nodelay(true)?;
        followers.push(std::thread::spawn(move || follow(conn, file)));
    }
    // The leader's ends of the two connections, and a reader thread per
    // connection that passes each answer on (the first of the two counts).
    let (acks_tx, acks) = mpsc::channel::<u64>();
    let mut links = Vec::new();
    for _ in 0..2 {
        let (conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut reader = conn.try_clone()?;
        let tx = acks_tx.clone();
        std::thread::spawn(move || {
            let mut ack = [0u8; 8];
            while reader.read_exact(&mut ack).is_ok() {
                if tx.send(u64::from_le_bytes(ack)).is_err() {
                    return;
                }
            }
        });
        links.push(conn);
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut record = vec![0x5au8; 8 + BLOCK];
    let start = Instant::now();
    let mut seq = 0u64;
    while hist.len() < count && start.elapsed() < budget {
        seq += 1;
        record[..8].copy_from_slice(&seq.to_le_bytes());
        let t = Instant::now();
        for link in &mut links {
            link.write_all(&record)?;
        }
        own.write_all_at(&record[8..], (seq - 1) % count * BLOCK as u64)?;
        own.sync_data()?;
        // The first answer for this write; older ones (the slower
        // follower's) are skipped.
        loop {
            let acked = acks.recv_timeout(Duration::from_secs(10))?;
            if acked == seq {
                break;
            }
        }
        hist.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    // Ending the connections' sending side ends the followers (the reader
    // threads hold the other halves).
    for link in &links {
        link.shutdown(std::net::Shutdown::Write)?;
    }
    for f in followers {
        f.join()
            .map_err(|_| anyhow::anyhow!("a probe follower panicked"))??;
    }
    Ok(SyncLatency::of(&hist))
}

/// A file of `count` blocks, written and synced, so that later writes into
/// it commit data only.
fn preallocated(path: &Path, count: u64) -> anyhow::Result<File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let block = [0u8; BLOCK];
    for _ in 0..count {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    Ok(file)
}

/// A follower: each record is written, synced and answered with its
/// sequence number, until the leader closes the connection.
fn follow(mut conn: TcpStream, file: File) -> anyhow::Result<()> {
    let mut record = vec![0u8; 8 + BLOCK];
    let blocks = file.metadata()?.len() / BLOCK as u64;
    let mut written = 0u64;
    loop {
        if conn.read_exact(&mut record).is_err() {
            return Ok(());
        }
        file.write_all_at(&record[8..], written % blocks.max(1) * BLOCK as u64)?;
        file.sync_data()?;
        written += 1;
        conn.write_all(&record[..8])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_probe_runs_and_takes_at_least_one_sync() {
        let dir = std::env::temp_dir().join(format!("atoll-floor-{}", std::process::id()));
        let floor = measure(&dir, 50, Duration::from_secs(10)).expect("floor probe");
        assert_eq!(floor.writes, 50);
        assert!(floor.p50_us > 0 && floor.p99_us >= floor.p50_us);
        // Its files are gone.
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
