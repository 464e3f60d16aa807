//! Where the nodes live on the network: each in its own network namespace (a veth pair from
//! the namespace to one bridge in the root namespace, addresses in 10.77.{lane}.0/24), or,
//! where namespaces cannot be made, all on loopback with their own ports.
//!
//! Names are fixed per [`Lane`] (lane 0: `atj-br0`, `atj-n{i}`, `atj-v{i}`; lane k > 0:
//! `atj{k}-br0`, `atj{k}-n{i}`, `atj{k}-v{i}`) so a run killed with SIGKILL leaves nothing a
//! later run of the same lane cannot find: [`remove_stale`] clears them first, and only its
//! own lane's. One netns run at a time per lane; runs in different lanes
//! (`ATOLL_JEPSEN_LANE`) share nothing machine-wide: the nft tables and tc qdiscs of
//! [`super::faults`] live inside the lane's namespaces, the nodes listen on the lane's own
//! addresses, and data dirs and FUSE mounts are under the run's own report dir.

use std::path::PathBuf;

use super::shell::{self, run};
use super::ControlError;

/// Port every node listens on (each has its own address).
pub const NODE_PORT: u16 = 7101;
/// The environment variable that picks the lane (default 0).
pub const LANE_ENV: &str = "ATOLL_JEPSEN_LANE";
/// The highest lane: 10.77.{lane}.0/24 must be a subnet, and the names short enough.
pub const MAX_LANE: u8 = 200;

/// A set of network names and a subnet of its own, so that runs in different lanes can run
/// on one machine at the same time (e.g. a long soak beside CI's smoke run). Lane 0 is the
/// default: bridge `atj-br0`, namespaces `atj-n{i}`, veths `atj-v{i}`, subnet 10.77.0.0/24.
/// Lane k > 0: `atj{k}-br0`, `atj{k}-n{i}`, `atj{k}-v{i}`, 10.77.k.0/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lane(u8);

impl Lane {
    /// Lane `k`, if `k <= MAX_LANE`.
    pub fn new(k: u64) -> Result<Lane, String> {
        match u8::try_from(k) {
            Ok(k) if k <= MAX_LANE => Ok(Lane(k)),
            _ => Err(format!("lane {k} is out of range (0..={MAX_LANE})")),
        }
    }

    /// The lane named by `$ATOLL_JEPSEN_LANE` (unset or empty: lane 0).
    pub fn from_env() -> Result<Lane, String> {
        match std::env::var(LANE_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Lane::default()),
            Err(e) => Err(format!("{LANE_ENV}: {e}")),
            Ok(v) if v.trim().is_empty() => Ok(Lane::default()),
            Ok(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("{LANE_ENV}={v:?}: {e}"))
                .and_then(Lane::new),
        }
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// What every name of this lane starts with: `atj-` (lane 0) or `atj{k}-`.
    pub fn prefix(self) -> String {
        match self.0 {
            0 => "atj-".into(),
            k => format!("atj{k}-"),
        }
    }

    /// The bridge in the root namespace (its address is `.1` of the subnet).
    pub fn bridge(self) -> String {
        format!("{}br0", self.prefix())
    }

    /// `10.77.{lane}.`: the subnet's first three bytes, with the dot.
    pub fn subnet_prefix(self) -> String {
        format!("10.77.{}.", self.0)
    }

    fn bridge_addr(self) -> String {
        format!("{}1/24", self.subnet_prefix())
    }

    /// The network namespace of node `id`.
    pub fn namespace(self, id: u64) -> String {
        format!("{}n{id}", self.prefix())
    }

    /// The root-namespace end of node `id`'s veth pair.
    pub fn host_veth(self, id: u64) -> String {
        format!("{}v{id}", self.prefix())
    }

    /// The address of node `id` inside the namespaced network.
    pub fn node_ip(self, id: u64) -> String {
        format!("{}{}", self.subnet_prefix(), 10 + id)
    }

    /// A scratch file of this process in the temp dir (`{prefix}{what}-{node}-{pid}`).
    pub fn temp_file(self, what: &str, node: u64) -> PathBuf {
        std::env::temp_dir().join(format!(
            "{}{what}-{node}-{}",
            self.prefix(),
            std::process::id()
        ))
    }

    /// Whether `name` is a node namespace of this lane (`{prefix}n{digits}`).
    pub fn owns_namespace(self, name: &str) -> bool {
        numbered(name, &format!("{}n", self.prefix()))
    }

    /// Whether `name` is this lane's bridge or one of its veths (`{prefix}v{digits}`).
    pub fn owns_link(self, name: &str) -> bool {
        name == self.bridge() || numbered(name, &format!("{}v", self.prefix()))
    }
}

/// `name` is `stem` followed by one or more digits.
fn numbered(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// How nodes are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// One namespace per node, with the names and subnet of a lane; partitions and netem
    /// are possible.
    Namespaces(Lane),
    /// All on 127.0.0.1, different ports; why namespaces were not used.
    Loopback { reason: String },
}

impl NetMode {
    pub fn is_namespaced(&self) -> bool {
        matches!(self, NetMode::Namespaces(_))
    }

    pub fn describe(&self) -> String {
        match self {
            NetMode::Namespaces(lane) => format!(
                "network namespaces (bridge {}, nodes at {}11..)",
                lane.bridge(),
                lane.subnet_prefix()
            ),
            NetMode::Loopback { reason } => format!(
                "LOOPBACK FALLBACK (no network namespaces: {reason}); partition and netem nemeses are unavailable"
            ),
        }
    }
}

/// Why namespaces cannot be used here, or `None` if they can (root, `ip` present, the lane's
/// subnet unused by anything but a stale run of that lane).
pub fn unavailable_reason(lane: Lane) -> Option<String> {
    if !shell::have("ip") {
        return Some("the `ip` tool (iproute2) is not installed".into());
    }
    match run("id", &["-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(_) => return Some("not running as root".into()),
        Err(e) => return Some(format!("cannot tell the user id: {e}")),
    }
    if std::env::var_os("ATOLL_JEPSEN_LOOPBACK").is_some() {
        return Some("ATOLL_JEPSEN_LOOPBACK is set".into());
    }
    match run("ip", &["-4", "-o", "addr", "show"]) {
        Ok(addrs) => {
            let (subnet, bridge) = (lane.subnet_prefix(), lane.bridge());
            // `ip -o` lines: `5: atj-br0    inet 10.77.0.1/24 brd ...`.
            let taken = addrs.lines().any(|l| {
                let mut f = l.split_whitespace();
                let dev = f.nth(1).unwrap_or("").split('@').next().unwrap_or("");
                let addr = f.nth(1).unwrap_or("");
                addr.starts_with(&subnet) && dev != bridge
            });
            if taken {
                return Some(format!("subnet {subnet}0/24 is already in use here"));
            }
        }
        Err(e) => return Some(format!("`ip addr` failed: {e}")),
    }
    None
}

/// Deletes the namespaces, veths and bridge of `lane` left by an earlier run that did not
/// clean up; other lanes' are left alone. Returns what it removed.
pub fn remove_stale(lane: Lane) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if lane.owns_namespace(ns) && run("ip", &["netns", "del", ns]).is_ok() {
                removed.push(format!("netns {ns}"));
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for name in links.lines().filter_map(|l| l.split(':').nth(1)) {
            let name = name.trim().split('@').next().unwrap_or("");
            if lane.owns_link(name) && run("ip", &["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}

/// The bridge and one namespace + veth per node. Dropping it deletes them all.
#[derive(Debug)]
pub struct Network {
    lane: Lane,
    nodes: Vec<u64>,
    bridge: bool,
}

impl Network {
    /// Creates the bridge and the namespaces of nodes `1..=n` in `lane`. On error, whatever
    /// was made is removed (by drop).
    pub fn create(lane: Lane, n: u64) -> Result<Network, ControlError> {
        let mut net = Network {
            lane,
            nodes: Vec::new(),
            bridge: false,
        };
        let bridge = lane.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = true;
        run("ip", &["addr", "add", &lane.bridge_addr(), "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for id in 1..=n {
            net.add(id)?;
        }
        Ok(net)
    }

    /// Adds the namespace of node `id` (veth to the bridge, address [`Lane::node_ip`]): at the
    /// start, and for a node that joins later (the `membership` nemesis). On error, whatever
    /// was made is removed with the rest.
    pub fn add(&mut self, id: u64) -> Result<(), ControlError> {
        let ns = self.lane.namespace(id);
        let veth = self.lane.host_veth(id);
        run("ip", &["netns", "add", &ns])?;
        self.nodes.push(id);
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run(
            "ip",
            &["link", "set", &veth, "master", &self.lane.bridge(), "up"],
        )?;
        let addr = format!("{}/24", self.lane.node_ip(id));
        run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Deletes everything; errors are reported, not fatal (the rest is still removed).
    pub fn destroy(&mut self) -> Vec<ControlError> {
        let mut errors = Vec::new();
        for id in self.nodes.drain(..) {
            if let Err(e) = run("ip", &["netns", "del", &self.lane.namespace(id)]) {
                errors.push(e);
            }
            // Deleting the namespace deletes its end of the pair, and so the pair.
            let _ = run("ip", &["link", "del", &self.lane.host_veth(id)]);
        }
        if self.bridge {
            self.bridge = false;
            if let Err(e) = run("ip", &["link", "del", &self.lane.bridge()]) {
                errors.push(e);
            }
        }
        errors
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for e in self.destroy() {
            eprintln!("atoll-jepsen: cleanup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_zero_keeps_the_historical_names_and_subnet() {
        let lane = Lane::default();
        assert_eq!(lane, Lane::new(0).unwrap());
        assert_eq!(lane.prefix(), "atj-");
        assert_eq!(lane.bridge(), "atj-br0");
        assert_eq!(lane.namespace(3), "atj-n3");
        assert_eq!(lane.host_veth(3), "atj-v3");
        assert_eq!(lane.subnet_prefix(), "10.77.0.");
        assert_eq!(lane.bridge_addr(), "10.77.0.1/24");
        assert_eq!(lane.node_ip(1), "10.77.0.11");
        let tmp = lane.temp_file("nft", 2);
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("atj-nft-2-{}", std::process::id()));
    }

    #[test]
    fn other_lanes_get_their_own_prefix_and_subnet() {
        let lane = Lane::new(7).unwrap();
        assert_eq!(lane.prefix(), "atj7-");
        assert_eq!(lane.bridge(), "atj7-br0");
        assert_eq!(lane.namespace(12), "atj7-n12");
        assert_eq!(lane.host_veth(12), "atj7-v12");
        assert_eq!(lane.subnet_prefix(), "10.77.7.");
        assert_eq!(lane.bridge_addr(), "10.77.7.1/24");
        assert_eq!(lane.node_ip(2), "10.77.7.12");
        let top = Lane::new(u64::from(MAX_LANE)).unwrap();
        assert_eq!(top.node_ip(1), "10.77.200.11");
        assert!(Lane::new(u64::from(MAX_LANE) + 1).is_err());
        assert!(Lane::new(256).is_err());
        assert!(Lane::new(u64::MAX).is_err());
    }

    #[test]
    fn interface_names_fit_the_kernel_limit_in_every_lane() {
        // IFNAMSIZ is 16 with the NUL: 15 characters. Node ids stay below 245 (their
        // address is .10 + id).
        for k in 0..=u64::from(MAX_LANE) {
            let lane = Lane::new(k).unwrap();
            assert!(lane.bridge().len() <= 15, "{}", lane.bridge());
            assert!(lane.host_veth(244).len() <= 15, "{}", lane.host_veth(244));
        }
    }

    #[test]
    fn cleanup_only_claims_its_own_lane() {
        let (zero, one, eleven) = (
            Lane::new(0).unwrap(),
            Lane::new(1).unwrap(),
            Lane::new(11).unwrap(),
        );
        assert!(zero.owns_namespace("atj-n1"));
        assert!(zero.owns_link("atj-v12"));
        assert!(zero.owns_link("atj-br0"));
        assert!(one.owns_namespace("atj1-n1"));
        assert!(one.owns_link("atj1-v1"));
        assert!(one.owns_link("atj1-br0"));
        assert!(eleven.owns_namespace("atj11-n3"));
        for (lane, other) in [(zero, one), (one, zero), (one, eleven), (eleven, one)] {
            for id in [1, 3, 12] {
                assert!(!lane.owns_namespace(&other.namespace(id)));
                assert!(!lane.owns_link(&other.host_veth(id)));
            }
            assert!(!lane.owns_link(&other.bridge()));
            assert_ne!(lane.subnet_prefix(), other.subnet_prefix());
        }
        // Not node names at all.
        assert!(!zero.owns_namespace("atj-n"));
        assert!(!zero.owns_namespace("atj-nx"));
        assert!(!zero.owns_link("atj-br1"));
        assert!(!zero.owns_link("eth0"));
    }
}
