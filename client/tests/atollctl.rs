//! The `atollctl` binary against the fake cluster: outputs and exit codes.
#![cfg(not(madsim))]

mod fake_cluster;

use std::process::{Command, Output};

use fake_cluster::{lock, Shared};

fn atollctl(world: &Shared, args: &[&str]) -> Output {
    let endpoints = lock(world).addrs.join(",");
    Command::new(env!("CARGO_BIN_EXE_atollctl"))
        .args(["--endpoints", &endpoints, "--timeout", "3s"])
        .args(args)
        .env_remove("RUST_LOG")
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
