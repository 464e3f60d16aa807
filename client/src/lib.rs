//! atoll-client: the Rust client of Atoll, a sharded Raft key-value store.
//!
//! # Map of the crate
//!
//! The walk of one `put`, top to bottom:
//!
//! - [`client`]: [`Client`], the API (`get`, `get_stale`, `put`, `delete`,
//!   `cas`, `scan`, `batch`). Validates arguments ([`limits`]), takes a write
//!   id ([`session`]), builds the request. [`txn`]: [`Txn`], compares then
//!   puts/deletes/gets in one atomic step, and `Client::txn`.
//! - `dispatch`: runs one operation: route, send, and on failure ask
//!   [`retry::decide`] what to do, until success or the deadline.
//! - `deadline`: each attempt's time budget, sent as the request's gRPC
//!   deadline so the server answers before the client gives up.
//! - `router`: the live shard map: a [`route_cache::RouteCache`] plus the
//!   single-flight refresh from the cluster (`Kv/Shards`).
//! - [`route_cache`]: key → shard range map; no two cached shards intersect.
//! - [`retry`]: the pure decision `Failure → Action`, and [`retry::Backoff`].
//! - [`session`]: write sessions (one per shard, opened on the first write
//!   with `Kv/OpenSession`) and their `(client_id, seq)` write ids.
//! - `pool`: one gRPC channel per node address.
//! - `multiplex`: gets, puts, deletes and CASes to a node travel on one
//!   `Kv.Multiplex` stream, many in flight, matched to replies by id.
//! - `scan`: the pure paging rules of a multi-shard scan.
//! - [`admin`]: operator calls (init, membership, compaction, status, and
//!   the placement driver's view: [`admin::cluster_state`]).
//! - [`pd_view`]: [`ClusterState`], that view typed: nodes (state,
//!   heartbeat, load) and shards (range, epoch, replicas, leader).
//! - [`error`]: [`Error`], one type for every failure; `types`: [`CasOutcome`],
//!   [`Mutation`].
//!
//! The `atollctl` binary (`src/bin/atollctl`) is a command-line front end to
//! all of the above.
//!
//! # Example
//!
//! ```no_run
//! use atoll_client::{Client, Compare, Error, Mutation, Txn, TxnOp};
//!
//! # async fn demo() -> Result<(), Error> {
//! let client = Client::connect(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]).await?;
//!
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?, Some(b"hello".to_vec()));
//!
//! // Compare-and-swap; a failed comparison is an outcome, not an error.
//! let swap = client.cas("greeting", Some(b"hello"), Some(b"hi")).await?;
//! assert!(swap.succeeded);
//!
//! // Atomic multi-key write, within one shard.
//! client.batch(vec![Mutation::put("a", "1"), Mutation::delete("b")]).await?;
//!
//! // Conditional multi-key write, within one shard: all or nothing.
//! let moved = client
//!     .txn(
//!         Txn::new()
//!             .when(Compare::equal("a", "1"))
//!             .when(Compare::absent("c"))
//!             .then(TxnOp::delete("a"))
//!             .then(TxnOp::put("c", "1"))
//!             .otherwise(TxnOp::get("c")),
//!     )
//!     .await?;
//! assert!(moved.succeeded);
//!
//! // Walks across shards; "" as end means the end of the key space.
//! for (key, value) in client.scan("a", "", 100).await? {
//!     println!("{} = {}", String::from_utf8_lossy(&key), String::from_utf8_lossy(&value));
//! }
//!
//! assert!(client.delete("greeting").await?);
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! `get`, `scan` pages, txns and all writes are linearizable. Writes carry a write
//! id and are retried with the same id, so each is applied at most once;
//! a write that fails with [`Error::Timeout`] or [`Error::SessionExpired`]
//! (the shard evicted the client's session) may or may not have been
//! applied ([`Error::is_indeterminate`]). Every operation retries transparently (leader changes, splits,
//! unreachable nodes) until [`ClientConfig::deadline`].

pub mod admin;
pub mod client;
pub mod config;
mod deadline;
mod dispatch;
pub mod error;
pub mod limits;
mod multiplex;
pub mod pd_view;
mod pool;
pub mod retry;
mod rng;
pub mod route_cache;
mod router;
mod scan;
pub mod session;
pub mod txn;
mod types;

pub use admin::{cluster_state, cluster_status, AdminClient, NodeStatus};
pub use client::Client;
pub use config::ClientConfig;
pub use error::{EndpointFailure, Error, ServerErrorKind};
pub use pd_view::{ClusterState, NodeInfo, NodeState, ReplicaInfo, ReplicaRole, ShardInfo};
pub use retry::{Backoff, Jitter};
pub use txn::{Compare, CompareOp, Txn, TxnOp, TxnOpResult, TxnOutcome};
pub use types::{CasOutcome, Mutation};
