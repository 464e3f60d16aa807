//! [`Client`]: the key-value API. Each method validates its arguments, takes
//! a write id when it writes (from the session of the key's shard, opened
//! on first use), and hands one request builder to the dispatcher, which
//! routes and retries it.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use atoll_proto::{
    BatchRequest, CasRequest, DeleteRequest, GetRequest, GetResponse, OpenSessionRequest,
    PutRequest, ReadConsistency, ScanRequest, ScanResponse, WriteId,
};
use tracing::Instrument;

use crate::config::ClientConfig;
use crate::deadline::Budget;
use crate::dispatch::{Dispatcher, Op, Reply, RouteBy, SessionPin, Stop, Target};
use crate::error::Error;
use crate::limits::{check_bound, check_key, check_value};
use crate::pool::{check_addr, Pool};
use crate::router::Router;
use crate::scan::{next_cursor, page_limit};
use crate::session::{Session, SessionMap};
use crate::types::{CasOutcome, Mutation};

/// How often one write may be renumbered because its keys moved to another
/// shard before any attempt could have been applied.
const MAX_REROUTES: u32 = 2;

/// A handle to an Atoll cluster. Cheap to clone; clones share channels,
/// route map and write sessions, and may be used from many tasks at once.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dispatch: Dispatcher,
    sessions: SessionMap,
}

impl Client {
    /// Connects with [`ClientConfig::default`]. `endpoints` are `host:port`
    /// seeds; the shard map is loaded from whichever of them answer. Fails
    /// when none answers.
    pub async fn connect(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Client, Error> {
        Client::with_config(endpoints, ClientConfig::default()).await
    }

    /// Connects with explicit settings.
    pub async fn with_config(
        endpoints: impl IntoIterator<Item = impl Into<String>>,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let seeds: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.into().trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if seeds.is_empty() {
            return Err(Error::NoEndpoints);
        }
        for seed in &seeds {
            check_addr(seed)?;
        }
        let dispatch = Dispatcher {
            pool: Pool::new(config.request_timeout),
            router: Router::new(seeds),
            config,
        };
        let generation = dispatch.router.generation();
        let budget = Budget::new(dispatch.config.request_timeout, dispatch.config.deadline);
        dispatch
            .router
            .refresh(generation, &dispatch.pool, budget)
            .await?;
        let inner = Inner {
            dispatch,
            sessions: SessionMap::default(),
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// `(shard id, client id)` of each write session this client has open,
    /// for correlating server logs. Empty until the first write.
    pub fn session_ids(&self) -> Vec<(u64, u64)> {
        self.inner.sessions.ids()
    }

    /// The value of `key`, linearizable (read through the shard leader).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, Error> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("atoll.get", key_len = key.len());
        let reply = self
            .read(key, ReadConsistency::Linearizable)
            .instrument(span)
            .await?;
        Ok(reply.value)
    }

    /// The value of `key` as some replica has applied it, possibly stale,
    /// with that replica's applied log index.
    pub async fn get_stale(&self, key: impl AsRef<[u8]>) -> Result<(Option<Vec<u8>>, u64), Error> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("atoll.get_stale", key_len = key.len());
        let reply = self
            .read(key, ReadConsistency::Stale)
            .instrument(span)
            .await?;
        Ok((reply.value, reply.applied_index))
    }

    /// Sets `key` to `value`. Applied at most once, however often retried.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        check_key(key)?;
        check_value(value)?;
        let span = tracing::debug_span!("atoll.put", key_len = key.len());
        let send = |mut t: Target, write_id| {
            let req = t.budget.request(PutRequest {
                header: Some(t.header),
                write_id: Some(write_id),
                key: key.to_vec(),
                value: value.to_vec(),
            });
            async move { t.kv.put(req).await }
        };
        self.write("put", RouteBy::Key(key), send)
            .instrument(span)
            .await?;
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        check_key(key)?;
        let span = tracing::debug_span!("atoll.delete", key_len = key.len());
        let send = |mut t: Target, write_id| {
            let req = t.budget.request(DeleteRequest {
                header: Some(t.header),
                write_id: Some(write_id),
                key: key.to_vec(),
            });
            async move { t.kv.delete(req).await }
        };
        let reply = self
            .write("delete", RouteBy::Key(key), send)
            .instrument(span)
            .await?;
        Ok(reply.existed)
    }

    /// Compare-and-swap: if the value of `key` equals `expected` (`None`:
    /// the key is absent), set it to `new` (`None`: delete it). A failed
    /// comparison is an `Ok` outcome with `succeeded: false`.
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome, Error> {
        let key = key.as_ref();
        check_key(key)?;
        expected.map(check_value).transpose()?;
        new.map(check_value).transpose()?;
        let span = tracing::debug_span!("atoll.cas", key_len = key.len());
        let send = |mut t: Target, write_id| {
            let req = t.budget.request(CasRequest {
                header: Some(t.header),
                write_id: Some(write_id),
                key: key.to_vec(),
                expected: expected.map(<[u8]>::to_vec),
                new_value: new.map(<[u8]>::to_vec),
            });
            async move { t.kv.cas(req).await }
        };
        let reply = self
            .write("cas", RouteBy::Key(key), send)
            .instrument(span)
            .await?;
        Ok(CasOutcome {
            succeeded: reply.succeeded,
            previous: reply.previous,
        })
    }

    /// The pairs with `start <= key < end` in key order, across shards. An
    /// empty `end` scans to the end of the key space; `limit` 0 means no
    /// limit. Each page is linearizable on its own; the scan as a whole is
    /// not a snapshot.
    pub async fn scan(
        &self,
        start: impl AsRef<[u8]>,
        end: impl AsRef<[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Error> {
        let (start, end) = (start.as_ref(), end.as_ref());
        check_bound(start)?;
        check_bound(end)?;
        let mut out = Vec::new();
        if !end.is_empty() && start >= end {
            return Ok(out);
        }
        let span = tracing::debug_span!("atoll.scan", limit);
        let mut cursor = start.to_vec();
        loop {
            let want = page_limit(limit, out.len());
            let page = self
                .scan_page(&cursor, end, want)
                .instrument(span.clone())
                .await?;
            let next = next_cursor(&cursor, end, &page)?;
            out.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.value)));
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match next {
                Some(next) => cursor = next,
                None => return Ok(out),
            }
        }
    }

    /// Applies `mutations` atomically. All keys must lie in one shard, else
    /// [`Error::CrossShardBatch`]. An empty batch does nothing.
    pub async fn batch(&self, mutations: Vec<Mutation>) -> Result<(), Error> {
        if mutations.is_empty() {
            return Ok(());
        }
        for m in &mutations {
            check_key(&m.key)?;
            m.value.as_deref().map(check_value).transpose()?;
        }
        let keys: Vec<&[u8]> = mutations.iter().map(|m| m.key.as_slice()).collect();
        let wire: Vec<atoll_proto::Mutation> = mutations
            .iter()
            .map(|m| atoll_proto::Mutation {
                key: m.key.clone(),
                value: m.value.clone(),
            })
            .collect();
        let span = tracing::debug_span!("atoll.batch", len = wire.len());
        let send = |mut t: Target, write_id| {
            let req = t.budget.request(BatchRequest {
                header: Some(t.header),
                write_id: Some(write_id),
                mutations: wire.clone(),
            });
            async move { t.kv.batch(req).await }
        };
        self.write("batch", RouteBy::AllKeys(&keys), send)
            .instrument(span)
            .await?;
        Ok(())
    }

    /// Runs one logical write: numbers it in the session of its shard and
    /// lets the dispatcher retry it with that write id. If the keys move to
    /// another shard before any attempt could have been applied, the write
    /// is numbered again in that shard's session; otherwise a session
    /// problem ends the write as [`Error::SessionExpired`] (outcome unknown)
    /// and drops the session, so the next write opens a new one.
    pub(crate) async fn write<R, F, Fut>(
        &self,
        name: &'static str,
        by: RouteBy<'_>,
        mut send: F,
    ) -> Result<R, Error>
    where
        R: Reply,
        F: FnMut(Target, WriteId) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.dispatch().config.deadline;
        for _ in 0..=MAX_REROUTES {
            let (pin, session) = match self.session(by, deadline).await {
                Ok(found) => found,
                // The write did not complete in time (it was not sent).
                Err(Error::Timeout { after, last, .. }) => {
                    return Err(Error::Timeout {
                        op: name,
                        after,
                        last,
                    })
                }
                Err(e) => return Err(e),
            };
            let write = session.begin();
            tracing::debug!(
                shard = pin.shard_id,
                client_id = pin.client_id,
                seq = write.seq(),
                "write numbered"
            );
            let op = Op {
                name,
                leader_only: true,
                session: Some(pin),
            };
            let result = self
                .dispatch()
                .run_pinned(op, by, deadline, |t| send(t, write.write_id()))
                .await;
            match result {
                Ok(reply) => return Ok(reply),
                Err(Stop::Moved) => continue,
                Err(Stop::Failed(e)) => return Err(self.expire_on_error(e)),
            }
        }
        Err(Error::Unavailable(format!(
            "{name}: the keys moved to another shard {} times in a row",
            MAX_REROUTES + 1
        )))
    }

    /// The write session of the shard `by` routes to, opened through the
    /// shard's Raft log if there is none yet.
    async fn session(
        &self,
        by: RouteBy<'_>,
        deadline: Instant,
    ) -> Result<(SessionPin, Arc<Session>), Error> {
        let sessions = &self.inner.sessions;
        let cached = |d: &Dispatcher| {
            let shard_id = d.cached_shard(by)?;
            let session = sessions.get(shard_id)?;
            let pin = SessionPin {
                shard_id,
                client_id: session.client_id(),
            };
            Some((pin, session))
        };
        if let Some(session) = cached(self.dispatch()) {
            return Ok(session);
        }
        let _opening = sessions.opening.lock().await;
        if let Some(session) = cached(self.dispatch()) {
            return Ok(session);
        }
        let op = Op {
            name: "open_session",
            leader_only: true,
            session: None,
        };
        let mut shard = None;
        let send = |mut t: Target| {
            shard = Some(t.header.shard_id);
            let req = t.budget.request(OpenSessionRequest {
                header: Some(t.header),
            });
            async move { t.kv.open_session(req).await }
        };
        let span = tracing::debug_span!("atoll.open_session");
        let reply = match self
            .dispatch()
            .run_pinned(op, by, deadline, send)
            .instrument(span)
            .await
        {
            Ok(reply) => reply,
            Err(Stop::Failed(e)) => return Err(e),
            // Only a write numbered in a session can stop this way.
            Err(Stop::Moved) => {
                return Err(Error::Unavailable(
                    "open_session: the key moved to another shard".into(),
                ))
            }
        };
        let Some(shard) = shard.filter(|_| reply.client_id != 0) else {
            return Err(Error::Protocol("OpenSession answered session id 0".into()));
        };
        tracing::debug!(shard, client_id = reply.client_id, "opened write session");
        let session = Arc::new(Session::new(reply.client_id));
        sessions.insert(shard, session.clone());
        let pin = SessionPin {
            shard_id: shard,
            client_id: reply.client_id,
        };
        Ok((pin, session))
    }

    /// Drops the session a `SessionExpired` names, so the next write opens a
    /// new one. The write itself is not retried: its outcome is unknown.
    fn expire_on_error(&self, error: Error) -> Error {
        if let Error::SessionExpired {
            shard_id,
            client_id,
        } = &error
        {
            if self.inner.sessions.forget(*shard_id, *client_id) {
                tracing::debug!(shard_id, client_id, "write session expired; dropped");
            }
        }
        error
    }

    async fn read(&self, key: &[u8], consistency: ReadConsistency) -> Result<GetResponse, Error> {
        let op = match consistency {
            ReadConsistency::Linearizable => Op {
                name: "get",
                leader_only: true,
                session: None,
            },
            ReadConsistency::Stale => Op {
                name: "get_stale",
                leader_only: false,
                session: None,
            },
        };
        let send = |mut t: Target| {
            let req = t.budget.request(GetRequest {
                header: Some(t.header),
                key: key.to_vec(),
                consistency: consistency.into(),
            });
            async move { t.kv.get(req).await }
        };
        self.dispatch().run(op, RouteBy::Key(key), send).await
    }

    async fn scan_page(
        &self,
        cursor: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<ScanResponse, Error> {
        let op = Op {
            name: "scan",
            leader_only: true,
            session: None,
        };
        let send = |mut t: Target| {
            let req = t.budget.request(ScanRequest {
                header: Some(t.header),
                start: cursor.to_vec(),
                end: end.to_vec(),
                limit,
                consistency: ReadConsistency::Linearizable.into(),
            });
            async move { t.kv.scan(req).await }
        };
        self.dispatch().run(op, RouteBy::Key(cursor), send).await
    }

    fn dispatch(&self) -> &Dispatcher {
        &self.inner.dispatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn no_endpoints_is_an_error() {
        let empty: Vec<String> = Vec::new();
        assert_eq!(Client::connect(empty).await.err(), Some(Error::NoEndpoints));
        assert_eq!(Client::connect([" "]).await.err(), Some(Error::NoEndpoints));
    }

    #[tokio::test]
    async fn bad_endpoints_fail_before_dialling() {
        let err = Client::connect(["localhost"]).await.err();
        assert!(matches!(err, Some(Error::InvalidArgument(_))), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_cluster_fails_connect_as_unavailable() {
        let config = ClientConfig {
            request_timeout: std::time::Duration::from_millis(300),
            ..ClientConfig::default()
        };
        // Port 1 on localhost: nothing listens there.
        let err = Client::with_config(["127.0.0.1:1"], config).await.err();
        assert!(matches!(err, Some(Error::Unavailable(_))), "{err:?}");
    }

    #[test]
    fn operations_are_send() {
        fn check(client: &Client) {
            assert_send(&client.get("k"));
            assert_send(&client.put("k", "v"));
            assert_send(&client.cas("k", None, Some(b"v")));
            assert_send(&client.scan("a", "z", 0));
            assert_send(&client.batch(vec![Mutation::delete("k")]));
            assert_send(&client.txn(crate::Txn::new().then(crate::TxnOp::get("k"))));
        }
        let _ = check;
    }
}
