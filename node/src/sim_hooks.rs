//! Simulation-only seams (compiled only under `--cfg madsim`).
//!
//! - [`NetFaults`]: drop, delay and duplicate individual Raft RPCs in our
//!   transport. madsim's connections are reliable (a clogged link holds
//!   messages, it never loses them), so message loss is modelled here.
//! - [`flush_latency`]: a simulated disk's flush time, with slow outliers.
//! - [`record_applied`]: what each replica applied at each index, for the
//!   State Machine Safety check; [`record_pd_state`] the PD state after it.
//! - [`Bug`] (feature `sim-bugs`): deliberately broken modes that the
//!   simulation's checkers must catch, proving they can fail.
//!
//! State is thread-local: a madsim runtime runs on one thread, and tests in
//! one binary run on different threads.

use std::cell::Cell;
use std::time::Duration;

use rand::Rng;

/// Per-RPC fault probabilities for Raft messages between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetFaults {
    /// The request is lost: the peer never sees it.
    pub drop: f64,
    /// The peer handles the request but its reply is lost.
    pub lose_reply: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
}

thread_local! {
    static NET: Cell<NetFaults> = const { Cell::new(NetFaults { drop: 0.0, lose_reply: 0.0, duplicate: 0.0, max_delay: Duration::ZERO }) };
}

pub fn set_net_faults(f: NetFaults) {
    NET.with(|n| n.set(f));
}

pub fn net_faults() -> NetFaults {
    NET.with(|n| n.get())
}

/// What to do with one outgoing RPC.
pub struct RpcFate {
    pub drop: bool,
    pub lose_reply: bool,
    pub duplicate: bool,
    pub delay: Duration,
}

/// Draws the fate of one RPC from madsim's deterministic RNG.
pub fn rpc_fate() -> RpcFate {
    let f = net_faults();
    let mut rng = madsim::rand::thread_rng();
    let delay = if f.max_delay.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.gen_range(0..=f.max_delay.as_micros() as u64))
    };
    RpcFate {
        drop: rng.gen_bool(f.drop.clamp(0.0, 1.0)),
        lose_reply: rng.gen_bool(f.lose_reply.clamp(0.0, 1.0)),
        duplicate: rng.gen_bool(f.duplicate.clamp(0.0, 1.0)),
        delay,
    }
}

/// How long one flush of the simulated disk takes: usually a fraction of a
/// millisecond, sometimes tens of milliseconds, and now and then a slow
/// outlier of hundreds (a busy device, a journal commit). A real disk does
/// this; a simulation whose flush is free cannot see stalls that slow
/// flushes cause, such as replication that gives up on a follower before it
/// can acknowledge.
pub fn flush_latency() -> Duration {
    let mut rng = madsim::rand::thread_rng();
    let micros = match rng.gen_range(0..1000u32) {
        0..=899 => rng.gen_range(100..2_000),
        900..=979 => rng.gen_range(2_000..30_000),
        _ => rng.gen_range(100_000..400_000),
    };
    Duration::from_micros(micros) + slow_disk_extra(madsim::plugin::node())
}

thread_local! {
    static SLOW_DISKS: std::cell::RefCell<std::collections::HashMap<madsim::task::NodeId, Duration>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Makes every flush of simulated node `node` take `extra` longer (a slow
/// disk); `Duration::ZERO` restores it.
pub fn set_slow_disk(node: madsim::task::NodeId, extra: Duration) {
    SLOW_DISKS.with(|m| {
        let mut m = m.borrow_mut();
        if extra.is_zero() {
            m.remove(&node);
        } else {
            m.insert(node, extra);
        }
    });
}

fn slow_disk_extra(node: madsim::task::NodeId) -> Duration {
    SLOW_DISKS.with(|m| m.borrow().get(&node).copied().unwrap_or_default())
}

thread_local! {
    static SNAPSHOT_BUILD_DELAY: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Makes every snapshot build of this simulation take `delay` longer (a
/// shard so large that writing its snapshot takes that long);
/// `Duration::ZERO` restores it.
pub fn set_snapshot_build_delay(delay: Duration) {
    SNAPSHOT_BUILD_DELAY.with(|d| d.set(delay));
}

pub fn snapshot_build_delay() -> Duration {
    SNAPSHOT_BUILD_DELAY.with(|d| d.get())
}

thread_local! {
    static CHILD_OPEN_DELAY: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Makes every node whose parent replica does not lead open a split child
/// `delay` after it applied the split (a node slow to get to it), so that
/// the child's other members ask it to create the child first
/// (`shard::missing_replicas`); `Duration::ZERO` restores it.
pub fn set_child_open_delay(delay: Duration) {
    CHILD_OPEN_DELAY.with(|d| d.set(delay));
}

pub fn child_open_delay() -> Duration {
    CHILD_OPEN_DELAY.with(|d| d.get())
}

/// Every entry any replica applied, by (shard, index): its digest and the
/// simulated node that applied it first. Raft's State Machine Safety says
/// no two replicas ever apply different entries at the same index.
#[derive(Default)]
struct AppliedLog {
    by_index: std::collections::HashMap<(u64, u64), (u32, madsim::task::NodeId)>,
    conflicts: Vec<String>,
}

thread_local! {
    static APPLIED: std::cell::RefCell<AppliedLog> = std::cell::RefCell::new(AppliedLog::default());
}

/// Records that this node applied an entry with `digest` at `index`.
pub fn record_applied(shard: u64, index: u64, digest: u32) {
    let node = madsim::plugin::node();
    APPLIED.with(|a| {
        let mut a = a.borrow_mut();
        match a.by_index.get(&(shard, index)).copied() {
            None => {
                a.by_index.insert((shard, index), (digest, node));
            }
            Some((d, _)) if d == digest => {}
            Some((d, first)) => a.conflicts.push(format!(
                "shard {shard} index {index}: node {first} applied entry {d:08x}, node {node} applied {digest:08x}"
            )),
        }
    });
}

thread_local! {
    /// The PD group's state after each applied index, per replica: the
    /// same check as [`record_applied`], one level up. Equal entries must
    /// give equal PD states (the PD state machine is deterministic).
    static PD_STATES: std::cell::RefCell<AppliedLog> = std::cell::RefCell::new(AppliedLog::default());
}

/// Records the digest of this node's PD state right after applying `index`.
pub fn record_pd_state(index: u64, digest: u32) {
    let node = madsim::plugin::node();
    PD_STATES.with(|a| {
        let mut a = a.borrow_mut();
        match a.by_index.get(&(0, index)).copied() {
            None => {
                a.by_index.insert((0, index), (digest, node));
            }
            Some((d, _)) if d == digest => {}
            Some((d, first)) => a.conflicts.push(format!(
                "PD state after index {index}: node {first} has {d:08x}, node {node} has {digest:08x}"
            )),
        }
    });
}

/// Indexes after which PD replicas held different states.
pub fn pd_state_conflicts() -> Vec<String> {
    PD_STATES.with(|a| a.borrow().conflicts.clone())
}

thread_local! {
    /// Shards of which some node created a replica empty, to wait for a
    /// snapshot (`ShardHost::create`).
    static CREATED_EMPTY: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    /// Replicas that opened with both the "awaiting first snapshot" mark
    /// and an applied state of their own: "node N shard S".
    static AWAITING_WITH_STATE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records that this node opened a replica of `shard` that awaits its
/// first snapshot and holds an applied state (a replica's state written
/// over another: such a replica takes the leader's snapshot as one it
/// holds already, and waits for ever).
pub fn record_awaiting_with_state(shard: u64) {
    let node = madsim::plugin::node();
    AWAITING_WITH_STATE.with(|c| c.borrow_mut().push(format!("node {node} shard {shard}")));
}

/// Every replica recorded by [`record_awaiting_with_state`] in this run.
pub fn awaiting_with_state() -> Vec<String> {
    AWAITING_WITH_STATE.with(|c| c.borrow().clone())
}

thread_local! {
    /// Split children that a create request opened before their own node
    /// did (`ShardHost::create`).
    static OPENED_ON_REQUEST: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records that a create request opened this node's split child `shard`.
pub fn record_opened_on_request(shard: u64) {
    OPENED_ON_REQUEST.with(|c| c.borrow_mut().push(shard));
}

/// Split children opened by a create request in this run, in order.
pub fn opened_on_request() -> Vec<u64> {
    OPENED_ON_REQUEST.with(|c| c.borrow().clone())
}

/// Records that this node created a replica of `shard` empty.
pub fn record_created_empty(shard: u64) {
    CREATED_EMPTY.with(|c| c.borrow_mut().push(shard));
}

/// Shards of which a replica was created empty in this run, in order.
pub fn created_empty() -> Vec<u64> {
    CREATED_EMPTY.with(|c| c.borrow().clone())
}

/// Forgets every recorded entry, empty creation and slow disk (a new run).
pub fn reset_applied() {
    APPLIED.with(|a| *a.borrow_mut() = AppliedLog::default());
    PD_STATES.with(|a| *a.borrow_mut() = AppliedLog::default());
    CREATED_EMPTY.with(|c| c.borrow_mut().clear());
    AWAITING_WITH_STATE.with(|c| c.borrow_mut().clear());
    OPENED_ON_REQUEST.with(|c| c.borrow_mut().clear());
    CHILD_OPEN_DELAY.with(|d| d.set(Duration::ZERO));
    SLOW_DISKS.with(|m| m.borrow_mut().clear());
}

/// Indexes at which replicas applied different entries.
pub fn applied_conflicts() -> Vec<String> {
    APPLIED.with(|a| a.borrow().conflicts.clone())
}

/// Deliberately broken behaviours, for proving the checkers work.
#[cfg(feature = "sim-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    None,
    /// Serve "linearizable" reads from local state, without ReadIndex.
    StaleReads,
    /// Acknowledge a write once it is proposed on the leader, before commit.
    AckBeforeCommit,
    /// Acknowledge a log append before it is flushed.
    AckBeforeFlush,
    /// Read scan pages without the replica's consistent view, so a page can
    /// show half of an applied batch.
    ScanWithoutView,
    /// A restarted replica whose stored vote is committed for itself resumes
    /// leadership of that term without an election (decision 0006 undone).
    ResumeLeadership,
    /// Skip the dedup table when applying: every write is fresh, so a
    /// retried write whose first attempt was applied is applied again.
    NoDedup,
    /// The PD state machine takes the time from the applying node's clock
    /// instead of the command, so replicas of the PD diverge.
    PdLocalClock,
    /// A node's PD heartbeat loop ends at its first failed heartbeat, so a
    /// node cut off for a while stays Down after the network heals.
    HeartbeatGivesUp,
    /// A write's key range is checked only when the request arrives, not
    /// again when it is applied, so a write that crosses a split lands in
    /// the child's range through the parent's log.
    NoApplyRangeCheck,
    /// A split child starts just after the split key instead of at it,
    /// leaving the key itself in no shard.
    SplitLeavesGap,
    /// Only the node whose parent replica leads opens a split child, so
    /// the child has one replica of three until the nodes restart.
    ChildOnlyOnParentLeader,
    /// A replica created empty to join a shard takes log entries before its
    /// first snapshot, and a node installs a snapshot whose range overlaps
    /// another shard it hosts (one older than a split it has seen): the
    /// shard's history is replayed, or its data deleted, over a newer shard.
    JoinWithoutSnapshot,
    /// A leader tells a node to remove its replica without checking that
    /// the membership without it is committed (a deposed leader whose
    /// removal never committed gives the word too).
    RemoveBeforeCommitted,
    /// The hazard replica ids close, opened again: a node added back to a
    /// shard it left is the same Raft member again (as `ReuseReplicaIds`),
    /// and its replica, created empty, grants votes before its first
    /// snapshot: a lagging replica with an old membership wins an election
    /// with its empty vote and loses committed entries.
    ReincarnationVotes,
    /// A node never compares what it hosts with the PD's view, so a
    /// replica removed while its node was down stays there for good.
    KeepStaleReplicas,
    /// A sleeping follower ignores its leader's node going silent: when a
    /// sleeping shard's leader dies, its followers never campaign.
    SleepThroughLeaderLoss,
    /// The PD leader never moves the PD's own group: drains of its nodes
    /// leave it where it is.
    PdGroupStays,
    /// A node added to a shard gets its node id as its replica id (as
    /// before replica ids), so a node added back to a shard it left is the
    /// same Raft member again.
    ReuseReplicaIds,
    /// A request to create a replica of a split child that the node's own
    /// split has written but not opened yet writes an empty replica's marks
    /// over the child's state (as before 2026-12-02).
    CreateOverSplitChild,
}

#[cfg(feature = "sim-bugs")]
thread_local! {
    static BUG: Cell<Bug> = const { Cell::new(Bug::None) };
}

/// Whether a broken mode gives replicas their node ids again
/// (`ReuseReplicaIds`, `ReincarnationVotes`).
#[cfg(feature = "sim-bugs")]
pub fn reuses_replica_ids() -> bool {
    bug(Bug::ReuseReplicaIds) || bug(Bug::ReincarnationVotes)
}

#[cfg(feature = "sim-bugs")]
pub fn set_bug(b: Bug) {
    BUG.with(|c| c.set(b));
}

/// Whether `b` is switched on (always false without feature `sim-bugs`).
#[cfg(feature = "sim-bugs")]
pub fn bug(b: Bug) -> bool {
    BUG.with(|c| c.get()) == b
}
