//! Nodes as the PD knows them: address, labels, state, liveness, capacity;
//! and the check of an address given for a node before it starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub type NodeId = u64;

/// The label whose values replicas of one shard are spread over.
pub const ZONE_LABEL: &str = "zone";

/// `Up` → `Draining` (operator) → `Removed` (operator, once empty).
/// `Up`/`Draining` → `Down` after `down_after_ms` of silence; a heartbeat
/// brings a `Down` node back to the state it had before. `Removed` is final.
/// `Joining` (`atollctl node add`) → `Up` (or `Draining`, if drained
/// meanwhile) when the node is first heard from; it is never `Down`.
///
/// Serialized in the PD's log and snapshots: add variants at the end only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    Up,
    Draining,
    Down,
    Removed,
    /// Registered ahead of its start (`Command::AddNode`), never heard
    /// from: holds nothing, gets nothing, is no part of any quorum.
    Joining,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    /// Whether the node was draining when it went down, so a heartbeat
    /// restores the right state.
    pub draining: bool,
    pub last_heartbeat_ms: u64,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
}

impl NodeInfo {
    /// A node that just joined or registered: Up, last heard from at `now_ms`.
    pub fn joined(
        id: NodeId,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Self {
        NodeInfo {
            id,
            address,
            labels,
            state: NodeState::Up,
            draining: false,
            last_heartbeat_ms: now_ms,
            capacity_bytes: 0,
            used_bytes: 0,
        }
    }

    /// A node registered before it starts (`Command::AddNode`): Joining,
    /// never heard from (`last_heartbeat_ms` 0).
    pub fn added(id: NodeId, address: String, labels: BTreeMap<String, String>) -> Self {
        NodeInfo {
            state: NodeState::Joining,
            last_heartbeat_ms: 0,
            ..Self::joined(id, address, labels, 0)
        }
    }

    /// The node was heard from (a heartbeat, a join, a registration) at
    /// `now_ms`: a `Joining` node becomes `Up`, or `Draining` if it was
    /// drained before it started. Other states are left to the caller.
    pub(crate) fn heard_from(&mut self, now_ms: u64) {
        self.last_heartbeat_ms = self.last_heartbeat_ms.max(now_ms);
        if self.state == NodeState::Joining {
            self.state = self.state_when_alive();
        }
    }

    /// The state a node that is heard from again takes.
    pub(crate) fn state_when_alive(&self) -> NodeState {
        if self.draining {
            NodeState::Draining
        } else {
            NodeState::Up
        }
    }

    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }

    /// May receive new replicas.
    pub fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }

    /// Counts towards a live quorum (its replicas are presumably running).
    pub fn is_alive(&self) -> bool {
        match self.state {
            NodeState::Up | NodeState::Draining => true,
            NodeState::Down | NodeState::Removed | NodeState::Joining => false,
        }
    }
}

/// Why a node address is refused (`Command::AddNode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum AddressProblem {
    #[error("it is empty")]
    Empty,
    #[error("it contains whitespace")]
    Whitespace,
    #[error("it has a scheme; give host:port only")]
    Scheme,
    #[error("it has no port")]
    NoPort,
    #[error("the port is not a number from 1 to 65535")]
    BadPort,
    #[error("the host is empty")]
    NoHost,
    #[error("an IPv6 host must be in brackets, as [::1]:7101")]
    BareIpv6,
    #[error("it is a wildcard address, which other nodes cannot reach")]
    Wildcard,
}

/// Checks that `address` has the `host:port` shape other nodes can dial:
/// a host (a name, an IPv4 address or a bracketed IPv6 one, not a
/// wildcard) and a port from 1 to 65535. Does not resolve the host.
pub fn check_address(address: &str) -> Result<(), AddressProblem> {
    if address.is_empty() {
        return Err(AddressProblem::Empty);
    }
    if address.chars().any(char::is_whitespace) {
        return Err(AddressProblem::Whitespace);
    }
    if address.contains("://") {
        return Err(AddressProblem::Scheme);
    }
    let (host, port) = address.rsplit_once(':').ok_or(AddressProblem::NoPort)?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('+') => {}
        _ => return Err(AddressProblem::BadPort),
    }
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or(AddressProblem::BareIpv6)?,
        None if host.contains(':') => return Err(AddressProblem::BareIpv6),
        None => host,
    };
    if bare.is_empty() {
        return Err(AddressProblem::NoHost);
    }
    let wildcard = bare
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if wildcard {
        return Err(AddressProblem::Wildcard);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_reachable_host_and_a_port() {
        for ok in [
            "10.0.0.4:7101",
            "node-4.example:7101",
            "[::1]:7101",
            "[fe80::1]:1",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", AddressProblem::Empty),
            ("10.0.0.4 :7101", AddressProblem::Whitespace),
            ("http://10.0.0.4:7101", AddressProblem::Scheme),
            ("10.0.0.4", AddressProblem::NoPort),
            ("10.0.0.4:", AddressProblem::BadPort),
            ("10.0.0.4:0", AddressProblem::BadPort),
            ("10.0.0.4:70000", AddressProblem::BadPort),
            ("10.0.0.4:+7", AddressProblem::BadPort),
            (":7101", AddressProblem::NoHost),
            ("[]:7101", AddressProblem::NoHost),
            ("::1:7101", AddressProblem::BareIpv6),
            ("[::1:7101", AddressProblem::BareIpv6),
            ("0.0.0.0:7101", AddressProblem::Wildcard),
            ("[::]:7101", AddressProblem::Wildcard),
        ] {
            assert_eq!(check_address(bad), Err(why), "{bad:?}");
        }
    }
}
