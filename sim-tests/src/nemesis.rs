//! Fault schedules. A schedule names which faults may happen; the seed
//! decides which happen when. Every fault is undone before the run's
//! recovery phase.

use std::time::Duration;

use atoll_node::sim_hooks::{self, NetFaults};
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::SimCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// No faults.
    Calm,
    /// Random halves, majority/minority, isolated leader, bridges.
    Partitions,
    /// One node at a time killed (power loss) and restarted.
    Crashes,
    /// Several nodes — up to all — lose power at once.
    PowerLoss,
    /// Nodes paused (SIGSTOP-like) and resumed.
    Pauses,
    /// Raft RPCs dropped, duplicated and delayed.
    NetChaos,
    /// The leader loses power and comes back within a few hundred
    /// milliseconds, often before the others elect a new leader.
    LeaderRestarts,
    /// All of the above.
    Mixed,
}

impl Schedule {
    pub const ALL: [Schedule; 8] = [
        Schedule::Calm,
        Schedule::Partitions,
        Schedule::Crashes,
        Schedule::PowerLoss,
        Schedule::Pauses,
        Schedule::NetChaos,
        Schedule::LeaderRestarts,
        Schedule::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Calm => "calm",
            Schedule::Partitions => "partitions",
            Schedule::Crashes => "crashes",
            Schedule::PowerLoss => "power-loss",
            Schedule::Pauses => "pauses",
            Schedule::NetChaos => "net-chaos",
            Schedule::LeaderRestarts => "leader-restarts",
            Schedule::Mixed => "mixed",
        }
    }

    pub fn parse(s: &str) -> Option<Schedule> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    fn kinds(self) -> &'static [Kind] {
        use Kind::*;
        match self {
            Schedule::Calm => &[],
            Schedule::Partitions => &[Halves, IsolateLeader, Bridge],
            Schedule::Crashes => &[CrashOne, CrashLeader],
            Schedule::PowerLoss => &[CrashMany],
            Schedule::Pauses => &[Pause],
            Schedule::NetChaos => &[Chaos],
            Schedule::LeaderRestarts => &[LeaderBlip],
            Schedule::Mixed => &Kind::ALL,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Halves,
    IsolateLeader,
    Bridge,
    CrashOne,
    CrashLeader,
    CrashMany,
    Pause,
    Chaos,
    LeaderBlip,
}

impl Kind {
    /// Every fault, in the order `Mixed` draws from.
    const ALL: [Kind; 9] = [
        Kind::Halves,
        Kind::IsolateLeader,
        Kind::Bridge,
        Kind::CrashOne,
        Kind::CrashLeader,
        Kind::CrashMany,
        Kind::Pause,
        Kind::Chaos,
        Kind::LeaderBlip,
    ];

    /// How long the cluster runs undisturbed before the fault.
    fn quiet(self, rng: &mut impl rand::Rng) -> Duration {
        match self {
            // Short blips come often: each is a chance to catch a leader
            // with entries on the followers that its own disk lost.
            Kind::LeaderBlip => Duration::from_millis(rng.gen_range(100..600)),
            _ => Duration::from_millis(rng.gen_range(300..2000)),
        }
    }

    /// How long the fault lasts.
    fn hold(self, rng: &mut impl rand::Rng) -> Duration {
        match self {
            Kind::LeaderBlip => Duration::from_millis(rng.gen_range(20..300)),
            _ => Duration::from_millis(rng.gen_range(500..4000)),
        }
    }
}

/// `ids` in random order.
fn shuffled(ids: &[u64], rng: &mut impl rand::Rng) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.shuffle(rng);
    v
}

/// What is currently broken, so it can be undone.
enum Active {
    Partition,
    Crashed(Vec<u64>),
    Paused(u64),
    Chaos,
}

/// Injects faults from `schedule` until `duration` has passed, then undoes
/// them all. Returns a log of what it did (part of the run's history).
pub async fn run(cluster: &SimCluster, schedule: Schedule, duration: Duration) -> Vec<String> {
    let mut log = Vec::new();
    let kinds = schedule.kinds();
    let start = tokio::time::Instant::now();
    let ids = cluster.ids();
    while !kinds.is_empty() && start.elapsed() < duration {
        let (quiet, kind, hold) = {
            let mut rng = madsim::rand::thread_rng();
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let quiet = kind.quiet(&mut rng);
            let hold = kind.hold(&mut rng);
            (quiet, kind, hold)
        };
        tokio::time::sleep(quiet).await;
        let mut slowed = None;
        if let Kind::LeaderBlip = kind {
            // The leader's disk turns slow first, so that entries commit on
            // the followers' flushes while the leader's own are still
            // pending when the power goes.
            if let Some(leader) = cluster.observer.believed_leader() {
                let (extra, lag) = {
                    let mut rng = madsim::rand::thread_rng();
                    (
                        Duration::from_millis(rng.gen_range(150..400)),
                        Duration::from_millis(rng.gen_range(50..300)),
                    )
                };
                cluster.slow_disk(leader, extra);
                slowed = Some(leader);
                tokio::time::sleep(lag).await;
            }
        }
        let t = start.elapsed().as_millis();
        let active = inject(cluster, kind, &ids);
        log.push(format!("{t}ms: {}", describe(&active, kind)));
        tokio::time::sleep(hold).await;
        undo(cluster, active);
        // The blip may have hit another node than the one whose disk
        // turned slow (leadership moved during the lag): heal that disk too.
        if let Some(node) = slowed {
            cluster.slow_disk(node, Duration::ZERO);
        }
        log.push(format!("{}ms: healed", start.elapsed().as_millis()));
    }
    log
}

fn inject(cluster: &SimCluster, kind: Kind, ids: &[u64]) -> Active {
    let mut rng = madsim::rand::thread_rng();
    let leader = cluster.observer.believed_leader().unwrap_or(ids[0]);
    match kind {
        Kind::Halves => {
            let shuffled = shuffled(ids, &mut rng);
            let cut = rng.gen_range(1..shuffled.len());
            let (a, b) = shuffled.split_at(cut);
            cluster.partition(&[a.to_vec(), b.to_vec()]);
            Active::Partition
        }
        Kind::IsolateLeader => {
            let rest: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
            cluster.partition(&[vec![leader], rest]);
            Active::Partition
        }
        Kind::Bridge => {
            // Two nodes that cannot talk to each other, both reaching a third.
            let shuffled = shuffled(ids, &mut rng);
            cluster.cut_links(&[(shuffled[0], shuffled[1]), (shuffled[1], shuffled[0])]);
            Active::Partition
        }
        Kind::CrashOne => {
            let victim = ids[rng.gen_range(0..ids.len())];
            cluster.crash(victim);
            Active::Crashed(vec![victim])
        }
        Kind::CrashLeader => {
            cluster.crash(leader);
            Active::Crashed(vec![leader])
        }
        Kind::LeaderBlip => {
            // Everything its slow disk had not flushed is gone, though the
            // followers may hold it.
            cluster.crash_losing_all_unflushed(leader);
            Active::Crashed(vec![leader])
        }
        Kind::CrashMany => {
            let shuffled = shuffled(ids, &mut rng);
            let n = rng.gen_range(2..=shuffled.len());
            let victims = shuffled[..n].to_vec();
            for v in &victims {
                cluster.crash(*v);
            }
            Active::Crashed(victims)
        }
        Kind::Pause => {
            let victim = if rng.gen_bool(0.5) {
                leader
            } else {
                ids[rng.gen_range(0..ids.len())]
            };
            cluster.pause(victim);
            Active::Paused(victim)
        }
        Kind::Chaos => {
            sim_hooks::set_net_faults(NetFaults {
                drop: rng.gen_range(0.05..0.3),
                lose_reply: rng.gen_range(0.0..0.2),
                duplicate: rng.gen_range(0.0..0.2),
                max_delay: Duration::from_millis(rng.gen_range(10..300)),
            });
            Active::Chaos
        }
    }
}

fn describe(active: &Active, kind: Kind) -> String {
    match active {
        Active::Partition => format!("partition ({kind:?})"),
        Active::Crashed(v) => format!("power loss on nodes {v:?}"),
        Active::Paused(v) => format!("pause node {v}"),
        Active::Chaos => format!("net chaos {:?}", sim_hooks::net_faults()),
    }
}

fn undo(cluster: &SimCluster, active: Active) {
    match active {
        Active::Partition => cluster.heal(),
        Active::Crashed(v) => v.iter().for_each(|id| cluster.restart(*id)),
        Active::Paused(v) => cluster.resume(v),
        Active::Chaos => sim_hooks::set_net_faults(NetFaults::default()),
    }
}
