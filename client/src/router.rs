//! The live route map: a [`RouteCache`] behind a lock, the seed endpoints,
//! and the refresh that reloads the map from the cluster (`Kv/Shards`).
//!
//! Refreshes are single-flight: callers pass the map generation they saw
//! when they decided to refresh; whoever gets the refresh lock first does
//! the call and bumps the generation, and the callers queued behind it see
//! the new generation and return without calling again. The lock is a plain
//! async mutex, so a refresh that fails or is cancelled releases it and
//! never leaves waiters hanging.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use atoll_proto::ShardsRequest;

use crate::deadline::Budget;
use crate::error::Error;
use crate::pool::Pool;
use crate::route_cache::{Route, RouteCache};

/// Route cache + seeds + single-flight refresh.
#[derive(Debug)]
pub(crate) struct Router {
    seeds: Vec<String>,
    cache: Mutex<RouteCache>,
    refresh_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl Router {
    pub(crate) fn new(seeds: Vec<String>) -> Self {
        Router {
            seeds,
            cache: Mutex::new(RouteCache::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// How many refreshes have completed; pass it to [`Router::refresh`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The route for `key`, with the seed endpoints appended as a last
    /// resort; `None` when no cached shard holds the key.
    pub(crate) fn route(&self, key: &[u8]) -> Option<Route> {
        let mut route = self.cache().route(key)?;
        for seed in &self.seeds {
            if !route.addrs.contains(seed) {
                route.addrs.push(seed.clone());
            }
        }
        Some(route)
    }

    /// Runs `f` on the cache under its lock. Never hold across an await.
    pub(crate) fn with_cache<T>(&self, f: impl FnOnce(&mut RouteCache) -> T) -> T {
        f(&mut self.cache())
    }

    /// Reloads the route map unless another refresh completed since the
    /// caller saw generation `seen`. Asks every known node at once (seeds and
    /// all cached replicas: a node only reports the shards it hosts) and
    /// waits at most `budget`. Fails only when no node answered.
    pub(crate) async fn refresh(
        &self,
        seen: u64,
        pool: &Pool,
        budget: Budget,
    ) -> Result<(), Error> {
        let _flight = self.refresh_lock.lock().await;
        if self.generation() != seen {
            return Ok(());
        }
        let mut addrs: BTreeSet<String> = self.cache().addresses();
        addrs.extend(self.seeds.iter().cloned());
        let asks = addrs
            .iter()
            .map(|addr| ask_shards(pool, addr, budget.clone()));
        let answers = futures::future::join_all(asks).await;
        self.generation.fetch_add(1, Ordering::AcqRel);

        let mut answered = 0;
        let mut last_error = None;
        let mut cache = self.cache();
        for answer in answers {
            match answer {
                Ok(shards) => {
                    answered += 1;
                    for shard in shards {
                        cache.insert(shard);
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        tracing::debug!(
            answered,
            asked = addrs.len(),
            shards = cache.len(),
            "route map refreshed"
        );
        match (answered, last_error) {
            (0, Some(e)) => Err(Error::Unavailable(format!(
                "no node answered the shard map request (last error: {e})"
            ))),
            _ => Ok(()),
        }
    }

    fn cache(&self) -> MutexGuard<'_, RouteCache> {
        // Every critical section leaves the cache consistent, so a panic
        // elsewhere cannot have poisoned it half-way.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One `Kv/Shards` call, bounded by `budget`.
async fn ask_shards(
    pool: &Pool,
    addr: &str,
    budget: Budget,
) -> Result<Vec<atoll_proto::ShardDescriptor>, Error> {
    let mut kv = pool.kv(addr)?;
    let wait = budget.duration();
    let ask = kv.shards(budget.request(ShardsRequest {}));
    match tokio::time::timeout(wait, ask).await {
        Ok(Ok(reply)) => Ok(reply.into_inner().shards),
        Ok(Err(status)) => Err(Error::from_status(addr, &status)),
        Err(_) => Err(Error::Transport(format!(
            "{addr}: no reply within {:?}",
            wait
        ))),
    }
}
