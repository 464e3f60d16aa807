//! The one seam between the driver and a system under test: [`Kv`], a
//! handle that can put and get single keys, and [`Read`], the two read
//! consistencies every case needs. `atoll.rs` and `etcd.rs` implement it.

use std::future::Future;

/// How a read may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Linearizable: Atoll's `get` (ReadIndex at the shard leader); etcd's
    /// default Range (ReadIndex at the leader, whichever member is asked).
    Linearizable,
    /// Served from one replica's applied state without a leader round:
    /// Atoll's `get_stale`; etcd's `serializable` Range.
    Stale,
}

/// One connection-level handle to a cluster. Cheap to clone; clones share
/// the connection. A failed operation is reported as a short error kind
/// (counted per kind in the results), never retried by the driver.
pub trait Kv: Clone + Send + Sync + 'static {
    /// Writes `value` under `key`, durably (as the system acknowledges it).
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
    /// Reads `key`; `Ok(true)` when it exists.
    fn get(&self, key: Vec<u8>, read: Read) -> impl Future<Output = Result<bool, String>> + Send;
}

/// Where an etcd connection points (Atoll's client routes by itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Only the current leader, as etcd's own `benchmark --target-leader`
    /// does for writes: no follower-to-leader forwarding hop.
    Leader,
    /// Round-robin over every member: stale reads spread over the replicas,
    /// and writes survive the loss of one member (failover case).
    All,
}
