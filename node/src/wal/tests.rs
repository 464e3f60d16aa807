//! WAL tests over the simulated seam: torn tails, corruption, versions,
//! rotation and purge, group commit, and recovery against a model that
//! keeps exactly what was synced.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const DIR: &str = "/data/wal";

fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 512,
        ..WalOptions::default()
    }
}

fn open_sim(fs: &Arc<SimFs>, options: WalOptions) -> Result<Wal, WalError> {
    open(fs.clone(), DIR, options)
}

fn entry(shard: u64, i: u64) -> Vec<u8> {
    format!("shard {shard} entry {i}").into_bytes()
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_and_what_was_synced_survives() {
    let fs = Arc::new(SimFs::new());
    // A file that grows with each append (no preallocation).
    let growing = WalOptions {
        prealloc_bytes: 0,
        ..WalOptions::default()
    };
    let wal = open_sim(&fs, growing).unwrap();
    wal.append_entries(1, 1, vec![entry(1, 1), entry(1, 2)])
        .unwrap();
    wal.sync().await.unwrap();
    wal.append_entries(1, 3, vec![entry(1, 3)]).unwrap();
    let name = segment::name(1);
    let before = fs.len(&name).unwrap();
    // Keep all but the last 5 bytes of the unsynced record.
    fs.truncate(&name, before - 5).unwrap();
    drop(wal);
    let wal = open_sim(&fs, growing).unwrap();
    assert_eq!(
        wal.entries(1, 0, 10).unwrap(),
        vec![entry(1, 1), entry(1, 2)]
    );
    let after = fs.len(&name).unwrap();
    let frame = record::encode(&record::Record::Entries {
        shard: 1,
        first: 3,
        entries: vec![entry(1, 3)],
    });
    assert_eq!(
        after,
        before - frame.len() as u64,
        "the torn record is cut off"
    );
    // And the log goes on from there.
    wal.append_entries(1, 3, vec![entry(1, 3)]).unwrap();
    wal.sync().await.unwrap();
    let wal = open_sim(&fs, WalOptions::default()).unwrap();
    assert_eq!(wal.entries(1, 3, 4).unwrap(), vec![entry(1, 3)]);
}

#[tokio::test]
async fn corruption_before_the_tail_refuses_to_open_naming_file_and_offset() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, WalOptions::default()).unwrap();
    for i in 1..=3 {
        wal.append_entries(1, i, vec![entry(1, i)]).unwrap();
    }
    wal.sync().await.unwrap();
    drop(wal);
    let name = segment::name(1);
    let checkpoint = record::encode(&index::Index::default().checkpoint()).len();
    let second = segment::HEADER_LEN + checkpoint;
    fs.corrupt(&name, second + 20, b"X").unwrap();
    let err = open_sim(&fs, WalOptions::default())
        .err()
        .expect("must refuse");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{DIR}/{name}")) && msg.contains(&format!("offset {second}")),
        "{msg}"
    );
    assert!(matches!(err, WalError::Corrupt { .. }));
}

#[tokio::test]
async fn a_segment_of_another_format_version_is_refused_naming_both_versions() {
    let fs = Arc::new(SimFs::new());
    drop(open_sim(&fs, WalOptions::default()).unwrap());
    fs.corrupt(&segment::name(1), 8, &7u32.to_le_bytes())
        .unwrap();
    let msg = open_sim(&fs, WalOptions::default())
        .err()
        .expect("must refuse")
        .to_string();
    assert!(
        msg.contains("format version 7") && msg.contains(&format!("version {FORMAT_VERSION}")),
        "{msg}"
    );
}

#[tokio::test]
async fn a_new_segment_whose_header_never_reached_the_disk_is_dropped() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, WalOptions::default()).unwrap();
    wal.save_vote(1, b"v".to_vec()).await.unwrap();
    drop(wal);
    // Rotation cuts a segment to its records before it creates the next.
    let cut_first = || {
        let first = segment::name(1);
        let records = fs
            .read_at(&first, 0, fs.len(&first).unwrap() as usize)
            .unwrap();
        let end = records.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
        fs.truncate(&first, end).unwrap();
    };
    // A crash between creating segment 2 and syncing its header: none of
    // it, or part of it, is on disk.
    for kept in [0, 5] {
        cut_first();
        let next = segment::name(2);
        fs.create(&next).unwrap();
        fs.write_at(&next, 0, &segment::MAGIC[..kept]).unwrap();
        let wal = open_sim(&fs, WalOptions::default()).unwrap();
        assert_eq!(wal.segment_ids(), vec![1], "{kept} bytes of a header");
        assert_eq!(wal.vote(1), Some(b"v".to_vec()));
        wal.save_vote(1, b"v".to_vec()).await.unwrap();
    }
}

#[tokio::test]
async fn after_a_failed_sync_nothing_is_acknowledged_and_the_log_stops() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, WalOptions::default()).unwrap();
    wal.append_entries(1, 1, vec![entry(1, 1)]).unwrap();
    fs.fail_syncs(true);
    assert!(wal.sync().await.is_err());
    fs.fail_syncs(false);
    // The page cache may have dropped what the failed sync did not write:
    // nothing written before it can be trusted, so the log refuses to go on.
    assert!(matches!(
        wal.append_entries(1, 2, vec![entry(1, 2)]),
        Err(WalError::Failed(_))
    ));
    assert!(wal.save_vote(1, b"v".to_vec()).await.is_err());
    assert!(wal.sync().await.is_err());
}

#[tokio::test]
async fn segments_are_freed_only_once_every_shard_has_purged_past_them() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, small()).unwrap();
    wal.save_vote(2, b"vote of 2".to_vec()).await.unwrap();
    for i in 1..=40 {
        wal.append_entries(1, i, vec![entry(1, i)]).unwrap();
        if i <= 3 {
            wal.append_entries(2, i, vec![entry(2, i)]).unwrap();
        }
    }
    wal.sync().await.unwrap();
    let segs = wal.segment_ids();
    assert!(segs.len() > 3, "rotated: {segs:?}");
    wal.purge(1, 38, b"p1".to_vec()).await.unwrap();
    assert_eq!(
        wal.segment_ids()[0],
        1,
        "shard 2 still needs segment 1: {:?}",
        wal.segment_ids()
    );
    wal.purge(2, 3, b"p2".to_vec()).await.unwrap();
    let left = wal.segment_ids();
    assert!(left[0] > 1 && left.len() < segs.len(), "{left:?}");
    // The newer segments' checkpoints kept every shard's metadata.
    let wal = open_sim(&fs, small()).unwrap();
    assert_eq!(wal.vote(2), Some(b"vote of 2".to_vec()));
    assert_eq!(wal.purged(2), Some(b"p2".to_vec()));
    assert_eq!(wal.purged(1), Some(b"p1".to_vec()));
    assert_eq!(
        wal.entries(1, 0, 100).unwrap(),
        vec![entry(1, 39), entry(1, 40)]
    );
    assert!(wal.entries(2, 0, 100).unwrap().is_empty());
}

#[tokio::test]
async fn a_forgotten_shard_is_gone_after_recovery_and_frees_its_segments() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, small()).unwrap();
    wal.save_vote(2, b"vote of 2".to_vec()).await.unwrap();
    for i in 1..=30 {
        wal.append_entries(2, i, vec![entry(2, i)]).unwrap();
    }
    wal.append_entries(1, 1, vec![entry(1, 1)]).unwrap();
    wal.sync().await.unwrap();
    wal.forget(2).await.unwrap();
    assert_eq!(wal.vote(2), None);
    assert!(wal.entries(2, 0, 100).unwrap().is_empty());
    // Shard 1's purge frees what only shard 2 needed.
    let before = wal.segment_ids().len();
    wal.purge(1, 0, b"p1".to_vec()).await.unwrap();
    let reopened = open_sim(&fs, small()).unwrap();
    assert_eq!(reopened.vote(2), None);
    assert_eq!(reopened.purged(2), None);
    assert!(reopened.entries(2, 0, 100).unwrap().is_empty());
    assert_eq!(reopened.entries(1, 1, 2).unwrap(), vec![entry(1, 1)]);
    assert!(reopened.segment_ids().len() < before, "segments freed");
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_appends_from_many_shards_share_one_sync() {
    let fs = Arc::new(SimFs::new());
    let wal = open_sim(&fs, WalOptions::default()).unwrap();
    // A sync takes as long as on a slow disk: the appends made while the
    // first one runs must share the next. (In the simulation the sync task
    // takes simulated time instead.)
    #[cfg(not(madsim))]
    fs.set_sync_delay(std::time::Duration::from_millis(20));
    let before = fs.syncs();
    let tasks: Vec<_> = (0..64u64)
        .map(|n| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let shard = n % 8;
                wal.append_entries(shard, n, vec![entry(shard, n)])?;
                wal.sync().await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let syncs = fs.syncs() - before;
    assert!(syncs <= 2, "64 appends took {syncs} syncs");
}

/// What the WAL should hold: the model applies the same operations.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    shards: BTreeMap<u64, ModelShard>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ModelShard {
    entries: BTreeMap<u64, Vec<u8>>,
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
}

fn show(s: &ModelShard) -> String {
    let t = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    format!(
        "entries {:?} vote {:?} committed {:?} purged {:?}",
        s.entries
            .iter()
            .map(|(i, e)| (*i, t(e)))
            .collect::<Vec<_>>(),
        s.vote.as_ref().map(t),
        s.committed.as_ref().map(t),
        s.purged.as_ref().map(t)
    )
}

fn read_back(wal: &Wal, shards: &[u64]) -> Model {
    let mut m = Model::default();
    for &s in shards {
        let entries: BTreeMap<u64, Vec<u8>> = (0..200)
            .filter_map(|i| wal.entries(s, i, i + 1).unwrap().pop().map(|e| (i, e)))
            .collect();
        let shard = ModelShard {
            entries,
            vote: wal.vote(s),
            committed: wal.committed(s),
            purged: wal.purged(s),
        };
        if shard != ModelShard::default() {
            m.shards.insert(s, shard);
        }
    }
    m
}

#[tokio::test]
async fn after_any_crash_the_log_holds_a_prefix_of_its_writes_covering_every_sync() {
    for seed in 0..100u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let fs = Arc::new(SimFs::new());
        let shards = [1u64, 2, 3];
        let mut model = Model::default();
        for _round in 0..4 {
            let wal = open_sim(&fs, small()).unwrap();
            assert_eq!(read_back(&wal, &shards), model, "seed {seed}: reopen");
            // States after each write since the last sync; the first is synced.
            let mut states = vec![model.clone()];
            for _ in 0..rng.gen_range(1..200) {
                let s = shards[rng.gen_range(0..shards.len())];
                let log = model.shards.entry(s).or_default();
                // As openraft does: nothing at or below the purge point changes.
                let floor = log.purged.as_ref().map_or(1, |p| {
                    let text = String::from_utf8_lossy(p).into_owned();
                    text.trim_start_matches("purged ")
                        .parse::<u64>()
                        .unwrap_or(0)
                        + 1
                });
                let next = log.entries.keys().next_back().map_or(floor, |i| i + 1);
                let synced = match rng.gen_range(0..10) {
                    0..=4 => {
                        let first = next.saturating_sub(rng.gen_range(0..2)).max(floor);
                        let n = rng.gen_range(1..4);
                        let es: Vec<_> = (first..first + n)
                            .map(|i| format!("{seed}/{s}/{i}/{}", rng.gen::<u16>()).into_bytes())
                            .collect();
                        log.entries.split_off(&first);
                        log.entries.extend((first..).zip(es.clone()));
                        wal.append_entries(s, first, es).unwrap();
                        false
                    }
                    5 => {
                        let v = format!("vote {}", rng.gen::<u16>()).into_bytes();
                        log.vote = Some(v.clone());
                        wal.save_vote(s, v).await.unwrap();
                        true
                    }
                    6 => {
                        let c = format!("committed {}", rng.gen::<u16>()).into_bytes();
                        log.committed = Some(c.clone());
                        wal.save_committed(s, Some(c)).unwrap();
                        false
                    }
                    7 => {
                        let from = next.saturating_sub(rng.gen_range(0..3)).max(floor);
                        log.entries.split_off(&from);
                        wal.truncate(s, from).await.unwrap();
                        true
                    }
                    8 => match log.entries.keys().next().copied() {
                        Some(lo) if next > lo + 1 => {
                            let upto = rng.gen_range(lo..next - 1);
                            let id = format!("purged {upto}").into_bytes();
                            log.entries = log.entries.split_off(&(upto + 1));
                            log.purged = Some(id.clone());
                            wal.purge(s, upto, id).await.unwrap();
                            true
                        }
                        _ => false,
                    },
                    _ => {
                        wal.sync().await.unwrap();
                        true
                    }
                };
                model.shards.retain(|_, l| *l != ModelShard::default());
                if synced {
                    states.clear();
                }
                states.push(model.clone());
            }
            fs.crash_with(&mut rng);
            drop(wal);
            let wal = open_sim(&fs, small()).unwrap();
            let got = read_back(&wal, &shards);
            if !states.contains(&got) {
                for (i, st) in states.iter().enumerate() {
                    for sh in &shards {
                        if st.shards.get(sh) != got.shards.get(sh) {
                            eprintln!(
                                "state {i} shard {sh}: want {:?}",
                                st.shards.get(sh).map(show)
                            );
                            eprintln!("               got {:?}", got.shards.get(sh).map(show));
                        }
                    }
                }
                panic!("seed {seed}: recovered state is not one of those since the last sync");
            }
            model = got;
        }
    }
}

/// Power losses in the middle of appends into preallocated space, several
/// in a row on the same files, with rotations: every synced entry survives
/// and the log always opens.
#[tokio::test]
async fn power_losses_amid_writes_in_preallocated_space_keep_what_was_synced() {
    use rand::{Rng, SeedableRng};
    let options = WalOptions {
        segment_bytes: 4096,
        prealloc_bytes: 1024,
    };
    for seed in 0..300u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let fs = Arc::new(SimFs::new());
        let mut synced = 0u64;
        for round in 0..6 {
            let wal = open_sim(&fs, options).unwrap_or_else(|e| {
                panic!("seed {seed} round {round}: the log does not open: {e}")
            });
            let have = wal.entries(1, 1, u64::MAX).unwrap();
            assert!(
                have.len() as u64 >= synced,
                "seed {seed} round {round}: synced entries lost"
            );
            assert!(have.iter().enumerate().all(|(i, e)| e.len() == 1 + i % 300));
            let mut next = have.len() as u64 + 1;
            for _ in 0..rng.gen_range(1..200) {
                let len = 1 + (next as usize - 1) % 300;
                wal.append_entries(1, next, vec![vec![7u8; len]]).unwrap();
                next += 1;
                if rng.gen_bool(0.3) {
                    wal.sync().await.unwrap();
                    synced = next - 1;
                }
            }
            drop(wal);
            fs.crash_with(&mut rng);
        }
    }
}
