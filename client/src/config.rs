//! Client settings.

use std::time::Duration;

use crate::retry::Backoff;

/// Settings of a [`Client`](crate::Client). `ClientConfig::default()` suits a
/// cluster on a local network.
///
/// Each attempt waits `min(request_timeout, time left before deadline)`
/// and tells the node so (the request's gRPC deadline); the node then
/// answers within that time, less a margin of up to 100 ms, even if it
/// could not commit a write yet (`Unavailable`, retried with the same
/// write id). The node's own limit, `raft.write_timeout_ms` (5 s), only
/// applies when it is shorter. See docs/operations.md, "Timeouts".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for the reply to one RPC (default 2 s), sent to the node
    /// as the request's deadline. A node that does not answer in time counts
    /// as unreachable for this attempt.
    pub request_timeout: Duration,
    /// Longest time one operation may take, retries included (default
    /// 10 s); afterwards it fails with [`Error::Timeout`](crate::Error::Timeout).
    /// For `scan` this applies to each page. Keep it at several
    /// `request_timeout`s and above the cluster's election timeout, so an
    /// operation outlives a leader change.
    pub deadline: Duration,
    /// Delays between retries.
    pub backoff: Backoff,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}
