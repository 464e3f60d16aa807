//! The `membership` nemesis: nodes join, are drained and are taken out under load, through
//! the placement driver's node commands (what `atollctl node add | drain | up | remove`
//! call) and fresh nodes started with `--join` ([`Cluster::add_node`]).
//!
//! Each window carries out one [`Plan`], chosen by [`plan`] (pure, tested below):
//! - **drain an initial node** for the window, then `up` again: its data replicas move to
//!   another Up node and come back by balancing;
//! - **replace**: register and start a fresh node, drain the newest node that joined
//!   before it, and once that one holds no replica, remove it and stop its process;
//! - **grow**: only add a node, when there is no spare (at the start of the run: the first
//!   window of the run, before any quiet period; or after an add that failed).
//!
//! Limits, from the product: the placement driver's own Raft group lives on the three
//! lowest initial nodes and never moves, and the clients were given the initial nodes'
//! addresses, so initial nodes are drained and brought back, never removed. A drain needs
//! an Up node to move replicas to, so there are always at least `initial + 1` members; at
//! most `initial + 2`, so that every shard keeps a replica on an initial node. Every wait
//! is bounded by the window's length plus [`GRACE`]: a drain not finished by then is
//! cancelled (`up`), and the window says so in its error. Nothing here blocks the run for
//! longer; a stop (end of the run, Ctrl-C) cancels a drain at once.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use atoll_client::admin::NodeTarget;
use atoll_client::NodeState;
use rand::seq::SliceRandom;
use rand::Rng;

use super::{lock, nap, Probes, SharedCluster};

/// How long a window may run past its length, waiting for a node to come up or a drain to
/// finish.
pub const GRACE: Duration = Duration::from_secs(30);
/// How long to keep asking the placement driver to cancel a drain (`up`), past any deadline.
const CANCEL: Duration = Duration::from_secs(10);
/// Between two looks at the placement driver's state.
const POLL: Duration = Duration::from_millis(500);

/// What one membership window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Add a node: there is no spare to move replicas to.
    Grow,
    /// Drain this initial node for the window, then set it `up` again.
    DrainInitial(u64),
    /// Add a fresh node first (when `add`), drain node `drain` (one that joined later),
    /// remove it once it holds no replica, stop it.
    Replace { add: bool, drain: u64 },
}

/// The plan of the next window, given the members (running, not taken out), how many
/// nodes the cluster started with (ids `1..=initial`, never removed) and the replicas each
/// node holds, as far as the placement driver said.
///
/// A node that joined holds nothing until replicas are moved onto it, and removing an
/// empty node moves nothing; so while the newest later node is empty, draining an initial
/// node (which moves its replicas onto the spare) is three times as likely as a
/// replacement, else as likely. The initial node drained is one that holds replicas, if
/// any does.
pub fn plan(
    members: &[u64],
    initial: u64,
    replicas: &BTreeMap<u64, u64>,
    rng: &mut impl Rng,
) -> Plan {
    let min = initial as usize + 1;
    let max = initial as usize + 2;
    let Some(newest) = members.iter().copied().filter(|&id| id > initial).max() else {
        return Plan::Grow;
    };
    if members.len() < min {
        return Plan::Grow;
    }
    let initials: Vec<u64> = members
        .iter()
        .copied()
        .filter(|&id| id <= initial)
        .collect();
    let holding: Vec<u64> = initials
        .iter()
        .copied()
        .filter(|id| replicas.get(id).is_some_and(|&n| n > 0))
        .collect();
    let spare_empty = replicas.get(&newest) == Some(&0);
    if rng.gen_bool(if spare_empty { 0.75 } else { 0.5 }) {
        let choice = if holding.is_empty() {
            &initials
        } else {
            &holding
        };
        if let Some(&node) = choice.choose(rng) {
            return Plan::DrainInitial(node);
        }
    }
    Plan::Replace {
        // With `max` members or more, the removal alone leaves at least `min`.
        add: members.len() < max,
        drain: newest,
    }
}

/// What a window did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub what: String,
    /// Set if a step failed (what was done is still in `what`).
    pub error: Option<String>,
    /// `stop` was set during the window.
    pub stopped: bool,
}

/// Carries out `plan` in a window of `length` (longer by at most [`GRACE`] while a node
/// comes up or a drain finishes).
pub fn window(
    plan: Plan,
    cluster: &SharedCluster,
    probes: &Probes<'_>,
    length: Duration,
    stop: &AtomicBool,
) -> Done {
    let started = Instant::now();
    let deadline = started + length + GRACE;
    let (what, error) = match plan {
        Plan::Grow => match add(cluster, probes, deadline, stop) {
            Ok((id, up)) => (format!("add node {id} (up in {up:.1?})"), None),
            Err(e) => ("add a node: failed".to_string(), Some(e)),
        },
        Plan::DrainInitial(node) => drain_for(node, probes, length, stop),
        Plan::Replace { add: fresh, drain } => {
            let added = if fresh {
                match add(cluster, probes, deadline, stop) {
                    Ok((id, up)) => Ok(Some(format!("add node {id} (up in {up:.1?}), "))),
                    Err(e) => Err(e),
                }
            } else {
                Ok(None)
            };
            match added {
                Err(e) => (
                    format!("add a node: failed; node {drain} left alone"),
                    Some(e),
                ),
                Ok(added) => {
                    let added = added.unwrap_or_default();
                    match drain_and_remove(drain, cluster, probes, deadline, stop) {
                        Ok(how) => (
                            format!("{added}drain and remove node {drain} ({how})"),
                            None,
                        ),
                        Err(e) => (format!("{added}drain node {drain}: not removed"), Some(e)),
                    }
                }
            }
        }
    };
    eprintln!(
        "atoll-jepsen: nemesis membership: {what}{}",
        error
            .as_ref()
            .map_or(String::new(), |e| format!(" (error: {e})"))
    );
    let stopped = nap(length.saturating_sub(started.elapsed()), stop);
    Done {
        what,
        error,
        stopped,
    }
}

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(std::sync::atomic::Ordering::Relaxed)
}

/// Calls `f` once a second until it succeeds, `until` passes or `stop` is set; the last
/// error otherwise.
fn retry<T>(
    until: Instant,
    stop: &AtomicBool,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    loop {
        let e = match f() {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        if Instant::now() >= until || nap(Duration::from_secs(1), stop) {
            return Err(e);
        }
    }
}

/// Registers a node with the placement driver (`node add`), starts it with `--join` and
/// waits until the placement driver has it Up: its id and how long that took.
///
/// First waits until the placement driver knows every member: before it has recorded the
/// initial nodes it gives out their ids again (a `node add` right after the cluster's first
/// start got id 1), which [`crate::control::Cluster::add_node`] would refuse.
fn add(
    cluster: &SharedCluster,
    probes: &Probes<'_>,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let members = lock(cluster).ids();
    retry(deadline, stop, || {
        let known = (probes.pd_nodes)()?;
        match members.iter().find(|m| !known.contains_key(m)) {
            Some(m) => Err(format!("the placement driver does not know node {m} yet")),
            None => Ok(()),
        }
    })?;
    let (slot, addr) = lock(cluster).next_node();
    let id = retry(deadline, stop, || (probes.add_node)(&addr))
        .map_err(|e| format!("node add {addr} (node {slot}): {e}"))?;
    let join = lock(cluster).endpoints();
    lock(cluster)
        .add_node(id, &addr, &join)
        .map_err(|e| e.to_string())?;
    eprintln!("atoll-jepsen: nemesis membership: node {id} started at {addr}, joining");
    loop {
        let last = match (probes.pd_nodes)().map(|mut nodes| nodes.remove(&id)) {
            Ok(Some(n)) if n.state == NodeState::Up => return Ok((id, started.elapsed())),
            Ok(Some(n)) => format!("it is {}", n.state.as_str()),
            Ok(None) => "the placement driver does not know it".into(),
            Err(e) => e,
        };
        if Instant::now() >= deadline || nap(POLL, stop) {
            return Err(format!(
                "node {id} started but is not up after {:.1?}: {last}",
                started.elapsed()
            ));
        }
    }
}

/// Drains initial node `node` for the window, then sets it `up` again: what happened, and
/// an error if either step failed.
fn drain_for(
    node: u64,
    probes: &Probes<'_>,
    length: Duration,
    stop: &AtomicBool,
) -> (String, Option<String>) {
    let started = Instant::now();
    let replicas = || {
        (probes.pd_nodes)()
            .ok()
            .and_then(|mut nodes| nodes.remove(&node))
            .map_or("?".to_string(), |n| n.replicas.to_string())
    };
    let before = replicas();
    let drained = retry(started + length, stop, || {
        (probes.set_node)(node, NodeTarget::Draining)
    });
    nap(length.saturating_sub(started.elapsed()), stop);
    let during = replicas();
    // Always, even if the drain seemed to fail: its answer may have been lost.
    let up = cancel(node, probes);
    let what = format!("drain node {node} for the window (replicas {before} -> {during}), then up");
    let error = match (drained, up) {
        (Ok(_), Ok(_)) => None,
        (Err(e), Ok(_)) => Some(format!("drain node {node}: {e}")),
        (Ok(_), Err(e)) => Some(format!("node {node} up: {e}")),
        (Err(d), Err(u)) => Some(format!("drain node {node}: {d}; node {node} up: {u}")),
    };
    (what, error)
}

/// `node up`, retried for [`CANCEL`] whatever the deadline or the stop flag.
fn cancel(node: u64, probes: &Probes<'_>) -> Result<String, String> {
    let never = AtomicBool::new(false);
    retry(Instant::now() + CANCEL, &never, || {
        (probes.set_node)(node, NodeTarget::Up)
    })
}

/// Drains `node`, waits until it holds no replica (until `deadline`), removes it and stops
/// its process: how long the replicas took to move. A drain that does not finish is
/// cancelled.
fn drain_and_remove(
    node: u64,
    cluster: &SharedCluster,
    probes: &Probes<'_>,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<String, String> {
    let started = Instant::now();
    let held = |probes: &Probes<'_>| match (probes.pd_nodes)().map(|mut n| n.remove(&node)) {
        Ok(Some(n)) => Ok(n.replicas),
        Ok(None) => Err(format!("the placement driver does not know node {node}")),
        Err(e) => Err(e),
    };
    let before = held(probes).map_or("?".to_string(), |n| n.to_string());
    if let Err(e) = retry(deadline, stop, || {
        (probes.set_node)(node, NodeTarget::Draining)
    }) {
        let _ = cancel(node, probes);
        return Err(format!("drain node {node}: {e}"));
    }
    loop {
        let last = match held(probes) {
            Ok(0) => break,
            Ok(n) => format!("{n} replica(s) left"),
            Err(e) => e,
        };
        if stopped(stop) || Instant::now() >= deadline || nap(POLL, stop) {
            let why = if stopped(stop) {
                "the run is ending"
            } else {
                "time is up"
            };
            let cancelled = match cancel(node, probes) {
                Ok(_) => "drain cancelled (node up)".to_string(),
                Err(e) => format!("cancelling the drain failed too: {e}"),
            };
            return Err(format!(
                "node {node} not drained after {:.1?} ({why}; {last}); {cancelled}",
                started.elapsed()
            ));
        }
    }
    let moved = started.elapsed();
    let removed = retry(deadline.max(Instant::now() + CANCEL), stop, || {
        (probes.set_node)(node, NodeTarget::Removed)
    });
    if let Err(e) = removed {
        let _ = cancel(node, probes);
        return Err(format!(
            "node {node} drained in {moved:.1?} but not removed: {e}; drain cancelled"
        ));
    }
    lock(cluster)
        .retire(node)
        .map_err(|e| format!("node {node} removed but not stopped: {e}"))?;
    Ok(format!("{before} replica(s) moved off in {moved:.1?}"))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn plans_holding(members: &[u64], replicas: &[(u64, u64)]) -> Vec<Plan> {
        let replicas: BTreeMap<u64, u64> = replicas.iter().copied().collect();
        (0..200)
            .map(|seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                plan(members, 3, &replicas, &mut rng)
            })
            .collect()
    }

    /// Replica counts unknown.
    fn plans(members: &[u64]) -> Vec<Plan> {
        plans_holding(members, &[])
    }

    fn share(plans: &[Plan], pick: impl Fn(&Plan) -> bool) -> f64 {
        plans.iter().filter(|p| pick(p)).count() as f64 / plans.len() as f64
    }

    #[test]
    fn without_a_spare_the_only_plan_is_to_add_one() {
        for members in [&[1, 2, 3][..], &[], &[1, 2]] {
            assert!(plans(members).iter().all(|p| *p == Plan::Grow));
        }
        // A later node, but below initial + 1 members (an initial node is missing).
        assert!(plans(&[1, 2, 4]).iter().all(|p| *p == Plan::Grow));
    }

    #[test]
    fn with_one_spare_an_initial_node_is_drained_or_the_spare_replaced() {
        let all = plans(&[1, 2, 3, 4]);
        for p in &all {
            match *p {
                Plan::DrainInitial(n) => assert!((1..=3).contains(&n), "{p:?}"),
                Plan::Replace { add, drain } => assert!(add && drain == 4, "{p:?}"),
                Plan::Grow => panic!("a spare is there: {p:?}"),
            }
        }
        for n in 1..=3 {
            assert!(
                all.contains(&Plan::DrainInitial(n)),
                "node {n} is drained sometimes"
            );
        }
        assert!(all.contains(&Plan::Replace {
            add: true,
            drain: 4
        }));
    }

    #[test]
    fn the_newest_later_node_is_replaced_and_never_below_initial_plus_one() {
        // Node 5 joined, node 4's drain was cancelled: 5 members, remove without adding.
        for p in plans(&[1, 2, 3, 4, 5]) {
            if let Plan::Replace { add, drain } = p {
                assert_eq!((add, drain), (false, 5));
            }
        }
        for members in [&[1, 2, 3, 4][..], &[1, 2, 3, 4, 5], &[1, 2, 3, 6, 9, 12]] {
            for p in plans(members) {
                let after = match p {
                    Plan::Grow => members.len() + 1,
                    Plan::DrainInitial(n) => {
                        assert!(n <= 3, "{p:?}");
                        members.len()
                    }
                    Plan::Replace { add, drain } => {
                        assert!(drain > 3, "an initial node is never removed: {p:?}");
                        assert_eq!(Some(&drain), members.iter().max());
                        members.len() + usize::from(add) - 1
                    }
                };
                assert!(after >= 4, "{members:?}: {p:?} leaves {after}");
            }
        }
    }

    #[test]
    fn an_empty_spare_makes_a_drain_of_a_node_holding_replicas_likelier() {
        let drains = |p: &Plan| matches!(p, Plan::DrainInitial(_));
        // One shard on nodes 1, 2, 4; node 3 is empty.
        let spare_full = plans_holding(&[1, 2, 3, 4], &[(1, 1), (2, 1), (3, 0), (4, 1)]);
        let spare_empty = plans_holding(&[1, 2, 3, 4], &[(1, 1), (2, 1), (3, 1), (4, 0)]);
        assert!(share(&spare_empty, drains) > share(&spare_full, drains) + 0.1);
        assert!(
            share(&spare_empty, drains) < 1.0,
            "a replacement still happens"
        );
        assert!(
            !spare_full.contains(&Plan::DrainInitial(3)),
            "node 3 holds nothing to move"
        );
    }

    #[test]
    fn more_initial_nodes_keep_one_spare_past_them() {
        let none = BTreeMap::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(plan(&[1, 2, 3, 4, 5], 5, &none, &mut rng), Plan::Grow);
        for seed in 0..50 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            match plan(&[1, 2, 3, 4, 5, 6], 5, &none, &mut rng) {
                Plan::DrainInitial(n) => assert!(n <= 5),
                p => assert_eq!(
                    p,
                    Plan::Replace {
                        add: true,
                        drain: 6
                    }
                ),
            }
        }
    }
}
