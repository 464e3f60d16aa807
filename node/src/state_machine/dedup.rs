//! Exactly-once writes: a per-shard table of client sessions (the Raft
//! dissertation, §6.3; docs/decisions/0007-explicit-client-sessions.md).
//!
//! A client first registers a session through the log
//! ([`Sessions::register`]); the id comes from a per-shard counter and is
//! never reused. It then tags each write with `(client_id, seq)` and tells
//! the server the smallest seq it still waits for (`first_incomplete`). The
//! table keeps the result of every applied seq at or above that mark, so a
//! retry of an applied write gets the original answer instead of applying
//! twice. A write whose session is not in the table (evicted, or never
//! registered here) is [`Check::Expired`]: it is refused, never applied.
//!
//! The table is replicated state: it changes only when entries are applied,
//! and every decision depends on the log alone (the eviction cap travels in
//! the register entry, recency is the log index of a session's last write).
//! Registering beyond the cap evicts the least recently written sessions,
//! found through an ordered index in O(log n).
//!
//! Persistence is incremental: each session's header and each recorded
//! result have their own key ([`keys::session`], [`keys::session_result`]),
//! and [`Sessions::persist_into`] writes only what changed since the last
//! call. A split copies the whole table to the child
//! ([`Sessions::copy_for_split`]), whose ids continue from `child << 32`,
//! so a session id names one session on the parent and on the child.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::codec::{self, DecodeError, EncodeError};
use crate::command::{Response, WriteId};
use crate::storage::engine::{Kv, WriteBatch};
use crate::storage::keys::{self, SessionKey, ShardId};

/// Default cap on the sessions of one shard (node config
/// `sessions.max_per_shard`).
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;

/// The persistent header of one session; its results are stored apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHeader {
    /// Every seq below this one has been answered to the client.
    pub first_incomplete: u64,
    /// Log index of the session's registration or last applied write.
    pub last_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Session {
    header: SessionHeader,
    results: BTreeMap<u64, Response>,
}

/// One session as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub client_id: u64,
    pub header: SessionHeader,
    pub results: Vec<(u64, Response)>,
}

/// The whole table as a snapshot carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsSnapshot {
    pub next_id: u64,
    /// Sorted by client id.
    pub sessions: Vec<SessionSnapshot>,
}

/// What to do with an incoming write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Apply it.
    Fresh,
    /// Already applied: answer with the recorded response.
    Duplicate(Response),
    /// Older than anything the client still waits for: refuse.
    Stale { first_incomplete: u64 },
    /// The session is not in the table (evicted or never registered):
    /// refuse; the outcome of earlier attempts is unknown to the client.
    Expired,
}

/// Why stored sessions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("malformed session key {0:02x?}")]
    BadKey(Vec<u8>),
    #[error("stored result of client {client} seq {seq} has no session header")]
    Orphan { client: u64, seq: u64 },
}

#[derive(Debug)]
pub struct Sessions {
    map: HashMap<u64, Session>,
    /// `(last_index, client_id)` of every session: eviction order.
    by_recency: BTreeSet<(u64, u64)>,
    /// The id the next registration gets; ids start at 1.
    next_id: u64,
    /// Keys to rewrite from the in-memory state (or delete when gone).
    dirty_headers: BTreeSet<u64>,
    dirty_results: BTreeSet<(u64, u64)>,
    dirty_next_id: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        Self {
            map: HashMap::new(),
            by_recency: BTreeSet::new(),
            next_id: 1,
            dirty_headers: BTreeSet::new(),
            dirty_results: BTreeSet::new(),
            dirty_next_id: false,
        }
    }

    /// Rebuilds the table from its stored rows (a scan of
    /// [`keys::sessions_range`]) and the stored `next_id` (`None`: 1).
    pub fn load(next_id: Option<u64>, rows: Vec<Kv>) -> Result<Self, LoadError> {
        let mut s = Self::new();
        s.next_id = next_id.unwrap_or(1);
        for (k, v) in rows {
            match keys::parse_session(&k) {
                Some(SessionKey::Header { client }) => {
                    let header: SessionHeader = codec::decode("session header", &v)?;
                    s.map.insert(
                        client,
                        Session {
                            header,
                            results: BTreeMap::new(),
                        },
                    );
                    s.by_recency.insert((header.last_index, client));
                }
                // A header sorts before its results, so it is already here.
                Some(SessionKey::Result { client, seq }) => {
                    let response: Response = codec::decode("session result", &v)?;
                    let session = s
                        .map
                        .get_mut(&client)
                        .ok_or(LoadError::Orphan { client, seq })?;
                    session.results.insert(seq, response);
                }
                None => return Err(LoadError::BadKey(k)),
            }
        }
        Ok(s)
    }

    /// Replaces the table with a snapshot's; every key is marked for
    /// rewriting (the caller deletes the old range first).
    pub fn from_snapshot(snapshot: SessionsSnapshot) -> Self {
        let mut s = Self::new();
        s.next_id = snapshot.next_id.max(1);
        s.dirty_next_id = true;
        for snap in snapshot.sessions {
            let client = snap.client_id;
            s.by_recency.insert((snap.header.last_index, client));
            s.dirty_headers.insert(client);
            s.dirty_results
                .extend(snap.results.iter().map(|(seq, _)| (client, *seq)));
            s.map.insert(
                client,
                Session {
                    header: snap.header,
                    results: snap.results.into_iter().collect(),
                },
            );
        }
        s
    }

    /// The whole table, sessions sorted by client id.
    pub fn to_snapshot(&self) -> SessionsSnapshot {
        let mut sessions: Vec<SessionSnapshot> = self
            .map
            .iter()
            .map(|(client, s)| SessionSnapshot {
                client_id: *client,
                header: s.header,
                results: s.results.iter().map(|(q, r)| (*q, r.clone())).collect(),
            })
            .collect();
        sessions.sort_by_key(|s| s.client_id);
        SessionsSnapshot {
            next_id: self.next_id,
            sessions,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, client: u64) -> bool {
        self.map.contains_key(&client)
    }

    /// Registers a new session at log `index` and returns its id; then
    /// evicts the least recently written sessions while more than
    /// `max_sessions` (at least 1: the new one always stays) exist.
    pub fn register(&mut self, index: u64, max_sessions: u64) -> u64 {
        let client = self.next_id;
        self.next_id += 1;
        self.dirty_next_id = true;
        let header = SessionHeader {
            first_incomplete: 0,
            last_index: index,
        };
        self.map.insert(
            client,
            Session {
                header,
                results: BTreeMap::new(),
            },
        );
        self.by_recency.insert((index, client));
        self.dirty_headers.insert(client);
        let cap = usize::try_from(max_sessions.max(1)).unwrap_or(usize::MAX);
        while self.map.len() > cap {
            let Some((_, oldest)) = self.by_recency.pop_first() else {
                break;
            };
            self.evict(oldest);
        }
        client
    }

    fn evict(&mut self, client: u64) {
        if let Some(s) = self.map.remove(&client) {
            self.by_recency.remove(&(s.header.last_index, client));
            self.dirty_headers.insert(client);
            self.dirty_results
                .extend(s.results.keys().map(|seq| (client, *seq)));
        }
    }

    /// Classifies a write and forgets results the client no longer needs.
    pub fn check(&mut self, id: &WriteId) -> Check {
        let Some(session) = self.map.get_mut(&id.client_id) else {
            return Check::Expired;
        };
        if id.first_incomplete > session.header.first_incomplete {
            session.header.first_incomplete = id.first_incomplete;
            let kept = session.results.split_off(&id.first_incomplete);
            let dropped = std::mem::replace(&mut session.results, kept);
            self.dirty_results
                .extend(dropped.into_keys().map(|seq| (id.client_id, seq)));
            self.dirty_headers.insert(id.client_id);
        }
        if let Some(r) = session.results.get(&id.seq) {
            return Check::Duplicate(r.clone());
        }
        if id.seq < session.header.first_incomplete {
            return Check::Stale {
                first_incomplete: session.header.first_incomplete,
            };
        }
        Check::Fresh
    }

    /// Records the response of a write applied at log `index`, after
    /// [`Sessions::check`] answered `Fresh` (a write of an unknown session
    /// is ignored: it must not have been applied).
    pub fn record(&mut self, id: &WriteId, index: u64, response: Response) {
        let Some(session) = self.map.get_mut(&id.client_id) else {
            return;
        };
        self.by_recency
            .remove(&(session.header.last_index, id.client_id));
        session.header.last_index = index;
        session.header.first_incomplete = session.header.first_incomplete.max(id.first_incomplete);
        session.results.insert(id.seq, response);
        self.by_recency.insert((index, id.client_id));
        self.dirty_headers.insert(id.client_id);
        self.dirty_results.insert((id.client_id, id.seq));
    }

    /// The table a split child starts with: every session and result, so a
    /// write retried at the child after being applied at the parent is still
    /// answered from the table; and ids from `id_base` on, so the child's new
    /// sessions never take an id the parent hands out after the split.
    pub fn copy_for_split(&self, id_base: u64) -> Sessions {
        let mut copy = Sessions::from_snapshot(self.to_snapshot());
        copy.next_id = copy.next_id.max(id_base);
        copy
    }

    /// Adds to `batch` the keys changed since the last call: puts for what
    /// exists, deletes for what was evicted or forgotten.
    pub fn persist_into(
        &mut self,
        shard: ShardId,
        batch: &mut WriteBatch,
    ) -> Result<(), EncodeError> {
        if std::mem::take(&mut self.dirty_next_id) {
            batch.put(
                keys::sm_meta(shard, keys::SmMeta::NextSessionId),
                codec::encode("next session id", &self.next_id)?,
            );
        }
        for client in std::mem::take(&mut self.dirty_headers) {
            let key = keys::session(shard, client);
            match self.map.get(&client) {
                Some(s) => batch.put(key, codec::encode("session header", &s.header)?),
                None => batch.delete(key),
            }
        }
        for (client, seq) in std::mem::take(&mut self.dirty_results) {
            let key = keys::session_result(shard, client, seq);
            match self.map.get(&client).and_then(|s| s.results.get(&seq)) {
                Some(r) => batch.put(key, codec::encode("session result", r)?),
                None => batch.delete(key),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::engine::BatchOp;

    fn id(client: u64, seq: u64, fi: u64) -> WriteId {
        WriteId {
            client_id: client,
            seq,
            first_incomplete: fi,
        }
    }

    /// A table with sessions 1..=n registered at indexes 1..=n.
    fn with_sessions(n: u64, cap: u64) -> Sessions {
        let mut s = Sessions::new();
        for i in 1..=n {
            assert_eq!(s.register(i, cap), i);
        }
        s
    }

    fn keys_of(batch: &WriteBatch) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for op in &batch.ops {
            match op {
                BatchOp::Put(k, _) => puts.push(k.clone()),
                BatchOp::Delete(k) => deletes.push(k.clone()),
            }
        }
        (puts, deletes)
    }

    #[test]
    fn retry_of_applied_write_returns_the_recorded_response() {
        let mut s = with_sessions(1, 10);
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
        s.record(&id(1, 1, 1), 5, Response::Delete { existed: true });
        assert_eq!(
            s.check(&id(1, 1, 1)),
            Check::Duplicate(Response::Delete { existed: true })
        );
    }

    #[test]
    fn acknowledged_results_are_forgotten_and_their_retries_refused() {
        let mut s = with_sessions(1, 10);
        s.record(&id(1, 1, 1), 5, Response::Put);
        s.record(&id(1, 2, 1), 6, Response::Put);
        // The client has its answers for 1 and 2 and now sends 3.
        assert_eq!(s.check(&id(1, 3, 3)), Check::Fresh);
        assert_eq!(
            s.check(&id(1, 1, 3)),
            Check::Stale {
                first_incomplete: 3
            }
        );
        assert!(s.to_snapshot().sessions[0].results.is_empty());
    }

    #[test]
    fn concurrent_writes_of_one_client_are_each_remembered() {
        let mut s = with_sessions(1, 10);
        s.record(&id(1, 2, 1), 5, Response::Put);
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
        s.record(&id(1, 1, 1), 6, Response::Batch);
        assert_eq!(s.check(&id(1, 2, 1)), Check::Duplicate(Response::Put));
        assert_eq!(s.check(&id(1, 1, 1)), Check::Duplicate(Response::Batch));
    }

    #[test]
    fn a_write_of_an_unregistered_session_is_expired_not_fresh() {
        let mut s = with_sessions(1, 10);
        assert_eq!(s.check(&id(2, 1, 1)), Check::Expired);
        assert_eq!(s.check(&id(0, 1, 1)), Check::Expired);
    }

    #[test]
    fn a_retry_after_eviction_is_expired_not_applied_again() {
        let mut s = with_sessions(2, 2);
        // Session 1 writes at index 3, session 2 at index 4.
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
        s.record(&id(1, 1, 1), 3, Response::Put);
        s.record(&id(2, 1, 1), 4, Response::Put);
        // A third session evicts the least recently written one: 1.
        assert_eq!(s.register(5, 2), 3);
        assert_eq!(s.len(), 2);
        assert!(!s.contains(1) && s.contains(2) && s.contains(3));
        // The retry of session 1's applied write must not count as fresh.
        assert_eq!(s.check(&id(1, 1, 1)), Check::Expired);
        // And a later session never gets the evicted id back.
        assert_eq!(s.register(6, 2), 4);
        assert_eq!(s.check(&id(1, 1, 1)), Check::Expired);
    }

    #[test]
    fn eviction_follows_the_last_write_not_the_registration() {
        let mut s = with_sessions(3, 3);
        s.record(&id(1, 1, 1), 10, Response::Put);
        // Session 2 is now the least recently written (index 2).
        s.register(11, 3);
        assert!(s.contains(1) && !s.contains(2) && s.contains(3) && s.contains(4));
        // A smaller cap in a later entry evicts down to it at once: 3
        // (registered at 3), then 1 (last write at 10).
        s.register(12, 2);
        assert_eq!(s.len(), 2);
        assert!(s.contains(4) && s.contains(5));
        // A cap of zero still keeps the new session.
        s.register(13, 0);
        assert_eq!(s.len(), 1);
        assert!(s.contains(6));
    }

    #[test]
    fn a_write_persists_only_its_own_result_and_the_forgotten_ones() {
        let mut s = with_sessions(2, 10);
        let big = Response::Cas {
            succeeded: true,
            previous: Some(vec![7; 1 << 20]),
        };
        s.record(&id(1, 1, 1), 3, big.clone());
        s.record(&id(1, 2, 1), 4, Response::Put);
        s.record(&id(2, 1, 1), 5, Response::Put);
        s.persist_into(1, &mut WriteBatch::new()).unwrap();

        // Seq 3 acknowledges 1 and 2: seq 3's result goes in, 1 and 2 go out.
        assert_eq!(s.check(&id(1, 3, 3)), Check::Fresh);
        s.record(&id(1, 3, 3), 6, Response::Put);
        let mut batch = WriteBatch::new();
        s.persist_into(1, &mut batch).unwrap();
        let (puts, deletes) = keys_of(&batch);
        assert_eq!(
            puts,
            vec![keys::session(1, 1), keys::session_result(1, 1, 3)]
        );
        assert_eq!(
            deletes,
            vec![keys::session_result(1, 1, 1), keys::session_result(1, 1, 2)]
        );
        let bytes: usize = batch
            .ops
            .iter()
            .map(|op| match op {
                BatchOp::Put(k, v) => k.len() + v.len(),
                BatchOp::Delete(k) => k.len(),
            })
            .sum();
        assert!(bytes < 200, "a small write re-encoded {bytes} bytes");
    }

    #[test]
    fn eviction_deletes_every_key_of_the_session_and_loading_restores_the_rest() {
        let mut s = with_sessions(2, 2);
        s.record(&id(1, 1, 1), 3, Response::Put);
        s.record(&id(1, 2, 1), 4, Response::Batch);
        s.record(&id(2, 1, 1), 5, Response::Put);
        let mut stored = BTreeMap::new();
        let mut apply = |s: &mut Sessions| {
            let mut batch = WriteBatch::new();
            s.persist_into(1, &mut batch).unwrap();
            for op in batch.ops {
                match op {
                    BatchOp::Put(k, v) => stored.insert(k, v),
                    BatchOp::Delete(k) => stored.remove(&k),
                };
            }
            stored.clone()
        };
        apply(&mut s);
        s.register(6, 2);
        let now = apply(&mut s);
        let next_id_key = keys::sm_meta(1, keys::SmMeta::NextSessionId);
        let next_id: u64 = codec::decode("next id", &now[&next_id_key]).unwrap();
        assert_eq!(next_id, 4);
        let rows: Vec<Kv> = now.into_iter().filter(|(k, _)| *k != next_id_key).collect();
        assert_eq!(
            rows.len(),
            3,
            "headers of 2 and 3, result of 2, nothing of 1"
        );
        let loaded = Sessions::load(Some(next_id), rows).unwrap();
        assert_eq!(loaded.to_snapshot(), s.to_snapshot());
        let mut loaded = loaded;
        assert_eq!(loaded.check(&id(1, 1, 1)), Check::Expired);
        assert_eq!(loaded.check(&id(2, 1, 1)), Check::Duplicate(Response::Put));
        assert_eq!(loaded.register(7, 2), 4);
    }

    #[test]
    fn a_snapshot_round_trip_keeps_ids_and_eviction_order() {
        let mut s = with_sessions(3, 3);
        s.record(&id(1, 1, 1), 10, Response::Put);
        let mut copy = Sessions::from_snapshot(s.to_snapshot());
        assert_eq!(copy.to_snapshot(), s.to_snapshot());
        assert_eq!(copy.register(11, 3), s.register(11, 3));
        assert_eq!(copy.to_snapshot(), s.to_snapshot());
        assert!(!copy.contains(2));
    }

    #[test]
    fn loading_rejects_results_without_a_session() {
        let rows = vec![(
            keys::session_result(1, 5, 1),
            codec::encode("r", &Response::Put).unwrap(),
        )];
        assert!(matches!(
            Sessions::load(None, rows),
            Err(LoadError::Orphan { client: 5, seq: 1 })
        ));
    }
}
