//! Client settings.

use std::time::Duration;

use crate::retry::Backoff;

/// Settings of a [`Client`](crate::Client). `ClientConfig::default()` suits a
/// cluster on a local network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest wait for the reply to one RPC (default 2 s). A node that does
    /// not answer in time counts as unreachable for this attempt.
    pub request_timeout: Duration,
    /// Longest time one operation may take, retries included (default
    /// 10 s); afterwards it fails with [`Error::Timeout`](crate::Error::Timeout).
    /// For `scan` this applies to each page.
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
