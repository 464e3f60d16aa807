//! Cluster membership of the node itself (not of a shard): which cluster
//! it belongs to, and whether a fresh node may bootstrap one.
//!
//! - [`identity`]: the cluster id (derived at bootstrap, learned on
//!   `--join`, stored next to the node id) and the check every message
//!   from another node passes;
//! - [`preflight`]: before bootstrapping, ask the other initial members
//!   whether a cluster already exists (pure rule: [`preflight::decide`]).
//!
//! Decision record: docs/decisions/0008-cluster-id-and-bootstrap-check.md.

pub mod identity;
pub mod preflight;

pub use identity::ClusterIdentity;
