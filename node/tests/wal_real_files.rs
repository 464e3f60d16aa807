//! The WAL on real files (`RealFs`): reopening, a torn tail left by a
//! crash, corruption in the middle, and (ignored by default) how many
//! synced appends per second group commit gets on this disk.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use atoll_node::wal::{self, RealFs, SharedFs, Wal, WalError, WalOptions};

fn open(dir: &std::path::Path) -> Result<Wal, WalError> {
    let fs: SharedFs = Arc::new(RealFs::open(dir).expect("wal dir"));
    wal::open(fs, &dir.display().to_string(), WalOptions::default())
}

fn segment(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("0000000000000001.wal")
}

#[tokio::test]
async fn real_files_keep_synced_entries_and_cut_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("wal");
    let log = open(&dir).unwrap();
    log.append_entries(4, 1, vec![b"one".to_vec(), b"two".to_vec()])
        .unwrap();
    log.save_vote(4, b"vote".to_vec()).await.unwrap();
    drop(log);
    // The records, then the zeros the log preallocated after them.
    let bytes = std::fs::read(segment(&dir)).unwrap();
    let synced = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    assert!(bytes.len() as u64 > synced, "no preallocated space");
    // A crash in the middle of the next write, into the preallocated
    // space: a frame header and part of its payload.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.write_all_at(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9], synced)
        .unwrap();
    drop(f);
    let log = open(&dir).unwrap();
    assert_eq!(
        log.entries(4, 0, 10).unwrap(),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    assert_eq!(log.vote(4), Some(b"vote".to_vec()));
    assert_eq!(std::fs::metadata(segment(&dir)).unwrap().len(), synced);
}

#[tokio::test]
async fn real_files_with_a_damaged_record_in_the_middle_are_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("wal");
    let log = open(&dir).unwrap();
    for i in 1..=3 {
        log.append_entries(1, i, vec![vec![7; 100]]).unwrap();
    }
    log.sync().await.unwrap();
    drop(log);
    let mut bytes = std::fs::read(segment(&dir)).unwrap();
    // Inside the second-to-last record (the preallocated zeros follow the
    // last one).
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let at = end - 150;
    bytes[at] ^= 0xff;
    std::fs::write(segment(&dir), bytes).unwrap();
    let msg = open(&dir).err().expect("must refuse").to_string();
    assert!(
        msg.contains(&segment(&dir).display().to_string()) && msg.contains("offset"),
        "{msg}"
    );
}

#[tokio::test]
async fn purge_deletes_whole_segment_files_and_the_rest_reopens() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("wal");
    let fs: SharedFs = Arc::new(RealFs::open(&dir).expect("wal dir"));
    let options = WalOptions {
        segment_bytes: 512,
        ..WalOptions::default()
    };
    let log = wal::open(fs.clone(), "wal", options).unwrap();
    for i in 1..=20 {
        log.append_entries(1, i, vec![vec![i as u8; 100]]).unwrap();
    }
    log.sync().await.unwrap();
    let files = |d: &std::path::Path| std::fs::read_dir(d).unwrap().count();
    let before = files(&dir);
    assert!(before >= 4, "rotated into {before} segments");
    log.purge(1, 18, b"18".to_vec()).await.unwrap();
    let after = files(&dir);
    assert!(after < before && after <= 2, "{before} -> {after} files");
    drop(log);
    let log = wal::open(fs, "wal", options).unwrap();
    assert_eq!(
        log.entries(1, 0, 100).unwrap(),
        vec![vec![19u8; 100], vec![20u8; 100]]
    );
    assert_eq!(log.purged(1), Some(b"18".to_vec()));
}

/// `cargo test -p atoll-node --test wal_real_files -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn measure_synced_appends_per_second() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let log = open(&tmp.path().join("wal")).unwrap();
    let entry = vec![0u8; 256];
    for writers in [1u64, 8, 64] {
        let per_writer = 2000 / writers;
        let start = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let (log, entry) = (log.clone(), entry.clone());
                tokio::spawn(async move {
                    let shard = 100 * writers + w;
                    for i in 1..=per_writer {
                        log.append_entries(shard, i, vec![entry.clone()])?;
                        log.sync().await?;
                    }
                    Ok::<_, WalError>(())
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = per_writer * writers;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{writers:>3} writers: {n} synced appends of 256 B in {secs:.2} s = {:.0}/s",
            n as f64 / secs
        );
    }
}
