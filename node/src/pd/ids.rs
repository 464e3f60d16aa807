//! Fresh ids from the PD's replicated allocator, for this node's callers:
//! shard ids and replica numbers (decision 0024), never handed out twice.

use std::sync::Arc;
use std::time::Duration;

use atoll_pd::command::{Command, CommandResult};
use atoll_pd::ids::{IdKind, IdRange};

use super::{heartbeat::command, PdError};
use crate::error::KvError;
use crate::raft::type_config::ReplicaId;
use crate::service::NodeCtx;

/// How long [`fresh_replica_id`] waits out a PD without a leader (an
/// election at startup or after a PD member's failure) before it answers
/// `Unavailable`.
pub const FRESH_ID_PATIENCE: Duration = Duration::from_secs(5);

/// Draws `count` fresh ids of `kind`: never handed out before, never again.
/// One attempt; an `Unavailable` answer may still have drawn ids, which
/// are then never used (a gap, not a reuse).
pub async fn alloc_ids(ctx: &Arc<NodeCtx>, kind: IdKind, count: u64) -> Result<IdRange, KvError> {
    draw(ctx, kind, count)
        .await
        .unwrap_or_else(|e| Err(KvError::Unavailable(e.to_string())))
}

/// A new replica id for `node`, for an operator's request (`add-learner`)
/// or the PD group's own move. Waits up to [`FRESH_ID_PATIENCE`] while the
/// PD is unavailable (an election at startup or after a PD member's
/// failure), so that such a request does not fail for an election that
/// ends a moment later.
pub async fn fresh_replica_id(ctx: &Arc<NodeCtx>, node: u64) -> Result<ReplicaId, KvError> {
    let deadline = tokio::time::Instant::now() + FRESH_ID_PATIENCE;
    let range = loop {
        match draw(ctx, IdKind::Replica, 1).await {
            Ok(drawn) => break drawn?,
            Err(PdError::Unavailable(m)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(node, "no replica id yet, retrying: {m}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(KvError::Unavailable(e.to_string())),
        }
    };
    ReplicaId::new(range.start, node).ok_or_else(|| {
        KvError::InvalidArgument(format!(
            "no replica id for node {node} (replica number {})",
            range.start
        ))
    })
}

/// One `AllocIds` command: the outer error is the PD's (unreachable, no
/// leader), the inner one an answer without ids.
async fn draw(
    ctx: &Arc<NodeCtx>,
    kind: IdKind,
    count: u64,
) -> Result<Result<IdRange, KvError>, PdError> {
    Ok(
        match command(ctx, Command::AllocIds { kind, count }).await? {
            CommandResult::AllocIds(Ok(range)) if !range.is_empty() => Ok(range),
            other => Err(KvError::Unavailable(format!(
                "the placement driver gave no {kind:?} ids: {other:?}"
            ))),
        },
    )
}
