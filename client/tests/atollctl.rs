//! The `atollctl` binary: outputs and exit codes, against the fake cluster
//! for the KV and admin commands (and `shard split`'s retries), and against
//! three real `atoll-node` processes (`real_cluster`) for the placement
//! driver's view (`cluster status`, `shards`), `shard split` and the `node`
//! commands.
#![cfg(not(madsim))]

mod fake_cluster;
mod real_cluster;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fake_cluster::{lock, Shared};
use real_cluster::{closed_endpoints, free_addr, RealCluster};

fn atollctl(world: &Shared, args: &[&str]) -> Output {
    let endpoints = lock(world).addrs.join(",");
    atollctl_at(&endpoints, args)
}

/// Runs atollctl with `--endpoints endpoints` (comma separated).
fn atollctl_at(endpoints: &str, args: &[&str]) -> Output {
    atollctl_within(endpoints, "3s", args)
}

/// [`atollctl_at`] with `--timeout timeout`.
fn atollctl_within(endpoints: &str, timeout: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_atollctl"))
        .args(["--endpoints", endpoints, "--timeout", timeout])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ATOLL_ENDPOINTS")
        .output()
        .expect("run atollctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// The binary blocks one worker thread; the fake servers run on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_and_exit_codes() {
    let world = fake_cluster::start().await;

    let missing = atollctl(&world, &["get", "k"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stdout(&missing), "");
    assert_eq!(stderr(&missing), "error: key not found\n");

    assert_eq!(stdout(&atollctl(&world, &["put", "k", "hello"])), "ok\n");
    assert_eq!(stdout(&atollctl(&world, &["get", "k"])), "hello\n");
    assert_eq!(
        stdout(&atollctl(&world, &["--hex", "get", "k"])),
        "68656c6c6f\n"
    );

    let json = atollctl(&world, &["--json", "get", "k"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(doc["value"], "hello");

    let failed = atollctl(&world, &["cas", "k", "--expect", "nope", "x"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stderr(&failed).contains("comparison failed"),
        "{}",
        stderr(&failed)
    );
    assert_eq!(
        stdout(&atollctl(
            &world,
            &["cas", "k", "--expect", "hello", "--delete"]
        )),
        "swapped\n"
    );
    assert_eq!(
        stdout(&atollctl(&world, &["cas", "k", "--expect-absent", "again"])),
        "swapped\n"
    );

    assert_eq!(stdout(&atollctl(&world, &["delete", "k"])), "deleted\n");
    assert_eq!(
        stdout(&atollctl(&world, &["delete", "k"])),
        "key did not exist\n"
    );

    let empty_key = atollctl(&world, &["put", "", "v"]);
    assert_eq!(empty_key.status.code(), Some(2));
    assert!(
        stderr(&empty_key).starts_with("error: invalid argument"),
        "{}",
        stderr(&empty_key)
    );

    let usage = atollctl(&world, &["cas", "k", "v"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "neither --expect nor --expect-absent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_status() {
    let world = fake_cluster::start().await;
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert!(atollctl(&world, &["put", k, v]).status.success());
    }
    assert_eq!(stdout(&atollctl(&world, &["scan", "b"])), "b\t2\nc\t3\n");
    assert_eq!(
        stdout(&atollctl(&world, &["scan", "--limit", "1"])),
        "a\t1\n"
    );

    lock(&world).down.insert(3);
    let status = atollctl(&world, &["status"]);
    assert!(status.status.success());
    let table = stdout(&status);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{table}");
    assert!(lines[1].contains("leader"), "{table}");
    assert!(lines[3].contains("unreachable"), "{table}");

    let json = atollctl(&world, &["--json", "status"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(doc[2]["reachable"], false);
    assert_eq!(doc[0]["shards"][0]["role"], "leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_runs_one_branch_and_reports_each_result() {
    let world = fake_cluster::start().await;
    assert!(atollctl(&world, &["put", "alice", "50"]).status.success());
    let transfer = [
        "txn",
        "--if",
        "alice=50",
        "--if",
        "bob absent",
        "--then",
        "put alice 40",
        "--then",
        "put bob 10",
        "--then",
        "get bob",
        "--else",
        "get alice",
    ];
    let ran = atollctl(&world, &transfer);
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    assert_eq!(
        stdout(&ran),
        "compares held: ran the --then ops\nput alice\tok\nput bob\tok\nget bob\t10\n"
    );
    // The same txn again: the compares fail, the --else branch runs, and
    // that is still a success for the exit status.
    let failed = atollctl(&world, &transfer);
    assert_eq!(failed.status.code(), Some(0), "{}", stderr(&failed));
    assert_eq!(
        stdout(&failed),
        "compares did not hold: ran the --else ops\nget alice\t40\n"
    );

    let json = atollctl(
        &world,
        &[
            "--json",
            "txn",
            "--if",
            "bob!=0",
            "--if",
            "alice present",
            "--then",
            "delete bob",
            "--then",
            "get bob",
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(doc["succeeded"], true);
    assert_eq!(doc["results"][0]["op"], "delete");
    assert_eq!(doc["results"][0]["existed"], true);
    assert_eq!(doc["results"][1]["key"], "bob");
    assert!(doc["results"][1]["value"].is_null());

    let bad = atollctl(&world, &["txn", "--if", "alice"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let bad = atollctl(&world, &["txn", "--then", "cas a b"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let empty_key = atollctl(&world, &["txn", "--then", "get "]);
    assert_eq!(empty_key.status.code(), Some(2), "{}", stderr(&empty_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_transfer_leader_follows_the_leader_and_reports_failures() {
    let world = fake_cluster::start().await;
    let leader_before = lock(&world).leaders[&1];
    let target = if leader_before == 3 { 2 } else { 3 };
    let target_arg = target.to_string();

    let moved = atollctl(&world, &["shard", "transfer-leader", "1", &target_arg]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert!(
        stdout(&moved).starts_with(&format!("node {target} now leads shard 1")),
        "{}",
        stdout(&moved)
    );
    assert_eq!(lock(&world).leaders[&1], target);

    let json = atollctl(
        &world,
        &[
            "--json",
            "shard",
            "transfer-leader",
            "1",
            &leader_before.to_string(),
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["leader_id"], leader_before);

    let learner = atollctl(&world, &["--json", "shard", "transfer-leader", "1", "9"]);
    assert_eq!(
        learner.status.code(),
        Some(2),
        "not a voter: the caller's mistake"
    );
    let doc: serde_json::Value = serde_json::from_slice(&learner.stdout).expect("json");
    assert_eq!(doc["reason"], "target_not_voter");
    assert!(
        stderr(&learner).contains("was not transferred"),
        "{}",
        stderr(&learner)
    );

    lock(&world).down.insert(target);
    let down = atollctl(&world, &["shard", "transfer-leader", "1", &target_arg]);
    assert_eq!(down.status.code(), Some(1));
    assert!(stderr(&down).contains("target down"), "{}", stderr(&down));
}

/// A `NotApplied` answer of the node (refused with nothing proposed), as
/// it words it.
fn not_applied(message: &str) -> atoll_proto::Error {
    atoll_proto::Error {
        message: format!("not applied: {message}; nothing changed, retry"),
        kind: Some(atoll_proto::error::Kind::NotApplied(
            atoll_proto::NotApplied {},
        )),
    }
}

/// An `Unavailable` answer of the node, as it words it.
fn unavailable(message: &str) -> atoll_proto::Error {
    atoll_proto::Error {
        message: format!("unavailable: {message}"),
        kind: Some(atoll_proto::error::Kind::Unavailable(
            atoll_proto::Unavailable {},
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_split_retries_refusals_before_the_proposal_only() {
    let world = fake_cluster::start().await;
    lock(&world).leaders.insert(1, 2);
    lock(&world).split_errors.extend([
        not_applied("the placement driver does not know shard 1 yet"),
        not_applied("the placement driver is unavailable: the placement driver has no leader yet (election in progress?)"),
    ]);
    let split = atollctl(&world, &["shard", "split", "1", "--at", "m"]);
    assert!(split.status.success(), "{}", stderr(&split));
    assert_eq!(
        stdout(&split),
        "shard 1 split at m: shard 1 now [-inf, m), new shard 2 [m, +inf)\n"
    );
    let on_leader = |world: &fake_cluster::Shared| {
        let log = &lock(world).log;
        log.iter()
            .filter(|(node, method)| *node == 2 && *method == "split_shard")
            .count()
    };
    assert_eq!(on_leader(&world), 3, "two refusals, then the split");

    // Not committed in time: it may still apply, so it is not sent again.
    lock(&world).split_errors.push_back(unavailable(
        "the split was not committed within 5s (no quorum?); it may still apply",
    ));
    let open = atollctl(&world, &["--json", "shard", "split", "2", "--at", "t"]);
    assert_eq!(open.status.code(), Some(1), "{}", stderr(&open));
    assert_eq!(on_leader(&world), 4, "asked once");
    let err = stderr(&open);
    assert!(
        err.starts_with("error: cannot split shard 2: the split was not committed")
            && err.contains("`atollctl shards` shows whether it split"),
        "{err}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&open.stdout).expect("json");
    assert_eq!(
        (&doc["ok"], &doc["shard_id"]),
        (&false.into(), &2.into()),
        "{doc}"
    );

    // --hex keys, as --hex prints them.
    let hex = atollctl(&world, &["--hex", "shard", "split", "2", "--at", "74"]);
    assert!(hex.status.success(), "{}", stderr(&hex));
    assert_eq!(
        stdout(&hex),
        "shard 2 split at 74: shard 2 now [6d, 74), new shard 3 [74, +inf)\n"
    );
    let not_hex = atollctl(&world, &["--hex", "shard", "split", "2", "--at", "t"]);
    assert_eq!(not_hex.status.code(), Some(2), "{}", stderr(&not_hex));
    let empty = atollctl(&world, &["shard", "split", "2", "--at", ""]);
    assert_eq!(empty.status.code(), Some(2), "{}", stderr(&empty));
    assert_eq!(on_leader(&world), 5, "bad keys never reach the node");

    // Refusals that keep coming: retried until --timeout, then exit 1.
    let not_yet = not_applied("the placement driver does not know shard 3 yet");
    lock(&world).split_errors.extend(vec![not_yet; 10_000]);
    let endpoints = lock(&world).addrs.join(",");
    let started = Instant::now();
    let late = atollctl_within(&endpoints, "700ms", &["shard", "split", "3", "--at", "x"]);
    assert_eq!(late.status.code(), Some(1), "{}", stderr(&late));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = stderr(&late);
    assert!(
        err.starts_with("error: shard 3 was not split within 700ms: not applied: the placement driver does not know shard 3")
            && err.trim_end().ends_with("run the command again, or give a longer --timeout"),
        "{err}"
    );
    assert!(on_leader(&world) > 6, "retried");
}

/// Fast PD heartbeats, so that the first shard report arrives quickly.
const PD_TOML: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 2000\n";

/// Runs `atollctl ARGS` until it exits 0 with a stdout that satisfies
/// `ready`, and returns that stdout; fails after `timeout`.
fn poll(
    cluster: &RealCluster,
    args: &[&str],
    timeout: Duration,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = atollctl_at(&cluster.endpoints(), args);
        if out.status.success() && ready(&stdout(&out)) {
            return stdout(&out);
        }
        assert!(
            Instant::now() < deadline,
            "atollctl {args:?} not ready within {timeout:?}; last run: {}\nstdout: {}\nstderr: {}\n{}",
            out.status,
            stdout(&out),
            stderr(&out),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll`] for `atollctl --json ARGS`: returns the first document that
/// satisfies `ready`.
fn poll_json(
    cluster: &RealCluster,
    args: &[&str],
    timeout: Duration,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    let json_args: Vec<&str> = std::iter::once("--json")
        .chain(args.iter().copied())
        .collect();
    let text = poll(cluster, &json_args, timeout, |text| {
        parse(text).is_some_and(|doc| ready(&doc))
    });
    parse(&text).expect("a JSON document")
}

/// The rows of the table whose header starts with `header_start`, split
/// on whitespace; none if there is no such table.
fn table_rows(text: &str, header_start: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with(header_start))
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn is_pd_node(id: &serde_json::Value) -> bool {
    id.as_u64().is_some_and(|id| (1..=3).contains(&id))
}

#[test]
fn shards_shows_shard_1_over_the_whole_key_space_with_its_leader() {
    let cluster = RealCluster::start(PD_TOML);

    // Shard 1 appears with a leader once that leader reported (one
    // heartbeat after it was elected).
    let doc = poll_json(&cluster, &["shards"], Duration::from_secs(60), |d| {
        d["shards"].as_array().is_some_and(|s| s.len() == 1)
            && is_pd_node(&d["shards"][0]["leader_node"])
    });
    let shard = &doc["shards"][0];
    assert_eq!(shard["id"], 1, "{doc}");
    assert_eq!(
        (&shard["start"], &shard["end"]),
        (&"".into(), &"".into()),
        "{doc}"
    );
    assert!(
        shard["epoch"]["version"].is_u64() && shard["epoch"]["conf_ver"].is_u64(),
        "{doc}"
    );
    assert!(shard["term"].as_u64().is_some_and(|t| t > 0), "{doc}");
    assert_eq!(shard["replicas"].as_array().map(Vec::len), Some(3), "{doc}");
    assert_eq!(shard["replicas"][0]["role"], "voter", "{doc}");

    // Every run may meet a PD leader change: poll rather than expect.
    let one_row = |text: &str| table_rows(text, "ID").len() == 1;
    let text = poll(&cluster, &["shards"], Duration::from_secs(30), one_row);
    let rows = table_rows(&text, "ID");
    let row = &rows[0];
    assert_eq!(
        (row[0].as_str(), row[1].as_str(), row[2].as_str()),
        ("1", "-inf", "+inf"),
        "{row:?}"
    );
    let mut replicas: Vec<&str> = row[5].split(',').collect();
    replicas.sort();
    assert_eq!(replicas, ["1", "2", "3"], "{row:?}");
    assert!(
        ["1", "2", "3"].contains(&row[6].as_str()),
        "leader: {row:?}"
    );
    assert_eq!(
        (row[8].as_str(), row[9].as_str()),
        ("-", "-"),
        "sizes are not measured yet: {row:?}"
    );
}

#[test]
fn cluster_status_lists_three_up_nodes_and_the_pd_leader() {
    let cluster = RealCluster::start(PD_TOML);
    let doc = poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(30),
        |d| {
            // Before it bootstraps, the PD knows the nodes but runs on
            // default settings (down_after_ms).
            // Capacity comes with each node's first heartbeat.
            d["bootstrapped"] == true
                && d["nodes"].as_array().is_some_and(|n| {
                    n.len() == 3
                        && n.iter()
                            .all(|n| n["state"] == "up" && n["capacity_bytes"].as_u64() > Some(0))
                })
        },
    );
    assert!(
        is_pd_node(&doc["pd_leader"]),
        "the PD runs on nodes 1-3: {doc}"
    );
    assert_eq!(doc["replication_factor"], 3, "{doc}");
    assert_eq!(doc["down_after_ms"], 2000, "{doc}");
    assert_eq!(doc["cluster_id"].as_str().map(str::len), Some(16), "{doc}");
    for (i, node) in doc["nodes"].as_array().into_iter().flatten().enumerate() {
        assert_eq!(node["id"], i as u64 + 1, "{doc}");
        assert_eq!(node["addr"], cluster.addrs[i].as_str(), "{doc}");
        assert!(
            node["heartbeat_age_ms"].is_u64() && node["last_heartbeat_ms"].is_u64(),
            "{doc}"
        );
        assert!(
            node["replicas"].is_u64() && node["leaders"].is_u64(),
            "{doc}"
        );
        // The disk holding the node's data dir, from its heartbeats.
        let (capacity, used) = (&node["capacity_bytes"], &node["used_bytes"]);
        assert!(
            capacity.as_u64().is_some_and(|c| c > 0) && used.as_u64() <= capacity.as_u64(),
            "{doc}"
        );
    }

    // A node may miss a heartbeat between two runs on a loaded machine:
    // wait for a table of three Up nodes rather than expect one.
    let all_up = |text: &str| {
        let rows = table_rows(text, "ID");
        rows.len() == 3 && rows.iter().all(|r| r.get(2).is_some_and(|s| s == "up"))
    };
    let text = poll(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(30),
        all_up,
    );
    assert!(text.contains("PD leader:          node "), "{text}");
    assert!(
        text.contains("down after:         2.0s of silence"),
        "{text}"
    );
    let rows = table_rows(&text, "ID");
    assert_eq!(rows.len(), 3, "{text}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "{text}");
        assert_eq!(row[1], cluster.addrs[i], "{text}");
        assert_eq!(row[2], "up", "{text}");
        assert!(row[6].ends_with('s') && row[7] == "ago", "{text}");
    }
}

#[test]
fn cluster_status_and_shards_without_a_cluster_exit_1_and_say_what_to_check() {
    let endpoints = closed_endpoints(2);
    for args in [
        &["cluster", "status"][..],
        &["shards"],
        &["--json", "shards"],
    ] {
        let out = atollctl_at(&endpoints, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?}");
        let err = stderr(&out);
        assert!(
            err.starts_with(
                "error: cannot read the cluster state: no node answered (tried 2 endpoints)"
            ),
            "{err}"
        );
        for endpoint in endpoints.split(',') {
            assert!(err.contains(endpoint), "{err}");
        }
        assert!(
            err.contains("is the cluster running? check the endpoints"),
            "{err}"
        );
    }
}

/// `shard split` with a timeout long enough to outlast the cluster
/// getting ready for it (the PD learning the shard).
fn split(cluster: &RealCluster, args: &[&str]) -> Output {
    let argv: Vec<&str> = ["shard", "split"].iter().chain(args).copied().collect();
    atollctl_within(&cluster.endpoints(), "30s", &argv)
}

/// `atollctl put KEY VALUE`, which must succeed.
fn put(cluster: &RealCluster, key: &str, value: &str) {
    let out = atollctl_at(&cluster.endpoints(), &["put", key, value]);
    assert!(
        out.status.success(),
        "put {key}: {}\n{}",
        stderr(&out),
        cluster.logs()
    );
}

/// The shards of a `shards --json` document as (start, end, id), if they
/// tile the key space (each starts where the previous ends, from "" to "").
fn tiling(doc: &serde_json::Value) -> Option<Vec<(String, String, u64)>> {
    let mut shards: Vec<(String, String, u64)> = doc["shards"]
        .as_array()?
        .iter()
        .map(|s| {
            let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
            Some((text(&s["start"])?, text(&s["end"])?, s["id"].as_u64()?))
        })
        .collect::<Option<_>>()?;
    shards.sort();
    let mut next = "";
    for (start, end, _) in &shards {
        if start != next {
            return None;
        }
        next = end;
    }
    (next.is_empty() && !shards.is_empty()).then_some(shards)
}

#[test]
fn shard_split_makes_two_shards_that_keep_serving_their_keys() {
    let cluster = RealCluster::start(PD_TOML);
    // The first write waits for shard 1's leader.
    poll(
        &cluster,
        &["put", "a", "1"],
        Duration::from_secs(60),
        |_| true,
    );
    put(&cluster, "b", "2");
    put(&cluster, "n", "3");

    // Retried until the PD knows shard 1 (its leader's first report).
    let out = split(&cluster, &["1", "--at", "m"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    let new_id: u64 = text
        .strip_prefix("shard 1 split at m: shard 1 now [-inf, m), new shard ")
        .and_then(|rest| rest.strip_suffix(" [m, +inf)\n"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert_ne!(new_id, 1);
    let new = new_id.to_string();

    // The PD lists both halves once the leaders report them.
    let want = vec![
        (String::new(), "m".to_string(), 1),
        ("m".to_string(), String::new(), new_id),
    ];
    poll_json(&cluster, &["shards"], Duration::from_secs(30), |d| {
        tiling(d).as_ref() == Some(&want)
    });
    for (key, value) in [("a", "1"), ("n", "3")] {
        let got = poll(&cluster, &["get", key], Duration::from_secs(30), |_| true);
        assert_eq!(got, format!("{value}\n"), "get {key}");
    }

    let outside = split(&cluster, &["1", "--at", "z"]);
    assert_eq!(outside.status.code(), Some(2), "{}", stderr(&outside));
    assert!(
        stderr(&outside).contains("not strictly inside shard 1"),
        "{}",
        stderr(&outside)
    );

    // A shard that does not exist: said at once (not after --timeout), exit 2.
    let started = std::time::Instant::now();
    let none = split(&cluster, &["99", "--at", "x"]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("there is no shard 99"),
        "{}",
        stderr(&none)
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // One key ("n"): too few to pick a middle one.
    let few = split(&cluster, &[&new]);
    assert_eq!(few.status.code(), Some(2), "{}", stderr(&few));
    assert!(
        stderr(&few).contains("too few to pick a split key: give one (--at KEY)"),
        "{}",
        stderr(&few)
    );

    put(&cluster, "p", "4");
    put(&cluster, "q", "5");
    let out = split(&cluster, &["--json", &new]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (&doc["ok"], &doc["shard_id"]),
        (&true.into(), &new_id.into()),
        "{doc}"
    );
    let key = doc["split_key"].as_str().unwrap_or_default();
    assert!(
        ["p", "q"].contains(&key),
        "about the middle of n, p, q: {doc}"
    );
    assert_eq!(
        (
            &doc["left"]["id"],
            &doc["left"]["start"],
            &doc["left"]["end"]
        ),
        (&new_id.into(), &"m".into(), &key.into()),
        "{doc}"
    );
    assert_eq!(
        (&doc["right"]["start"], &doc["right"]["end"]),
        (&key.into(), &"".into()),
        "{doc}"
    );
    assert!(doc["left"]["version"].is_u64(), "{doc}");
    let third = doc["right"]["id"].as_u64().expect("the new shard's id");
    poll_json(&cluster, &["shards"], Duration::from_secs(30), |d| {
        tiling(d).is_some_and(|t| t.len() == 3 && t[2] == (key.to_string(), String::new(), third))
    });
    for (k, value) in [("a", "1"), ("n", "3"), ("p", "4"), ("q", "5")] {
        let got = poll(&cluster, &["get", k], Duration::from_secs(30), |_| true);
        assert_eq!(got, format!("{value}\n"), "get {k}");
    }
}

/// Issue 9, item 8: `node remove` refuses a node that holds replicas and
/// says what to do; `node drain --wait` moves every replica away and
/// reports it in JSON; `node remove` then takes the node out; an unknown
/// node is a caller's mistake.
#[test]
fn node_drain_waits_until_the_node_is_empty_and_remove_takes_it_out() {
    // Four initial members; shards keep three replicas, so a drained node's
    // replicas have somewhere to go.
    let cluster = RealCluster::start_n(4, PD_TOML);
    poll_json(&cluster, &["shards"], Duration::from_secs(30), |doc| {
        doc["shards"].as_array().is_some_and(|s| {
            s.len() == 1 && s[0]["replicas"].as_array().is_some_and(|r| r.len() == 3)
        })
    });

    let holder = poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(10),
        |doc| doc["nodes"].as_array().is_some_and(|n| n.len() == 4),
    )["nodes"]
        .as_array()
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n["replicas"].as_u64() == Some(1) && n["id"].as_u64() != Some(1))
                .and_then(|n| n["id"].as_u64())
        })
        .expect("a node other than 1 holding a replica");
    let id = holder.to_string();

    let out = atollctl_at(&cluster.endpoints(), &["node", "remove", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drain it first or pass --force"),
        "{}",
        stderr(&out)
    );

    let out = atollctl_within(
        &cluster.endpoints(),
        "10s",
        &[
            "--json",
            "node",
            "drain",
            &id,
            "--wait",
            "--wait-timeout",
            "90s",
        ],
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), cluster.logs());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["node_id"].as_u64(), Some(holder), "{doc}");
    assert_eq!(doc["to"], "draining", "{doc}");
    assert_eq!(doc["replicas_left"].as_u64(), Some(0), "{doc}");

    let out = atollctl_at(&cluster.endpoints(), &["node", "remove", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("node {id}: draining -> removed; it is out of the cluster; its id is never reused")
    );
    poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(10),
        |doc| {
            doc["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n["id"].as_u64() == Some(holder) && n["state"] == "removed")
            })
        },
    );
    // The data shard still serves, now on the other three nodes.
    put(&cluster, "after-drain", "v");

    let out = atollctl_at(&cluster.endpoints(), &["node", "drain", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("node 99 is unknown"),
        "{}",
        stderr(&out)
    );
}

/// The node `id` in a `cluster status --json` document.
fn status_node(doc: &serde_json::Value, id: u64) -> Option<&serde_json::Value> {
    doc["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"].as_u64() == Some(id)))
}

/// Issue 9, item 8: `node add` registers a node before it starts. It is
/// `joining` with its labels; adding the address again gives the same id;
/// a malformed address is refused. Started as `node add` says (`--join`,
/// no `--id`), the node gets that id and comes up with the labels.
#[test]
fn node_add_gives_a_node_its_id_before_it_starts() {
    let mut cluster = RealCluster::start(PD_TOML);
    poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(30),
        |doc| doc["bootstrapped"] == true && doc["nodes"].as_array().is_some_and(|n| n.len() == 3),
    );
    let addr = free_addr();

    let out = atollctl_at(
        &cluster.endpoints(),
        &["--json", "node", "add", &addr, "--label", "zone=z9"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["fresh"], true, "{doc}");
    assert_eq!(doc["state"], "joining", "{doc}");
    assert_eq!(doc["addr"], addr.as_str(), "{doc}");
    let id = doc["node_id"].as_u64().expect("a node id");
    assert!(id > 3, "a fresh id, got {id}");
    let start = doc["start_command"].as_str().expect("a start command");
    assert_eq!(
        start,
        format!(
            "atoll-node --listen {addr} --join {} --data-dir <dir>",
            cluster.endpoints()
        )
    );

    let status = poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(10),
        |doc| status_node(doc, id).is_some(),
    );
    let node = status_node(&status, id).expect("the added node");
    assert_eq!(node["state"], "joining", "{node}");
    assert_eq!(node["addr"], addr.as_str(), "{node}");
    assert_eq!(node["zone"], "z9", "{node}");
    assert_eq!(node["replicas"].as_u64(), Some(0), "{node}");
    assert!(
        node["heartbeat_age_ms"].is_null(),
        "never heard from: {node}"
    );

    // Again, as text: the same id, and the same next step.
    let out = atollctl_at(&cluster.endpoints(), &["node", "add", &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "{addr} is already node {id}: joining, not started yet\n\
             start it with an empty data dir: {start}\n"
        )
    );

    // A malformed address: refused, with what to give instead.
    let out = atollctl_at(&cluster.endpoints(), &["node", "add", "10.0.0.4"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bad node address \"10.0.0.4\": it has no port; give the host:port"),
        "{}",
        stderr(&out)
    );

    // Start it as told (plus fast PD heartbeats; with a config file, id 0
    // must be said there).
    let flags: Vec<&str> = start.split_whitespace().skip(1).collect();
    cluster.start_extra(&format!("id = 0\n{PD_TOML}"), &flags);
    let status = poll_json(
        &cluster,
        &["cluster", "status"],
        Duration::from_secs(30),
        |doc| status_node(doc, id).is_some_and(|n| n["state"] == "up"),
    );
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "no other id was given out: {status}");
    let node = status_node(&status, id).expect("the added node");
    assert_eq!(node["labels"]["zone"], "z9", "{node}");
    assert_eq!(node["addr"], addr.as_str(), "{node}");

    let out = atollctl_at(&cluster.endpoints(), &["node", "add", &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("{addr} is already node {id}, which is up; nothing changed")
    );
}
