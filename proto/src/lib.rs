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

/// A channel that dials on first use; outside the simulation the frames of
/// one request leave in one write ([`batched_writes`]). Every client of the
/// protocol (the client crate, node-to-node RPCs) builds its channels here.
pub fn connect_lazy(endpoint: tonic::transport::Endpoint) -> tonic::transport::Channel {
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
