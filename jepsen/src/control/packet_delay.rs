//! `netem` without the kernel's `sch_netem` (minimal VM kernels lack it): every packet a
//! node sends goes through an NFQUEUE rule to a thread of this harness,
//! which drops `loss`%, lets `reorder`% go at once, and holds the rest for
//! `delay` ± `jitter` before it lets them go; packets whose hold times cross leave out of
//! order, as with netem. The rule is iptables' `NFQUEUE` target (kernels without nftables'
//! own `queue` expression still have it). The thread enters the node's network namespace (`setns`) before it
//! opens its netlink socket, because a queue belongs to the namespace it is bound in. The
//! rule says `bypass`: if the thread is gone, packets pass instead of being dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::faults::Netem;
use super::net::Lane;
use super::shell::run_in;
use super::ControlError;

/// Queues are per namespace, so every node can use the same number.
const QUEUE: u16 = 0;
/// Bytes of each packet copied to the thread: it needs none (it only delays verdicts).
const COPY_BYTES: u16 = 64;

/// A running delayer for one node; [`PacketDelay::stop`] removes the rule and lets every
/// held packet go.
pub struct PacketDelay {
    lane: Lane,
    node: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PacketDelay {
    /// Starts delaying what node `node` sends, as `netem` asks.
    pub fn start(
        lane: Lane,
        node: u64,
        netem: &Netem,
        seed: u64,
    ) -> Result<PacketDelay, ControlError> {
        let ns = lane.namespace(node);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (stop, netem, ns) = (Arc::clone(&stop), netem.clone(), ns.clone());
            std::thread::Builder::new()
                .name(format!("delay-n{node}"))
                .spawn(move || serve(&ns, &netem, seed, &stop, &ready_tx))
                .map_err(|source| ControlError::Io {
                    what: "starting the packet delay thread".into(),
                    source,
                })?
        };
        let mut delay = PacketDelay {
            lane,
            node,
            stop,
            thread: Some(thread),
        };
        let bound = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| Err("the packet delay thread did not start".into()));
        if let Err(why) = bound {
            delay.stop();
            return Err(ControlError::Io {
                what: format!("binding NFQUEUE {QUEUE} in {ns}"),
                source: std::io::Error::other(why),
            });
        }
        // iptables' NFQUEUE target: kernels built without nftables' own `queue` expression
        // (as this machine's) still have it.
        if let Err(e) = run_in(&ns, "iptables", &rule("-A")) {
            delay.stop();
            return Err(e);
        }
        Ok(delay)
    }

    /// Removes the rule, then stops the thread, which lets every held packet go.
    pub fn stop(&mut self) {
        let ns = self.lane.namespace(self.node);
        while run_in(&ns, "iptables", &rule("-D")).is_ok() {}
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PacketDelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The queue rule, added (`-A`) or deleted (`-D`): everything the node sends on its
/// interface, passed on untouched if no thread listens (`--queue-bypass`).
fn rule(action: &str) -> [&str; 10] {
    [
        action,
        "OUTPUT",
        "-o",
        "eth0",
        "-j",
        "NFQUEUE",
        "--queue-num",
        "0",
        "--queue-bypass",
        "-w",
    ]
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Drop,
    Now,
    After(Duration),
}

/// The fate of one packet under `netem`, like netem's: loss first, then reorder (sent at
/// once), else held for `delay` ± `jitter`.
pub fn fate(netem: &Netem, rng: &mut impl Rng) -> Fate {
    if netem.loss_percent > 0 && rng.gen_range(0..100) < netem.loss_percent {
        return Fate::Drop;
    }
    if netem.reorder_percent > 0 && rng.gen_range(0..100) < netem.reorder_percent {
        return Fate::Now;
    }
    let (d, j) = (i64::from(netem.delay_ms), i64::from(netem.jitter_ms));
    let ms = (d + rng.gen_range(-j..=j)).max(0);
    Fate::After(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn serve(
    ns: &str,
    netem: &Netem,
    seed: u64,
    stop: &AtomicBool,
    ready: &mpsc::Sender<Result<(), String>>,
) {
    let mut queue = match open_in(ns) {
        Ok(q) => {
            let _ = ready.send(Ok(()));
            q
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut held: HashMap<u64, nfq::Message> = HashMap::new();
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        while let Ok(mut msg) = queue.recv() {
            busy = true;
            match fate(netem, &mut rng) {
                Fate::Drop => {
                    msg.set_verdict(nfq::Verdict::Drop);
                    let _ = queue.verdict(msg);
                }
                Fate::Now => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let _ = queue.verdict(msg);
                }
                Fate::After(d) => {
                    next += 1;
                    held.insert(next, msg);
                    due.push(Reverse((Instant::now() + d, next)));
                }
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            if let Some(mut msg) = held.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                let _ = queue.verdict(msg);
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for (_, mut msg) in held {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = queue.verdict(msg);
    }
    let _ = queue.unbind(QUEUE);
}

/// Enters namespace `ns` (this thread only) and binds the queue there, non-blocking.
fn open_in(ns: &str) -> Result<nfq::Queue, String> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("opening {path}: {e}"))?;
    // SAFETY: setns(2) on a valid namespace fd; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!(
            "setns into {ns}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut q = nfq::Queue::open().map_err(|e| format!("opening a netlink socket: {e}"))?;
    q.bind(QUEUE)
        .map_err(|e| format!("binding queue {QUEUE}: {e}"))?;
    q.set_copy_range(QUEUE, COPY_BYTES)
        .map_err(|e| format!("setting the copy range: {e}"))?;
    q.set_fail_open(QUEUE, true)
        .map_err(|e| format!("setting fail-open: {e}"))?;
    q.set_nonblocking(true);
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_follow_the_netem_settings() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = Netem {
            delay_ms: 30,
            jitter_ms: 20,
            loss_percent: 10,
            reorder_percent: 25,
        };
        let fates: Vec<Fate> = (0..10_000).map(|_| fate(&n, &mut rng)).collect();
        let drops = fates.iter().filter(|f| **f == Fate::Drop).count();
        let now = fates.iter().filter(|f| **f == Fate::Now).count();
        assert!((800..1200).contains(&drops), "{drops}");
        // 25 % of the 90 % not lost.
        assert!((2000..2500).contains(&now), "{now}");
        for f in fates {
            if let Fate::After(d) = f {
                assert!((Duration::from_millis(10)..=Duration::from_millis(50)).contains(&d));
            }
        }
        let plain = Netem {
            delay_ms: 100,
            jitter_ms: 0,
            loss_percent: 0,
            reorder_percent: 0,
        };
        assert_eq!(
            fate(&plain, &mut rng),
            Fate::After(Duration::from_millis(100))
        );
    }
}
