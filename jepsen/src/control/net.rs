//! Where the nodes live on the network: each in its own network namespace (a veth pair from
//! the namespace to one bridge in the root namespace, addresses in 10.77.0.0/24), or, where
//! namespaces cannot be made, all on loopback with their own ports.
//!
//! Names are fixed (`atj-br0`, `atj-n{i}`, `atj-v{i}`) so a run killed with SIGKILL leaves
//! nothing a later run cannot find: [`remove_stale`] clears them first. Only one netns run
//! at a time per machine.

use super::shell::{self, run};
use super::ControlError;

/// The subnet of the namespaced cluster; the bridge (and so the harness) is `.1`.
pub const SUBNET_PREFIX: &str = "10.77.0.";
pub const BRIDGE: &str = "atj-br0";
const BRIDGE_ADDR: &str = "10.77.0.1/24";
/// Port every node listens on (each has its own address).
pub const NODE_PORT: u16 = 7101;

/// How nodes are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// One namespace per node; partitions and netem are possible.
    Namespaces,
    /// All on 127.0.0.1, different ports; why namespaces were not used.
    Loopback { reason: String },
}

impl NetMode {
    pub fn is_namespaced(&self) -> bool {
        matches!(self, NetMode::Namespaces)
    }

    pub fn describe(&self) -> String {
        match self {
            NetMode::Namespaces => format!(
                "network namespaces (bridge {BRIDGE}, nodes at {SUBNET_PREFIX}11..)"
            ),
            NetMode::Loopback { reason } => format!(
                "LOOPBACK FALLBACK (no network namespaces: {reason}); partition and netem nemeses are unavailable"
            ),
        }
    }
}

pub fn namespace(id: u64) -> String {
    format!("atj-n{id}")
}

fn host_veth(id: u64) -> String {
    format!("atj-v{id}")
}

/// The address of node `id` inside the namespaced network.
pub fn node_ip(id: u64) -> String {
    format!("{SUBNET_PREFIX}{}", 10 + id)
}

/// Why namespaces cannot be used here, or `None` if they can (root, `ip` present, the subnet
/// unused by anything but a stale run of ours).
pub fn unavailable_reason() -> Option<String> {
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
            if addrs
                .lines()
                .any(|l| l.contains(SUBNET_PREFIX) && !l.contains(BRIDGE))
            {
                return Some(format!("subnet {SUBNET_PREFIX}0/24 is already in use here"));
            }
        }
        Err(e) => return Some(format!("`ip addr` failed: {e}")),
    }
    None
}

/// Deletes namespaces, veths and the bridge left by an earlier run that did not clean up.
/// Returns what it removed.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with("atj-n") && run("ip", &["netns", "del", ns]).is_ok() {
                removed.push(format!("netns {ns}"));
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for name in links.lines().filter_map(|l| l.split(':').nth(1)) {
            let name = name.trim().split('@').next().unwrap_or("");
            if (name.starts_with("atj-v") || name == BRIDGE)
                && run("ip", &["link", "del", name]).is_ok()
            {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}

/// The bridge and one namespace + veth per node. Dropping it deletes them all.
#[derive(Debug)]
pub struct Network {
    nodes: Vec<u64>,
    bridge: bool,
}

impl Network {
    /// Creates the bridge and the namespaces of nodes `1..=n`. On error, whatever was made is
    /// removed (by drop).
    pub fn create(n: u64) -> Result<Network, ControlError> {
        let mut net = Network {
            nodes: Vec::new(),
            bridge: false,
        };
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        net.bridge = true;
        run("ip", &["addr", "add", BRIDGE_ADDR, "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for id in 1..=n {
            net.add(id)?;
        }
        Ok(net)
    }

    /// Adds the namespace of node `id` (veth to the bridge, address [`node_ip`]): at the
    /// start, and for a node that joins later (the `membership` nemesis). On error, whatever
    /// was made is removed with the rest.
    pub fn add(&mut self, id: u64) -> Result<(), ControlError> {
        let ns = namespace(id);
        let veth = host_veth(id);
        run("ip", &["netns", "add", &ns])?;
        self.nodes.push(id);
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
        let addr = format!("{}/24", node_ip(id));
        run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Deletes everything; errors are reported, not fatal (the rest is still removed).
    pub fn destroy(&mut self) -> Vec<ControlError> {
        let mut errors = Vec::new();
        for id in self.nodes.drain(..) {
            if let Err(e) = run("ip", &["netns", "del", &namespace(id)]) {
                errors.push(e);
            }
            // Deleting the namespace deletes its end of the pair, and so the pair.
            let _ = run("ip", &["link", "del", &host_veth(id)]);
        }
        if self.bridge {
            self.bridge = false;
            if let Err(e) = run("ip", &["link", "del", BRIDGE]) {
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
