//! The split checker: a shard whose size or key count reached the
//! threshold is split at the middle key its leader picks.

use crate::ids::IdSource;
use crate::node::NodeInfo;
use crate::operator::{build, OpKind, Operator};
use crate::shard::ShardInfo;
use crate::state::PdState;

pub fn check(
    state: &PdState,
    shard: &ShardInfo,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Option<Operator> {
    if !is_due(state, shard) {
        return None;
    }
    build::split(shard, None, OpKind::Split, ids, now_ms).ok()
}

/// Whether `shard` reached a split threshold and can be split now: its
/// leader is alive and it is not in a joint membership.
pub fn is_due(state: &PdState, shard: &ShardInfo) -> bool {
    let c = state.config();
    let big = shard.stats.approx_size_bytes >= c.split_size_bytes
        || shard.stats.approx_keys >= c.split_keys;
    let leader_alive = shard
        .desc
        .leader_node()
        .and_then(|n| state.node(n))
        .is_some_and(NodeInfo::is_alive);
    big && leader_alive && !shard.desc.is_joint()
}
