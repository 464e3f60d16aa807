//! Builders shared by the checker tests on hand-written histories: ops on
//! key "k" with explicit call and return times, and the verdict helpers.

#![allow(dead_code)]

use atoll_jepsen::{check, CheckResult, History, Op, OpKind, OpResult, Outcome};

pub fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub fn op(client: u64, kind: OpKind, call: u64, ret: u64, result: OpResult) -> Op {
    Op {
        client,
        kind,
        call,
        ret: Some(ret),
        outcome: Outcome::Ok(result),
    }
}

pub fn put(client: u64, call: u64, ret: u64, v: &str) -> Op {
    op(client, OpKind::put("k", v), call, ret, OpResult::Put)
}

pub fn get(client: u64, call: u64, ret: u64, v: Option<&str>) -> Op {
    op(client, OpKind::get("k"), call, ret, OpResult::Get(v.map(b)))
}

/// The same op, timed out: no return, result unknown.
pub fn indeterminate(mut op: Op) -> Op {
    op.ret = None;
    op.outcome = Outcome::Indeterminate;
    op
}

pub fn verdict(ops: Vec<Op>) -> CheckResult {
    check(&History::from_ops(ops).expect("well-formed history"))
}

#[track_caller]
pub fn assert_linearizable(ops: Vec<Op>) {
    let result = verdict(ops);
    assert!(result.is_linearizable(), "{result:?}");
}

/// Network namespaces a harness run left behind (`atj-*`); empty if `ip`
/// is missing.
pub fn leftover_namespaces() -> Vec<String> {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("atj-"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
