//! Nemeses: the faults a run injects, selectable by name and combinable
//! (`--nemesis kill,partition`). A scheduler thread alternates quiet periods and fault
//! windows, choosing one of the selected nemeses for each window, and records every window
//! (start, end, what) for the history's report.
//!
//! - `kill`: SIGKILL one random node, a minority, or the leader; restart at the window's end.
//! - `pause`: SIGSTOP the same choices; SIGCONT at the end.
//! - `partition`: one of the [`partition`] shapes, healed at the end.
//! - `netem`: delay, jitter, loss and reordering on one node or all ([`netem`]).
//! - `power`: SIGKILL + drop every un-synced write on one node, a minority or all nodes
//!   (the lazyfs layer), restart at the end.
//! - `transfer`: move shard 1's leadership to another node (`atollctl shard
//!   transfer-leader`), every second of the window; nothing to heal.
//! - `split`: split the shard holding a random key of the register, append or
//!   set workloads at that key (`atollctl shard split`), every second of the
//!   window; never inside the bank's accounts (a transfer must stay within
//!   one shard). Nothing to heal: shards are not merged back.
//! - `membership`: nodes join, are drained and removed under load ([`membership`]): a
//!   spare node joins at the start; each window drains an initial node and brings it back,
//!   or adds a fresh node and drains and removes the newest later one.
//! - `clock`: one node, a minority, the leader or all nodes have their clocks (wall and
//!   monotonic) jump forward by 2 to 10 s, each by its own amount, and stay ahead: the
//!   offsets grow over a run, so the nodes' clocks also drift apart
//!   ([`crate::control::clock`], libfaketime; never back: a monotonic clock cannot). Each
//!   jump is checked through the node's `Status` answer, and the window says what was
//!   observed.

pub mod membership;
pub mod netem;
pub mod partition;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use atoll_client::admin::NodeTarget;

use crate::control::faults::NetemVia;
use crate::control::status::PdNode;
use crate::control::{Cluster, ControlError};
use crate::workload::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NemesisKind {
    Kill,
    Pause,
    Partition,
    Netem,
    Power,
    Transfer,
    Split,
    Membership,
    Clock,
}

pub const ALL: [NemesisKind; 9] = [
    NemesisKind::Kill,
    NemesisKind::Pause,
    NemesisKind::Partition,
    NemesisKind::Netem,
    NemesisKind::Power,
    NemesisKind::Transfer,
    NemesisKind::Split,
    NemesisKind::Membership,
    NemesisKind::Clock,
];

impl NemesisKind {
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Netem => "netem",
            NemesisKind::Power => "power",
            NemesisKind::Transfer => "transfer",
            NemesisKind::Split => "split",
            NemesisKind::Membership => "membership",
            NemesisKind::Clock => "clock",
        }
    }

    pub fn needs_namespaces(self) -> bool {
        match self {
            NemesisKind::Partition | NemesisKind::Netem => true,
            NemesisKind::Kill
            | NemesisKind::Pause
            | NemesisKind::Power
            | NemesisKind::Transfer
            | NemesisKind::Split
            | NemesisKind::Membership
            | NemesisKind::Clock => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown nemesis {0:?} (kill, pause, partition, netem, power, transfer, split, membership, clock, none)"
)]
pub struct UnknownNemesis(String);

impl FromStr for NemesisKind {
    type Err = UnknownNemesis;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownNemesis(s.into()))
    }
}

/// Parses `kill,partition` (or `none`, or empty) into kinds.
pub fn parse_list(s: &str) -> Result<Vec<NemesisKind>, UnknownNemesis> {
    let mut v: Vec<NemesisKind> = s
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty() && *x != "none")
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    v.sort();
    v.dedup();
    Ok(v)
}

/// One fault window, in the run's clock (ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub nemesis: String,
    pub what: String,
    pub start: u64,
    pub end: Option<u64>,
    /// Set if injecting or healing failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What to undo at the end of a window.
enum Fault {
    Killed(Vec<u64>),
    Paused(Vec<u64>),
    Partitioned,
    Netem(Vec<u64>),
    PowerCut(Vec<u64>),
    /// Clocks moved forward: node and how far ahead of real time it now is (s). Nothing
    /// to undo: clocks never go back.
    Clocks(Vec<(u64, u64)>),
    /// Leadership moved, shards split, or membership changed (undone within the window);
    /// nothing to undo.
    Nothing,
}

/// What the nemeses ask of the running cluster beyond its processes.
pub struct Probes<'a> {
    /// The current leader of shard 1.
    pub leader: &'a dyn Fn() -> Option<u64>,
    /// Moves shard 1's leadership to a node ([`crate::control::status::transfer_leader`]).
    pub transfer: &'a dyn Fn(u64) -> Result<String, String>,
    /// Splits the shard holding a key at that key ([`crate::control::status::split_at`]).
    pub split: &'a dyn Fn(&[u8]) -> Result<String, String>,
    /// Registers a node's address with the placement driver: its id
    /// ([`crate::control::status::add_node`]).
    pub add_node: &'a dyn Fn(&str) -> Result<u64, String>,
    /// Drains a node, cancels its drain, or removes it
    /// ([`crate::control::status::set_node_state`]).
    pub set_node: &'a dyn Fn(u64, NodeTarget) -> Result<String, String>,
    /// Every node's state and replica count in the placement driver, by id
    /// ([`crate::control::status::pd_nodes`]).
    pub pd_nodes: &'a dyn Fn() -> Result<BTreeMap<u64, PdNode>, String>,
    /// How far a node's wall clock is from the harness's, in ms
    /// ([`crate::control::status::clock_offset_ms`]).
    pub clock_offset_ms: &'a dyn Fn(u64) -> Result<i64, String>,
    /// The median time a TCP connect to a node takes, in ms
    /// ([`crate::control::status::connect_rtt_ms`]).
    pub connect_rtt_ms: &'a dyn Fn(u64) -> Result<f64, String>,
}

/// Timing of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub quiet: Duration,
    pub fault: Duration,
    /// Every `kill`, `pause`, `power` and `netem` window hits every node at once (else one
    /// node, a minority, the leader or, for `power` and `netem`, sometimes all).
    pub all_nodes: bool,
}

pub type SharedCluster = Arc<Mutex<Cluster>>;

fn lock(c: &SharedCluster) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Nodes to hit: one, a minority, or the leader (or all, if `allow_all`; always all if
/// `only_all`).
fn targets(
    ids: &[u64],
    leader: Option<u64>,
    rng: &mut impl Rng,
    allow_all: bool,
    only_all: bool,
) -> (Vec<u64>, String) {
    if only_all {
        return (ids.to_vec(), "all nodes".into());
    }
    let minority = (ids.len() - 1) / 2;
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(rng);
    match rng.gen_range(0..if allow_all { 4 } else { 3 }) {
        0 => (vec![shuffled[0]], "one node".into()),
        1 => (shuffled[..minority.max(1)].to_vec(), "a minority".into()),
        2 => match leader {
            Some(l) => (vec![l], "the leader".into()),
            None => (vec![shuffled[0]], "one node (no leader known)".into()),
        },
        _ => (shuffled, "all nodes".into()),
    }
}

fn inject(
    kind: NemesisKind,
    cluster: &SharedCluster,
    leader: Option<u64>,
    rng: &mut impl Rng,
    all: bool,
) -> Result<(Fault, String), ControlError> {
    let ids = lock(cluster).ids();
    match kind {
        NemesisKind::Kill => {
            let (t, how) = targets(&ids, leader, rng, false, all);
            let mut c = lock(cluster);
            for &id in &t {
                c.kill9(id)?;
            }
            Ok((Fault::Killed(t.clone()), format!("kill -9 {how} {t:?}")))
        }
        NemesisKind::Pause => {
            let (t, how) = targets(&ids, leader, rng, false, all);
            let mut c = lock(cluster);
            for &id in &t {
                c.pause(id)?;
            }
            Ok((Fault::Paused(t.clone()), format!("SIGSTOP {how} {t:?}")))
        }
        NemesisKind::Partition => {
            let shape = partition::SHAPES[rng.gen_range(0..partition::SHAPES.len())];
            let (cut, desc) = partition::shape(shape, &ids, leader, rng);
            lock(cluster).partition(&cut)?;
            Ok((Fault::Partitioned, format!("partition {shape}: {desc}")))
        }
        NemesisKind::Netem => {
            let (t, how) = if all || rng.gen_bool(0.5) {
                (ids.clone(), "all nodes".to_string())
            } else {
                let one = ids[rng.gen_range(0..ids.len())];
                (vec![one], "one node".to_string())
            };
            let n = netem::pick(rng);
            let mut c = lock(cluster);
            let mut via = Vec::new();
            for &id in &t {
                via.push(c.netem(id, &n)?);
            }
            // Say what was injected: without `sch_netem` in the kernel the harness delays
            // packets itself (NFQUEUE); without that too, only the loss part is
            // (nftables random drop, at least 10 %).
            let what = if via.contains(&NetemVia::NftLoss) {
                format!(
                    "packet loss {}% (nftables fallback: this kernel has neither netem nor \
                     NFQUEUE, so no delay or reordering; asked: {})",
                    n.loss_percent.max(10),
                    n.describe()
                )
            } else if via.contains(&NetemVia::Queue) {
                format!(
                    "netem {} (by the harness through NFQUEUE: this kernel has no netem qdisc)",
                    n.describe()
                )
            } else {
                format!("netem {}", n.describe())
            };
            Ok((Fault::Netem(t.clone()), format!("{what} on {how} {t:?}")))
        }
        NemesisKind::Transfer => Ok((Fault::Nothing, String::from("leader transfers"))),
        NemesisKind::Split => Ok((Fault::Nothing, String::from("shard splits"))),
        NemesisKind::Membership => Ok((Fault::Nothing, String::from("membership change"))),
        NemesisKind::Clock => {
            let (t, how) = targets(&ids, leader, rng, true, all);
            let mut c = lock(cluster);
            let mut moved = Vec::new();
            let mut list = Vec::new();
            for &id in &t {
                let by = rng.gen_range(CLOCK_JUMP_S);
                let ahead = c.jump_clock(id, by)?;
                moved.push((id, ahead));
                list.push(format!("{id}: +{by} s, now +{ahead} s"));
            }
            Ok((
                Fault::Clocks(moved),
                format!("clock jumps on {how} [{}]", list.join("; ")),
            ))
        }
        NemesisKind::Power => {
            let (t, how) = targets(&ids, leader, rng, true, all);
            let mut c = lock(cluster);
            let mut dropped = 0;
            for &id in &t {
                dropped += c.power_cut(id)?.bytes;
            }
            Ok((
                Fault::PowerCut(t.clone()),
                format!("power cut on {how} {t:?} ({dropped} un-synced bytes dropped)"),
            ))
        }
    }
}

fn heal(fault: &Fault, cluster: &SharedCluster) -> Result<(), ControlError> {
    let mut c = lock(cluster);
    match fault {
        Fault::Killed(ids) | Fault::PowerCut(ids) => ids.iter().try_for_each(|&id| c.restart(id)),
        Fault::Paused(ids) => ids.iter().try_for_each(|&id| c.resume(id)),
        Fault::Partitioned => c.heal(),
        Fault::Netem(ids) => ids.iter().try_for_each(|&id| c.netem_off(id)),
        Fault::Clocks(_) => Ok(()),
        Fault::Nothing => Ok(()),
    }
}

/// Sleeps up to `d`, waking early when `stop` is set; returns whether it was set.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(100);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    stop.load(Ordering::Relaxed)
}

/// Runs `act` once a second until the window of `length` ends. Returns what
/// each call did (when it did something) and whether `stop` was set.
fn each_second(
    length: Duration,
    stop: &AtomicBool,
    mut act: impl FnMut() -> Option<String>,
) -> (Vec<String>, bool) {
    let mut done = Vec::new();
    let mut left = length;
    loop {
        done.extend(act());
        let step = left.min(Duration::from_secs(1));
        if nap(step, stop) {
            return (done, true);
        }
        left = left.saturating_sub(step);
        if left.is_zero() {
            return (done, false);
        }
    }
}

/// How far a `clock` window moves a node's clocks forward (s): past every Raft timeout.
const CLOCK_JUMP_S: std::ops::RangeInclusive<u64> = 2..=10;

/// How close an observed clock offset must be to the one asked for: libfaketime reads
/// its file again within a second, and a `Status` call takes a little time.
const CLOCK_TOLERANCE_MS: i64 = 1_000;

/// What a `netem` window did to the nodes' round trips: the median TCP connect time to
/// each (a connect waits for the node's SYN-ACK, which the delay holds back).
fn observe_rtts(ids: &[u64], probes: &Probes<'_>) -> String {
    let seen: Vec<String> = ids
        .iter()
        .map(|&id| match (probes.connect_rtt_ms)(id) {
            Ok(ms) => format!("{id}: {ms:.0} ms"),
            Err(e) => format!("{id}: {e}"),
        })
        .collect();
    format!("connect round trip [{}]", seen.join(", "))
}

fn ahead_ms(offset_s: u64) -> i64 {
    i64::try_from(offset_s).unwrap_or(i64::MAX / 1000) * 1000
}

/// Waits (up to 5 s) until every moved node's clock reads its new offset. Returns what
/// was observed, and an error naming the nodes whose clocks did not move.
fn observe_clocks(moved: &[(u64, u64)], probes: &Probes<'_>) -> (String, Option<String>) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen: BTreeMap<u64, Result<i64, String>> = BTreeMap::new();
    loop {
        for &(id, offset) in moved {
            let done = matches!(seen.get(&id), Some(Ok(ms)) if (ms - ahead_ms(offset)).abs() <= CLOCK_TOLERANCE_MS);
            if !done {
                seen.insert(id, (probes.clock_offset_ms)(id));
            }
        }
        let all_moved = moved.iter().all(|&(id, offset)| {
            matches!(seen.get(&id), Some(Ok(ms)) if (ms - ahead_ms(offset)).abs() <= CLOCK_TOLERANCE_MS)
        });
        if all_moved || std::time::Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut observed = Vec::new();
    let mut wrong = Vec::new();
    for &(id, offset) in moved {
        match seen.get(&id) {
            Some(Ok(ms)) => {
                observed.push(format!("{id}: {:+.1} s", *ms as f64 / 1000.0));
                if (ms - ahead_ms(offset)).abs() > CLOCK_TOLERANCE_MS {
                    wrong.push(format!(
                        "node {id}'s clock reads {:+.1} s, not +{offset} s",
                        *ms as f64 / 1000.0
                    ));
                }
            }
            Some(Err(e)) => {
                observed.push(format!("{id}: no answer"));
                wrong.push(format!("node {id}'s clock could not be read: {e}"));
            }
            None => {}
        }
    }
    let error =
        (!wrong.is_empty()).then(|| format!("{} (is libfaketime loaded?)", wrong.join("; ")));
    (format!("observed [{}]", observed.join(", ")), error)
}

/// One leader transfer to a random node other than the leader.
fn transfer_once(ids: &[u64], probes: &Probes<'_>, rng: &mut impl Rng) -> Option<String> {
    let leader = (probes.leader)();
    let others: Vec<u64> = ids.iter().copied().filter(|&i| Some(i) != leader).collect();
    let &target = others.choose(rng)?;
    let what = match (probes.transfer)(target) {
        Ok(what) => format!("to {target}: {what}"),
        Err(e) => format!("to {target}: failed: {e}"),
    };
    eprintln!("atoll-jepsen: nemesis transfer {what}");
    Some(what)
}

/// A key among the register (`r/`), append (`a/`) and set (`s/`) keys,
/// never a bank account's (`bank/`).
pub fn split_key(rng: &mut impl Rng) -> Vec<u8> {
    let family = ["r/", "a/", "s/"][rng.gen_range(0..3)];
    format!("{family}{}", rng.gen_range(0..1000)).into_bytes()
}

/// One split at a random [`split_key`].
fn split_once(probes: &Probes<'_>, rng: &mut impl Rng) -> Option<String> {
    let key = split_key(rng);
    let shown = String::from_utf8_lossy(&key).into_owned();
    let what = match (probes.split)(&key) {
        Ok(what) => format!("at {shown:?}: {what}"),
        Err(e) => format!("at {shown:?}: declined: {e}"),
    };
    eprintln!("atoll-jepsen: nemesis split {what}");
    Some(what)
}

/// One `membership` window: the plan for the current members, carried out.
fn membership_window(
    cluster: &SharedCluster,
    probes: &Probes<'_>,
    length: Duration,
    stop: &AtomicBool,
    rng: &mut impl Rng,
) -> membership::Done {
    let (members, initial) = {
        let c = lock(cluster);
        (c.ids(), c.initial_nodes())
    };
    // Unknown counts only make the choice less informed.
    let replicas: BTreeMap<u64, u64> = (probes.pd_nodes)()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, n)| (id, n.replicas))
        .collect();
    let plan = membership::plan(&members, initial, &replicas, rng);
    membership::window(plan, cluster, probes, length, stop)
}

/// The scheduler: until `stop`, a quiet period then a fault window, round and round (with
/// `membership`, a first window adds the spare node before any quiet period). Every fault
/// is healed before it returns.
pub fn run(
    kinds: &[NemesisKind],
    cluster: &SharedCluster,
    schedule: Schedule,
    clock: Clock,
    seed: u64,
    stop: &AtomicBool,
    probes: &Probes<'_>,
) -> Vec<Window> {
    let leader = probes.leader;
    let mut windows = Vec::new();
    if kinds.is_empty() {
        return windows;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    if kinds.contains(&NemesisKind::Membership) {
        // The spare node first, so that the first drain has somewhere to move replicas.
        let start = clock.now();
        let done = membership_window(cluster, probes, schedule.fault, stop, &mut rng);
        windows.push(Window {
            nemesis: NemesisKind::Membership.name().into(),
            what: done.what,
            start,
            end: Some(clock.now()),
            error: done.error,
        });
        if done.stopped {
            return windows;
        }
    }
    let mut turn = 0usize;
    loop {
        if nap(schedule.quiet, stop) {
            break;
        }
        let kind = kinds[turn % kinds.len()];
        turn += 1;
        let start = clock.now();
        let (fault, what, error) =
            match inject(kind, cluster, leader(), &mut rng, schedule.all_nodes) {
                Ok((f, what)) => (Some(f), what, None),
                Err(e) => (
                    None,
                    format!("{} (not injected)", kind.name()),
                    Some(e.to_string()),
                ),
            };
        eprintln!("atoll-jepsen: nemesis {what}");
        let mut window_error = None;
        let (what, stopped) = match kind {
            NemesisKind::Transfer => {
                let ids = lock(cluster).ids();
                let (done, stopped) = each_second(schedule.fault, stop, || {
                    transfer_once(&ids, probes, &mut rng)
                });
                (format!("leader transfers: {}", done.join("; ")), stopped)
            }
            NemesisKind::Split => {
                let (done, stopped) =
                    each_second(schedule.fault, stop, || split_once(probes, &mut rng));
                (format!("shard splits: {}", done.join("; ")), stopped)
            }
            NemesisKind::Membership => {
                let done = membership_window(cluster, probes, schedule.fault, stop, &mut rng);
                window_error = done.error;
                (done.what, done.stopped)
            }
            NemesisKind::Netem => {
                let started = std::time::Instant::now();
                let observed = match &fault {
                    Some(Fault::Netem(ids)) => observe_rtts(ids, probes),
                    _ => String::new(),
                };
                let rest = schedule.fault.saturating_sub(started.elapsed());
                (format!("{what}; {observed}"), nap(rest, stop))
            }
            NemesisKind::Clock => {
                let started = std::time::Instant::now();
                let (observed, error) = match &fault {
                    Some(Fault::Clocks(moved)) => observe_clocks(moved, probes),
                    _ => (String::new(), None),
                };
                window_error = error;
                let rest = schedule.fault.saturating_sub(started.elapsed());
                (format!("{what}; {observed}"), nap(rest, stop))
            }
            NemesisKind::Kill
            | NemesisKind::Pause
            | NemesisKind::Partition
            | NemesisKind::Power => (what, nap(schedule.fault, stop)),
        };
        let heal_error = fault
            .as_ref()
            .and_then(|f| heal(f, cluster).err())
            .map(|e| e.to_string());
        windows.push(Window {
            nemesis: kind.name().into(),
            what,
            start,
            end: Some(clock.now()),
            error: error.or(window_error).or(heal_error),
        });
        if stopped {
            break;
        }
    }
    windows
}
