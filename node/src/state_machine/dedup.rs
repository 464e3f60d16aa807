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
//! Persistence is incremental: [`Sessions::persist_into`] writes only what
//! changed since the last call. Each session has one row ([`keys::session`])
//! holding its header and its small results (a put's, a delete's: at most
//! [`INLINE_MAX_BYTES`] encoded, at most [`INLINE_MAX_COUNT`] of them), so a
//! write usually costs the store one row per session and apply batch instead
//! of a put of its result and, later, a delete of it. A larger result, or
//! one past the count, has its own row ([`keys::session_result`]) and is
//! deleted when it is forgotten. Where a result is stored is this replica's
//! business: it is decided when the result is recorded or loaded, and never
//! changes what the table answers. A split copies the whole table to the child
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

/// A result of at most this many encoded bytes is kept in its session's
/// row (a put's or a delete's answer is 4 or 5 bytes).
pub const INLINE_MAX_BYTES: u64 = 64;
/// At most this many results are kept in one session's row, which is
/// rewritten whole when the session changes: a client with a write stuck
/// while thousands complete must not make each batch rewrite them all.
pub const INLINE_MAX_COUNT: usize = 64;

/// The header of one session, as snapshots carry it.
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
    results: BTreeMap<u64, Stored>,
    /// How many of `results` live in the session's row.
    inline: usize,
}

/// A recorded result and where it is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    response: Response,
    /// In a row of its own, not in the session's row.
    own_row: bool,
}

impl Session {
    fn new(header: SessionHeader) -> Self {
        Self {
            header,
            results: BTreeMap::new(),
            inline: 0,
        }
    }

    /// Adds (or replaces) the result of `seq` and says whether it went to a
    /// row of its own.
    fn insert(&mut self, seq: u64, response: Response) -> bool {
        self.remove_result(seq);
        let small = bincode::serialized_size(&response).is_ok_and(|n| n <= INLINE_MAX_BYTES);
        let own_row = !small || self.inline >= INLINE_MAX_COUNT;
        if !own_row {
            self.inline += 1;
        }
        self.results.insert(seq, Stored { response, own_row });
        own_row
    }

    fn remove_result(&mut self, seq: u64) -> Option<Stored> {
        let removed = self.results.remove(&seq)?;
        if !removed.own_row {
            self.inline -= 1;
        }
        Some(removed)
    }

    /// Forgets every result below `seq`; returns the seqs that had a row of
    /// their own.
    fn forget_below(&mut self, seq: u64) -> Vec<u64> {
        let kept = self.results.split_off(&seq);
        let dropped = std::mem::replace(&mut self.results, kept);
        let mut own_rows = Vec::new();
        for (q, stored) in dropped {
            if stored.own_row {
                own_rows.push(q);
            } else {
                self.inline -= 1;
            }
        }
        own_rows
    }

    fn own_rows(&self) -> impl Iterator<Item = u64> + '_ {
        self.results
            .iter()
            .filter(|(_, r)| r.own_row)
            .map(|(q, _)| *q)
    }
}

/// A session's row as stored, borrowed for writing.
#[derive(Serialize)]
struct RowRef<'a> {
    header: &'a SessionHeader,
    inline: Vec<(u64, &'a Response)>,
}

/// A session's row as stored, owned for reading.
#[derive(Deserialize)]
struct Row {
    header: SessionHeader,
    inline: Vec<(u64, Response)>,
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
    /// Rows to rewrite from the in-memory state (or delete when gone):
    /// sessions, and results with a row of their own.
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
                    let row: Row = codec::decode("session row", &v)?;
                    let mut session = Session::new(row.header);
                    session.inline = row.inline.len();
                    session.results = row
                        .inline
                        .into_iter()
                        .map(|(seq, response)| {
                            let own_row = false;
                            (seq, Stored { response, own_row })
                        })
                        .collect();
                    s.by_recency.insert((row.header.last_index, client));
                    s.map.insert(client, session);
                }
                // A header sorts before its results, so it is already here.
                Some(SessionKey::Result { client, seq }) => {
                    let response: Response = codec::decode("session result", &v)?;
                    let session = s
                        .map
                        .get_mut(&client)
                        .ok_or(LoadError::Orphan { client, seq })?;
                    session.remove_result(seq);
                    let own_row = true;
                    session.results.insert(seq, Stored { response, own_row });
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
            let mut session = Session::new(snap.header);
            for (seq, response) in snap.results {
                if session.insert(seq, response) {
                    s.dirty_results.insert((client, seq));
                }
            }
            s.map.insert(client, session);
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
                results: s
                    .results
                    .iter()
                    .map(|(q, r)| (*q, r.response.clone()))
                    .collect(),
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
        self.map.insert(client, Session::new(header));
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
                .extend(s.own_rows().map(|seq| (client, seq)));
        }
    }

    /// Classifies a write and forgets results the client no longer needs.
    pub fn check(&mut self, id: &WriteId) -> Check {
        let Some(session) = self.map.get_mut(&id.client_id) else {
            return Check::Expired;
        };
        if id.first_incomplete > session.header.first_incomplete {
            session.header.first_incomplete = id.first_incomplete;
            let own_rows = session.forget_below(id.first_incomplete);
            self.dirty_results
                .extend(own_rows.into_iter().map(|seq| (id.client_id, seq)));
            self.dirty_headers.insert(id.client_id);
        }
        if let Some(r) = session.results.get(&id.seq) {
            return Check::Duplicate(r.response.clone());
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
        let had_own_row = session.results.get(&id.seq).is_some_and(|r| r.own_row);
        if session.insert(id.seq, response) || had_own_row {
            self.dirty_results.insert((id.client_id, id.seq));
        }
        self.by_recency.insert((index, id.client_id));
        self.dirty_headers.insert(id.client_id);
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
                Some(s) => {
                    let row = RowRef {
                        header: &s.header,
                        inline: s
                            .results
                            .iter()
                            .filter(|(_, r)| !r.own_row)
                            .map(|(q, r)| (*q, &r.response))
                            .collect(),
                    };
                    batch.put(key, codec::encode("session row", &row)?)
                }
                None => batch.delete(key),
            }
        }
        for (client, seq) in std::mem::take(&mut self.dirty_results) {
            let key = keys::session_result(shard, client, seq);
            let stored = self.map.get(&client).and_then(|s| s.results.get(&seq));
            match stored.filter(|r| r.own_row) {
                Some(r) => batch.put(key, codec::encode("session result", &r.response)?),
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

    impl Sessions {
        fn persist_into_new(&mut self) -> WriteBatch {
            let mut batch = WriteBatch::new();
            self.persist_into(1, &mut batch).unwrap();
            batch
        }
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

    /// Applies `s`'s pending rows to `stored` and returns the rows.
    fn persist(s: &mut Sessions, stored: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> WriteBatch {
        let mut batch = WriteBatch::new();
        s.persist_into(1, &mut batch).unwrap();
        batch.clone().apply_to(stored);
        batch
    }

    /// What a restart would load from `stored`.
    fn reload(stored: &BTreeMap<Vec<u8>, Vec<u8>>) -> Sessions {
        let next_id_key = keys::sm_meta(1, keys::SmMeta::NextSessionId);
        let next_id = stored
            .get(&next_id_key)
            .map(|b| codec::decode("next id", b).unwrap());
        let rows = stored
            .iter()
            .filter(|(k, _)| **k != next_id_key)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Sessions::load(next_id, rows).unwrap()
    }

    fn result_rows(stored: &BTreeMap<Vec<u8>, Vec<u8>>) -> usize {
        stored
            .keys()
            .filter(|k| matches!(keys::parse_session(k), Some(SessionKey::Result { .. })))
            .count()
    }

    #[test]
    fn a_write_rewrites_its_session_row_and_deletes_only_large_forgotten_results() {
        let mut s = with_sessions(2, 10);
        let big = Response::Cas {
            succeeded: true,
            previous: Some(vec![7; 1 << 20]),
        };
        s.record(&id(1, 1, 1), 3, big.clone());
        s.record(&id(1, 2, 1), 4, Response::Put);
        s.record(&id(2, 1, 1), 5, Response::Put);
        let (puts, _) = keys_of(&s.persist_into_new());
        assert!(
            puts.contains(&keys::session_result(1, 1, 1)),
            "the large result has its own row"
        );
        assert!(
            !puts.contains(&keys::session_result(1, 1, 2)),
            "a put's result lives in the session's row"
        );

        // Seq 3 acknowledges 1 and 2: the session's row is rewritten, the
        // large result's row deleted, and nothing else is touched.
        assert_eq!(s.check(&id(1, 3, 3)), Check::Fresh);
        s.record(&id(1, 3, 3), 6, Response::Put);
        let batch = s.persist_into_new();
        let (puts, deletes) = keys_of(&batch);
        assert_eq!(puts, vec![keys::session(1, 1)]);
        assert_eq!(deletes, vec![keys::session_result(1, 1, 1)]);
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
    fn small_results_past_the_inline_count_get_rows_of_their_own_and_all_reload() {
        let mut s = with_sessions(1, 10);
        let mut stored = BTreeMap::new();
        let n = INLINE_MAX_COUNT as u64 + 3;
        // Seq 1 is stuck; 2..=n+1 complete, so every result is kept.
        for seq in 2..=n + 1 {
            s.record(&id(1, seq, 1), 10 + seq, Response::Delete { existed: true });
        }
        persist(&mut s, &mut stored);
        assert_eq!(result_rows(&stored), 3);
        assert_eq!(reload(&stored).to_snapshot(), s.to_snapshot());
        let mut loaded = reload(&stored);
        assert_eq!(
            loaded.check(&id(1, n + 1, 1)),
            Check::Duplicate(Response::Delete { existed: true })
        );
        // Seq 1 completes and the client acknowledges everything: every
        // row of a result goes.
        s.record(&id(1, 1, 1), 100, Response::Put);
        assert_eq!(s.check(&id(1, n + 2, n + 2)), Check::Fresh);
        persist(&mut s, &mut stored);
        assert_eq!(result_rows(&stored), 0);
        assert_eq!(stored.len(), 2, "next id and the session's row");
        assert_eq!(reload(&stored).to_snapshot(), s.to_snapshot());
    }

    /// Random registrations, evictions, writes with small and large
    /// results, acknowledgements and reloads: after every step, what a
    /// restart loads from the stored rows is the table in memory.
    #[test]
    fn stored_rows_always_reload_to_the_table_in_memory() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut s = with_sessions(3, 4);
        let mut stored = BTreeMap::new();
        persist(&mut s, &mut stored);
        // Per client: next seq to send, and the seqs sent and not acknowledged.
        let mut clients: BTreeMap<u64, (u64, BTreeSet<u64>)> =
            (1..=3).map(|c| (c, (1, BTreeSet::new()))).collect();
        for index in 10..3000u64 {
            match next(10) {
                0 => {
                    let c = s.register(index, 4);
                    clients.insert(c, (1, BTreeSet::new()));
                }
                1..=6 => {
                    let c = *clients
                        .keys()
                        .nth(next(clients.len() as u64) as usize)
                        .unwrap();
                    let (seq, pending) = clients.get_mut(&c).unwrap();
                    let fi = pending.first().copied().unwrap_or(*seq);
                    let w = id(c, *seq, fi);
                    pending.insert(*seq);
                    *seq += 1;
                    if s.check(&w) == Check::Fresh {
                        let response = match next(4) {
                            0 => Response::Cas {
                                succeeded: false,
                                previous: Some(vec![1; 100]),
                            },
                            _ => Response::Put,
                        };
                        s.record(&w, index, response);
                    }
                }
                _ => {
                    // The client hears some answers (mostly all but a stuck one).
                    let c = *clients
                        .keys()
                        .nth(next(clients.len() as u64) as usize)
                        .unwrap();
                    let (_, pending) = clients.get_mut(&c).unwrap();
                    let keep_first = next(3) == 0;
                    let first = pending.first().copied();
                    pending.retain(|q| keep_first && Some(*q) == first);
                }
            }
            if next(3) == 0 {
                persist(&mut s, &mut stored);
                let loaded = reload(&stored);
                assert_eq!(loaded.to_snapshot(), s.to_snapshot(), "at step {index}");
            }
        }
        persist(&mut s, &mut stored);
        assert_eq!(reload(&stored).to_snapshot(), s.to_snapshot());
    }

    #[test]
    fn eviction_deletes_every_key_of_the_session_and_loading_restores_the_rest() {
        let mut s = with_sessions(2, 2);
        s.record(&id(1, 1, 1), 3, Response::Put);
        s.record(&id(1, 2, 1), 4, Response::Batch);
        s.record(&id(2, 1, 1), 5, Response::Put);
        let mut stored = BTreeMap::new();
        let mut apply = |s: &mut Sessions| {
            persist(s, &mut stored);
            stored.clone()
        };
        apply(&mut s);
        s.register(6, 2);
        let now = apply(&mut s);
        let next_id_key = keys::sm_meta(1, keys::SmMeta::NextSessionId);
        let next_id: u64 = codec::decode("next id", &now[&next_id_key]).unwrap();
        assert_eq!(next_id, 4);
        let rows: Vec<Kv> = now.into_iter().filter(|(k, _)| *k != next_id_key).collect();
        assert_eq!(rows.len(), 2, "the rows of 2 and 3, nothing of 1");
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
