//! One gRPC channel per node address, created lazily and reused by every
//! request (a channel multiplexes concurrent RPCs over one connection).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use atoll_proto::admin_client::AdminClient;
use atoll_proto::kv_client::KvClient;
use atoll_proto::pd_client::PdClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// Cached channels by address.
#[derive(Debug)]
pub(crate) struct Pool {
    connect_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Pool {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        Pool {
            connect_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The channel to `addr`, created on first use. Must run inside the
    /// runtime (the channel's worker is spawned there).
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = lazy_channel(addr, self.connect_timeout)?;
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// A Kv client on the channel to `addr`.
    pub(crate) fn kv(&self, addr: &str) -> Result<KvClient<Channel>, Error> {
        Ok(kv_client(self.channel(addr)?))
    }
}

/// A Kv client that accepts replies of any size: a scan page may hold up to
/// 1000 values of up to 1 MiB each, beyond tonic's 4 MiB default.
pub(crate) fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// An Admin client with the same reply-size policy as [`kv_client`].
pub(crate) fn admin_client(channel: Channel) -> AdminClient<Channel> {
    AdminClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A Pd client with the same reply-size policy as [`kv_client`]: the
/// cluster state of a large cluster lists many shards.
pub(crate) fn pd_client(channel: Channel) -> PdClient<Channel> {
    PdClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A channel that connects on first use. `addr` is `host:port`; a URI with
/// a scheme is taken as is.
pub(crate) fn lazy_channel(addr: &str, connect_timeout: Duration) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(uri(addr))
        .map_err(|e| Error::InvalidArgument(format!("bad endpoint {addr:?}: {e}")))?;
    let endpoint = endpoint.connect_timeout(connect_timeout).tcp_nodelay(true);
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
