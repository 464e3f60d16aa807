//! Layout of the node's single ordered key space.
//!
//! ```text
//! 0x00 name                      node meta (node id, ...)
//! 0x01, 0x02                     reserved: the raft log and raft meta of data format 0;
//!                                the raft log is in the WAL now (crate::wal)
//! 0x03 shard(8) tag              state-machine meta: applied, membership, shard, snapshot,
//!                                next session id, PD state (shard 0)
//! 0x04 shard(8) client(8)        dedup session row of one client: header, small results
//! 0x04 shard(8) client(8) seq(8) one larger recorded write result of that client
//! 0x10 user-key                  user data (shards on a node never overlap)
//! ```
//! Every shard-scoped prefix puts the shard id first, so one shard's meta or
//! sessions are one contiguous range.

pub type ShardId = u64;

const NODE_META: u8 = 0x00;
const SM_META: u8 = 0x03;
const SESSION: u8 = 0x04;
const DATA: u8 = 0x10;

#[derive(Debug, Clone, Copy)]
pub enum SmMeta {
    Applied = 1,
    Membership = 2,
    Shard = 3,
    Snapshot = 4,
    NextSessionId = 5,
    /// A snapshot install in progress (see `state_machine::install`).
    Installing = 6,
    /// The placement driver's state (on the PD group only, `crate::pd`).
    Pd = 7,
    /// The replica was removed from this node (`shard::removal`); kept so
    /// that an old descriptor never re-creates it.
    Tombstone = 8,
    /// The replica was created empty to join the shard (a learner, or a
    /// member that skipped a split): it takes no log entry before its
    /// first snapshot (`shard::replica`). Value `[1]`: created again after
    /// a removal, so it grants no vote before then either.
    AwaitingSnapshot = 9,
    /// This node's replica id in the shard's Raft group (8 bytes, big
    /// endian; `raft::replica_id`). Local: never in a snapshot.
    ReplicaId = 10,
}

fn shard_prefix(tag: u8, shard: ShardId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(tag);
    k.extend_from_slice(&shard.to_be_bytes());
    k
}

pub fn node_meta(name: &str) -> Vec<u8> {
    let mut k = vec![NODE_META];
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn sm_meta(shard: ShardId, which: SmMeta) -> Vec<u8> {
    let mut k = shard_prefix(SM_META, shard);
    k.push(which as u8);
    k
}

/// The range holding the `Shard` descriptor key of every shard.
pub fn all_sm_meta() -> (Vec<u8>, Vec<u8>) {
    (vec![SM_META], vec![SM_META + 1])
}

/// Decodes `(shard, tag)` from a key made by [`sm_meta`].
pub fn parse_sm_meta(key: &[u8]) -> Option<(ShardId, u8)> {
    if key.len() != 10 || key[0] != SM_META {
        return None;
    }
    let bytes: [u8; 8] = key[1..9].try_into().ok()?;
    Some((u64::from_be_bytes(bytes), key[9]))
}

pub fn session(shard: ShardId, client: u64) -> Vec<u8> {
    let mut k = shard_prefix(SESSION, shard);
    k.extend_from_slice(&client.to_be_bytes());
    k
}

/// The recorded result of write `seq` of `client`, when it is not in the
/// session's row (state_machine::dedup); sorts right after that row, so one session is one contiguous range.
pub fn session_result(shard: ShardId, client: u64, seq: u64) -> Vec<u8> {
    let mut k = session(shard, client);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// A key in [`sessions_range`]: a session header or one of its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKey {
    Header { client: u64 },
    Result { client: u64, seq: u64 },
}

/// Decodes a key made by [`session`] or [`session_result`].
pub fn parse_session(key: &[u8]) -> Option<SessionKey> {
    if key.first() != Some(&SESSION) {
        return None;
    }
    let word = |at: usize| -> Option<u64> {
        let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    };
    match key.len() {
        17 => Some(SessionKey::Header { client: word(9)? }),
        25 => Some(SessionKey::Result {
            client: word(9)?,
            seq: word(17)?,
        }),
        _ => None,
    }
}

pub fn sessions_range(shard: ShardId) -> (Vec<u8>, Vec<u8>) {
    let end = match shard.checked_add(1) {
        Some(next) => shard_prefix(SESSION, next),
        None => vec![SESSION + 1],
    };
    (shard_prefix(SESSION, shard), end)
}

pub fn data(user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(user_key.len() + 1);
    k.push(DATA);
    k.extend_from_slice(user_key);
    k
}

/// Engine range for user keys in `[start, end)`; `None` end is +infinity.
pub fn data_range(start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let hi = match end {
        Some(e) => data(e),
        None => vec![DATA + 1],
    };
    (data(start), hi)
}

pub fn user_key(data_key: &[u8]) -> &[u8] {
    &data_key[1..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_range_covers_exactly_the_user_range() {
        let (lo, hi) = data_range(b"b", Some(b"d"));
        assert!(data(b"b") >= lo && data(b"c\xff") < hi && data(b"d") >= hi);
        let (lo, hi) = data_range(b"", None);
        assert!(data(b"") >= lo && data(&[0xff; 100]) < hi);
        assert!(session(u64::MAX, u64::MAX) < lo);
    }

    #[test]
    fn the_last_shard_id_has_a_sessions_range_too() {
        let (lo, hi) = sessions_range(u64::MAX);
        assert!(lo < hi);
        assert!(lo <= session(u64::MAX, 7) && session(u64::MAX, 7) < hi);
        let (_, below) = sessions_range(u64::MAX - 1);
        assert_eq!(below, lo);
    }

    #[test]
    fn session_keys_round_trip_and_group_by_client() {
        assert_eq!(
            parse_session(&session(3, 9)),
            Some(SessionKey::Header { client: 9 })
        );
        assert_eq!(
            parse_session(&session_result(3, 9, 4)),
            Some(SessionKey::Result { client: 9, seq: 4 })
        );
        assert_eq!(parse_session(&sm_meta(3, SmMeta::Shard)), None);
        assert!(session(3, 9) < session_result(3, 9, 0));
        assert!(session_result(3, 9, u64::MAX) < session(3, 10));
        let (lo, hi) = sessions_range(3);
        assert!(lo <= session(3, 0) && session_result(3, u64::MAX, u64::MAX) < hi);
    }

    #[test]
    fn sm_meta_round_trips() {
        assert_eq!(
            parse_sm_meta(&sm_meta(9, SmMeta::Shard)),
            Some((9, SmMeta::Shard as u8))
        );
        assert_eq!(parse_sm_meta(&session(9, 1)), None);
    }
}
