//! Exactly-once writes: a per-shard table of client sessions.
//!
//! A client tags each write with `(client_id, seq)` and tells the server the
//! smallest seq it still waits for (`first_incomplete`). The table keeps the
//! result of every applied seq at or above that mark, so a retry of an
//! applied write gets the original answer instead of applying twice. The
//! table is replicated state: it changes only when entries are applied and
//! travels in snapshots.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::{Response, WriteId};

/// Sessions beyond this are evicted, least recently written first.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub first_incomplete: u64,
    pub results: BTreeMap<u64, Response>,
    /// Log index of the last write applied for this client.
    pub last_index: u64,
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
}

#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<u64, Session>,
    dirty: BTreeSet<u64>,
    evicted: BTreeSet<u64>,
    max_sessions: usize,
}

impl Sessions {
    pub fn new(max_sessions: usize) -> Self {
        Self {
            max_sessions: max_sessions.max(1),
            ..Self::default()
        }
    }

    pub fn from_sessions(
        max_sessions: usize,
        sessions: impl IntoIterator<Item = (u64, Session)>,
    ) -> Self {
        let mut s = Self::new(max_sessions);
        s.map = sessions.into_iter().collect();
        s
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All sessions, sorted by client id (for snapshots).
    pub fn sorted(&self) -> Vec<(u64, Session)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, s)| (*k, s.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Classifies a write and forgets results the client no longer needs.
    pub fn check(&mut self, id: &WriteId) -> Check {
        let Some(session) = self.map.get_mut(&id.client_id) else {
            return Check::Fresh;
        };
        if id.first_incomplete > session.first_incomplete {
            session.first_incomplete = id.first_incomplete;
            session.results = session.results.split_off(&id.first_incomplete);
            self.dirty.insert(id.client_id);
        }
        if let Some(r) = session.results.get(&id.seq) {
            return Check::Duplicate(r.clone());
        }
        if id.seq < session.first_incomplete {
            return Check::Stale {
                first_incomplete: session.first_incomplete,
            };
        }
        Check::Fresh
    }

    /// Records the response of an applied write at log `index`.
    pub fn record(&mut self, id: &WriteId, index: u64, response: Response) {
        let session = self.map.entry(id.client_id).or_default();
        session.first_incomplete = session.first_incomplete.max(id.first_incomplete);
        session.results.insert(id.seq, response);
        session.last_index = index;
        self.dirty.insert(id.client_id);
        self.evicted.remove(&id.client_id);
        if self.map.len() > self.max_sessions {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self.map.iter().map(|(c, s)| (s.last_index, *c)).min();
        if let Some((_, client)) = oldest {
            self.map.remove(&client);
            self.dirty.remove(&client);
            self.evicted.insert(client);
        }
    }

    /// Sessions changed since the last call (`Some`) or evicted (`None`).
    pub fn take_changes(&mut self) -> Vec<(u64, Option<Session>)> {
        let mut out: Vec<_> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|c| (c, self.map.get(&c).cloned()))
            .collect();
        out.extend(
            std::mem::take(&mut self.evicted)
                .into_iter()
                .map(|c| (c, None)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64, fi: u64) -> WriteId {
        WriteId {
            client_id: client,
            seq,
            first_incomplete: fi,
        }
    }

    #[test]
    fn retry_of_applied_write_returns_the_recorded_response() {
        let mut s = Sessions::new(10);
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
        s.record(&id(1, 1, 1), 5, Response::Delete { existed: true });
        assert_eq!(
            s.check(&id(1, 1, 1)),
            Check::Duplicate(Response::Delete { existed: true })
        );
    }

    #[test]
    fn acknowledged_results_are_forgotten_and_their_retries_refused() {
        let mut s = Sessions::new(10);
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
        assert!(s.sorted()[0].1.results.is_empty());
    }

    #[test]
    fn concurrent_writes_of_one_client_are_each_remembered() {
        let mut s = Sessions::new(10);
        s.record(&id(1, 2, 1), 5, Response::Put);
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
        s.record(&id(1, 1, 1), 6, Response::Batch);
        assert_eq!(s.check(&id(1, 2, 1)), Check::Duplicate(Response::Put));
        assert_eq!(s.check(&id(1, 1, 1)), Check::Duplicate(Response::Batch));
    }

    #[test]
    fn eviction_drops_the_least_recently_written_session() {
        let mut s = Sessions::new(2);
        s.record(&id(1, 1, 1), 1, Response::Put);
        s.record(&id(2, 1, 1), 2, Response::Put);
        s.take_changes();
        s.record(&id(3, 1, 1), 3, Response::Put);
        assert_eq!(s.len(), 2);
        let changes = s.take_changes();
        assert!(changes.contains(&(1, None)));
        assert_eq!(s.check(&id(1, 1, 1)), Check::Fresh);
    }
}
