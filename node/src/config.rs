//! Node configuration: defaults, overridden by an optional TOML file,
//! overridden by command-line flags (see `main.rs`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// Limits on request sizes, enforced with `InvalidArgument`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_batch_mutations: usize,
    /// Total key + value bytes of one batch, and of one txn (compares and
    /// ops of both branches).
    pub max_batch_bytes: usize,
    /// Compares plus ops (of both branches) of one txn; as etcd's
    /// `--max-txn-ops`. A txn's answer (get results included) stays in its
    /// session's dedup record until the client's next write on the shard.
    pub max_txn_ops: usize,
    pub max_scan_limit: u32,
    /// Key + value bytes of one scan page; a fuller page is cut short and
    /// marked truncated (the client continues from its last key).
    pub max_scan_bytes: usize,
}

impl Limits {
    fn validate(&self) -> Result<(), NodeError> {
        if !(1..=MAX_KEY_BYTES_LIMIT).contains(&self.max_key_bytes) {
            return Err(NodeError::Config(format!(
                "limits.max_key_bytes ({}) must be from 1 to {MAX_KEY_BYTES_LIMIT} (the storage \
                 engine's longest key, less the one-byte prefix Atoll stores keys behind)",
                self.max_key_bytes
            )));
        }
        for (name, n) in [
            ("max_value_bytes", self.max_value_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
        ] {
            if n > MAX_WRITE_BYTES_LIMIT {
                return Err(NodeError::Config(format!(
                    "limits.{name} ({n}) must be at most {MAX_WRITE_BYTES_LIMIT} (32 MiB): a write \
                     travels in one message of at most 64 MiB"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 4096,
            max_value_bytes: 1024 * 1024,
            max_batch_mutations: 10_000,
            max_batch_bytes: 16 * 1024 * 1024,
            max_txn_ops: 128,
            max_scan_limit: 1000,
            max_scan_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Raft timing and log-compaction knobs, shared by every shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    /// A follower stands for election after `leader_lease_ms` plus a random
    /// `election_timeout_min_ms..election_timeout_max_ms` (drawn anew for
    /// every election) of silence from its leader.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// For this long after the last message from its leader a follower
    /// refuses to vote for anyone else (a live leader is not disrupted by a
    /// node that merely missed a heartbeat). Not used for reads: every
    /// linearizable read confirms leadership with a heartbeat round.
    pub leader_lease_ms: u64,
    /// How long a candidate waits for one vote (the voter fsyncs it before
    /// it answers): keep it above the disk's worst `fdatasync`.
    pub vote_timeout_ms: u64,
    /// How often Raft's timers are checked: the granularity of election
    /// timeouts and heartbeats (openraft's own is 1.5 heartbeats, too
    /// coarse to tell two followers' random timeouts apart).
    pub tick_ms: u64,
    /// Build a snapshot after this many entries since the last one (each
    /// replica after up to 1.25× it, picked by its id: `shard::replica`).
    pub snapshot_after_entries: u64,
    /// Entries kept in the log after a snapshot, for slow followers.
    pub keep_entries_after_snapshot: u64,
    pub max_entries_per_append: u64,
    /// Encoded bytes of one AppendEntries; more entries than fit are sent in
    /// later ones (one entry is always sent, whatever its size).
    pub max_append_bytes: usize,
    /// How long one AppendEntries may take (send, append and flush on the
    /// follower, reply) before the leader sends it again. Independent of the
    /// heartbeat: a follower writing a large append under load must still
    /// be able to acknowledge it.
    pub append_timeout_ms: u64,
    /// How long a newly committed index may wait for the next
    /// AppendEntries to the followers before one is sent only for it. The
    /// leader answers the client at commit; followers learn of it (and
    /// apply) on the next append or heartbeat. 0 sends it at once.
    pub commit_notify_ms: u64,
    /// Entries of client writes a shard's leader keeps proposed and not
    /// yet applied, at most; writes that arrive meanwhile queue and go out
    /// together in the next entry (`shard::proposer`). 1 makes the largest
    /// entries (fewest appends, flushes and messages per write: the most
    /// writes per core); 2 lets a write go out while another entry is out,
    /// which helps latency when cores and disk have time to spare.
    pub proposals_in_flight: usize,
    /// How long a write may wait for commit and apply, and a linearizable
    /// read for its ReadIndex, before `Unavailable`. A request's gRPC
    /// deadline, if sooner, bounds the wait instead
    /// ([`crate::service::deadline`]; docs/operations.md, "Timeouts").
    pub write_timeout_ms: u64,
    /// A shard nothing has used for this long stops its Raft timers (no
    /// heartbeats, no election timeouts) until it is used again; its
    /// followers watch the leader's node instead (`shard::hibernation`).
    /// 0 keeps every shard awake.
    pub sleep_after_ms: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            leader_lease_ms: 250,
            vote_timeout_ms: 2000,
            tick_ms: 25,
            snapshot_after_entries: 10_000,
            keep_entries_after_snapshot: 1000,
            max_entries_per_append: 64,
            max_append_bytes: 4 * 1024 * 1024,
            append_timeout_ms: 1000,
            commit_notify_ms: 5,
            proposals_in_flight: 1,
            write_timeout_ms: 5000,
            sleep_after_ms: 10_000,
        }
    }
}

impl RaftTuning {
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// The longest a shard whose leader died goes without one, elections
    /// going well: the lease, then the second follower in rank's timeout
    /// (decision 0026). 1 s with the defaults; each paused phase of a
    /// leader transfer is bounded by it.
    pub fn failover_bound(&self) -> Duration {
        let span = self
            .election_timeout_max_ms
            .saturating_sub(self.election_timeout_min_ms);
        Duration::from_millis(self.leader_lease_ms + self.election_timeout_max_ms + span)
    }

    /// How long a replica that knows no leader holds a request for an
    /// election to end (`service::kv`): the slowest election of a shard
    /// whose leader died (lease, then the second follower's timeout), with
    /// as much again to spare for a busy machine.
    pub fn leader_wait(&self) -> Duration {
        Duration::from_millis(self.leader_lease_ms + 4 * self.election_timeout_max_ms)
    }

    pub fn to_openraft(&self) -> Result<openraft::Config, NodeError> {
        let c = openraft::Config {
            cluster_name: "atoll".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            leader_lease: self.leader_lease_ms.max(1),
            vote_timeout: self.vote_timeout_ms.max(1),
            tick_interval: self.tick_ms.max(1),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            max_payload_entries: self.max_entries_per_append,
            append_entries_timeout: self.append_timeout_ms.max(1),
            commit_notify_delay: self.commit_notify_ms,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        c.validate()
            .map_err(|e| NodeError::Config(format!("raft settings: {e}")))
    }
}

/// The default `initial_cluster_token`.
pub const DEFAULT_CLUSTER_TOKEN: &str = "atoll";

/// Exactly-once write sessions (docs/decisions/0007-explicit-client-sessions.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionLimits {
    /// Sessions one shard remembers. Opening one more evicts the least
    /// recently written; that client's next write gets `SessionExpired`.
    /// The leader that registers a session puts its own value in the log
    /// entry, so replicas never disagree even if nodes are configured
    /// differently.
    pub max_per_shard: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_per_shard: crate::state_machine::dedup::DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The placement driver (docs/decisions/0019-placement-driver-on-raft.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PdTuning {
    /// How often the node reports to the PD (liveness, and every shard it
    /// leads).
    pub heartbeat_ms: u64,
    /// A node silent this long is marked Down. Replicated in the PD's
    /// state: the value of the first PD leader is used when the cluster is
    /// bootstrapped.
    pub down_after_ms: u64,
    /// A shard at or above this approximate size is split in two; the
    /// first PD leader's value is used, as for `down_after_ms`.
    pub split_size_bytes: u64,
    /// A shard at or above this approximate key count is split in two.
    pub split_keys: u64,
    /// Voters per data shard (3; 5 for clusters that must survive two
    /// lost nodes). The first PD leader's value is used, as for
    /// `down_after_ms`. The PD's own group keeps 3.
    pub replication_factor: u64,
}

impl Default for PdTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 1000,
            down_after_ms: 30_000,
            split_size_bytes: atoll_pd::config::PdConfig::default().split_size_bytes,
            split_keys: atoll_pd::config::PdConfig::default().split_keys,
            replication_factor: atoll_pd::config::PdConfig::default().replication_factor as u64,
        }
    }
}

/// Largest `limits.max_key_bytes`: the storage engine takes keys of at most
/// 65 535 bytes, and a user key is stored behind a one-byte prefix
/// (`storage::keys`). A longer key would panic the engine when applied.
pub const MAX_KEY_BYTES_LIMIT: usize = crate::storage::engine::MAX_ENGINE_KEY - 1;

/// Largest `limits.max_value_bytes` and `limits.max_batch_bytes`: a write
/// travels in one gRPC message and one Raft entry (64 MiB at most,
/// `raft::peer_pool::MAX_MESSAGE_BYTES`), with room for its framing.
pub const MAX_WRITE_BYTES_LIMIT: usize = 32 << 20;

/// Largest `wal.prealloc_bytes`: zeros written in one go on the write path.
const MAX_WAL_PREALLOC: u64 = 64 << 20;

/// The write-ahead log (docs/decisions/0011-raft-wal.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalTuning {
    /// A segment file is closed and a new one started beyond this size;
    /// purge frees whole segments.
    pub segment_bytes: u64,
    /// The newest segment is extended with zeros this many bytes at a time,
    /// ahead of its records, so that syncing an append does not also commit
    /// a new file size; 0 turns it off.
    pub prealloc_bytes: u64,
}

impl Default for WalTuning {
    fn default() -> Self {
        let d = crate::wal::WalOptions::default();
        Self {
            segment_bytes: d.segment_bytes,
            prealloc_bytes: d.prealloc_bytes,
        }
    }
}

impl WalTuning {
    pub fn options(&self) -> crate::wal::WalOptions {
        crate::wal::WalOptions {
            segment_bytes: self.segment_bytes,
            prealloc_bytes: self.prealloc_bytes,
        }
    }
}

/// Everything a node needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique in the cluster, > 0.
    pub id: u64,
    pub data_dir: PathBuf,
    /// Address the gRPC server binds to.
    pub listen: String,
    /// Address other nodes and clients use to reach this node
    /// (defaults to `listen`).
    pub advertise: Option<String>,
    /// `id=host:port` of every initial voter. On the first start of a node
    /// listed here, the node creates the first shard and bootstraps Raft.
    pub initial_cluster: Vec<String>,
    /// Mixed into the cluster id derived at bootstrap, so two clusters
    /// bootstrapped with the same `initial_cluster` get different ids.
    /// Every initial member must use the same token.
    pub initial_cluster_token: String,
    pub limits: Limits,
    pub raft: RaftTuning,
    pub sessions: SessionLimits,
    pub wal: WalTuning,
    pub pd: PdTuning,
    /// Labels the PD knows this node by, such as `zone = "a"` (replicas
    /// of a shard are spread over distinct zones).
    pub labels: std::collections::BTreeMap<String, String>,
    /// Addresses of running nodes of the cluster to join through (no
    /// `initial_cluster`). A fresh node with `id = 0` gets its id from the
    /// placement driver through them; every node also reaches the PD
    /// through them.
    pub join: Vec<String>,
    /// Threads that run the node's requests and Raft groups: 0 = one per
    /// core (the default), 1 = a single thread (no hand-offs between
    /// threads; measured faster when several nodes share a few cores, as
    /// in `scripts/bench.sh`), N = N threads. Disk syncs and storage
    /// maintenance have their own threads either way.
    pub worker_threads: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            id: 1,
            data_dir: PathBuf::from("atoll-data"),
            listen: "127.0.0.1:7101".into(),
            advertise: None,
            initial_cluster: Vec::new(),
            initial_cluster_token: DEFAULT_CLUSTER_TOKEN.into(),
            worker_threads: 0,
            limits: Limits::default(),
            raft: RaftTuning::default(),
            sessions: SessionLimits::default(),
            wal: WalTuning::default(),
            pd: PdTuning::default(),
            labels: Default::default(),
            join: Vec::new(),
        }
    }
}

impl Config {
    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.clone())
    }

    /// Loads a TOML config file.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NodeError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        toml::from_str(&text)
            .map_err(|e| NodeError::Config(format!("config file {}: {e}", path.display())))
    }

    /// Whether the config file at `path` sets `id`. A node started with
    /// `--join` and no `--id` asks the placement driver for its id unless
    /// its file names one (before, a file without `id` gave it the default
    /// id 1, the id of the cluster's first node).
    pub fn toml_file_sets_id(path: &std::path::Path) -> Result<bool, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NodeError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| NodeError::Config(format!("config file {}: {e}", path.display())))?;
        Ok(table.contains_key("id"))
    }

    /// Parses `initial_cluster` into `(id, addr)` pairs.
    pub fn initial_members(&self) -> Result<Vec<(u64, String)>, NodeError> {
        parse_members(&self.initial_cluster)
    }

    pub fn validate(&self) -> Result<(), NodeError> {
        if self.id == 0 && self.join.is_empty() {
            return Err(NodeError::Config(
                "node id must be > 0 (id 0 asks the placement driver for one, which needs \
                 `join` addresses)"
                    .into(),
            ));
        }
        if !self.join.is_empty() && !self.initial_cluster.is_empty() {
            return Err(NodeError::Config(
                "give either `initial_cluster` (bootstrap a cluster) or `join` (join one), not both"
                    .into(),
            ));
        }
        if self.id >= crate::pd::report::MAX_NODE_ID {
            return Err(NodeError::Config(format!(
                "node id {} is too large: node ids must be below {}",
                self.id,
                crate::pd::report::MAX_NODE_ID
            )));
        }
        let members = self.initial_members()?;
        if !members.is_empty() && !members.iter().any(|(id, _)| *id == self.id) {
            return Err(NodeError::Config(format!(
                "initial cluster {:?} does not list this node's id {}",
                self.initial_cluster, self.id
            )));
        }
        if self.initial_cluster_token.trim().is_empty() {
            return Err(NodeError::Config(
                "initial cluster token must not be empty".into(),
            ));
        }
        self.raft.to_openraft()?;
        if !(1..=1024).contains(&self.raft.proposals_in_flight) {
            return Err(NodeError::Config(format!(
                "raft.proposals_in_flight ({}) must be from 1 to 1024 (1 is the default)",
                self.raft.proposals_in_flight
            )));
        }
        self.limits.validate()?;
        if self.sessions.max_per_shard == 0 {
            return Err(NodeError::Config(
                "sessions.max_per_shard must be > 0".into(),
            ));
        }
        if self.wal.prealloc_bytes > MAX_WAL_PREALLOC {
            return Err(NodeError::Config(format!(
                "wal.prealloc_bytes ({}) must be at most {MAX_WAL_PREALLOC} (64 MiB); 0 turns \
                 preallocation off",
                self.wal.prealloc_bytes
            )));
        }
        if self.pd.heartbeat_ms == 0 || self.pd.down_after_ms <= self.pd.heartbeat_ms {
            return Err(NodeError::Config(format!(
                "pd.heartbeat_ms ({}) must be > 0 and below pd.down_after_ms ({})",
                self.pd.heartbeat_ms, self.pd.down_after_ms
            )));
        }
        if !(1..=7).contains(&self.pd.replication_factor) {
            return Err(NodeError::Config(format!(
                "pd.replication_factor ({}) must be from 1 to 7 (3 is the default, 5 survives \
                 two lost nodes)",
                self.pd.replication_factor
            )));
        }
        Ok(())
    }
}

/// Parses `["1=127.0.0.1:7101", ...]` (comma-separated items are accepted too).
pub fn parse_members(items: &[String]) -> Result<Vec<(u64, String)>, NodeError> {
    let mut out = Vec::new();
    for item in items
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (id, addr) = item.split_once('=').ok_or_else(|| {
            NodeError::Config(format!("member {item:?} is not of the form ID=HOST:PORT"))
        })?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| NodeError::Config(format!("member {item:?}: {id:?} is not a node id")))?;
        if id == 0 || addr.trim().is_empty() {
            return Err(NodeError::Config(format!(
                "member {item:?}: id must be > 0 and address non-empty"
            )));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(NodeError::Config(format!("member id {id} is listed twice")));
        }
        out.push((id, addr.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_and_reject_garbage() {
        let m = parse_members(&["1=a:1, 2=b:2".into(), "3=c:3".into()]).unwrap();
        assert_eq!(
            m,
            vec![(1, "a:1".into()), (2, "b:2".into()), (3, "c:3".into())]
        );
        assert!(parse_members(&["x=a:1".into()]).is_err());
        assert!(parse_members(&["1=a:1,1=b:2".into()]).is_err());
        assert!(parse_members(&["1a:1".into()]).is_err());
    }

    #[test]
    fn toml_overrides_defaults_and_unknown_keys_fail() {
        let c: Config =
            toml::from_str("id = 2\nlisten = \"0.0.0.0:1\"\n[raft]\nheartbeat_ms = 50\n").unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.raft.heartbeat_ms, 50);
        assert_eq!(c.limits.max_key_bytes, 4096);
        assert_eq!(c.limits.max_txn_ops, 128);
        assert_eq!(c.sessions.max_per_shard, 100_000);
        let c: Config = toml::from_str("[sessions]\nmax_per_shard = 3\n").unwrap();
        assert_eq!(c.sessions.max_per_shard, 3);
        assert!(toml::from_str::<Config>("idd = 2").is_err());
    }

    #[test]
    fn a_replication_factor_outside_1_to_7_is_refused_with_the_range() {
        let valid = |rf: u64| {
            let mut c: Config = toml::from_str(
                "id = 1
",
            )
            .unwrap();
            c.pd.replication_factor = rf;
            c.validate()
        };
        assert!(valid(5).is_ok());
        for rf in [0, 8] {
            let e = valid(rf).expect_err("out of range").to_string();
            assert!(e.contains("from 1 to 7"), "{e}");
        }
    }

    #[test]
    fn proposals_in_flight_defaults_to_one_and_zero_is_refused() {
        let c: Config = toml::from_str("id = 1\n").unwrap();
        assert_eq!(c.raft.proposals_in_flight, 1);
        let mut c: Config = toml::from_str("id = 1\n[raft]\nproposals_in_flight = 2\n").unwrap();
        assert_eq!(c.raft.proposals_in_flight, 2);
        assert!(c.validate().is_ok());
        c.raft.proposals_in_flight = 0;
        let e = c.validate().expect_err("zero").to_string();
        assert!(e.contains("raft.proposals_in_flight (0)"), "{e}");
    }

    #[test]
    fn limits_beyond_what_the_engine_and_a_message_carry_are_refused() {
        let with = |toml_limits: &str| {
            let c: Config = toml::from_str(&format!("id = 1\n[limits]\n{toml_limits}\n")).unwrap();
            c.validate()
        };
        assert!(with(&format!("max_key_bytes = {MAX_KEY_BYTES_LIMIT}")).is_ok());
        for bad in ["max_key_bytes = 65535", "max_key_bytes = 0"] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(
                e.contains("limits.max_key_bytes") && e.contains("65534"),
                "{e}"
            );
        }
        assert!(with(&format!("max_value_bytes = {MAX_WRITE_BYTES_LIMIT}")).is_ok());
        for bad in ["max_value_bytes = 67108864", "max_batch_bytes = 40000000"] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains("at most 33554432 (32 MiB)"), "{e}");
        }
    }
}
