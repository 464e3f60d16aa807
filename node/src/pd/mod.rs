//! The placement driver (PD) hosted on the nodes.
//!
//! The PD's state machine is the pure [`atoll_pd`] core. Here it runs on a
//! Raft group of its own, shard [`PD_SHARD`], with the same Raft code, WAL
//! and engine as the data shards: a PD command is a [`Request::Pd`] entry,
//! applied by the group's state machine to its [`PdState`]
//! (`state_machine::SharedPd`). The group's key range is empty, so no
//! client request ever lands on it. Its replicas are the first
//! [`PD_REPLICAS`] initial members (by id), created at bootstrap.
//! Decision record: `docs/decisions/0019-placement-driver-on-raft.md`.
//!
//! - [`route`]: [`route::call`] proposes a command or reads the state on the
//!   PD leader, from any node: locally on the leader, else forwarded (at most
//!   two hops: any node → a PD member → the PD leader).
//! - [`heartbeat`]: every node's loop: node liveness, and a report of every
//!   shard it leads that changed ([`reported`]: what the PD last accepted);
//!   a node the PD does not know registers itself.
//! - [`duties`]: what only the PD leader does: registers the initial
//!   members and the first shard once, marks silent nodes `Down`, and has
//!   shards past a split threshold split by their leaders;
//!   [`operators`]: runs the scheduler's operators (replica repair, drains,
//!   balance), sending each step to the shard's leader; [`pd_group`]: moves
//!   the PD's own group off nodes that are not up.
//! - [`ids`]: fresh shard ids and replica ids from the PD's allocator.
//! - [`join`]: a fresh node started with `join` addresses gets its id.
//! - [`report`]: a local replica as the PD sees it (descriptor, statistics);
//!   [`sizes`]: its approximate size and key count;
//!   [`stale_replicas`]: a replica this node still hosts after its removal
//!   (the node was down) is removed once the shard's leader confirms it;
//!   [`own_record`]: the PD's record of this node's labels and address is
//!   kept in step with its config.
//!
//! [`Request::Pd`]: crate::command::Request::Pd

pub mod duties;
pub mod heartbeat;
pub mod ids;
pub mod join;
pub mod operators;
pub mod own_record;
pub mod pd_group;
pub mod report;
pub mod reported;
pub mod route;
pub mod sizes;
pub mod stale_replicas;

use atoll_pd::command::{Command, CommandResult};
use atoll_pd::state::PdState;
use serde::{Deserialize, Serialize};

use crate::shard::meta::{Epoch, ShardMeta};
use crate::storage::keys::ShardId;

/// The shard id of the PD group. Data shards start at 1.
pub const PD_SHARD: ShardId = 0;

/// How many initial members host a PD replica (fewer if the cluster is smaller).
pub const PD_REPLICAS: usize = 3;

/// The PD group's descriptor: an empty key range (`[b"", b"")`), so it
/// overlaps no data shard and contains no key.
pub fn pd_meta() -> ShardMeta {
    ShardMeta {
        id: PD_SHARD,
        start: Vec::new(),
        end: Some(Vec::new()),
        epoch: Epoch {
            version: 1,
            conf_ver: 0,
        },
    }
}

/// The initial members that host the PD: the [`PD_REPLICAS`] lowest ids.
pub fn pd_members(members: &[(u64, String)]) -> Vec<(u64, String)> {
    let mut sorted = members.to_vec();
    sorted.sort();
    sorted.truncate(PD_REPLICAS);
    sorted
}

/// What a node asks of the PD leader (bincode inside `PdForwardRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PdRequest {
    /// Propose a command and wait for its result.
    Command(Box<Command>),
    /// The state, read linearizably on the leader.
    State,
}

/// The PD leader's answer to a [`PdRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PdReply {
    Result(CommandResult),
    /// The state, and the node whose replica answered.
    State {
        state: Box<PdState>,
        leader: u64,
    },
}

/// Why a PD request did not get an answer. None of these means the command
/// was refused: a command may have been applied even when its caller sees
/// `Unavailable` (PD commands are idempotent or harmless to repeat).
#[derive(Debug, thiserror::Error)]
pub enum PdError {
    #[error("the placement driver is unavailable: {0}")]
    Unavailable(String),
    #[error("node {0} hosts no placement-driver replica")]
    NotPdMember(u64),
    #[error("malformed placement-driver message: {0}")]
    Malformed(String),
}

/// Milliseconds since the Unix epoch: the time a PD command carries
/// (read once by its proposer, see `atoll_pd`'s decision record).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The command with every time in it replaced by this node's clock: what a
/// non-deterministic PD state machine would do (the simulation's broken
/// mode `PdLocalClock`).
#[cfg(all(madsim, feature = "sim-bugs"))]
pub fn with_local_clock(mut cmd: Command) -> Command {
    if let Some(t) = cmd.time_mut() {
        *t = now_ms() + u64::from(madsim::rand::random::<u16>());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pd_range_is_empty_and_overlaps_nothing() {
        let pd = pd_meta();
        assert!(!pd.contains(b"") && !pd.contains(b"a") && !pd.contains(&[0xff; 8]));
    }

    #[test]
    fn the_lowest_ids_host_the_pd() {
        let m = |ids: &[u64]| -> Vec<(u64, String)> {
            ids.iter().map(|i| (*i, format!("h{i}:1"))).collect()
        };
        let ids = |v: Vec<(u64, String)>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(ids(pd_members(&m(&[5, 2, 9, 1, 7]))), vec![1, 2, 5]);
        assert_eq!(ids(pd_members(&m(&[4]))), vec![4]);
    }
}
