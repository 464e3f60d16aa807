//! A shard's identity as the state machine stores it: key range + epoch.
//! Replicas are not stored here; they are the Raft membership.

use serde::{Deserialize, Serialize};

use crate::storage::keys::ShardId;

/// `version` bumps on split/merge, `conf_ver` on membership change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub version: u64,
    pub conf_ver: u64,
}

/// The key range `[start, end)` of a shard; `end == None` is +infinity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub id: ShardId,
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub epoch: Epoch,
}

impl ShardMeta {
    /// The first shard of a new cluster: the whole key space.
    pub fn whole_keyspace(id: ShardId) -> Self {
        Self {
            id,
            start: Vec::new(),
            end: None,
            epoch: Epoch {
                version: 1,
                conf_ver: 0,
            },
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// Clips a scan range `[start, end)` (None: +inf) to this shard. Returns
    /// None when `start` lies outside the shard.
    pub fn clip<'a>(
        &'a self,
        start: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> Option<(&'a [u8], Option<&'a [u8]>)> {
        if !self.contains(start) {
            return None;
        }
        let end = match (end, self.end.as_deref()) {
            (None, e) => e,
            (Some(e), None) => Some(e),
            (Some(a), Some(b)) => Some(a.min(b)),
        };
        Some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(start: &[u8], end: Option<&[u8]>) -> ShardMeta {
        ShardMeta {
            id: 1,
            start: start.to_vec(),
            end: end.map(|e| e.to_vec()),
            epoch: Epoch::default(),
        }
    }

    #[test]
    fn contains_is_half_open() {
        let s = shard(b"b", Some(b"d"));
        assert!(!s.contains(b"a"));
        assert!(s.contains(b"b"));
        assert!(s.contains(b"c\xff\xff"));
        assert!(!s.contains(b"d"));
        let all = ShardMeta::whole_keyspace(1);
        assert!(all.contains(b"") && all.contains(&[0xff; 64]));
    }

    #[test]
    fn clip_limits_the_end_to_the_shard() {
        let s = shard(b"b", Some(b"d"));
        assert_eq!(s.clip(b"b", None), Some((&b"b"[..], Some(&b"d"[..]))));
        assert_eq!(
            s.clip(b"c", Some(b"cc")),
            Some((&b"c"[..], Some(&b"cc"[..])))
        );
        assert_eq!(s.clip(b"a", Some(b"c")), None);
        let all = ShardMeta::whole_keyspace(1);
        assert_eq!(all.clip(b"x", None), Some((&b"x"[..], None)));
    }
}
