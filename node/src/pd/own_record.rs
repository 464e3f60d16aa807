//! What the PD holds about this node, kept in step with its config: the
//! labels (a zone) and the address this node advertises.
//!
//! The PD learns a node's labels when the node registers or joins. The
//! initial members are registered by the PD leader at bootstrap, which
//! knows only its own labels, and a node restarted with new labels or a new
//! address registers again only if the PD has forgotten it. So every few
//! heartbeats each node compares the PD's record of itself with its config
//! and, if they differ, registers again (`RegisterNode` updates address and
//! labels of a known node).

use std::sync::Arc;

use atoll_pd::command::Command;
use atoll_pd::node::NodeState;
use atoll_pd::state::PdState;

use super::heartbeat::command;
use super::now_ms;
use crate::service::NodeCtx;

/// Registers this node again if the PD's record of its labels or address
/// is out of date. Errors are logged and retried next time.
pub async fn sync(ctx: &Arc<NodeCtx>, state: &PdState) {
    let me = ctx.node_id();
    let Some(record) = state.node(me) else {
        return;
    };
    let address = ctx.config.advertise_addr();
    let labels = &ctx.config.labels;
    let stale_labels = !labels.is_empty() && &record.labels != labels;
    if record.state == NodeState::Removed || (!stale_labels && record.address == address) {
        return;
    }
    tracing::info!(
        node = me,
        ?labels,
        %address,
        "the placement driver's record of this node is out of date; registering again"
    );
    let cmd = Command::RegisterNode {
        node: me,
        address,
        labels: labels.clone(),
        now_ms: now_ms(),
    };
    if let Err(e) = command(ctx, cmd).await {
        tracing::debug!(node = me, "registering again: {e}");
    }
}
