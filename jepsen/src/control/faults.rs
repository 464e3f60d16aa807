//! Network faults inside the nodes' namespaces: packet filters that cut links between nodes
//! (nftables, or iptables where nft is missing), and `tc netem` on a node's interface.
//! Both act only inside namespaces this harness created (those of the run's [`Lane`]); the
//! root namespace is never touched, so the table names below cannot clash between lanes.

use std::collections::BTreeSet;

use super::net::Lane;
use super::shell::{self, run_in};
use super::ControlError;

const TABLE: &str = "atj";

/// Which packet filter tool is used for partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    Nft,
    Iptables,
}

impl Firewall {
    pub fn detect() -> Option<Firewall> {
        if shell::have("nft") {
            Some(Firewall::Nft)
        } else if shell::have("iptables") {
            Some(Firewall::Iptables)
        } else {
            None
        }
    }
}

/// Makes `node` drop every packet that comes from the nodes in `from` (replacing any earlier
/// rules). Cutting a link both ways takes this on both of its ends.
pub fn drop_from(
    lane: Lane,
    fw: Firewall,
    node: u64,
    from: &BTreeSet<u64>,
) -> Result<(), ControlError> {
    heal(lane, fw, node)?;
    if from.is_empty() {
        return Ok(());
    }
    let ns = lane.namespace(node);
    let ips: Vec<String> = from.iter().map(|&p| lane.node_ip(p)).collect();
    match fw {
        Firewall::Nft => {
            let script = format!(
                "add table inet {TABLE}\n\
                 add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
                 add rule inet {TABLE} input ip saddr {{ {} }} drop\n",
                ips.join(", ")
            );
            let file = lane.temp_file("nft", node);
            std::fs::write(&file, script).map_err(|source| ControlError::Io {
                what: format!("writing {}", file.display()),
                source,
            })?;
            let path = file.to_string_lossy().into_owned();
            let r = run_in(&ns, "nft", &["-f", &path]);
            let _ = std::fs::remove_file(&file);
            r.map(|_| ())
        }
        Firewall::Iptables => {
            for ip in &ips {
                run_in(&ns, "iptables", &["-A", "INPUT", "-s", ip, "-j", "DROP"])?;
            }
            Ok(())
        }
    }
}

/// Removes the partition rules of `node`.
pub fn heal(lane: Lane, fw: Firewall, node: u64) -> Result<(), ControlError> {
    let ns = lane.namespace(node);
    match fw {
        Firewall::Nft => {
            // Deleting a table that does not exist fails; that is the healed state.
            let _ = run_in(&ns, "nft", &["delete", "table", "inet", TABLE]);
            Ok(())
        }
        Firewall::Iptables => run_in(&ns, "iptables", &["-F", "INPUT"]).map(|_| ()),
    }
}

/// Network emulation on a node's interface (all its traffic, both to peers and clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netem {
    pub delay_ms: u32,
    pub jitter_ms: u32,
    pub loss_percent: u32,
    pub reorder_percent: u32,
}

impl Netem {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            "delay".to_string(),
            format!("{}ms", self.delay_ms),
            format!("{}ms", self.jitter_ms),
        ];
        if self.loss_percent > 0 {
            a.extend(["loss".into(), format!("{}%", self.loss_percent)]);
        }
        if self.reorder_percent > 0 {
            a.extend(["reorder".into(), format!("{}%", self.reorder_percent)]);
        }
        a
    }

    pub fn describe(&self) -> String {
        self.args().join(" ")
    }
}

/// How netem was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetemVia {
    Tc,
    /// The kernel has no `sch_netem` (e.g. a minimal VM kernel): every setting, delay,
    /// jitter, loss and reordering, by the harness's NFQUEUE delayer
    /// ([`super::packet_delay`]).
    Queue,
    /// Neither netem nor NFQUEUE: only the loss part, as a random-drop nftables rule on
    /// the node's input.
    NftLoss,
}

const LOSS_TABLE: &str = "atjloss";

/// Applies `netem` on the node's interface with `tc netem`. `Ok(false)`: the kernel has no
/// netem qdisc.
pub fn tc_netem(lane: Lane, node: u64, netem: &Netem) -> Result<bool, ControlError> {
    let mut args = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
    let extra = netem.args();
    args.extend(extra.iter().map(String::as_str));
    match run_in(&lane.namespace(node), "tc", &args) {
        Ok(_) => Ok(true),
        Err(ControlError::Command { stderr, .. }) if stderr.contains("qdisc kind is unknown") => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Random packet loss on the node's input with nftables (at least 10%): the last resort
/// when neither netem nor NFQUEUE can be used.
pub fn nft_loss(lane: Lane, node: u64, netem: &Netem) -> Result<NetemVia, ControlError> {
    if !shell::have("nft") {
        return Err(ControlError::NoFirewall);
    }
    let loss = netem.loss_percent.max(10);
    let script = format!(
        "add table inet {LOSS_TABLE}\n\
         add chain inet {LOSS_TABLE} input {{ type filter hook input priority 0; policy accept; }}\n\
         add rule inet {LOSS_TABLE} input numgen random mod 100 < {loss} drop\n"
    );
    let file = lane.temp_file("loss", node);
    std::fs::write(&file, script).map_err(|source| ControlError::Io {
        what: format!("writing {}", file.display()),
        source,
    })?;
    let path = file.to_string_lossy().into_owned();
    let r = run_in(&lane.namespace(node), "nft", &["-f", &path]);
    let _ = std::fs::remove_file(&file);
    r.map(|_| NetemVia::NftLoss)
}

pub fn netem_off(lane: Lane, node: u64) -> Result<(), ControlError> {
    // No qdisc / table to delete is the healed state.
    let _ = run_in(
        &lane.namespace(node),
        "tc",
        &["qdisc", "del", "dev", "eth0", "root"],
    );
    if shell::have("nft") {
        let _ = run_in(
            &lane.namespace(node),
            "nft",
            &["delete", "table", "inet", LOSS_TABLE],
        );
    }
    Ok(())
}
