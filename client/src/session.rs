//! Write ids for exactly-once writes.
//!
//! A [`Client`](crate::Client) holds one [`Session`] per shard it has
//! written to ([`SessionMap`]), opened lazily on the first write with
//! `Kv/OpenSession`: the shard registers it through its Raft log and
//! answers its `client_id`. A session counts sequence numbers from 1. Each
//! logical write takes one seq through [`Session::begin`] and keeps it for
//! all its retries; the server deduplicates on `(client_id, seq)`, so a
//! retry of a write that was applied but whose reply was lost returns the
//! first result instead of applying it twice.
//!
//! A shard remembers a bounded number of sessions. When it has evicted ours,
//! a write gets `SessionExpired`: the client reports the write's outcome as
//! unknown ([`Error::SessionExpired`](crate::Error::SessionExpired)), drops
//! the session ([`SessionMap::forget`]) and opens a new one for later
//! writes. It never re-sends the same write under the new session: that
//! could apply it twice.
//!
//! Every [`WriteId`] also carries `first_incomplete`, the smallest seq still
//! in flight (or the next seq when none is): the server may forget the results
//! of all seqs below it. A seq leaves the in-flight set when its
//! [`WriteGuard`] is dropped, also when the caller abandons the call, so one
//! lost future cannot pin the server's dedup memory forever.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use atoll_proto::WriteId;

/// The open sessions of one client, by shard id. Thread-safe.
#[derive(Debug, Default)]
pub struct SessionMap {
    by_shard: Mutex<BTreeMap<u64, Arc<Session>>>,
    /// Held while a session is being opened, so concurrent first writes
    /// open one session rather than one each (every extra session would
    /// take a slot in the shard's table and could evict someone).
    pub(crate) opening: tokio::sync::Mutex<()>,
}

impl SessionMap {
    /// The session open on `shard`, if any.
    pub fn get(&self, shard: u64) -> Option<Arc<Session>> {
        self.lock().get(&shard).cloned()
    }

    /// Records a newly opened session of `shard`.
    pub fn insert(&self, shard: u64, session: Arc<Session>) {
        self.lock().insert(shard, session);
    }

    /// Drops the session of `shard` if it is still `client_id` (another
    /// task may already have replaced it). Returns whether it was dropped.
    pub fn forget(&self, shard: u64, client_id: u64) -> bool {
        let mut map = self.lock();
        if map.get(&shard).is_some_and(|s| s.client_id() == client_id) {
            map.remove(&shard);
            true
        } else {
            false
        }
    }

    /// `(shard id, client id)` of every open session, by shard.
    pub fn ids(&self) -> Vec<(u64, u64)> {
        self.lock()
            .iter()
            .map(|(shard, s)| (*shard, s.client_id()))
            .collect()
    }

    /// Each critical section is one map operation: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Session>>> {
        self.by_shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Allocates write ids within one session on one shard. Thread-safe.
#[derive(Debug)]
pub struct Session {
    client_id: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_seq: u64,
    in_flight: BTreeSet<u64>,
}

impl Session {
    /// A session with the id a shard gave out.
    pub fn new(client_id: u64) -> Self {
        Session {
            client_id,
            state: Mutex::new(State {
                next_seq: 1,
                in_flight: BTreeSet::new(),
            }),
        }
    }

    /// This session's client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Starts a logical write: takes the next seq and marks it in flight
    /// until the returned guard is dropped. Both happen under one lock, so
    /// `first_incomplete` never runs past a seq that has not been sent yet.
    pub fn begin(&self) -> WriteGuard<'_> {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.in_flight.insert(seq);
        WriteGuard { session: self, seq }
    }

    /// The smallest seq in flight, or the next seq when none is.
    pub fn first_incomplete(&self) -> u64 {
        let state = self.lock();
        state.in_flight.first().copied().unwrap_or(state.next_seq)
    }

    /// A panic while holding this lock cannot leave the state half-updated
    /// (each critical section is one insert or remove), so poisoning is
    /// ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One logical write in flight. Send [`WriteGuard::write_id`] with every
/// attempt; drop the guard once the write has a definite outcome (or is
/// abandoned).
#[derive(Debug)]
pub struct WriteGuard<'a> {
    session: &'a Session,
    seq: u64,
}

impl WriteGuard<'_> {
    /// This write's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The id to send with an attempt. `client_id` and `seq` are the same for
    /// every attempt; `first_incomplete` is read afresh and never exceeds
    /// `seq`, since this write is itself in flight.
    pub fn write_id(&self) -> WriteId {
        WriteId {
            client_id: self.session.client_id,
            seq: self.seq,
            first_incomplete: self.session.first_incomplete(),
        }
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.session.lock().in_flight.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_start_at_one_and_increase() {
        let session = Session::new(42);
        let a = session.begin();
        let b = session.begin();
        assert_eq!((a.seq(), b.seq()), (1, 2));
        assert_eq!(a.write_id().client_id, 42);
    }

    #[test]
    fn first_incomplete_is_the_oldest_write_in_flight() {
        let session = Session::new(1);
        assert_eq!(session.first_incomplete(), 1);
        let a = session.begin();
        let b = session.begin();
        let c = session.begin();
        assert_eq!(c.write_id().first_incomplete, 1);
        drop(b);
        assert_eq!(session.first_incomplete(), 1);
        drop(a);
        assert_eq!(session.first_incomplete(), 3);
        drop(c);
        assert_eq!(session.first_incomplete(), 4);
    }

    #[test]
    fn retries_reuse_the_same_client_id_and_seq() {
        let session = Session::new(7);
        let older = session.begin();
        let write = session.begin();
        let first = write.write_id();
        drop(older);
        let retry = write.write_id();
        assert_eq!((retry.client_id, retry.seq), (first.client_id, first.seq));
        assert_eq!(first.first_incomplete, 1);
        assert_eq!(retry.first_incomplete, 2);
        assert!(retry.first_incomplete <= retry.seq);
    }

    #[test]
    fn an_abandoned_write_leaves_the_in_flight_set() {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let session = Session::new(1);
        let mut call = Box::pin(async {
            let _guard = session.begin();
            std::future::pending::<()>().await;
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(call.as_mut().poll(&mut cx), Poll::Pending);
        let _later = session.begin();
        assert_eq!(session.first_incomplete(), 1);
        drop(call);
        assert_eq!(session.first_incomplete(), 2);
    }

    #[test]
    fn an_expired_session_is_forgotten_only_if_still_current() {
        let map = SessionMap::default();
        map.insert(1, Arc::new(Session::new(5)));
        assert!(
            !map.forget(1, 4),
            "a stale report must not drop a newer session"
        );
        assert_eq!(map.ids(), vec![(1, 5)]);
        assert!(map.forget(1, 5));
        assert!(map.get(1).is_none());
        map.insert(1, Arc::new(Session::new(6)));
        map.insert(2, Arc::new(Session::new(1)));
        assert_eq!(map.ids(), vec![(1, 6), (2, 1)]);
    }
}
