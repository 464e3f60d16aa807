//! atoll-proto: the wire protocol of Atoll.
//!
//! `proto/atoll.proto` is compiled at build time (protox, no system `protoc`)
//! into prost messages plus tonic clients and servers for the three services:
//! `Kv` (client API), `Raft` (openraft RPCs tagged by shard) and `Admin`
//! (operator calls). Under `--cfg madsim` the same services are generated
//! for madsim-tonic, so the simulation runs the real protocol.
//! [`streamed`] runs one operation of a `Kv.Multiplex` stream through the
//! unary handler of its kind; `batched_writes` gathers a reply's frames into
//! one socket write.
//!
//! ```
//! use atoll_proto::{GetRequest, RequestHeader};
//! let req = GetRequest { header: Some(RequestHeader { shard_id: 1, epoch: None }), key: b"k".to_vec(), consistency: 0 };
//! assert_eq!(req.header.unwrap().shard_id, 1);
//! ```

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]

tonic::include_proto!("atoll.v1");

#[cfg(not(madsim))]
pub mod batched_writes;
pub mod streamed;

/// HTTP/2 keepalive of every channel ([`connect_lazy`]) and of the node's
/// server: a PING after this long, also on an idle connection...
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// ...and the connection is dropped when its answer takes longer than this.
/// A peer that went silent without closing its connection (its machine
/// lost power, a network cut) then fails every call and stream on it
/// within 13 s, and the next call dials again, instead of each call
/// waiting out its own deadline until TCP gives up (minutes).
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A channel that dials on first use, with HTTP/2 keepalive
/// ([`KEEPALIVE_INTERVAL`], [`KEEPALIVE_TIMEOUT`]); outside the simulation
/// the frames of one request leave in one write ([`batched_writes`]).
/// Every client of the protocol (the client crate, node-to-node RPCs)
/// builds its channels here.
pub fn connect_lazy(endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
    connect_lazy_with_keepalive(endpoint, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
}

/// [`connect_lazy`] with other keepalive times (tests).
pub fn connect_lazy_with_keepalive(
    endpoint: tonic::transport::Endpoint,
    interval: std::time::Duration,
    timeout: std::time::Duration,
) -> tonic::transport::Channel {
    let endpoint = endpoint
        .http2_keep_alive_interval(interval)
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true);
    #[cfg(not(madsim))]
    return endpoint.connect_with_connector_lazy(batched_writes::Connector::default());
    #[cfg(madsim)]
    endpoint.connect_lazy()
}

pub use error::Kind as ErrorKind;

/// gRPC metadata a client may add to a KV request: the address of a replica
/// that did not answer its last attempt (connection refused, reset, or no
/// reply). A replica whose leader has that address holds the request until
/// another leader is elected, then names it in `NotLeader`, instead of
/// pointing the client back at a leader that may be dead (docs/operations.md,
/// "Errors clients see").
pub const UNREACHABLE_METADATA: &str = "atoll-unreachable";

/// Path aliases for the generated `oneof` module of [`Error`].
pub mod kinds {
    pub use super::error::Kind;
}
