//! One gRPC channel per peer address, shared by every shard's Raft group.
//! A tonic `Channel` multiplexes concurrent RPCs over one HTTP/2 connection
//! and reconnects by itself, so a channel is created once and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message between nodes (log batches, snapshot chunks).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows (connection and stream) between nodes: room
/// for a few AppendEntries of `raft.max_append_bytes` in flight.
pub const WINDOW_BYTES: u32 = 16 * 1024 * 1024;

#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {addr:?}: {reason}")]
pub struct BadAddress {
    pub addr: String,
    pub reason: String,
}

impl PeerPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared channel to `addr` ("host:port").
    pub fn channel(&self, addr: &str) -> Result<Channel, BadAddress> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| BadAddress {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(1))
            .initial_connection_window_size(WINDOW_BYTES)
            .initial_stream_window_size(WINDOW_BYTES)
            .tcp_nodelay(true);
        let ch = atoll_proto::connect_lazy(endpoint);
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}
