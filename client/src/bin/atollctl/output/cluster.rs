//! Rendering the placement driver's view: `cluster status` (a header and
//! the node table) and `shards` (the shard table), as text or JSON.
//! Unmeasured sizes (0) print as "-"; heartbeat ages are taken against the
//! PD leader's clock (`now_ms` of the answer), never the local one; a
//! node that never heartbeated (joining) shows "never" (`null` in JSON).

use atoll_client::{ClusterState, NodeInfo, ReplicaInfo, ReplicaRole, ShardInfo};
use serde_json::{json, Value};

use super::{table, Printer};

const NODE_HEADER: [&str; 9] = [
    "ID",
    "ADDRESS",
    "STATE",
    "ZONE",
    "REPLICAS",
    "LEADERS",
    "LAST HEARTBEAT",
    "CAPACITY",
    "USED",
];

const SHARD_HEADER: [&str; 10] = [
    "ID", "START", "END", "VERSION", "CONF_VER", "REPLICAS", "LEADER", "TERM", "SIZE", "KEYS",
];

/// Until its leader records the first shard, the PD knows the nodes (they
/// register) but no shards, and runs on default settings.
const NOT_BOOTSTRAPPED: &str =
    "its leader records the first shard within a few heartbeats; retry shortly";

impl Printer {
    /// `cluster status`: the header and the node table, or JSON.
    pub fn cluster_status(&self, state: &ClusterState) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&cluster_status_json(state));
        }
        print!("{}", cluster_status_text(state));
        Ok(())
    }

    /// `shards`: the shard table, or JSON.
    pub fn shards(&self, state: &ClusterState) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(&self.shards_json(state));
        }
        print!("{}", self.shards_text(state));
        Ok(())
    }

    fn shards_text(&self, state: &ClusterState) -> String {
        if !state.bootstrapped {
            return format!("the placement driver is not bootstrapped yet: {NOT_BOOTSTRAPPED}\n");
        }
        let rows: Vec<Vec<String>> = state.shards.iter().map(|s| self.shard_row(s)).collect();
        table(&SHARD_HEADER, &rows)
    }

    fn shard_row(&self, shard: &ShardInfo) -> Vec<String> {
        vec![
            shard.id.to_string(),
            self.bound(&shard.start, "-inf"),
            self.bound(&shard.end, "+inf"),
            shard.version.to_string(),
            shard.conf_ver.to_string(),
            replicas_text(&shard.replicas),
            shard.leader_node.map_or("-".into(), |n| n.to_string()),
            count_or_dash(shard.term),
            size(shard.approx_size_bytes),
            count_or_dash(shard.approx_keys),
        ]
    }

    /// A range bound for the table: `unbounded` when empty, else the key
    /// as other commands print it, with control characters escaped so one
    /// key stays on one line. Also `shard split`'s rendering of ranges.
    pub(super) fn bound(&self, key: &[u8], unbounded: &str) -> String {
        if key.is_empty() {
            return unbounded.to_string();
        }
        self.text(key)
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    fn shards_json(&self, state: &ClusterState) -> Value {
        let shards: Vec<Value> = state.shards.iter().map(|s| self.shard_json(s)).collect();
        json!({
            "endpoint": state.endpoint,
            "cluster_id": cluster_id(state.cluster_id),
            "bootstrapped": state.bootstrapped,
            "pd_leader": state.pd_leader,
            "now_ms": state.now_ms,
            "shards": shards,
        })
    }

    /// Keys as other commands print them; "" is the start or the end of
    /// the key space.
    fn shard_json(&self, shard: &ShardInfo) -> Value {
        let replicas: Vec<Value> = shard
            .replicas
            .iter()
            .map(|r| json!({ "id": r.id, "node_id": r.node_id, "role": r.role.as_str() }))
            .collect();
        json!({
            "id": shard.id,
            "start": self.text(&shard.start),
            "end": self.text(&shard.end),
            "epoch": { "version": shard.version, "conf_ver": shard.conf_ver },
            "replicas": replicas,
            "leader_node": shard.leader_node,
            "term": shard.term,
            "approx_size_bytes": shard.approx_size_bytes,
            "approx_keys": shard.approx_keys,
            "last_report_ms": shard.last_report_ms,
        })
    }
}

fn cluster_status_text(state: &ClusterState) -> String {
    let mut out = header_text(state);
    out.push('\n');
    let rows: Vec<Vec<String>> = state.nodes.iter().map(|n| node_row(state, n)).collect();
    out.push_str(&table(&NODE_HEADER, &rows));
    out
}

/// `key: value` lines, values aligned; a line on bootstrapping while the
/// PD has not done it.
fn header_text(state: &ClusterState) -> String {
    let down_after = span(state.down_after.as_millis() as u64);
    let mut lines = vec![
        ("cluster id", cluster_id(state.cluster_id)),
        ("PD leader", format!("node {}", state.pd_leader)),
        ("replication factor", state.replication_factor.to_string()),
        ("down after", format!("{down_after} of silence")),
    ];
    if !state.bootstrapped {
        lines.push(("bootstrapped", format!("not yet ({NOT_BOOTSTRAPPED})")));
    }
    lines
        .iter()
        .map(|(key, value)| format!("{:<20}{value}\n", format!("{key}:")))
        .collect()
}

fn node_row(state: &ClusterState, node: &NodeInfo) -> Vec<String> {
    let heartbeat = match state.heartbeat_age(node) {
        Some(age) => format!("{} ago", span(age.as_millis() as u64)),
        None => "never".into(),
    };
    vec![
        node.id.to_string(),
        node.addr.clone(),
        node.state.as_str().to_string(),
        node.zone().unwrap_or("-").to_string(),
        node.replicas.to_string(),
        node.leaders.to_string(),
        heartbeat,
        size(node.capacity_bytes),
        size(node.used_bytes),
    ]
}

fn cluster_status_json(state: &ClusterState) -> Value {
    let nodes: Vec<Value> = state
        .nodes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "addr": n.addr,
                "state": n.state.as_str(),
                "labels": n.labels,
                "zone": n.zone(),
                "last_heartbeat_ms": n.last_heartbeat_ms,
                "heartbeat_age_ms": state.heartbeat_age(n).map(|age| age.as_millis() as u64),
                "capacity_bytes": n.capacity_bytes,
                "used_bytes": n.used_bytes,
                "replicas": n.replicas,
                "leaders": n.leaders,
            })
        })
        .collect();
    json!({
        "endpoint": state.endpoint,
        "cluster_id": cluster_id(state.cluster_id),
        "bootstrapped": state.bootstrapped,
        "pd_leader": state.pd_leader,
        "now_ms": state.now_ms,
        "replication_factor": state.replication_factor,
        "down_after_ms": state.down_after.as_millis() as u64,
        "nodes": nodes,
    })
}

/// As the nodes log it: 16 hex digits (a string in JSON too, as a u64 may
/// not fit a JSON reader's number).
fn cluster_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Node ids, with the role of every replica that is not a plain voter:
/// `1,2,3,4(learner)`.
fn replicas_text(replicas: &[ReplicaInfo]) -> String {
    let names: Vec<String> = replicas
        .iter()
        .map(|r| match &r.role {
            ReplicaRole::Voter => r.node_id.to_string(),
            role => format!("{}({})", r.node_id, role.as_str()),
        })
        .collect();
    names.join(",")
}

/// A time span for people: `0.4s`, `59.9s`, `12m05s`, `3h02m`, `2d03h`.
fn span(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms < MINUTE => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        ms if ms < HOUR => format!("{}m{:02}s", ms / MINUTE, ms % MINUTE / 1000),
        ms if ms < DAY => format!("{}h{:02}m", ms / HOUR, ms % HOUR / MINUTE),
        ms => format!("{}d{:02}h", ms / DAY, ms % DAY / HOUR),
    }
}

/// Bytes in binary units with one decimal (`512B`, `1.5KiB`, `3.0GiB`);
/// 0, not measured yet, is "-".
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes == 0 {
        return "-".into();
    }
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A count where 0 means "not known yet": "-".
fn count_or_dash(n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use atoll_client::NodeState;

    use super::*;

    const TEXT: Printer = Printer {
        json: false,
        hex: false,
    };

    fn node(id: u64, state: NodeState, zone: Option<&str>, heartbeat_ms: u64) -> NodeInfo {
        let labels: BTreeMap<String, String> = zone
            .map(|z| ("zone".to_string(), z.to_string()))
            .into_iter()
            .collect();
        NodeInfo {
            id,
            addr: format!("10.0.0.{id}:7101"),
            state,
            labels,
            last_heartbeat_ms: heartbeat_ms,
            capacity_bytes: 0,
            used_bytes: 0,
            replicas: 1,
            leaders: u64::from(id == 1),
        }
    }

    fn replica(node_id: u64, role: ReplicaRole) -> ReplicaInfo {
        ReplicaInfo {
            id: node_id + 10,
            node_id,
            role,
        }
    }

    fn shard(id: u64, start: &[u8], end: &[u8], leader: Option<u64>) -> ShardInfo {
        ShardInfo {
            id,
            start: start.to_vec(),
            end: end.to_vec(),
            version: 1,
            conf_ver: 2,
            replicas: vec![
                replica(1, ReplicaRole::Voter),
                replica(2, ReplicaRole::Voter),
            ],
            leader_node: leader,
            term: if leader.is_some() { 7 } else { 0 },
            approx_size_bytes: 0,
            approx_keys: 0,
            last_report_ms: None,
        }
    }

    fn state() -> ClusterState {
        ClusterState {
            endpoint: "10.0.0.1:7101".into(),
            cluster_id: 0xab,
            bootstrapped: true,
            pd_leader: 2,
            now_ms: 100_000,
            replication_factor: 3,
            down_after: Duration::from_secs(30),
            nodes: vec![
                node(1, NodeState::Up, Some("a"), 99_600),
                node(12, NodeState::Down, None, 25_000),
                node(13, NodeState::Joining, Some("z9"), 0),
            ],
            shards: vec![shard(1, b"", b"m", Some(1)), shard(2, b"m", b"", None)],
        }
    }

    #[test]
    fn cluster_status_has_a_header_and_an_aligned_node_table() {
        assert_eq!(
            cluster_status_text(&state()),
            "\
cluster id:         00000000000000ab
PD leader:          node 2
replication factor: 3
down after:         30.0s of silence

ID  ADDRESS         STATE    ZONE  REPLICAS  LEADERS  LAST HEARTBEAT  CAPACITY  USED
1   10.0.0.1:7101   up       a     1         1        0.4s ago        -         -
12  10.0.0.12:7101  down     -     1         0        1m15s ago       -         -
13  10.0.0.13:7101  joining  z9    1         0        never           -         -
"
        );
    }

    #[test]
    fn an_unbootstrapped_pd_says_so_and_still_lists_its_nodes() {
        let mut state = state();
        state.bootstrapped = false;
        state.shards.clear();
        let text = cluster_status_text(&state);
        assert!(
            text.contains("\nbootstrapped:       not yet (its leader records the first shard"),
            "{text}"
        );
        assert!(text.contains("\nID  ADDRESS"), "{text}");
        assert!(text.contains("\n12  10.0.0.12:7101"), "{text}");
        let shards = TEXT.shards_text(&state);
        assert!(
            shards.starts_with("the placement driver is not bootstrapped yet: its leader"),
            "{shards}"
        );
    }

    #[test]
    fn shards_table_shows_open_bounds_leaders_and_dashes() {
        assert_eq!(
            TEXT.shards_text(&state()),
            "\
ID  START  END   VERSION  CONF_VER  REPLICAS  LEADER  TERM  SIZE  KEYS
1   -inf   m     1        2         1,2       1       7     -     -
2   m      +inf  1        2         1,2       -       -     -     -
"
        );
    }

    #[test]
    fn keys_print_as_hex_or_escaped_text() {
        let hex = Printer {
            json: false,
            hex: true,
        };
        assert_eq!(hex.bound(b"\x00\xff", "-inf"), "00ff");
        assert_eq!(hex.bound(b"", "-inf"), "-inf");
        assert_eq!(TEXT.bound(b"a\nb\xff", "+inf"), "a\\nb\u{fffd}");
    }

    #[test]
    fn non_voters_are_marked_with_their_role() {
        let replicas = [
            replica(1, ReplicaRole::Voter),
            replica(4, ReplicaRole::Learner),
            replica(5, ReplicaRole::IncomingVoter),
        ];
        assert_eq!(replicas_text(&replicas), "1,4(learner),5(incoming-voter)");
    }

    #[test]
    fn spans_and_sizes_read_well() {
        assert_eq!(span(0), "0.0s");
        assert_eq!(span(400), "0.4s");
        assert_eq!(span(59_999), "59.9s");
        assert_eq!(span(75_000), "1m15s");
        assert_eq!(span(3 * 3_600_000 + 120_000), "3h02m");
        assert_eq!(span(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
        assert_eq!(size(0), "-");
        assert_eq!(size(512), "512B");
        assert_eq!(size(1536), "1.5KiB");
        assert_eq!(size(3 << 30), "3.0GiB");
        assert_eq!(size(u64::MAX), "16384.0PiB");
    }

    #[test]
    fn json_documents_carry_every_field() {
        let doc = cluster_status_json(&state());
        assert_eq!(doc["cluster_id"], "00000000000000ab");
        assert_eq!(doc["pd_leader"], 2);
        assert_eq!(doc["down_after_ms"], 30_000);
        assert_eq!(doc["nodes"][0]["zone"], "a");
        assert_eq!(doc["nodes"][0]["heartbeat_age_ms"], 400);
        assert_eq!(doc["nodes"][1]["state"], "down");
        assert!(doc["nodes"][1]["zone"].is_null());
        assert_eq!(doc["nodes"][2]["state"], "joining");
        assert!(doc["nodes"][2]["heartbeat_age_ms"].is_null(), "never");

        let doc = TEXT.shards_json(&state());
        assert_eq!(doc["shards"][0]["start"], "");
        assert_eq!(doc["shards"][0]["end"], "m");
        assert_eq!(doc["shards"][0]["epoch"]["conf_ver"], 2);
        assert_eq!(doc["shards"][0]["replicas"][1]["role"], "voter");
        assert_eq!(doc["shards"][0]["leader_node"], 1);
        assert!(doc["shards"][1]["leader_node"].is_null());
        assert!(doc["shards"][1]["last_report_ms"].is_null());
    }
}
