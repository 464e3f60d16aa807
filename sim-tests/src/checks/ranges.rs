//! Shard ranges: on every node, the data shards it hosts never overlap;
//! the newest descriptors of all shards cover the whole key space; and once the faults heal, every shard takes a write within a
//! bound (no shard is left below quorum, e.g. a split child that opened on
//! too few replicas).

use std::time::Duration;

use atoll_node::pd::PD_SHARD;
use atoll_node::shard::ShardMeta;

use crate::cluster::SimCluster;

/// What is wrong with the ranges of `shards`, if anything.
pub fn tiling_error(shards: &[ShardMeta]) -> Option<String> {
    let mut sorted: Vec<&ShardMeta> = shards.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    let mut expect: Option<Vec<u8>> = Some(Vec::new());
    for s in &sorted {
        match &expect {
            None => {
                return Some(format!(
                    "shard {} starts after a shard that ends at +inf",
                    s.id
                ))
            }
            Some(e) if *e != s.start => {
                return Some(format!(
                    "shard {} starts at {:?}, but the previous shard ends at {:?} ({})",
                    s.id,
                    String::from_utf8_lossy(&s.start),
                    String::from_utf8_lossy(e),
                    if s.start < *e { "overlap" } else { "gap" }
                ))
            }
            Some(_) => expect = s.end.clone(),
        }
    }
    expect.map(|e| {
        format!(
            "the last shard ends at {:?}, not +inf",
            String::from_utf8_lossy(&e)
        )
    })
}

/// The shards a node hosts never overlap, and the newest descriptors of
/// all shards tile the key space (with replicas moving, a node need not
/// host every shard).
pub fn check_tiling(cluster: &SimCluster) -> Result<(), String> {
    for id in cluster.ids() {
        let shards: Vec<ShardMeta> = cluster
            .shards_of(id)
            .into_iter()
            .filter(|(shard, _)| *shard != PD_SHARD)
            .filter_map(|(_, s)| s.meta.and_then(Result::ok))
            .collect();
        if let Some(e) = overlap_error(&shards) {
            return Err(format!("node {id}'s shards overlap: {e}"));
        }
    }
    if let Some(e) = tiling_error(&cluster.newest_shards()) {
        return Err(format!("the shard ranges do not tile the key space: {e}"));
    }
    Ok(())
}

/// Two of `shards` that overlap, if any.
pub fn overlap_error(shards: &[ShardMeta]) -> Option<String> {
    let mut sorted: Vec<&ShardMeta> = shards.iter().collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    sorted.windows(2).find_map(|w| {
        let ends_after = w[0].end.as_ref().is_none_or(|e| *e > w[1].start);
        ends_after.then(|| format!("shards {} and {} overlap", w[0].id, w[1].id))
    })
}

/// After healing, a write to every shard (one key just after its start)
/// is acknowledged within `within`.
pub async fn check_every_shard_writable(
    cluster: &SimCluster,
    within: Duration,
) -> Result<(), String> {
    let shards = cluster.newest_shards();
    let client = cluster.client(within).await;
    for s in shards {
        let mut key = s.start.clone();
        key.extend_from_slice(b"\x00probe");
        let c = client.clone();
        let r = cluster
            .on_client(async move { c.put(key, "after-heal").await })
            .await;
        if let Err(e) = r {
            return Err(format!(
                "shard {} [{:?}, ..) took no write within {within:?} after the faults healed \
                 (below quorum?): {e}{}",
                s.id,
                String::from_utf8_lossy(&s.start),
                cluster.observer.metrics_report()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_node::shard::Epoch;

    fn m(id: u64, start: &str, end: Option<&str>) -> ShardMeta {
        ShardMeta {
            id,
            start: start.as_bytes().to_vec(),
            end: end.map(|e| e.as_bytes().to_vec()),
            epoch: Epoch::default(),
        }
    }

    #[test]
    fn tiles_gaps_and_overlaps() {
        assert_eq!(tiling_error(&[m(1, "", Some("m")), m(2, "m", None)]), None);
        assert!(tiling_error(&[m(1, "", Some("m")), m(2, "n", None)])
            .is_some_and(|e| e.contains("gap")));
        assert!(tiling_error(&[m(1, "", Some("n")), m(2, "m", None)])
            .is_some_and(|e| e.contains("overlap")));
        assert!(tiling_error(&[m(1, "", Some("m"))]).is_some_and(|e| e.contains("not +inf")));
        assert!(tiling_error(&[m(1, "a", None)]).is_some());
    }

    #[test]
    fn overlaps_are_found_and_gaps_allowed() {
        assert_eq!(overlap_error(&[m(1, "", Some("m")), m(2, "n", None)]), None);
        assert!(overlap_error(&[m(1, "", Some("n")), m(2, "m", None)]).is_some());
        assert!(overlap_error(&[m(2, "m", None), m(1, "a", None)]).is_some());
    }
}
