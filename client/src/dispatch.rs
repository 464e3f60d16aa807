//! Runs one operation against the cluster: route → send → on failure ask
//! [`retry::decide`] → act on the route cache → retry, until a reply without
//! error or the operation's deadline.
//!
//! Which node gets an attempt: the node a `NotLeader` just named, else the
//! route's address list (cached leader, other voters, learners, then the
//! seed endpoints) at the current rotation; every "try another node"
//! decision advances the rotation.
//!
//! Each attempt waits at most its [`Budget`], which it also sends as the
//! request's gRPC deadline, so the server answers within it.

use std::future::Future;
use std::time::Duration;

use atoll_proto::RequestHeader;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::deadline::Budget;
use crate::error::Error;
use crate::multiplex::KvConn;
use crate::pool::Pool;
use crate::retry::{decide, may_have_applied, Action, Failure};
use crate::route_cache::Route;
use crate::router::Router;

/// At most this many retries in a row without a pause; a longer chain (say,
/// two nodes naming each other leader) backs off like any other failure.
const MAX_IMMEDIATE_RETRIES: u32 = 4;

/// What one attempt gets to build its request from: the header, the
/// client, and the budget that wraps the message
/// (`t.budget.request(message)`) so the server learns the attempt's
/// deadline.
pub(crate) struct Target {
    pub(crate) header: RequestHeader,
    pub(crate) kv: KvConn,
    pub(crate) budget: Budget,
}

/// Why a pinned write stopped without a reply.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The write failed with this error.
    Failed(Error),
    /// The keys now route to another shard than the write's session, and no
    /// attempt so far can have been applied: number the write again in the
    /// new shard's session.
    Moved,
}

/// A reply that may carry a typed error.
pub(crate) trait Reply {
    fn take_error(&mut self) -> Option<atoll_proto::Error>;
}

macro_rules! impl_reply {
    ($($reply:ty),*) => {$(
        impl Reply for $reply {
            fn take_error(&mut self) -> Option<atoll_proto::Error> {
                self.error.take()
            }
        }
    )*};
}

impl_reply!(
    atoll_proto::GetResponse,
    atoll_proto::PutResponse,
    atoll_proto::DeleteResponse,
    atoll_proto::CasResponse,
    atoll_proto::ScanResponse,
    atoll_proto::BatchResponse,
    atoll_proto::TxnResponse,
    atoll_proto::OpenSessionResponse
);

/// Which shard an operation goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RouteBy<'a> {
    /// The shard holding this key.
    Key(&'a [u8]),
    /// The one shard holding all these keys (a batch, a txn).
    AllKeys(&'a [&'a [u8]]),
}

/// An operation's name (for errors and traces), whether only the leader
/// answers it (so that a success teaches us who leads), and for a write the
/// session its write id belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) leader_only: bool,
    pub(crate) session: Option<SessionPin>,
}

/// The session a write was numbered in. If the key's route moves to
/// another shard (a split) before any attempt could have applied, the write
/// is numbered again there; after one that may have, it is sent there under
/// the same write id (the split copied the session table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionPin {
    pub(crate) shard_id: u64,
    pub(crate) client_id: u64,
}

/// The shared machinery of a client: settings, channels, routes.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    pub(crate) config: ClientConfig,
    pub(crate) pool: Pool,
    pub(crate) router: Router,
}

/// The retry state of one operation.
#[derive(Debug, Default)]
struct Progress {
    attempts: u32,
    pauses: u32,
    immediate: u32,
    rotation: usize,
    pinned: Option<String>,
    refreshed_for_batch: bool,
    last: Option<Error>,
    /// The replica the last attempt could not reach, told to the next one.
    unreachable: Option<std::sync::Arc<str>>,
    /// Some failed attempt may have been applied (see
    /// [`retry::may_have_applied`](crate::retry::may_have_applied)).
    maybe_applied: bool,
}

impl Dispatcher {
    /// Runs `op` until `send` returns a reply without error, a failure that
    /// retrying cannot fix, or the deadline passes.
    pub(crate) async fn run<R, F, Fut>(&self, op: Op, by: RouteBy<'_>, send: F) -> Result<R, Error>
    where
        R: Reply,
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.config.deadline;
        match self.run_pinned(op, by, deadline, send).await {
            Ok(reply) => Ok(reply),
            Err(Stop::Failed(e)) => Err(e),
            // Only an op with a session can stop this way.
            Err(Stop::Moved) => Err(Error::Unavailable(format!(
                "{}: the key moved to another shard",
                op.name
            ))),
        }
    }

    /// [`Dispatcher::run`] with an explicit deadline, for a write numbered
    /// in a session (`op.session`): it is only ever sent to that session's
    /// shard.
    pub(crate) async fn run_pinned<R, F, Fut>(
        &self,
        op: Op,
        by: RouteBy<'_>,
        deadline: Instant,
        mut send: F,
    ) -> Result<R, Stop>
    where
        R: Reply,
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let mut p = Progress::default();
        loop {
            let now = Instant::now();
            if now >= deadline {
                let last = p
                    .last
                    .take()
                    .unwrap_or_else(|| Error::Unavailable("no attempt was made".into()));
                return Err(Stop::Failed(Error::Timeout {
                    op: op.name,
                    after: self.config.deadline,
                    last: Box::new(last),
                }));
            }
            let resolved = self.resolve(by, &mut p, deadline - now).await;
            let Some(route) = resolved.map_err(Stop::Failed)? else {
                self.pause(&mut p, deadline).await;
                continue;
            };
            // The keys moved to another shard (a split). With no attempt
            // that may have applied, the write is numbered again in the new
            // shard's session. Otherwise it keeps its write id: a split gives
            // the new shard a copy of the old one's session table, so the
            // same id names the same write there, answered from the table if
            // it applied and applied once if it did not. (A shard without
            // that session answers SessionExpired: outcome unknown.)
            if op.session.is_some_and(|pin| pin.shard_id != route.shard_id) && !p.maybe_applied {
                return Err(Stop::Moved);
            }
            // The map this attempt is routed by: a refresh it asks for is
            // skipped if a newer map arrived meanwhile.
            let generation = self.router.generation();
            let Some(addr) = p.pinned.take().or_else(|| route.pick(p.rotation)) else {
                p.last = Some(Error::Unavailable("the shard has no known replica".into()));
                self.pause(&mut p, deadline).await;
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let budget = Budget::new(self.config.request_timeout, left);
            let wait = budget.duration();
            let budget = budget.unreachable(p.unreachable.take());
            p.attempts += 1;
            let failure = match self.attempt(&route, &addr, budget, &mut send).await {
                Ok(reply) => {
                    if op.leader_only {
                        self.router
                            .with_cache(|c| c.set_leader_addr(route.shard_id, &addr));
                    }
                    return Ok(reply);
                }
                Err(failure) => failure,
            };
            let error = failure.to_error(&addr, wait);
            let action = decide(&failure);
            if matches!(failure, Failure::Status { .. } | Failure::RpcTimeout) {
                p.unreachable = Some(addr.as_str().into());
            }
            p.maybe_applied |= may_have_applied(&failure);
            tracing::debug!(op = op.name, attempt = p.attempts, %addr, shard = route.shard_id, %error, ?action, "attempt failed");
            if action == Action::Fail {
                return Err(Stop::Failed(error));
            }
            p.last = Some(error);
            let failed = Attempted {
                shard_id: route.shard_id,
                addr,
                generation,
            };
            self.act(action, failed, &mut p, deadline).await;
        }
    }

    /// Carries out `action` after a failed attempt, pausing when it says so
    /// or when too many retries in a row went without a pause.
    async fn act(&self, action: Action, failed: Attempted, p: &mut Progress, deadline: Instant) {
        let shard_id = failed.shard_id;
        match action {
            // Handled by the caller, which owns the error.
            Action::Fail => return,
            Action::RetryOnLeader {
                leader_id,
                leader_addr,
            } => {
                let known =
                    leader_id.and_then(|id| self.router.with_cache(|c| c.set_leader(shard_id, id)));
                p.pinned = leader_addr.or(known);
                if p.pinned.is_none() {
                    p.rotation += 1;
                }
            }
            Action::NextReplica => p.rotation += 1,
            Action::PatchRoutes(shards) => self.router.with_cache(|c| {
                for shard in shards {
                    c.insert(shard);
                }
            }),
            Action::RefreshRoutes | Action::RefreshRoutesNextReplica => {
                let next = action == Action::RefreshRoutesNextReplica;
                let left = deadline.saturating_duration_since(Instant::now());
                let budget = Budget::new(self.config.request_timeout, left);
                let refreshed = self.router.refresh(failed.generation, &self.pool, budget);
                if let Err(e) = refreshed.await {
                    p.last = Some(e);
                }
                if next {
                    self.router
                        .with_cache(|c| c.forget_leader(shard_id, &failed.addr));
                    p.pinned = None;
                    p.rotation += 1;
                }
            }
            Action::BackoffNextReplica => {
                self.router
                    .with_cache(|c| c.forget_leader(shard_id, &failed.addr));
                p.rotation += 1;
                return self.pause(p, deadline).await;
            }
        }
        p.immediate += 1;
        if p.immediate > MAX_IMMEDIATE_RETRIES {
            self.pause(p, deadline).await;
        }
    }

    /// Sends one attempt to `addr`, bounded by `budget`.
    async fn attempt<R, F, Fut>(
        &self,
        route: &Route,
        addr: &str,
        budget: Budget,
        send: &mut F,
    ) -> Result<R, Failure>
    where
        R: Reply,
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let kv = self.pool.kv(addr).map_err(|e| Failure::Status {
            code: tonic::Code::Unavailable,
            message: e.to_string(),
        })?;
        let header = RequestHeader {
            shard_id: route.shard_id,
            epoch: route.epoch,
        };
        let wait = budget.duration();
        let target = Target { header, kv, budget };
        match tokio::time::timeout(wait, send(target)).await {
            Ok(Ok(reply)) => {
                let mut reply = reply.into_inner();
                match reply.take_error() {
                    None => Ok(reply),
                    Some(error) => Err(Failure::Server(error)),
                }
            }
            Ok(Err(status)) => Err(Failure::Status {
                code: status.code(),
                message: status.message().to_string(),
            }),
            Err(_) => Err(Failure::RpcTimeout),
        }
    }

    /// The route for this operation, refreshing the map once when the cache
    /// has none. `Ok(None)`: no shard known yet, retry later.
    async fn resolve(
        &self,
        by: RouteBy<'_>,
        p: &mut Progress,
        remaining: Duration,
    ) -> Result<Option<Route>, Error> {
        let budget = Budget::new(self.config.request_timeout, remaining);
        let generation = self.router.generation();
        let found = match self.lookup(by) {
            Lookup::Found(route) => return Ok(Some(route)),
            Lookup::CrossShard if p.refreshed_for_batch => return Err(Error::CrossShardBatch),
            Lookup::CrossShard => {
                p.refreshed_for_batch = true;
                self.router.refresh(generation, &self.pool, budget).await
            }
            Lookup::Missing => self.router.refresh(generation, &self.pool, budget).await,
        };
        if let Err(e) = found {
            p.last = Some(e);
        }
        match self.lookup(by) {
            Lookup::Found(route) => Ok(Some(route)),
            Lookup::CrossShard => Err(Error::CrossShardBatch),
            Lookup::Missing => {
                if !matches!(p.last, Some(Error::Unavailable(_))) {
                    p.last = Some(Error::Unavailable(
                        "no shard is known to hold the key".into(),
                    ));
                }
                Ok(None)
            }
        }
    }

    /// The shard the route cache has for `by`, without asking the cluster.
    pub(crate) fn cached_shard(&self, by: RouteBy<'_>) -> Option<u64> {
        match self.lookup(by) {
            Lookup::Found(route) => Some(route.shard_id),
            Lookup::Missing | Lookup::CrossShard => None,
        }
    }

    fn lookup(&self, by: RouteBy<'_>) -> Lookup {
        match by {
            RouteBy::Key(key) => self
                .router
                .route(key)
                .map_or(Lookup::Missing, Lookup::Found),
            RouteBy::AllKeys(keys) => {
                let mut first: Option<Route> = None;
                for key in keys {
                    match (self.router.route(key), &first) {
                        (None, _) => return Lookup::Missing,
                        (Some(r), None) => first = Some(r),
                        (Some(r), Some(f)) if r.shard_id != f.shard_id => {
                            return Lookup::CrossShard
                        }
                        (Some(_), Some(_)) => {}
                    }
                }
                first.map_or(Lookup::Missing, Lookup::Found)
            }
        }
    }

    /// Sleeps for the next backoff delay, never past the deadline.
    async fn pause(&self, p: &mut Progress, deadline: Instant) {
        let delay = {
            let mut rng = crate::rng::rng();
            self.config.backoff.next_delay(p.pauses, &mut rng)
        };
        p.pauses += 1;
        p.immediate = 0;
        let wake = (Instant::now() + delay).min(deadline);
        tokio::time::sleep_until(wake).await;
    }
}

/// Where a failed attempt went.
struct Attempted {
    shard_id: u64,
    addr: String,
    generation: u64,
}

enum Lookup {
    Found(Route),
    Missing,
    CrossShard,
}
