//! One gRPC channel per node address, created lazily and reused by every
//! request (a channel multiplexes concurrent RPCs over one connection), and
//! the node's KV stream task on it ([`crate::multiplex`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use atoll_proto::admin_client::AdminClient;
use atoll_proto::pd_client::PdClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;
use crate::multiplex::{KvConn, Mux};

/// The HTTP/2 flow-control window of each stream and connection, in bytes
/// (what the node's server uses).
const WINDOW_BYTES: u32 = 16 << 20;

/// Cached channels and stream tasks by address.
pub(crate) struct Pool {
    connect_timeout: Duration,
    channels: Mutex<HashMap<String, (Channel, Mux)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        Pool {
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The KV connection to `addr` (its stream and unary calls), created on
    /// first use. Must run inside the runtime (the channel's worker and the
    /// stream task are spawned there).
    pub(crate) fn kv(&self, addr: &str) -> Result<KvConn, Error> {
        let (channel, mux) = self.entry(addr)?;
        Ok(KvConn::new(channel, mux))
    }

    fn entry(&self, addr: &str) -> Result<(Channel, Mux), Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = channels.get(addr) {
            return Ok(entry.clone());
        }
        let channel = lazy_channel(addr, self.connect_timeout)?;
        let entry = (channel.clone(), Mux::spawn(channel));
        channels.insert(addr.to_string(), entry.clone());
        Ok(entry)
    }
}

/// An Admin client with the same reply-size policy as
/// [`crate::multiplex::unary`].
pub(crate) fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A Pd client with the same reply-size policy as
/// [`crate::multiplex::unary`]: the
/// cluster state of a large cluster lists many shards.
pub(crate) fn pd_client(channel: Channel) -> PdClient<Channel> {
    PdClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A channel that connects on first use. `addr` is `host:port`; a URI with
/// a scheme is taken as is.
pub(crate) fn lazy_channel(addr: &str, connect_timeout: Duration) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(uri(addr))
        .map_err(|e| Error::InvalidArgument(format!("bad endpoint {addr:?}: {e}")))?;
    // Large HTTP/2 windows: every get, put, delete and CAS to a node shares
    // one stream (crate::multiplex), so a large reply must not stall the
    // small ones behind it on flow control.
    let endpoint = endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(WINDOW_BYTES)
        .initial_connection_window_size(WINDOW_BYTES);
    Ok(atoll_proto::connect_lazy(endpoint))
}

/// Checks that `addr` looks like `host:port` (or a URI) without dialling.
pub(crate) fn check_addr(addr: &str) -> Result<(), Error> {
    let parsed: Result<tonic::transport::Uri, _> = uri(addr).parse();
    match parsed {
        Ok(u) if u.host().is_some() && u.port_u16().is_some() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "bad endpoint {addr:?}: expected host:port"
        ))),
        Err(e) => Err(Error::InvalidArgument(format!(
            "bad endpoint {addr:?}: {e}"
        ))),
    }
}

fn uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_host_and_port() {
        assert!(check_addr("127.0.0.1:7101").is_ok());
        assert!(check_addr("node-1.local:7101").is_ok());
        assert!(check_addr("http://10.0.0.1:80").is_ok());
        assert!(check_addr("127.0.0.1").is_err());
        assert!(check_addr("not a host:x").is_err());
    }
}
